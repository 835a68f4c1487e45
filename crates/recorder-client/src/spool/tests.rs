//! Unit tests of the spool: append, redelivery order, restart, torn tails,
//! and both full policies.

use std::fs::OpenOptions;
use std::io::Write;

use super::*;

fn rec(n: u32) -> SpoolRecord {
    SpoolRecord {
        kind: RecordKind::Event,
        addrs: vec!["127.0.0.1:9".parse().unwrap()],
        key: format!("k{n}"),
        body: format!("{{\"n\":{n}}}\n").into_bytes(),
    }
}

fn cfg(dir: &Path) -> SpoolConfig {
    let mut c = SpoolConfig::new(dir);
    c.segment_bytes = 256;
    c.max_bytes = 4096;
    c.fsync = FsyncPolicy::Never;
    c
}

fn drain(spool: &Spool, batch: usize) -> Vec<String> {
    let mut keys = Vec::new();
    while let Some(p) = spool.peek(batch, usize::MAX).unwrap() {
        keys.extend(p.records.iter().map(|r| r.key.clone()));
        spool.commit(&p).unwrap();
    }
    keys
}

fn keys(range: std::ops::Range<u32>) -> Vec<String> {
    range.map(|n| format!("k{n}")).collect()
}

#[test]
fn redelivers_in_order_across_segments_and_deletes_them() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(cfg(dir.path()), Metrics::default()).unwrap();
    for n in 0..40 {
        spool.append(&rec(n)).unwrap();
    }
    assert_eq!(spool.pending(), 40);
    assert!(
        std::fs::read_dir(dir.path()).unwrap().count() > 3,
        "segments rotate"
    );
    assert_eq!(drain(&spool, 7), keys(0..40));
    assert_eq!(spool.pending(), 0);
    // Only the active segment and the cursor remain.
    let files: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".ksp"))
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
}

#[test]
fn peek_without_commit_repeats() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(cfg(dir.path()), Metrics::default()).unwrap();
    spool.append(&rec(1)).unwrap();
    let a = spool.peek(10, usize::MAX).unwrap().unwrap();
    let b = spool.peek(10, usize::MAX).unwrap().unwrap();
    assert_eq!(a.records, b.records);
}

#[test]
fn groups_only_records_with_the_same_destination() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(cfg(dir.path()), Metrics::default()).unwrap();
    spool.append(&rec(1)).unwrap();
    let mut other = rec(2);
    other.addrs = vec!["127.0.0.1:10".parse().unwrap()];
    spool.append(&other).unwrap();
    spool.append(&rec(3)).unwrap();
    let p = spool.peek(10, usize::MAX).unwrap().unwrap();
    assert_eq!(p.records.len(), 1);
    spool.commit(&p).unwrap();
    assert_eq!(drain(&spool, 10), keys(2..4));
}

#[test]
fn batches_mix_record_kinds_up_to_the_byte_cap() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(cfg(dir.path()), Metrics::default()).unwrap();
    let kinds = [
        RecordKind::Event,
        RecordKind::Response,
        RecordKind::RefusedEvent,
    ];
    for n in 0..9 {
        let mut r = rec(n);
        r.kind = kinds[n as usize % 3];
        spool.append(&r).unwrap();
    }
    // Each body is 8 bytes ({"n":N}\n): 20 bytes hold two records.
    let p = spool.peek(100, 20).unwrap().unwrap();
    assert_eq!(p.records.len(), 2);
    assert_eq!(p.records[0].kind, RecordKind::Event);
    assert_eq!(p.records[1].kind, RecordKind::Response);
    // A cap below one record still yields one.
    assert_eq!(spool.peek(100, 0).unwrap().unwrap().records.len(), 1);
    let p = spool.peek(100, usize::MAX).unwrap().unwrap();
    assert_eq!(
        p.records.iter().map(|r| r.kind).collect::<Vec<_>>(),
        (0..9).map(|n| kinds[n % 3]).collect::<Vec<_>>()
    );
}

#[test]
fn concurrent_synced_appends_are_all_there_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = cfg(dir.path());
    c.fsync = FsyncPolicy::Always;
    c.segment_bytes = 4096;
    c.max_bytes = 1 << 20;
    {
        let spool = std::sync::Arc::new(Spool::open(c.clone(), Metrics::default()).unwrap());
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let spool = spool.clone();
                std::thread::spawn(move || {
                    for n in 0..50 {
                        spool.append(&rec(t * 1000 + n)).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(spool.pending(), 400);
    }
    let spool = Spool::open(c, Metrics::default()).unwrap();
    assert_eq!(spool.pending(), 400);
    let mut got = drain(&spool, 64);
    got.sort();
    let mut want: Vec<String> = (0..8)
        .flat_map(|t| (0..50).map(move |n| format!("k{}", t * 1000 + n)))
        .collect();
    want.sort();
    assert_eq!(got, want);
}

#[test]
fn survives_restart_and_skips_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    {
        let spool = Spool::open(cfg(dir.path()), Metrics::default()).unwrap();
        for n in 0..10 {
            spool.append(&rec(n)).unwrap();
        }
        // Deliver the first three.
        let p = spool.peek(3, usize::MAX).unwrap().unwrap();
        spool.commit(&p).unwrap();
    }
    // Simulate a crash in the middle of an append: half a record at the end
    // of the newest segment.
    let newest = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "ksp"))
        .max()
        .unwrap();
    let torn = format::encode(&rec(99)).unwrap();
    OpenOptions::new()
        .append(true)
        .open(&newest)
        .unwrap()
        .write_all(&torn[..torn.len() / 2])
        .unwrap();
    let spool = Spool::open(cfg(dir.path()), Metrics::default()).unwrap();
    assert_eq!(spool.pending(), 7);
    spool.append(&rec(10)).unwrap();
    assert_eq!(drain(&spool, 4), keys(3..11));
    drop(spool);
    // Nothing is redelivered twice after a clean restart.
    let spool = Spool::open(cfg(dir.path()), Metrics::default()).unwrap();
    assert_eq!(spool.pending(), 0);
    assert!(spool.peek(10, usize::MAX).unwrap().is_none());
}

#[test]
fn drop_oldest_keeps_the_newest_within_bounds() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = Metrics::default();
    let spool = Spool::open(cfg(dir.path()), metrics.clone()).unwrap();
    for n in 0..500 {
        spool.append(&rec(n)).unwrap();
        assert!(spool.bytes() <= 4096);
    }
    let got = drain(&spool, 50);
    let dropped = metrics.dropped_count("any", "spool_full_oldest");
    assert_eq!(got.len() as u64 + dropped, 500);
    assert_eq!(got.last().map(String::as_str), Some("k499"));
    // What is left is a contiguous suffix, in order.
    let first: u32 = got[0][1..].parse().unwrap();
    assert_eq!(got, keys(first..500));
}

#[test]
fn refuse_keeps_the_oldest_within_bounds() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = cfg(dir.path());
    c.full_policy = SpoolFullPolicy::Refuse;
    let spool = Spool::open(c, Metrics::default()).unwrap();
    let mut accepted = 0;
    for n in 0..500 {
        match spool.append(&rec(n)) {
            Ok(()) => accepted += 1,
            Err(e) => assert_eq!(e, DropReason::SpoolFull),
        }
        assert!(spool.bytes() <= 4096);
    }
    assert!(accepted > 0 && accepted < 500);
    assert_eq!(drain(&spool, 50), keys(0..accepted));
    // Once drained there is room again.
    spool.append(&rec(1000)).unwrap();
}

#[test]
fn a_record_larger_than_the_spool_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(cfg(dir.path()), Metrics::default()).unwrap();
    let mut big = rec(0);
    big.body = vec![b'x'; 5000];
    assert_eq!(spool.append(&big), Err(DropReason::TooLarge));
}

#[test]
fn drop_oldest_while_reading_moves_the_reader() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = Metrics::default();
    let spool = Spool::open(cfg(dir.path()), metrics.clone()).unwrap();
    for n in 0..5 {
        spool.append(&rec(n)).unwrap();
    }
    let stale = spool.peek(2, usize::MAX).unwrap().unwrap();
    for n in 5..500 {
        spool.append(&rec(n)).unwrap();
    }
    // The peeked records were dropped meanwhile: committing them is a no-op.
    spool.commit(&stale).unwrap();
    let got = drain(&spool, 50);
    assert_eq!(got.last().map(String::as_str), Some("k499"));
    let dropped = metrics.dropped_count("any", "spool_full_oldest");
    assert!(dropped > 0);
    assert_eq!(got.len() as u64 + dropped, 500);
    let first: u32 = got[0][1..].parse().unwrap();
    assert_eq!(got, keys(first..500));
}
