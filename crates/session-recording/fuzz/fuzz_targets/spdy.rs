//! Fuzzes the SPDY/3.1 tap (both directions, any chunking).
#![no_main]

mod common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    common::drive(session_recording::Protocol::Spdy, data);
});
