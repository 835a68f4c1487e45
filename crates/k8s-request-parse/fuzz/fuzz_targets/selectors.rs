//! Label and field selectors of any bytes, percent-encoded into a list request as a client sends
//! them: request info never panics, the verb is `list` or `watch` exactly as `watch=1` says
//! (a selector that does not parse drops only the name, never the watch), a name taken from a
//! `metadata.name` field selector is a valid path segment, and selectors that are UTF-8 are
//! reported verbatim.
#![no_main]

use k8s_request_parse::request_info;
use libfuzzer_sys::fuzz_target;

fn percent_encode(bytes: &[u8], out: &mut String) {
    for b in bytes {
        if b.is_ascii_alphanumeric() || b"-._~".contains(b) {
            out.push(char::from(*b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&control, rest)) = data.split_first() else {
        return;
    };
    let (label, field) = match rest.iter().position(|b| *b == b'\n') {
        Some(at) => (&rest[..at], &rest[at + 1..]),
        None => (rest, &[][..]),
    };
    let watch = control & 1 == 1;
    let path = match control >> 1 & 3 {
        0 => "/api/v1/pods",
        1 => "/api/v1/namespaces/dev/pods",
        2 => "/apis/apps/v1/deployments",
        _ => "/apis/apps/v1/namespaces/dev/deployments",
    };
    let mut target = format!("{path}?labelSelector=");
    percent_encode(label, &mut target);
    target.push_str("&fieldSelector=");
    percent_encode(field, &mut target);
    if watch {
        target.push_str("&watch=1");
    }
    let info =
        request_info("GET", &target).expect("a list request of a known path is request info");
    assert!(info.is_resource_request);
    assert_eq!(info.verb, if watch { "watch" } else { "list" }, "{target}");
    if !info.name.is_empty() {
        assert!(!info.name.contains(['/', '%']) && info.name != "." && info.name != "..");
        assert!(info.field_selector.contains("metadata.name"));
    }
    if let Ok(label) = std::str::from_utf8(label) {
        assert_eq!(info.label_selector, label);
    }
    if let Ok(field) = std::str::from_utf8(field) {
        assert_eq!(info.field_selector, field);
    }
});
