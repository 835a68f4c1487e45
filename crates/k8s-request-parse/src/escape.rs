//! Go's `net/url` percent-decoding (`unescape`) in the modes a request line
//! needs: path, query component, host, IPv6 zone and user info.

use std::borrow::Cow;

/// Which part of a URL is being decoded; each has Go's own rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// A path: `%XX` is decoded, `+` stays `+`.
    Path,
    /// A query key or value: `%XX` is decoded and `+` becomes a space.
    QueryComponent,
    /// A host: only non-ASCII bytes (and `%25`) may be escaped, and only
    /// host characters may appear.
    Host,
    /// An IPv6 zone identifier (after `%25`).
    Zone,
    /// User name or password before `@`.
    UserPassword,
}

/// Why Go's `unescape` refused a string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum EscapeError {
    /// Go's `EscapeError`: a `%` not followed by two hex digits, or an escape
    /// not allowed in a host. Holds up to three bytes from the `%`.
    BadEscape(String),
    /// Go's `InvalidHostError`: an ASCII byte that may not appear in a host.
    BadHostCharacter(char),
}

fn is_hex(b: u8) -> bool {
    b.is_ascii_hexdigit()
}

fn unhex(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        b'A'..=b'F' => b - b'A' + 10,
        _ => 0,
    }
}

/// Go's `shouldEscape(c, encodeHost)`, the only mode whose answer matters
/// here (host and zone validation).
fn host_should_escape(c: u8) -> bool {
    if c.is_ascii_alphanumeric() {
        return false;
    }
    !matches!(
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
            | b'['
            | b']'
            | b'<'
            | b'>'
            | b'"'
            | b'-'
            | b'_'
            | b'.'
            | b'~'
    )
}

/// Go's `url.unescape(s, mode)`. Borrows when nothing needs decoding.
pub(crate) fn unescape(s: &[u8], mode: Mode) -> Result<Cow<'_, [u8]>, EscapeError> {
    // Fast path for the common case, a branch-free pass the compiler
    // vectorises: nothing to decode and (outside hosts) nothing to check.
    if matches!(mode, Mode::Path | Mode::QueryComponent | Mode::UserPassword) {
        let plus_matters = mode == Mode::QueryComponent;
        let special = s.iter().fold(false, |found, &b| {
            found | (b == b'%') | (plus_matters & (b == b'+'))
        });
        if !special {
            return Ok(Cow::Borrowed(s));
        }
    }
    // Validate and decode in one pass; on an error the buffer is dropped.
    // Until the first escape nothing is copied; after it, bytes are pushed
    // one by one (cheaper than a memmove call per short run).
    let mut out: Option<Vec<u8>> = None;
    let mut i = 0;
    while i < s.len() {
        let c = s[i];
        let decoded = match c {
            b'%' => {
                if i + 2 >= s.len() || !is_hex(s[i + 1]) || !is_hex(s[i + 2]) {
                    let end = (i + 3).min(s.len());
                    return Err(EscapeError::BadEscape(
                        String::from_utf8_lossy(&s[i..end]).into_owned(),
                    ));
                }
                let escape = &s[i..i + 3];
                if mode == Mode::Host && unhex(s[i + 1]) < 8 && escape != b"%25" {
                    return Err(EscapeError::BadEscape(
                        String::from_utf8_lossy(escape).into_owned(),
                    ));
                }
                let byte = (unhex(s[i + 1]) << 4) | unhex(s[i + 2]);
                if mode == Mode::Zone
                    && escape != b"%25"
                    && byte != b' '
                    && host_should_escape(byte)
                {
                    return Err(EscapeError::BadEscape(
                        String::from_utf8_lossy(escape).into_owned(),
                    ));
                }
                Some((byte, 3))
            }
            b'+' if mode == Mode::QueryComponent => Some((b' ', 1)),
            _ => {
                if matches!(mode, Mode::Host | Mode::Zone) && c < 0x80 && host_should_escape(c) {
                    return Err(EscapeError::BadHostCharacter(char::from(c)));
                }
                None
            }
        };
        match (decoded, &mut out) {
            (Some((byte, width)), Some(buffer)) => {
                buffer.push(byte);
                i += width;
            }
            (Some((byte, width)), None) => {
                let mut buffer = Vec::with_capacity(s.len());
                buffer.extend_from_slice(&s[..i]);
                buffer.push(byte);
                out = Some(buffer);
                i += width;
            }
            (None, Some(buffer)) => {
                buffer.push(c);
                i += 1;
            }
            (None, None) => i += 1,
        }
    }
    Ok(match out {
        None => Cow::Borrowed(s),
        Some(buffer) => Cow::Owned(buffer),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str, mode: Mode) -> Vec<u8> {
        unescape(s.as_bytes(), mode).unwrap().into_owned()
    }

    #[test]
    fn path_mode_keeps_plus_and_decodes_escapes() {
        assert_eq!(ok("/a+b%2Fc%20d", Mode::Path), b"/a+b/c d");
        assert_eq!(ok("%ff", Mode::Path), b"\xff");
        assert!(matches!(
            unescape(b"/plain", Mode::Path),
            Ok(Cow::Borrowed(_))
        ));
    }

    #[test]
    fn query_mode_turns_plus_into_space() {
        assert_eq!(ok("a+b%2B", Mode::QueryComponent), b"a b+");
    }

    #[test]
    fn bad_escapes_are_reported_like_go() {
        for (input, shown) in [("%zz", "%zz"), ("a%", "%"), ("%4", "%4"), ("%4g1", "%4g")] {
            assert_eq!(
                unescape(input.as_bytes(), Mode::Path),
                Err(EscapeError::BadEscape(shown.to_string())),
                "{input}"
            );
        }
    }

    #[test]
    fn host_rules() {
        assert_eq!(ok("example.com:443", Mode::Host), b"example.com:443");
        assert!(unescape(b"ex%41mple", Mode::Host).is_err());
        assert_eq!(ok("%C3%A9", Mode::Host), "é".as_bytes());
        assert_eq!(
            unescape(b"a b", Mode::Host),
            Err(EscapeError::BadHostCharacter(' '))
        );
        assert_eq!(ok("%25en0", Mode::Zone), b"%en0");
        assert_eq!(ok("%20", Mode::Zone), b" ");
        assert!(unescape(b"%2F", Mode::Zone).is_err());
    }
}
