//! "Never looser than the input says": checks shared by the proptests (`tests/proptest_*.rs`) and
//! the fuzz targets (`fuzz/fuzz_targets/*.rs`). Each check panics on a violation.
#![allow(dead_code)] // each fuzz target uses only some of these checks

use identity::{
    impersonation_headers, Caller, CapMap, IdentityFile, RecordingRules, KUBERNETES_CAP,
    LEGACY_KUBERNETES_CAP,
};
use serde_json::Value;

/// Go's `encoding/json` matches keys case-insensitively (with Unicode simple folding), so any key
/// that folds to `name` is, to upstream, that key.
fn folds_to(key: &str, name: &str) -> bool {
    let fold = |s: &str| -> String {
        s.chars()
            .flat_map(char::to_lowercase)
            .map(|c| if c == '\u{17f}' { 's' } else { c })
            .collect()
    };
    fold(key) == fold(name)
}

fn fields<'a>(rule: &'a Value, name: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    rule.as_object()
        .into_iter()
        .flat_map(|o| o.iter())
        .filter(move |(k, _)| folds_to(k, name))
        .map(|(_, v)| v)
}

/// Checks the merged recording rules of `caps` against what the raw rules say.
pub fn check_recording_rules(caps: &CapMap) {
    let Ok(policy) = RecordingRules::from_caps(caps) else {
        return; // An error means "refuse": never looser.
    };
    let rules: &[Value] = caps.get(KUBERNETES_CAP).map(Vec::as_slice).unwrap_or(&[]);
    let enforce = rules
        .iter()
        .any(|r| fields(r, "enforceRecorder").any(|v| v != &Value::Bool(false) && !v.is_null()));
    if enforce {
        assert!(
            !policy.fail_open,
            "a rule enforces recording but the policy fails open: {rules:?}"
        );
    }
    let events = rules
        .iter()
        .any(|r| fields(r, "enableEvents").any(|v| v != &Value::Bool(false) && !v.is_null()));
    if events {
        assert!(
            policy.enable_events,
            "a rule enables events but the policy does not: {rules:?}"
        );
    }
    let addrs: usize = rules
        .iter()
        .flat_map(|r| fields(r, "recorderAddrs"))
        .map(|v| v.as_array().map_or(0, Vec::len))
        .sum();
    assert_eq!(
        policy.recorder_addrs.len(),
        addrs,
        "recorder addresses were dropped or invented: {rules:?}"
    );
    if rules.is_empty() {
        assert_eq!(policy, RecordingRules::default());
    }
}

/// Checks the impersonation of a caller against the raw rules: every granted group is sent, and
/// nothing but granted groups (or, for a tagged node without groups, its tags) is sent.
pub fn check_impersonation(caller: &Caller) {
    let Ok(imp) = impersonation_headers(caller) else {
        return; // An error means "refuse".
    };
    let mut rules: &[Value] = caller
        .caps
        .get(KUBERNETES_CAP)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    if rules.is_empty() {
        rules = caller
            .caps
            .get(LEGACY_KUBERNETES_CAP)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
    }
    let granted: Vec<&str> = rules
        .iter()
        .flat_map(|r| fields(r, "impersonate"))
        .flat_map(|i| fields(i, "groups"))
        .flat_map(|g| g.as_array().into_iter().flatten())
        .filter_map(Value::as_str)
        .collect();
    for group in &granted {
        assert!(
            imp.groups().iter().any(|g| g == group),
            "granted group {group:?} not sent"
        );
    }
    for group in imp.groups() {
        let from_tags = granted.is_empty() && caller.identity.tags.contains(group);
        assert!(
            granted.contains(&group.as_str()) || from_tags,
            "group {group:?} sent but never granted"
        );
    }
    let mut unique = imp.groups().to_vec();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), imp.groups().len(), "duplicate groups sent");
    if caller.identity.is_tagged() {
        assert_eq!(imp.user(), caller.identity.node_name);
    } else {
        assert_eq!(imp.user(), caller.identity.login_name);
    }
    assert!(!imp.user().is_empty());
}

/// Checks every entry of a successfully parsed identity file.
pub fn check_identity_file(file: &IdentityFile) {
    for entry in &file.entries {
        let caller = Caller::from(entry.to_response());
        assert!(
            RecordingRules::from_caps(&caller.caps).is_ok(),
            "identity file accepted with a bad grant"
        );
        assert!(
            impersonation_headers(&caller).is_ok(),
            "identity file accepted an entry that cannot be impersonated"
        );
        assert!(!entry.sources.is_empty() || entry.cert_subject.is_some());
        check_recording_rules(&caller.caps);
        check_impersonation(&caller);
    }
}
