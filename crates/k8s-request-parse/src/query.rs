//! Query strings with Go's `url.ParseQuery` rules, which is what
//! kube-apiserver (and Tailscale's proxy, for the event's `queryParameters`)
//! sees:
//!
//! * the query is split on `&` only;
//! * a pair containing `;` is dropped (Go ≥ 1.17);
//! * empty pairs are skipped;
//! * keys and values are unescaped (`+` is a space, `%XX` a byte); a pair
//!   with a bad escape in its key or value is dropped;
//! * `key` without `=` has the value `""`; keys are case-sensitive;
//! * repeated keys keep their order, and readers use the first value.
//!
//! Decoded bytes that are not UTF-8 are replaced the way Go's JSON encoder
//! does it (one U+FFFD per invalid byte).
//!
//! ```
//! use k8s_request_parse::query;
//!
//! let q = query::parse_query("watch=1&labelSelector=app%3Dweb&x=a+b&bad=%zz&y=1;z=2&x=c");
//! assert_eq!(q["watch"], ["1"]);
//! assert_eq!(q["labelSelector"], ["app=web"]);
//! assert_eq!(q["x"], ["a b", "c"]);
//! assert!(!q.contains_key("bad") && !q.contains_key("y"));
//! ```

use std::borrow::Cow;
use std::collections::BTreeMap;

use crate::escape::{unescape, Mode};
use crate::go_text::go_lossy_cow;

/// Parses a raw query (the part after `?`, without it) into a map from key
/// to all of its values in order, with Go's `url.ParseQuery` rules.
///
/// Never fails: like `URL.Query()` in Go, malformed pairs are left out.
pub fn parse_query(raw: &str) -> BTreeMap<String, Vec<String>> {
    let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (key, value) in pairs(raw) {
        map.entry(key.into_owned())
            .or_default()
            .push(value.into_owned());
    }
    map
}

/// The decoded `(key, value)` pairs of a raw query, in order, with Go's
/// `url.ParseQuery` rules (see the [module documentation](self)).
///
/// Borrows from `raw` where nothing needed decoding.
///
/// ```
/// let pairs: Vec<_> = k8s_request_parse::query::pairs("a=1&b&a=2").collect();
/// assert_eq!(pairs, [("a".into(), "1".into()), ("b".into(), "".into()), ("a".into(), "2".into())]);
/// ```
pub fn pairs(raw: &str) -> Pairs<'_> {
    Pairs {
        inner: RawPairs::new(raw),
    }
}

/// The first decoded value of `key` in a raw query, as `URL.Query().Get`
/// would return it, or `None` when the key is absent.
///
/// ```
/// let watch = k8s_request_parse::query::first_value("watch=true&watch=false", "watch");
/// assert_eq!(watch.as_deref(), Some("true"));
/// ```
pub fn first_value<'a>(raw: &'a str, key: &str) -> Option<Cow<'a, str>> {
    pairs(raw).find(|(k, _)| k == key).map(|(_, v)| v)
}

/// Iterator returned by [`pairs`].
#[derive(Debug, Clone)]
pub struct Pairs<'a> {
    inner: RawPairs<'a>,
}

impl<'a> Iterator for Pairs<'a> {
    type Item = (Cow<'a, str>, Cow<'a, str>);

    fn next(&mut self) -> Option<Self::Item> {
        self.inner
            .next()
            .map(|(key, value)| (go_lossy_cow(key), go_lossy_cow(value)))
    }
}

/// The same pairs as decoded bytes (Go strings may hold any bytes).
#[derive(Debug, Clone)]
pub(crate) struct RawPairs<'a> {
    rest: Option<&'a str>,
}

impl<'a> RawPairs<'a> {
    pub(crate) fn new(raw: &'a str) -> Self {
        RawPairs { rest: Some(raw) }
    }
}

impl<'a> Iterator for RawPairs<'a> {
    type Item = (Cow<'a, [u8]>, Cow<'a, [u8]>);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let rest = self.rest?;
            if rest.is_empty() {
                self.rest = None;
                return None;
            }
            // `str` searches for an ASCII character use memchr.
            let pair = match rest.split_once('&') {
                Some((pair, tail)) => {
                    self.rest = Some(tail);
                    pair
                }
                None => {
                    self.rest = None;
                    rest
                }
            };
            if pair.is_empty() || pair.contains(';') {
                continue;
            }
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let Ok(key) = unescape(key.as_bytes(), Mode::QueryComponent) else {
                continue;
            };
            let Ok(value) = unescape(value.as_bytes(), Mode::QueryComponent) else {
                continue;
            };
            return Some((key, value));
        }
    }
}

/// The first values of the query parameters kube-apiserver reads when it
/// decodes `ListOptions`, gathered in one pass.
#[derive(Debug, Default)]
pub(crate) struct ListQuery<'a> {
    pub(crate) watch: Option<Cow<'a, [u8]>>,
    pub(crate) field_selector: Option<Cow<'a, [u8]>>,
    pub(crate) label_selector: Option<Cow<'a, [u8]>>,
    pub(crate) limit: Option<Cow<'a, [u8]>>,
    pub(crate) timeout_seconds: Option<Cow<'a, [u8]>>,
}

impl<'a> ListQuery<'a> {
    /// Scans the raw query once, keeping the first value of each key.
    pub(crate) fn scan(raw: &'a str) -> Self {
        let mut found = ListQuery::default();
        for (key, value) in RawPairs::new(raw) {
            let slot = match &*key {
                b"watch" => &mut found.watch,
                b"fieldSelector" => &mut found.field_selector,
                b"labelSelector" => &mut found.label_selector,
                b"limit" => &mut found.limit,
                b"timeoutSeconds" => &mut found.timeout_seconds,
                _ => continue,
            };
            if slot.is_none() {
                *slot = Some(value);
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_parse_query_rules() {
        let q = parse_query("a=1&&b&c=&a=2&d=x;y&%zz=1&e=%zz&f=%41+%2B&=v&g==h");
        let expected: BTreeMap<String, Vec<String>> = [
            ("", vec!["v"]),
            ("a", vec!["1", "2"]),
            ("b", vec![""]),
            ("c", vec![""]),
            ("f", vec!["A +"]),
            ("g", vec!["=h"]),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.into_iter().map(String::from).collect()))
        .collect();
        assert_eq!(q, expected);
    }

    #[test]
    fn empty_and_degenerate_queries() {
        assert!(parse_query("").is_empty());
        assert!(parse_query("&&&").is_empty());
        assert!(parse_query(";").is_empty());
        assert_eq!(parse_query("=")[""], [""]);
    }

    #[test]
    fn invalid_utf8_becomes_replacement_per_byte() {
        assert_eq!(parse_query("k=%e2%82")["k"], ["\u{fffd}\u{fffd}"]);
    }

    #[test]
    fn list_query_keeps_first_values() {
        let q = ListQuery::scan("watch=1&watch=0&fieldSelector=a%3Db&other=x&limit=5");
        assert_eq!(q.watch.as_deref(), Some(&b"1"[..]));
        assert_eq!(q.field_selector.as_deref(), Some(&b"a=b"[..]));
        assert_eq!(q.limit.as_deref(), Some(&b"5"[..]));
        assert!(q.label_selector.is_none() && q.timeout_seconds.is_none());
    }
}
