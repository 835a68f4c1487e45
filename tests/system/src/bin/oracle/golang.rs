//! What Go and kube-apiserver do to a request before it reaches the audit log, modelled exactly where
//! the oracle needs it to compare kubescribe's record with the audit event.

/// `net/url`'s `URL.RequestURI()` of the request-target `target` as Go's HTTP server parses it
/// (`url.ParseRequestURI`): what kube-apiserver writes as the audit event's `requestURI`
/// (`audit.LogRequestMetadata`: `ev.RequestURI = req.URL.RequestURI()`).
///
/// Go keeps the raw path (`RawPath`) only when it is a valid encoding of the decoded path that
/// differs from Go's own encoding of it (`URL.setPath`, `URL.EscapedPath`, `validEncoded`);
/// otherwise it re-escapes the decoded path, so a raw `é` or `|` comes back as `%C3%A9` or `%7C`.
/// The query is kept raw; a lone trailing `?` survives (`ForceQuery`).
///
/// Returns `None` for a target Go's server would reject (a malformed escape in the path), or one
/// that is not in origin form.
pub(crate) fn request_uri(target: &str) -> Option<String> {
    if target == "*" {
        return Some("*".to_owned());
    }
    if !target.starts_with('/') {
        return None;
    }
    // url.parse: a single '?' at the very end sets ForceQuery; otherwise cut at the first '?'.
    let (raw_path, raw_query, force_query) =
        if target.ends_with('?') && target.matches('?').count() == 1 {
            (&target[..target.len() - 1], "", true)
        } else {
            match target.split_once('?') {
                Some((path, query)) => (path, query, false),
                None => (target, "", false),
            }
        };
    let path = unescape_path(raw_path.as_bytes())?;
    // setPath: RawPath is the raw form only when it differs from Go's encoding of the path.
    let raw_path_kept = if escape_path(&path) == raw_path.as_bytes() {
        None
    } else {
        Some(raw_path)
    };
    // EscapedPath.
    let escaped: Vec<u8> = match raw_path_kept {
        Some(raw)
            if valid_encoded_path(raw.as_bytes())
                && unescape_path(raw.as_bytes()).as_deref() == Some(&path[..]) =>
        {
            raw.as_bytes().to_vec()
        }
        _ if path == b"*" => b"*".to_vec(),
        _ => escape_path(&path),
    };
    let mut uri = String::from_utf8(escaped).ok()?;
    if uri.is_empty() {
        uri.push('/');
    }
    if force_query || !raw_query.is_empty() {
        uri.push('?');
        uri.push_str(raw_query);
    }
    Some(uri)
}

/// `url.unescape(s, encodePath)`: `%XX` decoded, `+` kept, a malformed escape is an error.
fn unescape_path(raw: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'%' {
            let hi = hex(*raw.get(i + 1)?)?;
            let lo = hex(*raw.get(i + 2)?)?;
            out.push(hi << 4 | lo);
            i += 3;
        } else {
            out.push(raw[i]);
            i += 1;
        }
    }
    Some(out)
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// `url.shouldEscape(c, encodePath)`.
fn should_escape_in_path(c: u8) -> bool {
    if c.is_ascii_alphanumeric() {
        return false;
    }
    match c {
        b'-' | b'_' | b'.' | b'~' => false,
        // Reserved characters: in a path only '?' is escaped.
        b'$' | b'&' | b'+' | b',' | b'/' | b':' | b';' | b'=' | b'?' | b'@' => c == b'?',
        _ => true,
    }
}

/// `url.escape(s, encodePath)`: upper-case `%XX` for every byte that should be escaped.
fn escape_path(path: &[u8]) -> Vec<u8> {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = Vec::with_capacity(path.len());
    for &c in path {
        if should_escape_in_path(c) {
            out.extend_from_slice(&[b'%', HEX[usize::from(c >> 4)], HEX[usize::from(c & 15)]]);
        } else {
            out.push(c);
        }
    }
    out
}

/// `url.validEncoded(s, encodePath)`.
fn valid_encoded_path(raw: &[u8]) -> bool {
    raw.iter().all(|&c| {
        matches!(
            c,
            b'!' | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
                | b':'
                | b'@'
                | b'['
                | b']'
                | b'%'
        ) || !should_escape_in_path(c)
    })
}

/// kube-apiserver's `maybeTruncateUserAgent` (`k8s.io/apiserver/pkg/audit/request.go`): a
/// `User-Agent` longer than 1024 bytes is cut to 1024 bytes and `...TRUNCATED` appended. The cut is
/// by bytes, so it may split a UTF-8 sequence; the audit log's JSON then holds U+FFFD for each
/// byte of the broken sequence, as Go's encoder writes invalid UTF-8.
pub(crate) fn audit_user_agent(user_agent: &str) -> String {
    const MAX: usize = 1024;
    let bytes = user_agent.as_bytes();
    if bytes.len() <= MAX {
        return user_agent.to_owned();
    }
    let mut cut = go_lossy(&bytes[..MAX]);
    cut.push_str("...TRUNCATED");
    cut
}

/// Bytes as Go's JSON encoder writes them: invalid UTF-8 becomes one U+FFFD per byte.
pub(crate) fn go_lossy(mut bytes: &[u8]) -> String {
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
                for _ in 0..bad {
                    out.push('\u{FFFD}');
                }
                bytes = &rest[bad..];
            }
        }
    }
}

/// The groups kube-apiserver's impersonation filter ends up with for impersonated `groups`
/// (`filters/impersonation/impersonation.go`): when the impersonated user is not anonymous,
/// `system:authenticated` is appended unless `system:authenticated` or `system:unauthenticated` is
/// already among them.
pub(crate) fn impersonated_groups(user: &str, groups: &[String]) -> Vec<String> {
    let mut out = groups.to_vec();
    if user != "system:anonymous"
        && !groups
            .iter()
            .any(|g| g == "system:authenticated" || g == "system:unauthenticated")
    {
        out.push("system:authenticated".to_owned());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_uri_keeps_valid_raw_paths_and_reescapes_the_rest() {
        let cases = [
            ("/api/v1/pods", "/api/v1/pods"),
            ("/api/v1/pods?watch=1", "/api/v1/pods?watch=1"),
            ("/api/v1/pods?", "/api/v1/pods?"),
            ("/a%2Fb", "/a%2Fb"),
            ("/a%2fb", "/a%2fb"),
            ("/a%41", "/a%41"),
            ("/caf\u{e9}", "/caf%C3%A9"),
            ("/a|b", "/a%7Cb"),
            ("/a%7cb|", "/a%7Cb%7C"),
            ("/a b", "/a%20b"),
            ("//api", "//api"),
            ("/a?b?c", "/a?b?c"),
            ("/a?b?", "/a?b?"),
            ("/a;b:c@d", "/a;b:c@d"),
        ];
        for (target, uri) in cases {
            assert_eq!(request_uri(target).as_deref(), Some(uri), "{target}");
        }
        assert_eq!(request_uri("/a%zz"), None);
    }

    #[test]
    fn user_agents_are_truncated_by_bytes() {
        assert_eq!(audit_user_agent("kubectl"), "kubectl");
        let long = "x".repeat(1100);
        assert_eq!(
            audit_user_agent(&long),
            format!("{}...TRUNCATED", "x".repeat(1024))
        );
        let split = format!("{}é", "x".repeat(1023));
        assert_eq!(
            audit_user_agent(&split),
            format!("{}\u{FFFD}...TRUNCATED", "x".repeat(1023))
        );
    }

    #[test]
    fn system_authenticated_is_added_once() {
        let g = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            impersonated_groups("a", &g(&["x"])),
            g(&["x", "system:authenticated"])
        );
        assert_eq!(
            impersonated_groups("a", &g(&["system:authenticated", "x"])),
            g(&["system:authenticated", "x"])
        );
        assert_eq!(impersonated_groups("system:anonymous", &g(&[])), g(&[]));
    }
}
