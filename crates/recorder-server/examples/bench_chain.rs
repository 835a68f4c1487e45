//! The floor of tamper evidence: how fast one core computes a segment's
//! chain ([`ChainBuilder`]: a SHA-256 leaf per record and a link per record)
//! and a plain SHA-256 of the same bytes (every byte hashed once, nothing
//! else), over 64 MiB of records shaped like `bench_ingest`'s, from memory.
//!
//! `cargo run --release -p kubescribe-recorder --example bench_chain`
//!
//! Dividing `bench_ingest`'s stored bytes per second by these rates gives
//! the share of one core that hashing alone needs at that ingest rate.

use std::time::Instant;

use kubescribe_recorder::tamper::chain::ChainBuilder;
use sha2::{Digest, Sha256};

fn main() {
    let record = concat!(
        r#"{"type":"kubernetes-api-request","id":"0190f0c2-6e4b-7c3a-9f1e-2b7d5a9c8e41","timestamp":1767225600,"#,
        r#""userAgent":"kubectl/v1.35.0 (linux/amd64) kubernetes/0000000","request":{"method":"GET","#,
        r#""path":"/api/v1/namespaces/default/pods/web-1","body":"","queryParameters":{}},"kubernetes":{"#,
        r#""IsResourceRequest":true,"Path":"/api/v1/namespaces/default/pods/web-1","Verb":"get","APIPrefix":"api","#,
        r#""APIGroup":"","APIVersion":"v1","Namespace":"default","Resource":"pods","Subresource":"","Name":"web-1","#,
        r#""Parts":["pods","web-1"],"FieldSelector":"","LabelSelector":""},"source":{"node":"laptop.tail1234.ts.net","#,
        r#""nodeID":"nAbC123CNTRL","nodeUserID":4242,"nodeUser":"alice@example.com"},"destination":{"node":"","#,
        r#""nodeID":""},"kubescribe":{"key":"bench-1-1"}}"#,
        "\n"
    );
    let segment: Vec<u8> = record.as_bytes().repeat((64 << 20) / record.len());
    let records = segment.len() / record.len();
    println!(
        "record {} bytes, segment {} MiB, {} records",
        record.len(),
        segment.len() >> 20,
        records
    );
    for _ in 0..3 {
        let start = Instant::now();
        let mut builder = ChainBuilder::default();
        for chunk in segment.chunks(4 << 20) {
            builder.feed(chunk);
        }
        let chain = builder.finish();
        let chain_secs = start.elapsed().as_secs_f64();
        assert_eq!(chain.leaves.len(), records);
        let start = Instant::now();
        let digest = Sha256::digest(&segment);
        let sha_secs = start.elapsed().as_secs_f64();
        println!(
            "chain: {:.0} MB/s, {:.0} records/s per core; plain SHA-256: {:.0} MB/s ({:02x})",
            segment.len() as f64 / chain_secs / 1e6,
            records as f64 / chain_secs,
            segment.len() as f64 / sha_secs / 1e6,
            digest[0]
        );
    }
}
