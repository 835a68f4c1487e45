//! Property tests: grant JSON and identity files of any shape never panic and never yield a policy
//! looser than the input says (see `support/invariants.rs`).
#![allow(clippy::unwrap_used)]

#[path = "support/invariants.rs"]
mod invariants;

use std::path::Path;

use identity::{
    Caller, CapMap, IdentityFile, WhoIsResponse, KUBERNETES_CAP, LEGACY_KUBERNETES_CAP,
};
use proptest::prelude::*;
use serde_json::{json, Map, Value};

/// Any JSON value, small.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        ".{0,12}".prop_map(Value::String),
        address().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..4)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// Keys: the real ones, their case/Unicode variants, and others.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("impersonate".to_owned()),
        Just("groups".to_owned()),
        Just("recorder".to_owned()),
        Just("recorderAddrs".to_owned()),
        Just("enforceRecorder".to_owned()),
        Just("enableEvents".to_owned()),
        Just("EnforceRecorder".to_owned()),
        Just("ENABLEEVENTS".to_owned()),
        Just("recorderaddrs".to_owned()),
        Just("enableEventſ".to_owned()),
        Just("Groups".to_owned()),
        "[a-zA-Z]{1,10}",
    ]
}

/// Recorder addresses: mostly valid, some not.
fn address() -> impl Strategy<Value = String> {
    prop_oneof![
        (any::<[u8; 4]>(), any::<u16>())
            .prop_map(|(ip, port)| format!("{}.{}.{}.{}:{port}", ip[0], ip[1], ip[2], ip[3])),
        (any::<[u16; 8]>(), any::<u16>())
            .prop_map(|(ip, port)| format!("[{}]:{port}", std::net::Ipv6Addr::from(ip))),
        "[0-9a-f:.\\[\\]]{0,20}",
    ]
}

/// A rule that is usually well-formed, so that the interesting paths get exercised.
fn plausible_rule() -> impl Strategy<Value = Value> {
    (
        prop::option::of(prop::collection::vec("[a-z:]{0,8}", 0..4)),
        prop::option::of(prop::collection::vec(address(), 0..3)),
        prop::option::of(any::<bool>()),
        prop::option::of(any::<bool>()),
        prop::option::of((key(), any_json())),
    )
        .prop_map(|(groups, addrs, enforce, events, extra)| {
            let mut rule = Map::new();
            if let Some(groups) = groups {
                rule.insert("impersonate".into(), json!({ "groups": groups }));
            }
            if let Some(addrs) = addrs {
                rule.insert("recorderAddrs".into(), json!(addrs));
            }
            if let Some(e) = enforce {
                rule.insert("enforceRecorder".into(), json!(e));
            }
            if let Some(e) = events {
                rule.insert("enableEvents".into(), json!(e));
            }
            if let Some((k, v)) = extra {
                rule.insert(k, v);
            }
            Value::Object(rule)
        })
}

fn rules() -> impl Strategy<Value = Vec<Value>> {
    prop::collection::vec(prop_oneof![3 => plausible_rule(), 1 => any_json()], 0..5)
}

fn caller(tags: Vec<String>, new: Vec<Value>, legacy: Vec<Value>) -> Caller {
    let mut caps = CapMap::new();
    caps.insert(KUBERNETES_CAP.to_owned(), new);
    caps.insert(LEGACY_KUBERNETES_CAP.to_owned(), legacy);
    let mut response = WhoIsResponse::default();
    response.node.name = "node.ts.net.".into();
    response.node.stable_id = "nX".into();
    response.node.tags = tags;
    response.user_profile.login_name = "user@example.com".into();
    response.cap_map = caps;
    Caller::from(response)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn recording_rules_are_never_looser_than_the_rules(rules in rules()) {
        let mut caps = CapMap::new();
        caps.insert(KUBERNETES_CAP.to_owned(), rules);
        invariants::check_recording_rules(&caps);
    }

    #[test]
    fn impersonation_sends_exactly_what_was_granted(
        tags in prop::collection::vec("tag:[a-z]{1,4}", 0..3),
        new in rules(),
        legacy in rules(),
    ) {
        let c = caller(tags, new, legacy);
        invariants::check_impersonation(&c);
        invariants::check_recording_rules(&c.caps);
    }

    #[test]
    fn whois_answers_of_any_shape_never_panic(value in any_json()) {
        let bytes = serde_json::to_vec(&value).unwrap();
        if let Ok(response) = WhoIsResponse::from_json(&bytes) {
            let c = Caller::from(response);
            invariants::check_recording_rules(&c.caps);
            invariants::check_impersonation(&c);
        }
    }

    #[test]
    fn identity_files_of_any_shape_never_panic_and_never_loosen(
        entries in prop::collection::vec(
            (
                prop::collection::vec("(10|100|127)\\.[0-9]{1,3}\\.0\\.0/(8|16|24|33)", 0..2),
                prop::option::of("CN=[a-z]{0,4}"),
                prop::option::of("[a-z]{0,5}\\.?"),
                prop::collection::vec("tag:[a-z]{1,3}", 0..2),
                prop::option::of("[a-z@.]{0,6}"),
                rules(),
                prop::option::of((key(), any_json())),
            ),
            0..4,
        ),
        as_json in any::<bool>(),
    ) {
        let entries: Vec<Value> = entries
            .into_iter()
            .map(|(sources, subject, name, tags, login, rules, extra)| {
                let mut e = Map::new();
                e.insert("sources".into(), json!(sources));
                if let Some(s) = subject { e.insert("certSubject".into(), json!(s)); }
                e.insert("Node".into(), json!({"StableID": "n", "Name": name, "Tags": tags}));
                e.insert("UserProfile".into(), json!({"LoginName": login}));
                e.insert("CapMap".into(), json!({ KUBERNETES_CAP: rules }));
                if let Some((k, v)) = extra { e.insert(k, v); }
                Value::Object(e)
            })
            .collect();
        let doc = json!({ "entries": entries });
        let text = if as_json {
            doc.to_string()
        } else {
            serde_yaml_ng::to_string(&doc).unwrap()
        };
        if let Ok(file) = IdentityFile::parse(text.as_bytes(), Path::new("prop.yaml")) {
            invariants::check_identity_file(&file);
        }
    }

    #[test]
    fn arbitrary_bytes_as_identity_file_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        if let Ok(file) = IdentityFile::parse(&bytes, Path::new("bytes")) {
            invariants::check_identity_file(&file);
        }
    }
}
