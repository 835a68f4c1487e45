//! apimachinery's name checks used by the algorithm: qualified names and
//! label values (`util/validation`), DNS-1123 subdomains, and path-segment
//! names (`api/validate/content.IsPathSegmentName`).

/// Maximum length of a qualified name's name part and of a label value.
const QUALIFIED_NAME_MAX_LENGTH: usize = 63;
/// Maximum length of a DNS-1123 subdomain.
const DNS1123_SUBDOMAIN_MAX_LENGTH: usize = 253;

/// `validation.IsQualifiedName` reports no error: an optional DNS-1123
/// subdomain prefix and `/`, then a name of 1–63 characters matching
/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`.
pub(crate) fn is_qualified_name(value: &[u8]) -> bool {
    let mut parts = value.split(|&b| b == b'/');
    let first = parts.next().unwrap_or_default();
    let (prefix, name) = match (parts.next(), parts.next()) {
        (None, _) => (None, first),
        (Some(name), None) => (Some(first), name),
        (Some(_), Some(_)) => return false,
    };
    if let Some(prefix) = prefix {
        if prefix.is_empty() || !is_dns1123_subdomain(prefix) {
            return false;
        }
    }
    !name.is_empty() && name.len() <= QUALIFIED_NAME_MAX_LENGTH && is_qualified_name_body(name)
}

/// `validation.IsValidLabelValue` reports no error: empty, or at most 63
/// characters matching the qualified-name pattern.
pub(crate) fn is_valid_label_value(value: &[u8]) -> bool {
    value.len() <= QUALIFIED_NAME_MAX_LENGTH && (value.is_empty() || is_qualified_name_body(value))
}

/// `^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$` (for a non-empty value).
fn is_qualified_name_body(value: &[u8]) -> bool {
    let (Some(&first), Some(&last)) = (value.first(), value.last()) else {
        return false;
    };
    first.is_ascii_alphanumeric()
        && last.is_ascii_alphanumeric()
        && value
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// `validation.IsDNS1123Subdomain` reports no error: at most 253
/// characters, dot-separated labels of `[a-z0-9]([-a-z0-9]*[a-z0-9])?`.
pub(crate) fn is_dns1123_subdomain(value: &[u8]) -> bool {
    value.len() <= DNS1123_SUBDOMAIN_MAX_LENGTH
        && value.split(|&b| b == b'.').all(|label| {
            let (Some(&first), Some(&last)) = (label.first(), label.last()) else {
                return false;
            };
            let lower_alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
            lower_alnum(first)
                && lower_alnum(last)
                && label.iter().all(|&b| lower_alnum(b) || b == b'-')
        })
}

/// `content.IsPathSegmentName` reports no error: not `.` or `..`, and no
/// `/` or `%`. (The empty string passes.)
pub(crate) fn is_path_segment_name(name: &[u8]) -> bool {
    name != b"." && name != b".." && !name.iter().any(|&b| b == b'/' || b == b'%')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qualified_names() {
        for ok in [
            "a",
            "app",
            "App.Name_x-1",
            "example.com/name",
            "k8s.io/app",
            "a-b.c/D",
            &"x".repeat(63),
        ] {
            assert!(is_qualified_name(ok.as_bytes()), "{ok}");
        }
        for bad in [
            "",
            "-a",
            "a-",
            "/a",
            "a/",
            "a/b/c",
            "Example.com/a",
            "a..b-/c",
            "a b",
            "é",
            &"x".repeat(64),
        ] {
            assert!(!is_qualified_name(bad.as_bytes()), "{bad}");
        }
    }

    #[test]
    fn label_values() {
        for ok in ["", "a", "a.b_c-d", "1", &"v".repeat(63)] {
            assert!(is_valid_label_value(ok.as_bytes()), "{ok}");
        }
        for bad in ["a/b", "-a", "a_", " a", "a b", &"v".repeat(64)] {
            assert!(!is_valid_label_value(bad.as_bytes()), "{bad}");
        }
    }

    #[test]
    fn subdomains() {
        assert!(is_dns1123_subdomain(b"a.b-c.d1"));
        assert!(!is_dns1123_subdomain(b"a..b"));
        assert!(!is_dns1123_subdomain(b".a"));
        assert!(!is_dns1123_subdomain(b"a-.b"));
        assert!(!is_dns1123_subdomain(b"A.b"));
        assert!(!is_dns1123_subdomain("a.".repeat(127).as_bytes()));
    }

    #[test]
    fn path_segment_names() {
        assert!(is_path_segment_name(b""));
        assert!(is_path_segment_name(b"..."));
        assert!(is_path_segment_name(b"a.b"));
        assert!(!is_path_segment_name(b"."));
        assert!(!is_path_segment_name(b".."));
        assert!(!is_path_segment_name(b"a/b"));
        assert!(!is_path_segment_name(b"100%"));
    }
}
