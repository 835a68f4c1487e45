//! Feeds arbitrary bytes, split at an arbitrary point, to the ack-frame
//! decoder: it must never panic and never buffer more than its bound.
#![no_main]

use libfuzzer_sys::fuzz_target;
use recorder_client::{AckDecoder, AckFrame};

fuzz_target!(|data: &[u8]| {
    let Some((&cut, rest)) = data.split_first() else {
        return;
    };
    let cut = usize::from(cut).min(rest.len());
    let mut whole = AckDecoder::new(256);
    let mut split = AckDecoder::new(256);
    let a = whole.push(rest);
    let b = split.push(&rest[..cut]).and_then(|mut frames| {
        frames.extend(split.push(&rest[cut..])?);
        Ok(frames)
    });
    // Splitting must not change the result when both succeed.
    if let (Ok(a), Ok(b)) = (&a, &b) {
        assert_eq!(a, b);
        for f in a {
            if let AckFrame::Ack(n) = f {
                assert!(*n <= i64::MAX as u64);
            }
        }
    }
    let _ = whole.finish();
});
