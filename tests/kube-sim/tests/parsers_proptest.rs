//! Property tests for the parsers that read client input: SPDY frames, SPDY header
//! blocks (zlib + name/value pairs), Kubernetes protobuf bodies, selectors and patches.
#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use kube_sim::exec::spdy::frame::{self, Frame};
use kube_sim::exec::spdy::headers::{parse_block, HeaderDecoder, HeaderEncoder};
use proptest::prelude::*;

fn any_frame() -> impl Strategy<Value = Frame> {
    prop_oneof![
        (
            1u32..0x7fff_ffff,
            any::<u8>(),
            proptest::collection::vec(any::<u8>(), 0..512)
        )
            .prop_map(|(stream_id, flags, data)| Frame::Data {
                stream_id,
                flags,
                data: Bytes::from(data)
            }),
        (
            0u32..0x7fff_ffff,
            0u32..0x7fff_ffff,
            0u8..8,
            any::<u8>(),
            proptest::collection::vec(any::<u8>(), 0..128)
        )
            .prop_map(|(stream_id, associated_id, priority, flags, block)| {
                Frame::SynStream {
                    stream_id,
                    associated_id,
                    priority,
                    flags,
                    header_block: Bytes::from(block),
                }
            }),
        (0u32..0x7fff_ffff, any::<u32>())
            .prop_map(|(stream_id, status)| Frame::RstStream { stream_id, status }),
        any::<u32>().prop_map(|id| Frame::Ping { id }),
        (0u32..0x7fff_ffff, any::<u32>()).prop_map(|(last_stream_id, status)| Frame::GoAway {
            last_stream_id,
            status
        }),
        (0u32..0x7fff_ffff, 0u32..0x7fff_ffff)
            .prop_map(|(stream_id, delta)| Frame::WindowUpdate { stream_id, delta }),
    ]
}

proptest! {
    #[test]
    fn frame_parser_never_panics_and_never_overreads(input in proptest::collection::vec(any::<u8>(), 0..2048)) {
        if let Ok(Some((_, used))) = frame::parse(&input) {
            prop_assert!(used >= 8 && used <= input.len());
        }
    }

    #[test]
    fn frames_round_trip_even_when_split(frames in proptest::collection::vec(any_frame(), 1..6), split in any::<prop::sample::Index>()) {
        let wire: Vec<u8> = frames.iter().flat_map(|f| frame::serialize(f).to_vec()).collect();
        // Parsing a prefix yields only whole frames, never errors.
        let cut = split.index(wire.len() + 1);
        let mut at = 0;
        while let Some((_, used)) = frame::parse(&wire[at..cut]).unwrap() {
            at += used;
        }
        let mut parsed = Vec::new();
        let mut at = 0;
        while let Some((frame, used)) = frame::parse(&wire[at..]).unwrap() {
            parsed.push(frame);
            at += used;
        }
        prop_assert_eq!(parsed, frames);
    }

    #[test]
    fn header_decoder_survives_garbage(blocks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..256), 1..4)) {
        let mut decoder = HeaderDecoder::new();
        for block in blocks {
            let _ = decoder.decode(&block);
        }
    }

    #[test]
    fn header_blocks_round_trip(pairs in proptest::collection::vec(("[a-z][a-z0-9-]{0,15}", "[ -~]{0,40}"), 0..8)) {
        let mut unique: Vec<(String, String)> = Vec::new();
        for (name, value) in pairs {
            if !unique.iter().any(|(n, _)| *n == name) {
                unique.push((name, value));
            }
        }
        let borrowed: Vec<(&str, &str)> = unique.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        let mut encoder = HeaderEncoder::new();
        let mut decoder = HeaderDecoder::new();
        for _ in 0..2 {
            let decoded = decoder.decode(&encoder.encode(&borrowed).unwrap()).unwrap();
            prop_assert_eq!(&decoded, &unique);
        }
    }

    #[test]
    fn raw_header_blocks_never_panic(raw in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse_block(&raw);
    }

    #[test]
    fn protobuf_decoder_never_panics(tail in proptest::collection::vec(any::<u8>(), 0..512)) {
        let mut body = b"k8s\0".to_vec();
        body.extend_from_slice(&tail);
        let _ = kube_sim::protobuf::decode(&body);
    }

    #[test]
    fn selectors_never_panic(text in "[ -~]{0,64}") {
        let _ = kube_sim::selectors::LabelSelector::parse(&text);
        let _ = kube_sim::selectors::FieldSelector::parse(&text);
    }

    #[test]
    fn merge_patch_with_itself_is_identity(keys in proptest::collection::btree_map("[a-z]{1,6}", "[a-z]{0,6}", 0..8)) {
        let doc = serde_json::to_value(&keys).unwrap();
        prop_assert_eq!(kube_sim::patch::merge_patch(&doc, &doc), doc.clone());
        prop_assert_eq!(kube_sim::patch::strategic_merge(&doc, &doc).unwrap(), doc);
    }
}
