//! Any request path (and refusal reason): `asset` and `refused_page` never
//! panic, and only page routes or embedded files are answered.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(path) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(asset) = recorder_ui::asset(path) {
        assert!(path == "/" || path.starts_with("/ui"));
        assert!(!asset.body.is_empty());
        let _ = asset.matches(path);
    }
    let page = recorder_ui::refused_page(403, path);
    assert!(page.ends_with("</html>\n"));
});
