//! Arbitrary request headers through the upstream rewrite: never panics, and
//! no hop-by-hop, forwarding or client credential header survives in auth mode.
#![no_main]

use http::{HeaderMap, HeaderName, HeaderValue};
use kubescribe_proxy::{upgrade_type, upstream_request_headers, Mode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut headers = HeaderMap::new();
    for line in data.split(|b| *b == b'\n') {
        let mut parts = line.splitn(2, |b| *b == b':');
        let (Some(name), Some(value)) = (parts.next(), parts.next()) else {
            continue;
        };
        if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(name), HeaderValue::from_bytes(value)) {
            headers.append(n, v);
        }
    }
    let upgrade = upgrade_type(&headers);
    upstream_request_headers(&mut headers, upgrade.as_ref(), Mode::Auth, None, None);
    for name in headers.keys() {
        let n = name.as_str();
        assert!(!n.starts_with("x-forwarded-") && n != "forwarded");
        assert!(n != "authorization" && !n.starts_with("impersonate-"));
        assert!(!matches!(
            n,
            "keep-alive" | "transfer-encoding" | "proxy-authorization" | "trailer"
        ));
        if upgrade.is_none() {
            assert!(n != "connection" && n != "upgrade");
        }
    }
});
