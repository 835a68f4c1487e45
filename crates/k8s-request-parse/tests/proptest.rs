//! Property tests: any method and request-target is handled without a
//! panic, and the result is internally consistent; structured Kubernetes
//! URLs parse to exactly the parts they were built from; query parsing
//! follows Go's rules.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use k8s_request_parse::{query, request_info, RequestInfo, RequestInfoError};
use proptest::prelude::*;

/// Bytes that make URLs interesting: separators, escapes, query syntax.
fn url_char() -> impl Strategy<Value = char> {
    prop_oneof![
        4 => prop::sample::select(vec![
            '/', '/', '/', '%', '?', '&', '=', ';', '+', ',', '\\', '.', '!', '(', ')', ' ', '#',
        ]),
        4 => prop::char::range('a', 'z'),
        1 => prop::char::range('0', '9'),
        1 => prop::char::range('A', 'F'),
        1 => any::<char>(),
    ]
}

/// Path segments a Kubernetes URL is made of, plus tricky ones.
fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec![
            "api", "apis", "v1", "apps", "watch", "proxy", "namespaces", "default", "pods",
            "status", "finalize", "log", "exec", "", ".", "..", "%2F", "%2e", "%zz", "%",
            "%ff", "a%20b",
        ])
        .prop_map(String::from),
        1 => "[a-z0-9.-]{1,8}",
    ]
}

fn query_pair() -> impl Strategy<Value = String> {
    let key = prop::sample::select(vec![
        "watch",
        "fieldSelector",
        "labelSelector",
        "limit",
        "timeoutSeconds",
        "resourceVersion",
        "WATCH",
        "x",
    ]);
    let value = prop_oneof![
        prop::sample::select(vec![
            "",
            "true",
            "false",
            "0",
            "1",
            "FALSE",
            "metadata.name%3Dfoo",
            "metadata.name=a,b",
            "app%3Dweb",
            "app+in+(a",
            "a%2Fb",
            "abc",
            "-5",
            "%zz",
            "x;y",
        ])
        .prop_map(String::from),
        "[a-z=,%.!]{0,10}",
    ];
    (key, value).prop_map(|(k, v)| format!("{k}={v}"))
}

/// Request-targets: mostly API-shaped, sometimes free-form.
fn target() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => (
            prop::collection::vec(segment(), 0..8),
            prop::bool::ANY,
            prop::collection::vec(query_pair(), 0..4),
        )
            .prop_map(|(segments, trailing, pairs)| {
                let mut t = format!("/{}", segments.join("/"));
                if trailing {
                    t.push('/');
                }
                if !pairs.is_empty() {
                    t.push('?');
                    t.push_str(&pairs.join("&"));
                }
                t
            }),
        1 => prop::collection::vec(url_char(), 0..40).prop_map(|c| c.into_iter().collect()),
        1 => any::<String>(),
    ]
}

fn method() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec![
            "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "get", "",
        ])
        .prop_map(String::from),
        1 => any::<String>(),
    ]
}

/// The consistency rules every result obeys.
fn check_invariants(info: &RequestInfo) -> Result<(), TestCaseError> {
    let selector_verb = matches!(info.verb.as_str(), "list" | "watch" | "deletecollection");
    if !selector_verb {
        prop_assert_eq!(&info.field_selector, "");
        prop_assert_eq!(&info.label_selector, "");
    }
    if !info.is_resource_request {
        prop_assert!(info.parts.is_none());
        prop_assert_eq!(&info.api_group, "");
        prop_assert_eq!(&info.api_version, "");
        prop_assert_eq!(&info.namespace, "");
        prop_assert_eq!(&info.resource, "");
        prop_assert_eq!(&info.subresource, "");
        prop_assert_eq!(&info.name, "");
        prop_assert!(info.api_prefix.is_empty() || info.api_prefix == "apis");
        return Ok(());
    }
    prop_assert!(info.api_prefix == "api" || info.api_prefix == "apis");
    if info.api_prefix == "api" {
        prop_assert_eq!(&info.api_group, "");
    }
    let parts = info.parts.as_ref().expect("resource requests have Parts");
    prop_assert!(!parts.is_empty());
    prop_assert_eq!(&info.resource, &parts[0]);
    match parts.get(1) {
        Some(name) => prop_assert_eq!(&info.name, name),
        // Only a list/watch can take its name from a field selector.
        None => prop_assert!(
            info.name.is_empty()
                || (matches!(info.verb.as_str(), "list" | "watch")
                    && !info.field_selector.is_empty()
                    && info.name != "."
                    && info.name != ".."
                    && !info.name.contains('/')
                    && !info.name.contains('%'))
        ),
    }
    match parts.get(2) {
        Some(sub) if info.verb != "proxy" => prop_assert_eq!(&info.subresource, sub),
        _ => prop_assert_eq!(&info.subresource, ""),
    }
    prop_assert!(matches!(
        info.verb.as_str(),
        "get"
            | "list"
            | "watch"
            | "create"
            | "update"
            | "patch"
            | "delete"
            | "deletecollection"
            | "proxy"
            | ""
    ));
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 4096,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn never_panics_and_is_consistent(method in method(), target in target()) {
        match request_info(&method, &target) {
            Ok(info) => {
                check_invariants(&info)?;
                // The JSON form always round-trips.
                let json = serde_json::to_vec(&info).unwrap();
                let back: RequestInfo = serde_json::from_slice(&json).unwrap();
                prop_assert_eq!(back, info);
            }
            Err(RequestInfoError::MissingResourceAfterPathVerb { verb, partial }) => {
                prop_assert!(partial.is_resource_request);
                prop_assert!(partial.parts.is_none());
                prop_assert_eq!(&partial.resource, "");
                prop_assert!(partial.path.contains(verb.as_str()));
            }
            Err(RequestInfoError::InvalidTarget(_)) => {
                // Only for what Go's server refuses: control bytes, bad
                // escapes, or a target that is neither a path, `*`, nor an
                // absolute URL. A plain path without `%` is always accepted.
                let may_be_refused = target.bytes().any(|b| b < 0x20 || b == 0x7f)
                    || target.contains('%')
                    || !(target.is_empty() || target.starts_with('/') || target == "*");
                prop_assert!(may_be_refused, "unexpected rejection of {:?}", target);
            }
            Err(other) => prop_assert!(false, "unknown error {other}"),
        }
    }

    #[test]
    fn cli_always_answers_one_json_line(line in any::<String>()) {
        let out = k8s_request_parse::cli::process_line(&line);
        prop_assert!(!out.contains('\n'));
        let value: serde_json::Value = serde_json::from_str(&out).unwrap();
        prop_assert!(value["Parts"].is_array());
        prop_assert!(value["error"].is_string() || value["error"].is_null());
    }

    /// Structured URLs come back as the parts they were built from.
    #[test]
    fn structured_urls_parse_to_their_parts(
        group in prop::option::of("[a-z]{1,6}(\\.[a-z]{1,6}){0,2}"),
        version in "v[0-9]{1,2}(alpha[0-9]|beta[0-9])?",
        namespace in prop::option::of("[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?"),
        resource in "[a-z]{1,12}",
        name in prop::option::of("[a-z0-9]([a-z0-9.-]{0,10}[a-z0-9])?"),
        subresource in prop::option::of(prop::sample::select(vec!["status", "scale", "log", "exec", "proxy"])),
        method in prop::sample::select(vec!["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]),
        watch in prop::option::of(prop::sample::select(vec!["true", "1", "false", "0", ""])),
    ) {
        // Exclude words with a special meaning in these positions.
        prop_assume!(!matches!(resource.as_str(), "watch" | "proxy" | "namespaces"));
        prop_assume!(namespace.is_none() || !matches!(resource.as_str(), "status" | "finalize"));
        let name = if subresource.is_some() { name.or(Some("obj".into())) } else { name };
        let mut target = match &group {
            Some(g) => format!("/apis/{g}/{version}"),
            None => format!("/api/{version}"),
        };
        if let Some(ns) = &namespace {
            target += &format!("/namespaces/{ns}");
        }
        target += &format!("/{resource}");
        if let Some(n) = &name {
            target += &format!("/{n}");
        }
        if let Some(s) = subresource {
            target += &format!("/{s}");
        }
        if let Some(w) = watch {
            target += &format!("?watch={w}");
        }
        let info = request_info(method, &target).unwrap();
        check_invariants(&info)?;
        prop_assert!(info.is_resource_request);
        prop_assert_eq!(&info.path, &target.split('?').next().unwrap().to_string());
        prop_assert_eq!(info.api_prefix.as_str(), if group.is_some() { "apis" } else { "api" });
        prop_assert_eq!(&info.api_group, &group.unwrap_or_default());
        prop_assert_eq!(&info.api_version, &version);
        prop_assert_eq!(&info.namespace, &namespace.unwrap_or_default());
        prop_assert_eq!(&info.resource, &resource);
        prop_assert_eq!(&info.name, &name.clone().unwrap_or_default());
        prop_assert_eq!(info.subresource.as_str(), subresource.unwrap_or(""));
        let expected_verb = match (method, name.is_some()) {
            ("GET" | "HEAD", true) => "get",
            ("GET" | "HEAD", false) => match watch {
                Some("false" | "0") | None => "list",
                Some(_) => "watch",
            },
            ("POST", _) => "create",
            ("PUT", _) => "update",
            ("PATCH", _) => "patch",
            ("DELETE", true) => "delete",
            ("DELETE", false) => "deletecollection",
            _ => unreachable!(),
        };
        prop_assert_eq!(info.verb.as_str(), expected_verb);
    }

    /// Go's QueryEscape'd pairs parse back to the same map (first value
    /// wins for readers), and `;` pairs are always dropped.
    #[test]
    fn query_round_trips(pairs in prop::collection::vec((any::<String>(), any::<String>()), 0..6)) {
        let encoded: Vec<String> = pairs
            .iter()
            .map(|(k, v)| format!("{}={}", go_query_escape(k), go_query_escape(v)))
            .collect();
        let raw = encoded.join("&");
        let mut expected: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (k, v) in &pairs {
            expected.entry(k.clone()).or_default().push(v.clone());
        }
        prop_assert_eq!(query::parse_query(&raw), expected);
        for (k, v) in &pairs {
            prop_assert_eq!(
                query::first_value(&raw, k).map(|c| c.into_owned()),
                pairs.iter().find(|(k2, _)| k2 == k).map(|(_, v2)| v2.clone())
            );
            let _ = v;
        }
        // A raw ';' poisons exactly the pair it is in.
        let poisoned = format!("{raw}&watch=1;x=2");
        prop_assert_eq!(query::parse_query(&poisoned), query::parse_query(&raw));
    }

    #[test]
    fn query_never_panics(raw in any::<String>()) {
        let map = query::parse_query(&raw);
        let count: usize = map.values().map(Vec::len).sum();
        prop_assert!(count <= raw.split('&').count());
        prop_assert_eq!(count, query::pairs(&raw).count());
    }
}

/// Go's `url.QueryEscape`.
fn go_query_escape(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(char::from(b))
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}
