//! Property tests of the public API: any path is answered without panicking,
//! only from the embedded table, and page routes always get the shell.

use proptest::prelude::*;

fn shell() -> &'static [u8] {
    recorder_ui::asset("/").map(|a| a.body).unwrap_or_default()
}

proptest! {
    #[test]
    fn any_path_is_answered_from_the_table_or_not_at_all(path in "\\PC{0,300}") {
        if let Some(a) = recorder_ui::asset(&path) {
            prop_assert!(!a.body.is_empty());
            prop_assert!(a.etag.starts_with('"') && a.etag.ends_with('"'));
            prop_assert!(path == "/" || path.starts_with("/ui"));
        }
    }

    #[test]
    fn page_routes_get_the_shell(route in "[a-zA-Z0-9._~-]{1,40}(/[a-zA-Z0-9._~%-]{0,40}){0,4}") {
        prop_assume!(!route.starts_with("assets"));
        let path = format!("/ui/{route}");
        let got = recorder_ui::asset(&path).map(|a| a.body);
        prop_assert_eq!(got, Some(shell()));
    }

    #[test]
    fn unknown_asset_names_are_not_found(name in "[a-z0-9./%-]{0,60}") {
        let path = format!("/ui/assets/{name}");
        if let Some(a) = recorder_ui::asset(&path) {
            // Only exact names of embedded files resolve.
            prop_assert!(!name.contains(".."), "{path} resolved");
            prop_assert!(a.body != shell());
        }
    }

    #[test]
    fn refused_page_never_echoes_markup(reason in "\\PC{0,2000}") {
        let page = recorder_ui::refused_page(403, &reason);
        let start = page.find("<pre id=\"refused-reason\">").unwrap_or(0);
        let end = page.rfind("</pre>").unwrap_or(page.len());
        let inner = &page[start + "<pre id=\"refused-reason\">".len()..end];
        prop_assert!(!inner.contains('<') && !inner.contains('>'));
    }
}
