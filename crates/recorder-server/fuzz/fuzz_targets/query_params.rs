//! Query strings of any content on the query API's lists (`/api/v1/events`, `/api/v1/sessions`):
//! decoding and filter parsing never panic, an empty query is always accepted, and a refusal
//! always says what was wrong.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    for answer in kubescribe_recorder::check_query(&text) {
        if text.is_empty() {
            assert_eq!(answer, Ok(()));
        }
        if let Err(refusal) = answer {
            assert!(!refusal.is_empty());
        }
    }
});
