//! Mirrors upstream `TestImpersonationHeaders` (`docs/tailscale-protocol.md#impersonation`), plus
//! the places where kubescribe deliberately differs (a bad cap is an error, not an empty header
//! set).
#![allow(clippy::unwrap_used)]

use http::header::{HeaderMap, HeaderValue};
use identity::{
    impersonation_headers, strip_client_credentials, Caller, CapMap, GrantError, Identity,
    KUBERNETES_CAP, LEGACY_KUBERNETES_CAP,
};
use serde_json::Value;

fn caller(login: &str, tags: &[&str], caps: &[(&str, &[&str])]) -> Caller {
    let mut cap_map = CapMap::new();
    for (cap, rules) in caps {
        cap_map.insert(
            (*cap).to_owned(),
            rules
                .iter()
                .map(|r| serde_json::from_str::<Value>(r).unwrap())
                .collect(),
        );
    }
    Caller {
        identity: Identity {
            node_name: "node.ts.net".to_owned(),
            stable_node_id: "nStable1".to_owned(),
            node_id: 1,
            tags: tags.iter().map(|t| (*t).to_owned()).collect(),
            user_id: 42,
            node_user_id: 42,
            login_name: login.to_owned(),
            display_name: "Some One".to_owned(),
            addresses: vec![],
        },
        caps: cap_map,
    }
}

/// A request as a hostile client would send it: its own credentials and impersonation attempts.
fn client_headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        "authorization",
        HeaderValue::from_static("Bearer client-token"),
    );
    h.insert("impersonate-user", HeaderValue::from_static("admin"));
    h.append(
        "Impersonate-Group",
        HeaderValue::from_static("system:masters"),
    );
    h.append("impersonate-group", HeaderValue::from_static("other"));
    h.insert("Impersonate-Uid", HeaderValue::from_static("0"));
    h.insert("Impersonate-Extra-Scopes", HeaderValue::from_static("all"));
    h.insert(
        "IMPERSONATE-EXTRA-acme.com%2Fproject",
        HeaderValue::from_static("x"),
    );
    h.insert("accept", HeaderValue::from_static("application/json"));
    h.insert("x-impersonate-user-ish", HeaderValue::from_static("kept"));
    h
}

/// The outbound headers auth mode produces: strip, then apply.
fn outbound(caller: &Caller) -> Result<HeaderMap, GrantError> {
    let imp = impersonation_headers(caller)?;
    let mut h = client_headers();
    strip_client_credentials(&mut h);
    imp.apply(&mut h);
    Ok(h)
}

fn values(h: &HeaderMap, name: &str) -> Vec<String> {
    h.get_all(name)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

fn assert_impersonation(h: &HeaderMap, user: &str, groups: &[&str]) {
    assert_eq!(values(h, "impersonate-user"), vec![user.to_owned()]);
    assert_eq!(values(h, "impersonate-group"), groups);
    assert!(
        h.get("authorization").is_none(),
        "client Authorization must be stripped"
    );
    assert!(h.get("impersonate-uid").is_none());
    assert!(!h
        .keys()
        .any(|k| k.as_str().starts_with("impersonate-extra-")));
    // Unrelated headers survive.
    assert_eq!(values(h, "accept"), vec!["application/json"]);
    assert_eq!(values(h, "x-impersonate-user-ish"), vec!["kept"]);
}

#[test]
fn user() {
    let h = outbound(&caller("foo@example.com", &[], &[])).unwrap();
    assert_impersonation(&h, "foo@example.com", &[]);
}

#[test]
fn tagged_node_tags_become_groups() {
    let h = outbound(&caller("tagged-devices", &["tag:foo", "tag:bar"], &[])).unwrap();
    assert_impersonation(&h, "node.ts.net", &["tag:foo", "tag:bar"]);
}

#[test]
fn user_with_caps_dedup_first_seen_and_empty_rules_ignored() {
    let rules: &[&str] = &[
        r#"{"impersonate":{"groups":["group1","group2"]}}"#,
        r#"{"impersonate":{"groups":["group1","group3"]}}"#,
        r#"{"impersonate":{"groups":["group4"]}}"#,
        r#"{"impersonate":{"groups":["group2"]}}"#,
        r#"{}"#,
        r#"{"impersonate":{}}"#,
        r#"{"impersonate":{"groups":[]}}"#,
    ];
    let h = outbound(&caller("foo@example.com", &[], &[(KUBERNETES_CAP, rules)])).unwrap();
    assert_impersonation(
        &h,
        "foo@example.com",
        &["group1", "group2", "group3", "group4"],
    );
}

#[test]
fn tagged_node_with_cap_groups_suppresses_tags() {
    let rules: &[&str] = &[r#"{"impersonate":{"groups":["group1"]}}"#];
    let c = caller(
        "tagged-devices",
        &["tag:foo", "tag:bar"],
        &[(KUBERNETES_CAP, rules)],
    );
    assert_impersonation(&outbound(&c).unwrap(), "node.ts.net", &["group1"]);
}

#[test]
fn mix_of_groups_and_recorder_fields() {
    let rules: &[&str] =
        &[r#"{"impersonate":{"groups":["group1"]},"recorder":["tag:foo"],"enforceRecorder":true}"#];
    let c = caller(
        "tagged-devices",
        &["tag:foo", "tag:bar"],
        &[(KUBERNETES_CAP, rules)],
    );
    assert_impersonation(&outbound(&c).unwrap(), "node.ts.net", &["group1"]);
}

#[test]
fn bad_cap_is_an_error_not_an_empty_header_set() {
    let rules: &[&str] = &["[]"];
    let c = caller(
        "tagged-devices",
        &["tag:foo", "tag:bar"],
        &[(KUBERNETES_CAP, rules)],
    );
    let err = outbound(&c).unwrap_err();
    assert!(
        matches!(err, GrantError::InvalidRule { index: 0, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("refused"), "{err}");
}

#[test]
fn bad_cap_after_good_rules_is_still_an_error() {
    let rules: &[&str] = &[
        r#"{"impersonate":{"groups":["g"]}}"#,
        r#"{"impersonate":{"groups":"g"}}"#,
    ];
    let c = caller("foo@example.com", &[], &[(KUBERNETES_CAP, rules)]);
    assert!(matches!(
        impersonation_headers(&c),
        Err(GrantError::InvalidRule { index: 1, .. })
    ));
}

#[test]
fn legacy_cap_used_only_when_new_cap_has_no_rules() {
    let legacy: &[&str] = &[r#"{"impersonate":{"groups":["legacy"]}}"#];
    let c = caller("foo@example.com", &[], &[(LEGACY_KUBERNETES_CAP, legacy)]);
    assert_eq!(impersonation_headers(&c).unwrap().groups(), ["legacy"]);

    let new: &[&str] = &[r#"{"enableEvents":true}"#];
    let c = caller(
        "foo@example.com",
        &[],
        &[(KUBERNETES_CAP, new), (LEGACY_KUBERNETES_CAP, legacy)],
    );
    assert!(impersonation_headers(&c).unwrap().groups().is_empty());

    // An empty list under the new name yields no rules, so the legacy name is consulted.
    let c = caller(
        "foo@example.com",
        &[],
        &[(KUBERNETES_CAP, &[]), (LEGACY_KUBERNETES_CAP, legacy)],
    );
    assert_eq!(impersonation_headers(&c).unwrap().groups(), ["legacy"]);

    // A bad legacy rule is as fatal as a bad new one.
    let c = caller("foo@example.com", &[], &[(LEGACY_KUBERNETES_CAP, &["7"])]);
    assert!(impersonation_headers(&c).is_err());
}

#[test]
fn misspelled_key_is_an_error_not_ignored() {
    for rule in [
        r#"{"Impersonate":{"groups":["g"]}}"#,
        r#"{"impersonate":{"Groups":["g"]}}"#,
        r#"{"EnforceRecorder":true}"#,
    ] {
        let rules = [rule];
        let c = caller("foo@example.com", &[], &[(KUBERNETES_CAP, &rules)]);
        let err = impersonation_headers(&c).unwrap_err();
        assert!(err.to_string().contains("case-sensitive"), "{rule}: {err}");
    }
    // Unknown keys in every spelling are ignored (forward compatibility).
    let rules = [r#"{"futureKnob":1,"impersonate":{"groups":["g"],"other":true}}"#];
    let c = caller("foo@example.com", &[], &[(KUBERNETES_CAP, &rules)]);
    assert_eq!(impersonation_headers(&c).unwrap().groups(), ["g"]);
}

#[test]
fn unsendable_or_empty_values_are_errors() {
    assert!(matches!(
        impersonation_headers(&caller("", &[], &[])),
        Err(GrantError::InvalidImpersonationValue {
            header: "Impersonate-User",
            ..
        })
    ));
    let rules = [r#"{"impersonate":{"groups":["bad\ngroup"]}}"#];
    assert!(matches!(
        impersonation_headers(&caller("a@b", &[], &[(KUBERNETES_CAP, &rules)])),
        Err(GrantError::InvalidImpersonationValue {
            header: "Impersonate-Group",
            ..
        })
    ));
    let rules = [r#"{"impersonate":{"groups":[""]}}"#];
    assert!(impersonation_headers(&caller("a@b", &[], &[(KUBERNETES_CAP, &rules)])).is_err());
}

#[test]
fn non_ascii_login_names_are_sent_as_utf8() {
    let h = outbound(&caller("zoë@example.com", &[], &[])).unwrap();
    assert_eq!(
        h.get("impersonate-user").unwrap().as_bytes(),
        "zoë@example.com".as_bytes()
    );
}

#[test]
fn strip_removes_every_client_credential_case_insensitively() {
    let mut h = client_headers();
    strip_client_credentials(&mut h);
    let left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
    assert_eq!(left.len(), 2, "{left:?}");
    assert!(left.contains(&"accept") && left.contains(&"x-impersonate-user-ish"));
}

#[test]
fn apply_replaces_existing_impersonation_but_keeps_authorization() {
    let imp = impersonation_headers(&caller("foo@example.com", &[], &[])).unwrap();
    let mut h = client_headers();
    imp.apply(&mut h);
    assert_eq!(values(&h, "impersonate-user"), ["foo@example.com"]);
    assert!(h.get("impersonate-group").is_none());
    assert!(h.get("impersonate-extra-scopes").is_none());
    // The proxy's own credential (set by the upstream transport) is not apply's business.
    assert_eq!(values(&h, "authorization"), ["Bearer client-token"]);
}

/// Every `Impersonate-*` header a caller sends is removed, including names kube-apiserver does not
/// read today (found by the `header_hygiene` fuzz target with the input `impersonate-z:`).
#[test]
fn every_impersonate_header_is_stripped_whatever_its_name() {
    let mut h = HeaderMap::new();
    for name in [
        "impersonate-z",
        "Impersonate-Future-Constraint",
        "IMPERSONATE-UID",
        "impersonate-",
    ] {
        h.append(
            http::header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_static("admin"),
        );
    }
    h.insert("x-impersonate-user-ish", HeaderValue::from_static("kept"));
    identity::strip_client_credentials(&mut h);
    assert!(
        !h.keys().any(|k| k.as_str().starts_with("impersonate-")),
        "{h:?}"
    );
    assert_eq!(values(&h, "x-impersonate-user-ish"), vec!["kept"]);
}
