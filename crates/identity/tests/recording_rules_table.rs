//! Mirrors upstream `Test_determineRecorderConfig` (`docs/tailscale-protocol.md#merging-grants`).
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;

use identity::{CapMap, GrantError, RecordingRules, KUBERNETES_CAP, LEGACY_KUBERNETES_CAP};
use serde_json::Value;

fn caps(entries: &[(&str, &[&str])]) -> CapMap {
    entries
        .iter()
        .map(|(cap, rules)| {
            (
                (*cap).to_owned(),
                rules
                    .iter()
                    .map(|r| serde_json::from_str::<Value>(r).unwrap())
                    .collect(),
            )
        })
        .collect()
}

fn addrs(list: &[&str]) -> Vec<SocketAddr> {
    list.iter().map(|a| a.parse().unwrap()).collect()
}

const V6: &str = "[fd7a:115c:a1e0:ab12:4843:cd96:626a:4652]:80";

#[test]
fn two_ips_fail_closed() {
    let p = RecordingRules::from_caps(&caps(&[(
        KUBERNETES_CAP,
        &[r#"{"recorderAddrs":["[fd7a:115c:a1e0:ab12:4843:cd96:626a:4652]:80","100.99.99.99:80"],"enforceRecorder":true}"#],
    )]))
    .unwrap();
    assert_eq!(
        p,
        RecordingRules {
            recorder_addrs: addrs(&[V6, "100.99.99.99:80"]),
            recorder_tags: vec![],
            fail_open: false,
            enable_events: false
        }
    );
}

#[test]
fn two_ips_fail_open() {
    let p = RecordingRules::from_caps(&caps(&[(
        KUBERNETES_CAP,
        &[r#"{"recorderAddrs":["[fd7a:115c:a1e0:ab12:4843:cd96:626a:4652]:80","100.99.99.99:80"]}"#],
    )]))
    .unwrap();
    assert_eq!(
        p,
        RecordingRules {
            recorder_addrs: addrs(&[V6, "100.99.99.99:80"]),
            recorder_tags: vec![],
            fail_open: true,
            enable_events: false
        }
    );
}

#[test]
fn odd_rule_combination_across_three_rules() {
    let p = RecordingRules::from_caps(&caps(&[(
        KUBERNETES_CAP,
        &[
            r#"{"recorderAddrs":["[fd7a:115c:a1e0:ab12:4843:cd96:626a:4652]:80"]}"#,
            r#"{"recorderAddrs":["100.99.99.99:80","100.99.99.100:80"]}"#,
            r#"{"enforceRecorder":true,"impersonate":{"groups":["system:masters"]}}"#,
        ],
    )]))
    .unwrap();
    assert_eq!(
        p,
        RecordingRules {
            recorder_addrs: addrs(&[V6, "100.99.99.99:80", "100.99.99.100:80"]),
            recorder_tags: vec![],
            fail_open: false,
            enable_events: false
        }
    );
}

#[test]
fn no_caps() {
    let p = RecordingRules::from_caps(&CapMap::new()).unwrap();
    assert_eq!(
        p,
        RecordingRules {
            recorder_addrs: vec![],
            recorder_tags: vec![],
            fail_open: true,
            enable_events: false
        }
    );
    assert_eq!(p, RecordingRules::default());
}

#[test]
fn caps_without_recorder() {
    let p = RecordingRules::from_caps(&caps(&[
        ("foo", &[r#"{"x":"y"}"#]),
        (
            KUBERNETES_CAP,
            &[r#"{"impersonate":{"groups":["system:masters"]}}"#],
        ),
    ]))
    .unwrap();
    assert_eq!(p, RecordingRules::default());
}

#[test]
fn duplicates_kept_and_events_from_any_rule() {
    let p = RecordingRules::from_caps(&caps(&[(
        KUBERNETES_CAP,
        &[
            r#"{"recorderAddrs":["100.64.0.5:80"],"enableEvents":false}"#,
            r#"{"recorderAddrs":["100.64.0.5:80"],"enableEvents":true,"enforceRecorder":false}"#,
        ],
    )]))
    .unwrap();
    assert_eq!(p.recorder_addrs, addrs(&["100.64.0.5:80", "100.64.0.5:80"]));
    assert!(p.enable_events);
    assert!(p.fail_open);
}

#[test]
fn enforce_without_addresses_refuses_everything() {
    let p = RecordingRules::from_caps(&caps(&[(KUBERNETES_CAP, &[r#"{"enforceRecorder":true}"#])]))
        .unwrap();
    assert!(!p.fail_open && p.refuses_everything());
}

#[test]
fn legacy_cap_does_not_affect_recording() {
    let p = RecordingRules::from_caps(&caps(&[(
        LEGACY_KUBERNETES_CAP,
        &[r#"{"recorderAddrs":["100.64.0.5:80"],"enforceRecorder":true}"#],
    )]))
    .unwrap();
    assert_eq!(p, RecordingRules::default());
}

#[test]
fn unparsable_address_is_an_error_never_dropped() {
    for bad in [
        "100.64.0.5",
        "fd7a::5:80",
        "[fd7a::5]",
        "host.example:80",
        "",
        "100.64.0.5:99999",
    ] {
        let rule =
            serde_json::json!({"recorderAddrs": ["100.64.0.1:80", bad], "enforceRecorder": true})
                .to_string();
        let err =
            RecordingRules::from_caps(&caps(&[(KUBERNETES_CAP, &[rule.as_str()])])).unwrap_err();
        assert!(
            matches!(&err, GrantError::InvalidRecorderAddr { addr, index: 0, .. } if addr == bad),
            "{bad:?}: {err:?}"
        );
    }
}

#[test]
fn wrong_types_are_errors() {
    for rule in [
        "[]",
        "null",
        "\"x\"",
        r#"{"enforceRecorder":"true"}"#,
        r#"{"enableEvents":1}"#,
        r#"{"recorderAddrs":"100.64.0.1:80"}"#,
        r#"{"recorderAddrs":[80]}"#,
        r#"{"recorder":"tag:r"}"#,
        r#"{"impersonate":[]}"#,
        r#"{"enforcerecorder":true}"#,
    ] {
        let r = RecordingRules::from_caps(&caps(&[(KUBERNETES_CAP, &[rule])]));
        assert!(
            matches!(r, Err(GrantError::InvalidRule { .. })),
            "{rule}: {r:?}"
        );
    }
}

#[test]
fn null_fields_are_go_zero_values() {
    let p = RecordingRules::from_caps(&caps(&[(
        KUBERNETES_CAP,
        &[r#"{"recorderAddrs":null,"enforceRecorder":null,"enableEvents":null,"impersonate":null,"recorder":null}"#],
    )]))
    .unwrap();
    assert_eq!(p, RecordingRules::default());
}
