//! Header hygiene between caller and API server: hop-by-hop headers,
//! client-supplied forwarding headers and, in auth mode, client credentials
//! never cross the proxy; upgrades keep their `Connection: Upgrade`; every
//! request carries the `Audit-ID` that joins its event to the API server's
//! audit log. See docs/tailscale-protocol.md#ordinary-requests and
//! docs/request-info.md#audit-event.

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

/// `Audit-ID`: kube-apiserver takes a client-supplied value verbatim as its
/// audit event's `auditID` (and echoes it in the response); without one it
/// makes up a random UUID. See docs/request-info.md#audit-event.
pub(crate) const AUDIT_ID: HeaderName = HeaderName::from_static("audit-id");

/// Decides the `Audit-ID` sent upstream with the request whose event key is
/// `key`, sets it as the only `Audit-ID` line, and returns the value sent
/// (what the event records as `kubescribe.auditID`).
///
/// * Auth mode: always `key`; any `Audit-ID` of the caller's is replaced.
///   The request reaches the API server under the proxy's credential, so a
///   caller must neither forge the audit ID it is logged under nor collide
///   with another request's.
/// * Noauth mode: the caller authenticates itself and could send the request
///   straight to the API server with any audit ID, so its own is kept: the
///   first `Audit-ID` line (the one kube-apiserver reads) when it is
///   non-empty visible ASCII. Otherwise `key`.
pub(crate) fn set_audit_id(headers: &mut HeaderMap, mode: Mode, key: &str) -> String {
    let callers = match mode {
        Mode::Auth => None,
        Mode::Noauth => headers
            .get(&AUDIT_ID)
            .filter(|value| !value.is_empty())
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned),
    };
    let sent = callers.unwrap_or_else(|| key.to_owned());
    match HeaderValue::from_str(&sent) {
        Ok(value) => {
            // `insert` replaces every line of the name.
            headers.insert(AUDIT_ID, value);
            sent
        }
        Err(_) => {
            // A key that is no header value (never a UUID): send none, and
            // say so by recording none.
            headers.remove(&AUDIT_ID);
            String::new()
        }
    }
}

/// The `Upgrade` value of an upgrade request/response (`Connection` lists `upgrade`).
pub fn upgrade_type(headers: &HeaderMap) -> Option<HeaderValue> {
    if lists_token(headers, &CONNECTION, "upgrade") {
        headers.get(UPGRADE).cloned()
    } else {
        None
    }
}

/// A header's first value as text, as Go reads it (`Header.Get`) and writes it in JSON: `""` when
/// absent; bytes that are not UTF-8 (a header value may carry any byte but controls) become one
/// U+FFFD each, as Go's JSON encoder writes them. kube-apiserver's audit log records a
/// `User-Agent` the same way.
pub(crate) fn header_text(headers: &HeaderMap, name: HeaderName) -> String {
    headers
        .get(name)
        .map(|v| go_lossy(v.as_bytes()))
        .unwrap_or_default()
}

/// Bytes as a Go string is written in JSON: invalid UTF-8 becomes one U+FFFD per byte.
fn go_lossy(mut bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    loop {
        match std::str::from_utf8(bytes) {
            Ok(valid) => {
                out.push_str(valid);
                return out;
            }
            Err(err) => {
                let (valid, rest) = bytes.split_at(err.valid_up_to());
                out.push_str(std::str::from_utf8(valid).unwrap_or_default());
                let bad = err.error_len().unwrap_or(rest.len());
                out.extend(std::iter::repeat_n('\u{FFFD}', bad));
                bytes = &rest[bad..];
            }
        }
    }
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
/// `Audit-ID` is the proxy's own ([`set_audit_id`]): a caller cannot remove
/// it by naming it in `Connection`.
pub(crate) fn remove_hop_by_hop(headers: &mut HeaderMap) {
    let listed: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|s| s.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .filter(|name| *name != AUDIT_ID)
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

    #[test]
    fn auth_mode_sends_the_key_as_the_only_audit_id() {
        let mut m = h(&[("audit-id", "forged"), ("audit-id", "second")]);
        assert_eq!(set_audit_id(&mut m, Mode::Auth, "key-1"), "key-1");
        let sent: Vec<&[u8]> = m.get_all("audit-id").iter().map(|v| v.as_bytes()).collect();
        assert_eq!(sent, vec![&b"key-1"[..]]);
        let mut m = HeaderMap::new();
        assert_eq!(set_audit_id(&mut m, Mode::Auth, "key-2"), "key-2");
        assert_eq!(m.get("audit-id").map(|v| v.as_bytes()), Some(&b"key-2"[..]));
    }

    #[test]
    fn noauth_mode_keeps_the_callers_first_audit_id_or_sends_the_key() {
        let mut m = h(&[("audit-id", "mine"), ("audit-id", "other")]);
        assert_eq!(set_audit_id(&mut m, Mode::Noauth, "key"), "mine");
        let sent: Vec<&[u8]> = m.get_all("audit-id").iter().map(|v| v.as_bytes()).collect();
        assert_eq!(sent, vec![&b"mine"[..]]);
        for mut m in [h(&[("audit-id", "")]), HeaderMap::new()] {
            assert_eq!(set_audit_id(&mut m, Mode::Noauth, "key"), "key");
            assert_eq!(m.get("audit-id").map(|v| v.as_bytes()), Some(&b"key"[..]));
        }
        let mut m = HeaderMap::new();
        m.insert(AUDIT_ID, HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap());
        assert_eq!(set_audit_id(&mut m, Mode::Noauth, "key"), "key");
    }

    #[test]
    fn a_caller_cannot_drop_the_audit_id_by_naming_it_in_connection() {
        let mut m = h(&[("connection", "audit-id, x-secret"), ("x-secret", "1")]);
        set_audit_id(&mut m, Mode::Auth, "key");
        upstream_request_headers(&mut m, None, Mode::Auth, None, None);
        assert_eq!(m.get("audit-id").map(|v| v.as_bytes()), Some(&b"key"[..]));
        assert!(!m.contains_key("x-secret"));
    }

    #[test]
    fn header_text_reads_like_go() {
        let mut m = HeaderMap::new();
        assert_eq!(header_text(&m, http::header::USER_AGENT), "");
        m.insert(
            http::header::USER_AGENT,
            HeaderValue::from_bytes("oracle/ü 漢字".as_bytes()).unwrap(),
        );
        assert_eq!(header_text(&m, http::header::USER_AGENT), "oracle/ü 漢字");
        m.insert(
            http::header::USER_AGENT,
            HeaderValue::from_bytes(b"latin1 \xe9\xff \xe6\xbc").unwrap(),
        );
        assert_eq!(
            header_text(&m, http::header::USER_AGENT),
            "latin1 \u{FFFD}\u{FFFD} \u{FFFD}\u{FFFD}"
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
