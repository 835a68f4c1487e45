//! The HTTP request-target as Go's server reads it (`url.ParseRequestURI`,
//! which `http.ReadRequest` uses): path percent-decoded, query kept raw, no
//! cleaning, and a leading `//` still a path.

use std::borrow::Cow;

use crate::escape::{unescape, EscapeError, Mode};
use crate::go_text::go_lossy_cow;

/// Why a request-target is not a valid request URI. Go's HTTP server answers
/// such a request with `400 Bad Request` before kube-apiserver code runs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TargetError {
    /// An ASCII control byte (below 0x20, or 0x7F) anywhere in the target.
    #[error("the request target contains an ASCII control character (byte 0x{0:02x})")]
    ControlCharacter(u8),
    /// A `%` not followed by two hexadecimal digits (or an escape a host
    /// may not use).
    #[error("invalid URL escape {0:?} (a '%' must be followed by two hex digits)")]
    InvalidEscape(String),
    /// A character a host name may not contain.
    #[error("invalid character {0:?} in the host of an absolute-form request target")]
    InvalidHostCharacter(char),
    /// The target starts with `:` (Go: "missing protocol scheme").
    #[error("missing protocol scheme before ':'")]
    MissingScheme,
    /// Neither `*`, an absolute path (`/…`) nor an absolute URL.
    #[error("the request target is not an absolute path, '*' or an absolute URL")]
    NotAbsolute,
    /// `[` without a closing `]` in an IPv6 host.
    #[error("missing ']' in the host of an absolute-form request target")]
    MissingBracket,
    /// A port that is not all digits after the host.
    #[error("invalid port {0:?} after the host")]
    InvalidPort(String),
    /// User info with characters Go does not accept.
    #[error("invalid user info before '@' in an absolute-form request target")]
    InvalidUserinfo,
}

impl From<EscapeError> for TargetError {
    fn from(err: EscapeError) -> Self {
        match err {
            EscapeError::BadEscape(escape) => TargetError::InvalidEscape(escape),
            EscapeError::BadHostCharacter(c) => TargetError::InvalidHostCharacter(c),
        }
    }
}

/// A request-target split the way Go's server does it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RequestTarget<'a> {
    /// `URL.Path`: percent-decoded. Go keeps the raw bytes; here bytes that
    /// are not UTF-8 are already replaced the way Go's JSON encoder writes
    /// them (one U+FFFD per byte). Splitting on `/` and comparing segments
    /// with ASCII words gives the same answers either way, because `/` is
    /// never part of an invalid sequence.
    pub(crate) path: Cow<'a, str>,
    /// `URL.RawQuery`: everything after the first `?`, undecoded.
    pub(crate) raw_query: Cow<'a, str>,
}

/// Parses `target` as Go's `http.ReadRequest` does for `method`.
///
/// One deliberate difference: the empty target gives the empty path (as
/// `http.NewRequest` and the upstream tests do) instead of Go's
/// "empty url" error.
pub(crate) fn parse<'a>(method: &str, target: &'a str) -> Result<RequestTarget<'a>, TargetError> {
    // CONNECT host:port (authority-form): Go parses "http://" + target.
    if method == "CONNECT" && !target.starts_with('/') {
        let absolute = format!("http://{target}");
        let parsed = parse_request_uri(&absolute)?;
        return Ok(RequestTarget {
            path: Cow::Owned(parsed.path.into_owned()),
            raw_query: Cow::Owned(parsed.raw_query.into_owned()),
        });
    }
    parse_request_uri(target)
}

/// Go's `url.ParseRequestURI`.
fn parse_request_uri(raw: &str) -> Result<RequestTarget<'_>, TargetError> {
    // A branch-free pass (vectorised) first; find the byte only on error.
    let has_ctl = raw
        .as_bytes()
        .iter()
        .fold(false, |found, &b| found | (b < 0x20) | (b == 0x7f));
    if has_ctl {
        let ctl = raw.bytes().find(|&b| b < 0x20 || b == 0x7f).unwrap_or(0);
        return Err(TargetError::ControlCharacter(ctl));
    }
    if raw.is_empty() || raw == "*" {
        return Ok(RequestTarget {
            path: Cow::Borrowed(raw),
            raw_query: Cow::Borrowed(""),
        });
    }
    let (has_scheme, rest) = split_scheme(raw)?;
    let (rest, raw_query) = rest.split_once('?').unwrap_or((rest, ""));
    if !rest.starts_with('/') {
        if has_scheme {
            // Opaque URL (`scheme:opaque`): no path.
            return Ok(RequestTarget {
                path: Cow::Borrowed(""),
                raw_query: Cow::Borrowed(raw_query),
            });
        }
        return Err(TargetError::NotAbsolute);
    }
    let mut path = rest;
    if has_scheme {
        if let Some(after_slashes) = rest.strip_prefix("//") {
            let (authority, tail) = match after_slashes.find('/') {
                Some(slash) => after_slashes.split_at(slash),
                None => (after_slashes, ""),
            };
            check_authority(authority)?;
            path = tail;
        }
    }
    let decoded = match unescape(path.as_bytes(), Mode::Path)? {
        // Nothing was decoded: still the (UTF-8) input.
        Cow::Borrowed(_) => Cow::Borrowed(path),
        Cow::Owned(bytes) => Cow::Owned(go_lossy_cow(Cow::Owned(bytes)).into_owned()),
    };
    Ok(RequestTarget {
        path: decoded,
        raw_query: Cow::Borrowed(raw_query),
    })
}

/// Go's `getScheme`: returns whether a scheme was present, and the rest.
fn split_scheme(raw: &str) -> Result<(bool, &str), TargetError> {
    for (i, c) in raw.bytes().enumerate() {
        match c {
            b'a'..=b'z' | b'A'..=b'Z' => {}
            b'0'..=b'9' | b'+' | b'-' | b'.' => {
                if i == 0 {
                    return Ok((false, raw));
                }
            }
            b':' => {
                if i == 0 {
                    return Err(TargetError::MissingScheme);
                }
                return Ok((true, &raw[i + 1..]));
            }
            _ => return Ok((false, raw)),
        }
    }
    Ok((false, raw))
}

/// Go's `parseAuthority`, keeping only its verdict.
fn check_authority(authority: &str) -> Result<(), TargetError> {
    let (userinfo, host) = match authority.rfind('@') {
        Some(at) => (Some(&authority[..at]), &authority[at + 1..]),
        None => (None, authority),
    };
    check_host(host)?;
    if let Some(userinfo) = userinfo {
        if !valid_userinfo(userinfo) {
            return Err(TargetError::InvalidUserinfo);
        }
        match userinfo.split_once(':') {
            Some((user, password)) => {
                unescape(user.as_bytes(), Mode::UserPassword)?;
                unescape(password.as_bytes(), Mode::UserPassword)?;
            }
            None => {
                unescape(userinfo.as_bytes(), Mode::UserPassword)?;
            }
        }
    }
    Ok(())
}

/// Go's `parseHost` (Go 1.19 rules), keeping only its verdict.
fn check_host(host: &str) -> Result<(), TargetError> {
    if host.starts_with('[') {
        let close = host.rfind(']').ok_or(TargetError::MissingBracket)?;
        let colon_port = &host[close + 1..];
        if !valid_optional_port(colon_port) {
            return Err(TargetError::InvalidPort(colon_port.to_string()));
        }
        if let Some(zone) = host[..close].find("%25") {
            let bytes = host.as_bytes();
            unescape(&bytes[..zone], Mode::Host)?;
            unescape(&bytes[zone..close], Mode::Zone)?;
            unescape(&bytes[close..], Mode::Host)?;
            return Ok(());
        }
    } else if let Some(colon) = host.rfind(':') {
        let colon_port = &host[colon..];
        if !valid_optional_port(colon_port) {
            return Err(TargetError::InvalidPort(colon_port.to_string()));
        }
    }
    unescape(host.as_bytes(), Mode::Host)?;
    Ok(())
}

fn valid_optional_port(port: &str) -> bool {
    match port.strip_prefix(':') {
        None => port.is_empty(),
        Some(digits) => digits.bytes().all(|b| b.is_ascii_digit()),
    }
}

fn valid_userinfo(userinfo: &str) -> bool {
    userinfo.chars().all(|c| {
        c.is_ascii_alphanumeric()
            || matches!(
                c,
                '-' | '.'
                    | '_'
                    | ':'
                    | '~'
                    | '!'
                    | '$'
                    | '&'
                    | '\''
                    | '('
                    | ')'
                    | '*'
                    | '+'
                    | ','
                    | ';'
                    | '='
                    | '%'
                    | '@'
            )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path_of(method: &str, target: &str) -> Result<(Vec<u8>, String), TargetError> {
        parse(method, target).map(|t| (t.path.into_owned().into_bytes(), t.raw_query.into_owned()))
    }

    #[test]
    fn origin_form() {
        assert_eq!(
            path_of("GET", "/api/v1/pods%2Fx?watch=1&a=%zz").unwrap(),
            (b"/api/v1/pods/x".to_vec(), "watch=1&a=%zz".to_string())
        );
        assert_eq!(path_of("GET", "//api/v1/pods").unwrap().0, b"//api/v1/pods");
        assert_eq!(path_of("GET", "/a?b?c").unwrap().1, "b?c");
        assert_eq!(path_of("GET", "/a#frag").unwrap().0, b"/a#frag");
        assert_eq!(path_of("OPTIONS", "*").unwrap().0, b"*");
        assert_eq!(path_of("GET", "").unwrap().0, b"");
    }

    #[test]
    fn rejected_targets() {
        assert_eq!(
            path_of("GET", "/a%zz"),
            Err(TargetError::InvalidEscape("%zz".into()))
        );
        assert_eq!(
            path_of("GET", "/a%"),
            Err(TargetError::InvalidEscape("%".into()))
        );
        assert_eq!(
            path_of("GET", "/a\nb"),
            Err(TargetError::ControlCharacter(b'\n'))
        );
        assert_eq!(path_of("GET", "api/v1"), Err(TargetError::NotAbsolute));
        assert_eq!(path_of("GET", ":x"), Err(TargetError::MissingScheme));
        // An invalid escape in the query is not a URI error (ParseQuery drops the pair).
        assert!(path_of("GET", "/a?x=%zz").is_ok());
    }

    #[test]
    fn absolute_form() {
        assert_eq!(
            path_of("GET", "https://kube.example:6443/api/v1/pods?watch=1").unwrap(),
            (b"/api/v1/pods".to_vec(), "watch=1".to_string())
        );
        assert_eq!(path_of("GET", "http://host").unwrap().0, b"");
        assert_eq!(path_of("GET", "http:opaque").unwrap().0, b"");
        assert_eq!(
            path_of("GET", "http://host:x/"),
            Err(TargetError::InvalidPort(":x".into()))
        );
        assert_eq!(
            path_of("GET", "http://[::1/"),
            Err(TargetError::MissingBracket)
        );
        assert!(path_of("GET", "http://[fe80::1%25en0]:8080/api").is_ok());
        assert_eq!(
            path_of("GET", "http://a b/"),
            Err(TargetError::InvalidHostCharacter(' '))
        );
        assert_eq!(
            path_of("GET", "http://us{er@host/"),
            Err(TargetError::InvalidUserinfo)
        );
        assert!(path_of("GET", "http://user:pa%20ss@host/").is_ok());
    }

    #[test]
    fn connect_authority_form() {
        assert_eq!(path_of("CONNECT", "kube.example:443").unwrap().0, b"");
        assert_eq!(
            path_of("CONNECT", "kube.example:x"),
            Err(TargetError::InvalidPort(":x".into()))
        );
        assert_eq!(
            path_of("CONNECT", "/api/v1/pods").unwrap().0,
            b"/api/v1/pods"
        );
    }
}
