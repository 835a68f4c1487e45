//! tailscaled WhoIs answers of any content: parsing, identity derivation and the operator's
//! explanation never panic; policy invariants hold.
#![no_main]

#[path = "../../tests/support/invariants.rs"]
mod invariants;

use identity::{Caller, Explanation, WhoIsResponse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(response) = WhoIsResponse::from_json(data) {
        let caller = Caller::from(response);
        invariants::check_recording_rules(&caller.caps);
        invariants::check_impersonation(&caller);
        let _ = Explanation::of("100.64.0.1:1".parse().unwrap(), caller).to_json_pretty();
    }
});
