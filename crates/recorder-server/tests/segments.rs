//! Record segments on the disk back end: appends, hour and size rollover,
//! torn-tail recovery after a crash, restarts, lookups of records that are
//! not in the query index, and idempotency across a restart.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use common::*;
use http::StatusCode;
use kubescribe_recorder::record::{self, RecordKind};
use kubescribe_recorder::storage::disk::DiskStorage;
use kubescribe_recorder::storage::layout;
use kubescribe_recorder::storage::Storage;
use uuid::{NoContext, Timestamp, Uuid};

/// A batch id at `secs` (Unix) + `millis`: the injected clock.
fn batch_at(secs: u64, millis: u32) -> Uuid {
    Uuid::new_v7(Timestamp::from_unix(NoContext, secs, millis * 1_000_000))
}

/// 2026-11-28 10:59:59 UTC.
const BEFORE_11: u64 = 1_795_863_599;

/// The lines of one commit of `n` events, with their real ids.
fn lines(batch: &Uuid, n: usize) -> (Vec<String>, Bytes) {
    let mut ids = Vec::new();
    let mut data = Vec::new();
    for i in 0..n {
        let id = record::record_id(RecordKind::Event, batch, i);
        data.extend_from_slice(
            format!(
                "{{\"type\":\"kubernetes-api-request\",\"id\":\"{id}\",\"timestamp\":1,\"n\":{i}}}\n"
            )
            .as_bytes(),
        );
        ids.push(id);
    }
    (ids, Bytes::from(data))
}

/// Every segment file under `events/`, sorted.
fn segments(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.join("events")];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            if e.path().is_dir() {
                stack.push(e.path());
            } else {
                out.push(e.path());
            }
        }
    }
    out.sort();
    out
}

fn readonly(path: &Path) -> bool {
    std::fs::metadata(path).unwrap().permissions().readonly()
}

fn append_raw(path: &Path, bytes: &[u8]) {
    // Sealed segments are read-only; a test simulating a crash writes anyway.
    let mut p = std::fs::metadata(path).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    p.set_readonly(false);
    std::fs::set_permissions(path, p).unwrap();
    let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    std::io::Write::write_all(&mut f, bytes).unwrap();
}

#[tokio::test]
async fn commits_of_one_hour_share_a_segment_that_rolls_over_at_the_hour() {
    let dir = tempfile::tempdir().unwrap();
    let storage = DiskStorage::open(dir.path()).unwrap();
    let b1 = batch_at(BEFORE_11, 0);
    let b2 = batch_at(BEFORE_11, 500);
    let b3 = batch_at(BEFORE_11 + 1, 0); // 11:00:00.000
    let (_, d1) = lines(&b1, 2);
    let (_, d2) = lines(&b2, 3);
    let (_, d3) = lines(&b3, 1);
    storage
        .append_records(RecordKind::Event, &b1, d1.clone())
        .await
        .unwrap();
    storage
        .append_records(RecordKind::Event, &b2, d2.clone())
        .await
        .unwrap();
    // One segment, named after its first batch, holding both commits in order.
    let segs = segments(dir.path());
    assert_eq!(segs.len(), 1, "{segs:?}");
    let first = dir
        .path()
        .join(layout::batch_key(RecordKind::Event, &b1).as_str());
    assert_eq!(segs[0], first);
    assert!(first
        .to_str()
        .unwrap()
        .contains("events/date=2026-11-28/hour=10/"));
    assert_eq!(
        std::fs::read(&first).unwrap(),
        [&d1[..], &d2[..]].concat(),
        "appended in commit order"
    );
    assert!(!readonly(&first), "the open segment is still written to");

    // The next hour starts a new segment in its own partition; the old one is sealed.
    storage
        .append_records(RecordKind::Event, &b3, d3.clone())
        .await
        .unwrap();
    let segs = segments(dir.path());
    assert_eq!(segs.len(), 2, "{segs:?}");
    let second = dir
        .path()
        .join(layout::batch_key(RecordKind::Event, &b3).as_str());
    assert!(second
        .to_str()
        .unwrap()
        .contains("events/date=2026-11-28/hour=11/"));
    assert_eq!(std::fs::read(&second).unwrap(), &d3[..]);
    assert!(readonly(&first), "a closed segment is sealed read-only");
    assert_eq!(std::fs::read(&first).unwrap(), [&d1[..], &d2[..]].concat());
    // Responses have segments of their own.
    let (_, r) = lines(&b3, 1);
    storage
        .append_records(RecordKind::Response, &b3, r)
        .await
        .unwrap();
    assert!(dir
        .path()
        .join(layout::batch_key(RecordKind::Response, &b3).as_str())
        .is_file());
    assert_eq!(segments(dir.path()).len(), 2);
}

#[tokio::test]
async fn a_full_segment_is_closed_and_the_next_commit_starts_a_new_one() {
    let dir = tempfile::tempdir().unwrap();
    let storage = DiskStorage::open(dir.path())
        .unwrap()
        .with_segment_max_bytes(400);
    let mut expected = Vec::new();
    for i in 0..6 {
        let b = batch_at(BEFORE_11 - 100, i * 10);
        let (_, d) = lines(&b, 2); // 196 bytes per commit: two fit in 400
        storage
            .append_records(RecordKind::Event, &b, d.clone())
            .await
            .unwrap();
        expected.extend_from_slice(&d);
    }
    let segs = segments(dir.path());
    assert_eq!(segs.len(), 3, "{segs:?}");
    let mut all = Vec::new();
    for s in &segs {
        let data = std::fs::read(s).unwrap();
        assert!(data.len() <= 400, "{} bytes in {}", data.len(), s.display());
        all.extend_from_slice(&data);
    }
    assert_eq!(all, expected, "nothing lost or reordered across segments");
    assert!(readonly(&segs[0]) && readonly(&segs[1]) && !readonly(&segs[2]));
}

#[tokio::test]
async fn a_torn_tail_is_cut_at_restart_and_new_commits_go_to_a_new_segment() {
    let dir = tempfile::tempdir().unwrap();
    let storage = DiskStorage::open(dir.path()).unwrap();
    let b1 = batch_at(BEFORE_11 - 60, 0);
    let b2 = batch_at(BEFORE_11 - 60, 1);
    let (_, d1) = lines(&b1, 2);
    let (ids2, d2) = lines(&b2, 2);
    storage
        .append_records(RecordKind::Event, &b1, d1.clone())
        .await
        .unwrap();
    storage
        .append_records(RecordKind::Event, &b2, d2.clone())
        .await
        .unwrap();
    // "kill -9": the process is gone (lock released, segment not sealed)
    // while writing an unacknowledged commit.
    drop(storage);
    let seg = segments(dir.path()).remove(0);
    append_raw(
        &seg,
        b"{\"type\":\"kubernetes-api-request\",\"id\":\"e-torn",
    );

    let storage = DiskStorage::open(dir.path()).unwrap();
    assert_eq!(storage.recover_records().await.unwrap(), 1);
    let acknowledged = [&d1[..], &d2[..]].concat();
    assert_eq!(std::fs::read(&seg).unwrap(), acknowledged);
    assert!(readonly(&seg), "recovered segments are sealed");
    // Idempotent.
    assert_eq!(storage.recover_records().await.unwrap(), 0);

    // The restarted recorder never appends to the old segment.
    let b3 = batch_at(BEFORE_11 - 30, 0);
    let (_, d3) = lines(&b3, 1);
    storage
        .append_records(RecordKind::Event, &b3, d3.clone())
        .await
        .unwrap();
    let segs = segments(dir.path());
    assert_eq!(segs.len(), 2, "{segs:?}");
    assert_eq!(std::fs::read(&seg).unwrap(), acknowledged);
    assert_eq!(
        std::fs::read(
            dir.path()
                .join(layout::batch_key(RecordKind::Event, &b3).as_str())
        )
        .unwrap(),
        &d3[..]
    );
    // And records of every segment are still found.
    let loc = layout::parse_record_id(&ids2[1]).unwrap();
    let line = storage.read_record(&loc, &ids2[1]).await.unwrap().unwrap();
    assert_eq!(&line[..], d2.split(|b| *b == b'\n').nth(1).unwrap());
}

#[tokio::test]
async fn nul_bytes_after_a_power_loss_are_cut_with_everything_after_them() {
    let dir = tempfile::tempdir().unwrap();
    let storage = DiskStorage::open(dir.path()).unwrap();
    let b1 = batch_at(BEFORE_11 - 60, 0);
    let (_, d1) = lines(&b1, 3);
    storage
        .append_records(RecordKind::Event, &b1, d1.clone())
        .await
        .unwrap();
    drop(storage);
    let seg = segments(dir.path()).remove(0);
    // Unsynced blocks that never reached the disk read back as zeros; a
    // later block may have.
    append_raw(&seg, &[0u8; 4096]);
    append_raw(
        &seg,
        b"{\"type\":\"kubernetes-api-request\",\"id\":\"x\"}\n",
    );
    let storage = DiskStorage::open(dir.path()).unwrap();
    assert_eq!(storage.recover_records().await.unwrap(), 1);
    assert_eq!(std::fs::read(&seg).unwrap(), &d1[..]);

    // A segment with no complete line is removed.
    drop(storage);
    let b2 = batch_at(BEFORE_11 - 50, 0);
    let lonely = dir
        .path()
        .join(layout::batch_key(RecordKind::Event, &b2).as_str());
    std::fs::write(&lonely, b"{\"type\":\"kubernetes-api-req").unwrap();
    let storage = DiskStorage::open(dir.path()).unwrap();
    assert_eq!(storage.recover_records().await.unwrap(), 1);
    assert!(!lonely.exists());
}

#[tokio::test]
async fn lookups_match_only_a_records_own_id() {
    let dir = tempfile::tempdir().unwrap();
    let storage = DiskStorage::open(dir.path()).unwrap();
    let b1 = batch_at(BEFORE_11 - 60, 0);
    let b2 = batch_at(BEFORE_11 - 60, 5);
    let id = record::record_id(RecordKind::Event, &b2, 0);
    // An uploader-controlled nested field carrying b2's id, stored first.
    let spoof = format!(
        "{{\"type\":\"kubernetes-api-request\",\"id\":\"{}\",\"kubescribe\":{{\"x\":{{\"id\":\"{id}\"}}}}}}\n",
        record::record_id(RecordKind::Event, &b1, 0)
    );
    storage
        .append_records(RecordKind::Event, &b1, Bytes::from(spoof))
        .await
        .unwrap();
    let real = format!("{{\"type\":\"kubernetes-api-request\",\"id\":\"{id}\",\"real\":true}}\n");
    storage
        .append_records(RecordKind::Event, &b2, Bytes::from(real.clone()))
        .await
        .unwrap();
    let loc = layout::parse_record_id(&id).unwrap();
    let line = storage.read_record(&loc, &id).await.unwrap().unwrap();
    assert_eq!(&line[..], real.trim_end().as_bytes());
    // A record that does not exist.
    let missing = record::record_id(RecordKind::Event, &b2, 1);
    let loc = layout::parse_record_id(&missing).unwrap();
    assert!(storage.read_record(&loc, &missing).await.unwrap().is_none());
    // A batch before any segment of its hour finds nothing.
    let early = record::record_id(RecordKind::Event, &batch_at(BEFORE_11 - 70, 0), 0);
    let loc = layout::parse_record_id(&early).unwrap();
    assert!(storage.read_record(&loc, &early).await.unwrap().is_none());
}

/// A recorder on `data` (a fresh process stand-in) with a tiny query index.
async fn recorder_on(data: &Path, token: &Path) -> TestRecorder {
    let cfg = config(&[
        "--dst",
        data.to_str().unwrap(),
        "--upload-token-file",
        token.to_str().unwrap(),
        "--index-max-bytes",
        "1024",
    ]);
    let storage: Arc<dyn Storage> = Arc::new(DiskStorage::open(data).unwrap());
    let (addr, app) = kubescribe_recorder::spawn(cfg, storage).await.unwrap();
    TestRecorder {
        addr,
        app,
        dir: None,
    }
}

#[tokio::test]
async fn after_a_restart_keys_still_deduplicate_and_unindexed_events_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let token = token_file(dir.path());
    let data = dir.path().join("data");
    let first = recorder_on(&data, &token).await;
    let mut ids = Vec::new();
    for i in 0..40 {
        let (status, v) = post_event(
            first.addr,
            &event_json("get", &format!("pod-{i}"), Some(&format!("key-{i}"))),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        ids.push(v["id"].as_str().unwrap().to_owned());
    }
    // A recorder started on the same directory, as after a restart, rebuilds
    // its indexes from the segments (the first one stays idle from here on).
    let second = recorder_on(&data, &token).await;
    // Retries of stored events are answered with the stored ids.
    for i in [0, 17, 39] {
        let (status, v) = post_event(
            second.addr,
            &event_json("get", &format!("pod-{i}"), Some(&format!("key-{i}"))),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(v["duplicate"], true);
        assert_eq!(v["id"], ids[i].as_str());
    }
    // A new event goes to a new segment.
    let (status, v) = post_event(second.addr, &event_json("get", "new", Some("key-new"))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["duplicate"], false);
    assert_eq!(stored_lines(&data, "events").len(), 41);
    assert!(segments(&data).len() >= 2);
    // The 1 KiB index holds only the newest events; the oldest is read from
    // its segment.
    assert!(second.app.indexed_events() < 40);
    drop(first);
    for id in [&ids[0], &ids[1], &ids[39]] {
        let (status, v) = get_json(second.addr, &format!("/api/v1/events/{id}")).await;
        assert_eq!(status, StatusCode::OK, "{id}: {v}");
        assert_eq!(v["event"]["id"], id.as_str());
    }
}
