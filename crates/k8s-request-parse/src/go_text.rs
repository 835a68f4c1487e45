//! Go string semantics the algorithm depends on: byte strings that may hold
//! invalid UTF-8 after percent-decoding, `strings.ToLower`,
//! `strings.EqualFold`, and `strconv.ParseInt(s, 10, 64)`.

use std::borrow::Cow;

/// Converts Go bytes to a Rust string the way Go's `encoding/json` writes
/// them: every byte of an invalid UTF-8 sequence becomes one U+FFFD.
///
/// (Rust's `from_utf8_lossy` would write one U+FFFD per maximal invalid
/// sub-sequence, which differs from Go for truncated multi-byte sequences.)
pub(crate) fn go_lossy(bytes: &[u8]) -> Cow<'_, str> {
    if let Ok(text) = std::str::from_utf8(bytes) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(bytes.len() + 8);
    for chunk in bytes.utf8_chunks() {
        out.push_str(chunk.valid());
        for _ in chunk.invalid() {
            out.push(char::REPLACEMENT_CHARACTER);
        }
    }
    Cow::Owned(out)
}

/// [`go_lossy`] into an owned `String`.
pub(crate) fn go_string(bytes: &[u8]) -> String {
    go_lossy(bytes).into_owned()
}

/// [`go_lossy`] for a value that may already be owned.
pub(crate) fn go_lossy_cow(bytes: Cow<'_, [u8]>) -> Cow<'_, str> {
    match bytes {
        Cow::Borrowed(b) => go_lossy(b),
        Cow::Owned(b) => match String::from_utf8(b) {
            Ok(text) => Cow::Owned(text),
            Err(err) => Cow::Owned(go_lossy(err.as_bytes()).into_owned()),
        },
    }
}

/// Go's `strings.ToLower`: per-character *simple* lower-case mapping.
pub(crate) fn go_to_lower(text: &str) -> String {
    if text.is_ascii() {
        return text.to_ascii_lowercase();
    }
    text.chars().map(go_lower_char).collect()
}

/// Go's `unicode.ToLower` for one character. Rust's `char::to_lowercase`
/// applies the full mapping, which differs only for U+0130 (`İ`), whose
/// full lower case is two characters but whose simple lower case is `i`.
fn go_lower_char(c: char) -> char {
    if c == '\u{130}' {
        return 'i';
    }
    let mut lower = c.to_lowercase();
    match (lower.next(), lower.next()) {
        (Some(single), None) => single,
        _ => c,
    }
}

/// apimachinery's string-to-bool rule for query parameters
/// (`Convert_Slice_string_To_bool`): `"0"` or `strings.EqualFold(v, "false")`
/// is false, anything else (including `""`) is true.
pub(crate) fn go_query_bool(value: &[u8]) -> bool {
    !(value == b"0" || equal_fold_false(value))
}

/// `strings.EqualFold(value, "false")`: Unicode simple case folding, under
/// which `ſ` (U+017F, long s) folds to `s`.
fn equal_fold_false(value: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(value) else {
        // Invalid bytes decode to U+FFFD in Go, which folds to no letter.
        return false;
    };
    let mut chars = text.chars();
    for expected in ['f', 'a', 'l', 's', 'e'] {
        let Some(c) = chars.next() else {
            return false;
        };
        let folds = c.to_ascii_lowercase() == expected || (expected == 's' && c == '\u{17f}');
        if !folds {
            return false;
        }
    }
    chars.next().is_none()
}

/// The watch fallback after a failed ListOptions decode:
/// `strings.ToLower(v)` is `"false"` or `"0"` means false. No non-ASCII
/// character lower-cases to one of these ASCII letters, so this is an ASCII
/// case-insensitive comparison.
pub(crate) fn go_fallback_watch(value: &[u8]) -> bool {
    !(value == b"0" || value.eq_ignore_ascii_case(b"false"))
}

/// `strconv.ParseInt(value, 10, 64)` succeeds: optional `+`/`-`, at least
/// one ASCII digit, nothing else, within the `i64` range.
pub(crate) fn go_parses_int64(value: &[u8]) -> bool {
    std::str::from_utf8(value)
        .ok()
        .and_then(|text| text.parse::<i64>().ok())
        .is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lossy_replaces_every_invalid_byte_like_go() {
        assert_eq!(go_lossy(b"a\xe2\x82b"), "a\u{fffd}\u{fffd}b");
        assert_eq!(go_lossy(b"\xff"), "\u{fffd}");
        assert_eq!(go_lossy("ok €".as_bytes()), "ok €");
        assert!(matches!(go_lossy(b"plain"), Cow::Borrowed(_)));
    }

    #[test]
    fn lower_matches_go_simple_mapping() {
        assert_eq!(go_to_lower("GET"), "get");
        assert_eq!(go_to_lower("\u{130}X"), "ix");
        assert_eq!(go_to_lower("ÉΣ"), "éσ");
    }

    #[test]
    fn query_bool_rules() {
        for falsy in ["0", "false", "FALSE", "False", "fal\u{17f}e", "FAL\u{17f}E"] {
            assert!(!go_query_bool(falsy.as_bytes()), "{falsy}");
        }
        for truthy in ["", "1", "true", "no", "00", "false ", "f"] {
            assert!(go_query_bool(truthy.as_bytes()), "{truthy}");
        }
        // The fallback uses ToLower, which leaves the long s alone.
        assert!(go_fallback_watch("fal\u{17f}e".as_bytes()));
        assert!(!go_fallback_watch(b"FaLsE"));
        assert!(!go_fallback_watch(b"0"));
    }

    #[test]
    fn int64_rules() {
        for ok in [
            "0",
            "-1",
            "+42",
            "9223372036854775807",
            "-9223372036854775808",
        ] {
            assert!(go_parses_int64(ok.as_bytes()), "{ok}");
        }
        for bad in [
            "",
            "+",
            "-",
            "abc",
            "1_000",
            " 1",
            "9223372036854775808",
            "1.0",
            "٣",
        ] {
            assert!(!go_parses_int64(bad.as_bytes()), "{bad}");
        }
    }
}
