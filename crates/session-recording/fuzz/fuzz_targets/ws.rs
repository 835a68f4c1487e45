//! Fuzzes the WebSocket (v4/v5.channel.k8s.io) tap (both directions, any chunking).
#![no_main]

mod common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    common::drive(session_recording::Protocol::WebSocket, data);
});
