//! Fuzz `request_info` (and the query parser and CLI line protocol) with
//! arbitrary bytes: the first line is the method, the rest the
//! request-target. Anything may come back except a panic, and a successful
//! result must be internally consistent.

#![no_main]

use k8s_request_parse::{cli, query, request_info};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (method, target) = text.split_once('\n').unwrap_or(("GET", &text));

    if let Ok(info) = request_info(method, target) {
        if let Some(parts) = &info.parts {
            assert!(info.is_resource_request);
            assert_eq!(Some(&info.resource), parts.first());
            match parts.get(1).filter(|name| !name.is_empty()) {
                Some(name) => assert_eq!(&info.name, name),
                // No name in the path: a list or watch may take it from a field selector.
                None if !info.name.is_empty() => {
                    assert!(matches!(info.verb.as_str(), "list" | "watch"));
                    assert!(info.field_selector.contains("metadata.name"));
                }
                None => {}
            }
        } else {
            assert!(!info.is_resource_request);
            assert!(info.resource.is_empty() && info.name.is_empty());
        }
        let json = serde_json::to_vec(&info).expect("RequestInfo serialises");
        let back: k8s_request_parse::RequestInfo =
            serde_json::from_slice(&json).expect("RequestInfo reads its own JSON");
        assert_eq!(back, info);
    }

    if let Some((_, raw_query)) = target.split_once('?') {
        let _ = query::parse_query(raw_query);
    }
    let line = cli::process_line_bytes(data);
    assert!(!line.contains('\n'));
});
