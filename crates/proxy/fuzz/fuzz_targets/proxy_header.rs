//! PROXY protocol headers from hostile peers: parsing never panics, and the
//! streaming reader never reads past what the header says nor loops forever.
#![no_main]

use std::time::Duration;

use kubescribe_proxy::{parse_header, read_header};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = parse_header(data);
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
    else {
        return;
    };
    let mut cursor = std::io::Cursor::new(data.to_vec());
    let _ = rt.block_on(read_header(&mut cursor, Duration::from_secs(1)));
    assert!(cursor.position() as usize <= data.len());
});
