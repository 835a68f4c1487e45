//! Parses a client byte stream into SPDY frames, as a session does, feeding every
//! header block through one persistent decompressor.
#![no_main]

use kube_sim::exec::spdy::frame::{self, Frame};
use kube_sim::exec::spdy::headers::HeaderDecoder;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut decoder = HeaderDecoder::new();
    let mut at = 0;
    while let Ok(Some((frame, used))) = frame::parse(&data[at..]) {
        assert!(used >= 8 && at + used <= data.len());
        at += used;
        match frame {
            Frame::SynStream { header_block, .. } | Frame::Headers { header_block, .. } => {
                if decoder.decode(&header_block).is_err() {
                    break;
                }
            }
            _ => {}
        }
    }
});
