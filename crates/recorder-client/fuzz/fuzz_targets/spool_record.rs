//! Reads arbitrary bytes as a spool segment body: never a panic, the valid
//! prefix never exceeds the input, and every record read re-encodes to the
//! exact bytes it was read from (nothing is misread).
#![no_main]

use libfuzzer_sys::fuzz_target;
use recorder_client::spool::format::{encode, scan};

fuzz_target!(|data: &[u8]| {
    let (records, valid, _torn) = scan(data);
    assert!(valid as usize <= data.len());
    for (offset, record) in &records {
        let bytes = encode(record).expect("a decoded record re-encodes");
        let start = *offset as usize;
        assert_eq!(&data[start..start + bytes.len()], bytes.as_slice());
    }
});
