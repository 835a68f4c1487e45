//! Header hygiene between caller and API server: hop-by-hop headers,
//! client-supplied forwarding headers and, in auth mode, client credentials
//! never cross the proxy; upgrades keep their `Connection: Upgrade`.
//! See docs/tailscale-protocol.md#ordinary-requests.

use http::header::{HeaderName, HeaderValue, CONNECTION, TE, UPGRADE};
use http::HeaderMap;
use identity::Impersonation;

use crate::mode::Mode;

/// Headers that are always hop-by-hop (RFC 9110 §7.6.1, plus Go's list).
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "proxy-connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// The `Upgrade` value of an upgrade request/response (`Connection` lists `upgrade`).
pub fn upgrade_type(headers: &HeaderMap) -> Option<HeaderValue> {
    if lists_token(headers, &CONNECTION, "upgrade") {
        headers.get(UPGRADE).cloned()
    } else {
        None
    }
}

/// A header's value as text ("" when absent or not visible ASCII).
pub(crate) fn header_text(headers: &HeaderMap, name: HeaderName) -> String {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

/// Whether a comma-separated header `name` lists `token` (case-insensitive).
fn lists_token(headers: &HeaderMap, name: &HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|s| s.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Remove hop-by-hop headers: those named in `Connection` and the fixed list.
pub(crate) fn remove_hop_by_hop(headers: &mut HeaderMap) {
    let listed: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|s| s.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for name in listed {
        headers.remove(&name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

/// Whether a header carries client-supplied forwarding information.
fn is_forwarding_header(name: &HeaderName) -> bool {
    let n = name.as_str();
    n == "forwarded" || n.starts_with("x-forwarded-")
}

/// Rewrite a caller's request headers for the upstream:
/// hop-by-hop and `X-Forwarded-*`/`Forwarded` removed (nothing is added);
/// `TE: trailers` and, for upgrades, `Connection: Upgrade` + `Upgrade` kept.
/// Auth mode: every client `Authorization`/`Impersonate-*` removed, the
/// caller's impersonation set, the proxy's own `Authorization` added.
/// Noauth mode: the caller's `Authorization` passes through untouched.
pub fn upstream_request_headers(
    headers: &mut HeaderMap,
    upgrade: Option<&HeaderValue>,
    mode: Mode,
    impersonation: Option<&Impersonation>,
    proxy_authorization: Option<HeaderValue>,
) {
    let te_trailers = lists_token(headers, &TE, "trailers");
    remove_hop_by_hop(headers);
    let forwarding: Vec<HeaderName> = headers
        .keys()
        .filter(|n| is_forwarding_header(n))
        .cloned()
        .collect();
    for n in forwarding {
        headers.remove(&n);
    }
    if te_trailers {
        headers.insert(TE, HeaderValue::from_static("trailers"));
    }
    if let Some(u) = upgrade {
        headers.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
        headers.insert(UPGRADE, u.clone());
    }
    if mode == Mode::Auth {
        identity::strip_client_credentials(headers);
        if let Some(imp) = impersonation {
            imp.apply(headers);
        }
        if let Some(auth) = proxy_authorization {
            headers.insert(http::header::AUTHORIZATION, auth);
        }
    }
}

/// Clean an upstream response's headers before relaying (not for 101, whose
/// `Connection`/`Upgrade` must stay).
pub(crate) fn downstream_response_headers(headers: &mut HeaderMap) {
    remove_hop_by_hop(headers);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            if let (Ok(k), Ok(v)) = (
                HeaderName::from_bytes(k.as_bytes()),
                HeaderValue::from_str(v),
            ) {
                m.append(k, v);
            }
        }
        m
    }

    #[test]
    fn hop_by_hop_and_forwarding_headers_are_removed() {
        let mut m = h(&[
            ("connection", "keep-alive, x-secret"),
            ("x-secret", "1"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers, deflate"),
            ("transfer-encoding", "chunked"),
            ("proxy-authorization", "Basic x"),
            ("x-forwarded-for", "1.2.3.4"),
            ("x-forwarded-proto", "https"),
            ("forwarded", "for=1.2.3.4"),
            ("accept", "application/json"),
            ("authorization", "Bearer caller"),
        ]);
        upstream_request_headers(&mut m, None, Mode::Noauth, None, None);
        let mut names: Vec<&str> = m.keys().map(|k| k.as_str()).collect();
        names.sort();
        assert_eq!(names, vec!["accept", "authorization", "te"]);
        assert_eq!(m.get("te").map(|v| v.as_bytes()), Some(&b"trailers"[..]));
        assert_eq!(
            m.get("authorization").map(|v| v.as_bytes()),
            Some(&b"Bearer caller"[..])
        );
    }

    #[test]
    fn upgrade_headers_are_kept_for_upgrades() {
        let mut m = h(&[
            ("connection", "Upgrade"),
            ("upgrade", "SPDY/3.1"),
            ("x-stream-protocol-version", "v4.channel.k8s.io"),
        ]);
        let u = upgrade_type(&m);
        assert_eq!(u.as_ref().map(|v| v.as_bytes()), Some(&b"SPDY/3.1"[..]));
        upstream_request_headers(&mut m, u.as_ref(), Mode::Noauth, None, None);
        assert_eq!(
            m.get("connection").map(|v| v.as_bytes()),
            Some(&b"Upgrade"[..])
        );
        assert_eq!(
            m.get("upgrade").map(|v| v.as_bytes()),
            Some(&b"SPDY/3.1"[..])
        );
        assert!(m.contains_key("x-stream-protocol-version"));
        assert_eq!(upgrade_type(&h(&[("upgrade", "websocket")])), None);
    }

    #[test]
    fn auth_mode_strips_client_credentials_and_adds_the_proxy_token() {
        let mut m = h(&[
            ("authorization", "Bearer caller"),
            ("impersonate-user", "root"),
            ("impersonate-group", "system:masters"),
            ("impersonate-uid", "0"),
            ("impersonate-extra-scopes", "x"),
            ("accept", "*/*"),
        ]);
        upstream_request_headers(
            &mut m,
            None,
            Mode::Auth,
            None,
            HeaderValue::from_str("Bearer proxy").ok(),
        );
        let mut names: Vec<&str> = m.keys().map(|k| k.as_str()).collect();
        names.sort();
        assert_eq!(names, vec!["accept", "authorization"]);
        assert_eq!(
            m.get("authorization").map(|v| v.as_bytes()),
            Some(&b"Bearer proxy"[..])
        );
    }

    mod prop {
        use super::*;
        use proptest::prelude::*;

        fn name() -> impl Strategy<Value = String> {
            prop_oneof![
                Just("connection".to_string()),
                Just("upgrade".to_string()),
                Just("authorization".to_string()),
                Just("impersonate-group".to_string()),
                Just("impersonate-extra-x".to_string()),
                Just("x-forwarded-host".to_string()),
                Just("te".to_string()),
                Just("keep-alive".to_string()),
                "[a-z][a-z0-9-]{0,12}",
            ]
        }

        proptest! {
            #[test]
            fn no_hop_by_hop_forwarding_or_client_credential_survives(
                headers in proptest::collection::vec((name(), "[ -~]{0,20}"), 0..12)
            ) {
                let mut m = HeaderMap::new();
                for (k, v) in &headers {
                    if let (Ok(k), Ok(v)) = (HeaderName::from_bytes(k.as_bytes()), HeaderValue::from_str(v)) {
                        m.append(k, v);
                    }
                }
                let listed: Vec<String> = m.get_all(CONNECTION).iter()
                    .filter_map(|v| v.to_str().ok())
                    .flat_map(|s| s.split(',').map(|t| t.trim().to_ascii_lowercase()).collect::<Vec<_>>())
                    .collect();
                let upgrade = upgrade_type(&m);
                upstream_request_headers(&mut m, upgrade.as_ref(), Mode::Auth, None, None);
                for k in m.keys() {
                    let n = k.as_str();
                    prop_assert!(n != "authorization" && !n.starts_with("impersonate-"));
                    prop_assert!(!n.starts_with("x-forwarded-") && n != "keep-alive");
                    if upgrade.is_none() {
                        prop_assert!(n != "connection" && n != "upgrade");
                    }
                    if n != "connection" && n != "upgrade" && n != "te" {
                        prop_assert!(!listed.iter().any(|l| l == n), "{} was listed in Connection", n);
                    }
                }
            }
        }
    }
}
