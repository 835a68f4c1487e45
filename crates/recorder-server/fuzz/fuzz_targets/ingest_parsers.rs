//! Everything the recorder parses from the network: records (events and
//! response records), cast lines, record and session ids, storage keys; and
//! what it reads back from storage that anyone with write access could have
//! written: manifests, chains objects, segments hashed in chunks.
#![no_main]

use kubescribe_recorder::access::Uploader;
use kubescribe_recorder::pipeline::{check_line, prepare};
use kubescribe_recorder::record::{order_key, parse_session_id};
use kubescribe_recorder::storage::layout;
use kubescribe_recorder::tamper::chain::{ChainBuilder, SegmentChain};
use kubescribe_recorder::tamper::manifest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let uploader = Uploader {
        node: "proxy.example.ts.net".into(),
        node_id: "nProxy".into(),
        label: "fuzz".into(),
    };
    if let Ok(prepared) = prepare(data, &uploader) {
        // The id slot the committer fills is where the encoder put it.
        assert_eq!(&prepared.line[prepared.id_at..prepared.id_at + 1], b"\"");
    }
    for n in 1..=2 {
        let _ = check_line(n, data, 1 << 20);
    }
    let _ = manifest::decode(data);
    let _ = manifest::decode_chains(data);
    // However a segment is cut into chunks, its chain is the same.
    let mut builder = ChainBuilder::default();
    let (a, b) = data.split_at(data.len() / 3);
    builder.feed(a);
    builder.feed(b);
    assert_eq!(builder.finish(), SegmentChain::of(data));
    if let Ok(text) = std::str::from_utf8(data) {
        if let Some(loc) = layout::parse_record_id(text) {
            assert!(!loc.key.as_str().contains(".."));
        }
        let _ = order_key(text);
        let _ = parse_session_id(text);
        if let Some((key, _)) = layout::parse_key(text) {
            assert_eq!(key.as_str(), text);
        }
    }
});
