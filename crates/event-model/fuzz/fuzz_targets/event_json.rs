//! Records (events and response records) of any content, as a recorder receives them: parsing
//! never panics, and an accepted record written as Go would write it reads back to the same
//! record, whose bytes are then stable (one normalisation, e.g. Go's `null` to `""`, at most).
#![no_main]

use event_model::{to_go_json, Record};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(record) = Record::from_slice(data) else {
        return;
    };
    let _ = record.idempotency_key();
    let wire = to_go_json(&record).expect("a parsed record serialises");
    assert!(wire.ends_with(b"\n"));
    let again = Record::from_slice(&wire).expect("a written record reads back");
    let wire_again = to_go_json(&again).expect("a parsed record serialises");
    assert_eq!(
        String::from_utf8_lossy(&wire),
        String::from_utf8_lossy(&wire_again)
    );
    assert_eq!(again.id(), record.id());
});
