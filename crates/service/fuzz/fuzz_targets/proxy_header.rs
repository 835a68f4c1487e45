//! PROXY protocol headers from hostile peers, as every listener with `--proxy-protocol` reads
//! them (`service::conn`): parsing never panics, and the streaming reader never reads past the
//! header nor loops forever; what it accepts is exactly what parsing the bytes it read says.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use service::conn::{parse_header, read_header};

fuzz_target!(|data: &[u8]| {
    let whole = parse_header(data);
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
    else {
        return;
    };
    let mut cursor = std::io::Cursor::new(data.to_vec());
    let read = rt.block_on(read_header(&mut cursor, Duration::from_secs(1)));
    let used = usize::try_from(cursor.position()).expect("a cursor position fits");
    assert!(used <= data.len());
    if let Ok(peer) = read {
        // The bytes read are one complete header, and they alone say who the peer is.
        let alone = parse_header(&data[..used]).expect("the header read parses alone");
        assert_eq!(alone, peer);
        if used == data.len() {
            assert_eq!(whole.ok(), Some(peer));
        }
    }
});
