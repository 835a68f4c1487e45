//! Grant rules of any shape: `RecordingRules::from_caps` and `impersonation_headers` never panic
//! and never yield a policy looser than the rules say. Input: a JSON list of rules (or any JSON,
//! taken as one rule), used under both the new and the legacy capability name.
#![no_main]

#[path = "../../tests/support/invariants.rs"]
mod invariants;

use identity::{Caller, CapMap, WhoIsResponse, KUBERNETES_CAP, LEGACY_KUBERNETES_CAP};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let rules = match value {
        Value::Array(rules) => rules,
        other => vec![other],
    };
    for cap in [KUBERNETES_CAP, LEGACY_KUBERNETES_CAP] {
        let mut caps = CapMap::new();
        caps.insert(cap.to_owned(), rules.clone());
        invariants::check_recording_rules(&caps);
        for tagged in [false, true] {
            let mut response = WhoIsResponse::default();
            response.node.name = "node.ts.net.".into();
            response.node.stable_id = "nFuzz".into();
            if tagged {
                response.node.tags = vec!["tag:a".into(), "tag:b".into()];
            }
            response.user_profile.login_name = "fuzz@example.com".into();
            response.cap_map = caps.clone();
            invariants::check_impersonation(&Caller::from(response));
        }
    }
});
