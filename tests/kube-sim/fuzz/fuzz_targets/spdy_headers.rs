//! Decompresses and parses SPDY/3 header blocks.
#![no_main]

use kube_sim::exec::spdy::headers::{parse_block, HeaderDecoder};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = parse_block(data);
    let mut decoder = HeaderDecoder::new();
    for chunk in data.split(|b| *b == 0xff) {
        let _ = decoder.decode(chunk);
    }
});
