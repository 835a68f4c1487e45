//! JSON bytes exactly as Go's `json.Encoder` writes them.

use serde::Serialize;

/// Serialises `value` compactly, with Go's HTML escaping (`<`, `>`, `&`,
/// U+2028 and U+2029 as `\u` escapes) and a trailing newline, as Go's
/// `json.Encoder.Encode` does. Struct fields keep their declared order.
///
/// ```
/// let bytes = event_model::to_go_json(&serde_json::json!({"q": "a&b<c>"}))?;
/// assert_eq!(bytes, b"{\"q\":\"a\\u0026b\\u003cc\\u003e\"}\n");
/// # Ok::<(), serde_json::Error>(())
/// ```
pub fn to_go_json<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, serde_json::Error> {
    let mut plain = serde_json::to_vec(value)?;
    if next_special(&plain, 0).is_none() {
        // Nothing to escape (the usual case): no second pass, no copy.
        plain.push(b'\n');
        return Ok(plain);
    }
    let mut out = go_escape_html(&plain);
    out.push(b'\n');
    Ok(out)
}

/// The first byte at or after `from` that Go's HTML escaping may rewrite:
/// `<`, `>`, `&`, or 0xE2 (the lead byte of U+2028/U+2029).
fn next_special(json: &[u8], from: usize) -> Option<usize> {
    let rest = json.get(from..)?;
    let html = memchr::memchr3(b'<', b'>', b'&', rest);
    let e2 = memchr::memchr(0xE2, &rest[..html.unwrap_or(rest.len())]);
    e2.or(html).map(|i| from + i)
}

/// Rewrites compact JSON with Go's HTML escaping. The characters it escapes
/// never appear outside strings in valid JSON, so a byte-level rewrite is
/// exact.
pub fn go_escape_html(json: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(json.len() + 16);
    let mut run = 0;
    let mut from = 0;
    while let Some(i) = next_special(json, from) {
        let escaped: Option<&[u8]> = match json[i] {
            b'<' => Some(b"\\u003c"),
            b'>' => Some(b"\\u003e"),
            b'&' => Some(b"\\u0026"),
            // U+2028 and U+2029 are E2 80 A8 / E2 80 A9 in UTF-8.
            _ if json.get(i + 1) == Some(&0x80) => match json.get(i + 2) {
                Some(0xA8) => Some(b"\\u2028"),
                Some(0xA9) => Some(b"\\u2029"),
                _ => None,
            },
            _ => None,
        };
        match escaped {
            Some(escaped) => {
                out.extend_from_slice(&json[run..i]);
                out.extend_from_slice(escaped);
                run = i + if json[i] == 0xE2 { 3 } else { 1 };
                from = run;
            }
            // Another character starting with 0xE2: copied as it is.
            None => from = i + 1,
        }
    }
    out.extend_from_slice(&json[run..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Go's rules one byte at a time: the reference the fast path must match.
    fn reference(json: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < json.len() {
            match json[i] {
                b'<' => out.extend_from_slice(b"\\u003c"),
                b'>' => out.extend_from_slice(b"\\u003e"),
                b'&' => out.extend_from_slice(b"\\u0026"),
                0xE2 if json.get(i + 1) == Some(&0x80)
                    && matches!(json.get(i + 2), Some(0xA8 | 0xA9)) =>
                {
                    out.extend_from_slice(if json[i + 2] == 0xA8 {
                        b"\\u2028"
                    } else {
                        b"\\u2029"
                    });
                    i += 2;
                }
                other => out.push(other),
            }
            i += 1;
        }
        out
    }

    #[test]
    fn escapes_what_go_escapes() {
        for (input, want) in [
            ("{}", "{}"),
            (r#"{"a":"<b>&c"}"#, r#"{"a":"\u003cb\u003e\u0026c"}"#),
            ("\"\u{2028}x\u{2029}\"", r#""\u2028x\u2029""#),
            ("\"\u{2027}\u{20AC}é\"", "\"\u{2027}\u{20AC}é\""),
            ("\"&\"", r#""\u0026""#),
        ] {
            assert_eq!(
                String::from_utf8(go_escape_html(input.as_bytes())).unwrap(),
                want
            );
        }
        assert_eq!(
            to_go_json(&serde_json::json!({"plain": "text"})).unwrap(),
            b"{\"plain\":\"text\"}\n"
        );
    }

    proptest::proptest! {
        #[test]
        fn matches_the_byte_by_byte_rules(text in "[a<>&\u{2028}\u{2029}\u{2027}\u{20AC}\"]{0,40}|\\PC{0,40}") {
            let json = serde_json::to_vec(&text).unwrap();
            proptest::prop_assert_eq!(go_escape_html(&json), reference(&json));
            let mut want = reference(&json);
            want.push(b'\n');
            proptest::prop_assert_eq!(to_go_json(&text).unwrap(), want);
        }

        #[test]
        fn any_bytes_match_the_byte_by_byte_rules(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64)) {
            proptest::prop_assert_eq!(go_escape_html(&bytes), reference(&bytes));
        }
    }
}
