//! Behaviours described in `docs/request-info.md` (`#url-handling`,
//! `#algorithm`, `#list-options`, `#field-selectors`, `#subresources`) beyond
//! the shared vectors, through the public API.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use k8s_request_parse::{request_info, PathVerb, RequestInfo, RequestInfoError, TargetError};

fn get(target: &str) -> RequestInfo {
    request_info("GET", target).unwrap()
}

fn parts(info: &RequestInfo) -> Vec<&str> {
    info.parts
        .as_deref()
        .unwrap_or_default()
        .iter()
        .map(String::as_str)
        .collect()
}

#[test]
fn percent_decoding_happens_before_splitting() {
    let info = get("/api/v1/namespaces/default/pods/foo%2Fbar");
    assert_eq!(
        (info.name.as_str(), info.subresource.as_str()),
        ("foo", "bar")
    );
    assert_eq!(info.path, "/api/v1/namespaces/default/pods/foo/bar");

    let info = get("/api/v1/namespaces/default/pods/a%20b%3Fc");
    assert_eq!(info.name, "a b?c");

    // Not UTF-8 after decoding: one U+FFFD per byte, as Go's JSON would write.
    let info = get("/api/v1/namespaces/%ff%e2%82/pods");
    assert_eq!(info.namespace, "\u{fffd}\u{fffd}\u{fffd}");
}

#[test]
fn invalid_escapes_are_a_400_without_request_info() {
    for target in ["/api/v1/pods/%zz", "/api/v1/pods/%", "/api/v1/pods/%4"] {
        let err = request_info("GET", target).unwrap_err();
        assert_eq!(err.http_status(), 400, "{target}");
        assert!(err.partial_info().is_none());
        assert!(matches!(
            err,
            RequestInfoError::InvalidTarget(TargetError::InvalidEscape(_))
        ));
    }
    // ...but a bad escape in the query only drops that pair.
    let info = get("/api/v1/pods?watch=%zz&watch=1");
    assert_eq!(info.verb, "watch");
}

#[test]
fn path_verb_errors_carry_the_partial_info() {
    let err = request_info("DELETE", "/apis/apps/v1/proxy/").unwrap_err();
    let RequestInfoError::MissingResourceAfterPathVerb { verb, partial } = &err else {
        panic!("unexpected {err:?}");
    };
    assert_eq!(*verb, PathVerb::Proxy);
    assert_eq!(partial.verb, "delete");
    assert_eq!(partial.api_group, "apps");
    assert!(partial.parts.is_none());
    assert_eq!(err.http_status(), 500);
    let text = err.to_string();
    assert!(
        text.contains("/apis/apps/v1/proxy/") && text.contains("'proxy'"),
        "{text}"
    );
}

#[test]
fn verbs_from_the_path_ignore_the_method_and_the_query() {
    let info = request_info("POST", "/api/v1/watch/pods?watch=false&labelSelector=a%3Db").unwrap();
    assert_eq!(info.verb, "watch");
    assert_eq!(info.label_selector, "");
    let info = request_info("DELETE", "/api/v1/proxy/namespaces/ns/services/s/x/y").unwrap();
    assert_eq!(info.verb, "proxy");
    assert_eq!((info.name.as_str(), info.subresource.as_str()), ("s", ""));
    assert_eq!(parts(&info), ["services", "s", "x", "y"]);
    let info = get("/api/v1/proxy/pods");
    assert_eq!((info.verb.as_str(), info.name.as_str()), ("proxy", ""));
}

#[test]
fn method_mapping() {
    assert_eq!(request_info("PUT", "/api/v1/pods").unwrap().verb, "update");
    assert_eq!(request_info("PATCH", "/api/v1/pods").unwrap().verb, "patch");
    assert_eq!(request_info("OPTIONS", "/api/v1/pods").unwrap().verb, "");
    assert_eq!(request_info("Get", "/api/v1/pods").unwrap().verb, "");
    // Non-resource: Go's strings.ToLower of the method.
    assert_eq!(request_info("OPTIONS", "/version").unwrap().verb, "options");
    assert_eq!(request_info("GÉT", "/version").unwrap().verb, "gét");
    assert_eq!(request_info("\u{130}", "/version").unwrap().verb, "i");
}

#[test]
fn empty_name_with_subresource_is_still_a_list() {
    let info = get("/api/v1/namespaces/default/pods//status");
    assert_eq!(info.verb, "list");
    assert_eq!(
        (info.name.as_str(), info.subresource.as_str()),
        ("", "status")
    );
}

/// An empty name segment is no name: the get becomes a list and the name comes from a
/// `metadata.name` field selector, as kube-apiserver does (the `request_info` fuzz target's
/// crash: it expected the name to be the second part whenever there was one).
#[test]
fn empty_name_segment_takes_the_field_selector_name() {
    let info = get("/api/v1/namespaces/default/pods//status?fieldSelector=metadata.name%3Do-a");
    assert_eq!(info.verb, "list");
    assert_eq!(parts(&info), ["pods", "", "status"]);
    assert_eq!(
        (info.name.as_str(), info.subresource.as_str()),
        ("o-a", "status")
    );
    assert_eq!(info.field_selector, "metadata.name=o-a");
}

#[test]
fn field_selector_names_are_checked_as_path_segments() {
    for (selector, name) in [
        ("metadata.name%3Dweb-0", "web-0"),
        ("metadata.name%3Da%25b", ""),
        ("metadata.name%3D..", ""),
        ("metadata.name%3D.", ""),
        ("metadata.name%3D...", "..."),
        ("metadata.name%3Da%5C%2Cb", "a,b"),
        ("metadata.name%3D", ""),
        ("metadata.name%3Dx%2Cmetadata.name%3D", ""),
        ("spec.nodeName%3Dn1%2Cmetadata.name%3Dp", "p"),
    ] {
        let info = get(&format!("/api/v1/pods?fieldSelector={selector}"));
        assert_eq!(info.name, name, "{selector}");
        assert_eq!(info.verb, "list");
    }
}

#[test]
fn decode_failures_drop_the_name_keep_watch_and_the_raw_selectors() {
    for extra in [
        "limit=abc",
        "limit=99999999999999999999",
        "timeoutSeconds=1.5",
        "labelSelector=app%3D%3Dx%3D%3Dy",
        "labelSelector=-app",
    ] {
        let info = get(&format!(
            "/api/v1/pods?watch=1&fieldSelector=metadata.name%3Dfoo&{extra}"
        ));
        assert_eq!(info.verb, "watch", "{extra}");
        assert_eq!(info.name, "", "{extra}");
        assert_eq!(info.field_selector, "metadata.name=foo");
    }
    // Valid options keep the name.
    let info = get("/api/v1/pods?watch=1&fieldSelector=metadata.name%3Dfoo&limit=-1&timeoutSeconds=%2B5&labelSelector=a+in+(b,c),!d");
    assert_eq!((info.verb.as_str(), info.name.as_str()), ("watch", "foo"));
    assert_eq!(info.label_selector, "a in (b,c),!d");
}

#[test]
fn watch_values_follow_go_bool_rules() {
    for (query, verb) in [
        ("watch", "watch"),
        ("watch=", "watch"),
        ("watch=no", "watch"),
        ("watch=0", "list"),
        ("watch=FaLsE", "list"),
        // EqualFold folds the long s to s...
        ("watch=fal%C5%BFe", "list"),
        // ...but the fallback after a decode error lower-cases instead.
        ("watch=fal%C5%BFe&limit=x", "watch"),
        ("watch=true;x=y&watch=0", "list"),
        ("watch=true&watch=false", "watch"),
    ] {
        assert_eq!(get(&format!("/api/v1/pods?{query}")).verb, verb, "{query}");
    }
}

#[test]
fn selectors_are_recorded_only_for_collection_verbs() {
    let q = "?fieldSelector=a%3Db&labelSelector=c%3Dd";
    for (method, target, recorded) in [
        ("GET", "/api/v1/pods", true),
        ("DELETE", "/api/v1/pods", true),
        ("GET", "/api/v1/pods/x", false),
        ("POST", "/api/v1/pods", false),
        ("PUT", "/api/v1/pods", false),
        ("GET", "/api/v1/watch/pods", false),
        ("GET", "/healthz", false),
    ] {
        let info = request_info(method, &format!("{target}{q}")).unwrap();
        assert_eq!(
            (info.field_selector.as_str(), info.label_selector.as_str()),
            if recorded { ("a=b", "c=d") } else { ("", "") },
            "{method} {target}"
        );
    }
    // Raw means raw: an unparsable selector is still recorded.
    let info = get("/api/v1/pods?labelSelector=%28%28%28");
    assert_eq!(info.label_selector, "(((");
}

#[test]
fn absolute_and_odd_targets() {
    let info = get("https://kube.example:6443/api/v1/pods");
    assert_eq!(
        (info.verb.as_str(), info.path.as_str()),
        ("list", "/api/v1/pods")
    );
    let info = request_info("OPTIONS", "*").unwrap();
    assert_eq!((info.path.as_str(), info.is_resource_request), ("*", false));
    let info = request_info("CONNECT", "kube.example:443").unwrap();
    assert_eq!((info.path.as_str(), info.verb.as_str()), ("", "connect"));
    assert!(matches!(
        request_info("GET", "api/v1/pods"),
        Err(RequestInfoError::InvalidTarget(TargetError::NotAbsolute))
    ));
    assert!(matches!(
        request_info("GET", "/api/v1/pods\r\n"),
        Err(RequestInfoError::InvalidTarget(
            TargetError::ControlCharacter(b'\r')
        ))
    ));
}

#[test]
fn huge_inputs_cost_linear_time_and_do_not_fail() {
    let long_name = "a".repeat(1 << 20);
    let info = get(&format!("/api/v1/namespaces/x/pods/{long_name}"));
    assert_eq!(info.name.len(), 1 << 20);
    let many_pairs = "x=1&".repeat(100_000);
    let info = get(&format!("/api/v1/pods?{many_pairs}watch=1"));
    assert_eq!(info.verb, "watch");
    let deep = "/a".repeat(100_000);
    let info = get(&format!("/api/v1/pods{deep}"));
    assert_eq!(info.parts.map(|p| p.len()), Some(100_001));
    let selector = "a%3Db%2C".repeat(50_000);
    let info = get(&format!("/api/v1/pods?labelSelector={selector}"));
    assert_eq!(info.verb, "list");
}
