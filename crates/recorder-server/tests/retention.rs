//! Retention: the sweep deletes exactly the sealed segments and sessions past retention, names
//! them in a signed manifest (so `verify` stays clean and lists them), stops under legal hold,
//! and never deletes what an export cursor has not passed.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use common::*;
use kubescribe_recorder::record::{record_id, RecordKind};
use kubescribe_recorder::storage::disk::DiskStorage;
use kubescribe_recorder::storage::layout::{batch_key, session_key};
use kubescribe_recorder::storage::Storage;
use kubescribe_recorder::tamper::verify::{verify, VerifyOptions};
use uuid::Uuid;

fn ago(days: u64) -> Uuid {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    Uuid::new_v7(uuid::Timestamp::from_unix(
        uuid::NoContext,
        now - days * 86_400,
        0,
    ))
}

/// Three records of commit `batch`, with their recorder ids.
fn records(batch: &Uuid) -> Bytes {
    let mut out = Vec::new();
    for n in 0..3 {
        let mut v: serde_json::Value =
            serde_json::from_slice(&event_json("get", &format!("p{n}"), None)).unwrap();
        v["id"] = record_id(RecordKind::Event, batch, n).into();
        out.extend(serde_json::to_vec(&v).unwrap());
        out.push(b'\n');
    }
    Bytes::from(out)
}

struct Store {
    /// Segments past 7 days, oldest first.
    old_segments: Vec<String>,
    recent_segment: String,
    old_session: String,
    recent_session: String,
}

/// A disk store with sealed segments 12, 11 and 10 days old and 1 day old, and a session 10
/// days old and one 1 day old.
async fn store(data: &Path) -> Store {
    let storage = DiskStorage::open(data).unwrap();
    let batches = [ago(12), ago(11), ago(10), ago(1)];
    for b in &batches {
        storage
            .append_records(RecordKind::Event, b, records(b))
            .await
            .unwrap();
    }
    storage.recover_records().await.unwrap(); // seals them all
    let cast =
        Bytes::from_static(b"{\"version\":2,\"width\":80,\"height\":24}\n[0.1,\"o\",\"x\"]\n");
    let (old, recent) = (ago(10), ago(1));
    storage.put(&session_key(&old), cast.clone()).await.unwrap();
    storage.put(&session_key(&recent), cast).await.unwrap();
    let key = |b: &Uuid| batch_key(RecordKind::Event, b).to_string();
    Store {
        old_segments: batches[..3].iter().map(key).collect(),
        recent_segment: key(&batches[3]),
        old_session: session_key(&old).to_string(),
        recent_session: session_key(&recent).to_string(),
    }
}

async fn start(data: &Path, extra: &[&str]) -> Arc<dyn Storage> {
    let storage: Arc<dyn Storage> = Arc::new(DiskStorage::open(data).unwrap());
    let mut args = vec!["--insecure-allow-any-uploader"];
    args.extend_from_slice(extra);
    kubescribe_recorder::spawn(config(&args), storage.clone())
        .await
        .unwrap();
    storage
}

fn exists(data: &Path, key: &str) -> bool {
    data.join(key).exists()
}

const RETAIN: &[&str] = &["--retain-events-days", "7", "--retain-sessions-days", "7"];

#[tokio::test]
async fn retention_deletes_exactly_the_expired_sealed_objects_and_verify_lists_them() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let s = store(&data).await;
    let storage = start(&data, RETAIN).await;

    for key in &s.old_segments {
        assert!(!exists(&data, key), "{key} past retention");
    }
    assert!(!exists(&data, &s.old_session));
    assert!(exists(&data, &s.recent_segment));
    assert!(exists(&data, &s.recent_session));

    let report = verify(&*storage, &VerifyOptions::default()).await.unwrap();
    assert!(report.findings.is_empty(), "{report:?}");
    let mut deleted: Vec<String> = report
        .deleted_by_retention
        .iter()
        .map(|d| d.object.clone())
        .collect();
    deleted.sort();
    let mut want = s.old_segments.clone();
    want.push(s.old_session.clone());
    want.sort();
    assert_eq!(deleted, want);
    assert!(report.deleted_by_retention[0]
        .reason
        .starts_with("retention:"));
    assert_eq!(report.records_verified, 3, "{report:?}");
    assert_eq!(report.sessions_verified, 1, "{report:?}");

    // Without retention flags nothing more goes; a restart keeps the chain clean.
    let storage = start(&data, &[]).await;
    assert!(exists(&data, &s.recent_segment));
    let report = verify(&*storage, &VerifyOptions::default()).await.unwrap();
    assert!(report.findings.is_empty(), "{report:?}");
    assert_eq!(report.deleted_by_retention.len(), 4);
}

#[tokio::test]
async fn legal_hold_stops_all_deletion() {
    // By flag.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let s = store(&data).await;
    let mut args = RETAIN.to_vec();
    args.push("--legal-hold");
    start(&data, &args).await;
    assert!(s.old_segments.iter().all(|k| exists(&data, k)));
    assert!(exists(&data, &s.old_session));

    // By marker object.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let s = store(&data).await;
    std::fs::create_dir_all(data.join("_kubescribe")).unwrap();
    std::fs::write(data.join("_kubescribe/legal-hold"), b"case 2026-17\n").unwrap();
    let storage = start(&data, RETAIN).await;
    assert!(s.old_segments.iter().all(|k| exists(&data, k)));
    assert!(exists(&data, &s.old_session));
    let report = verify(&*storage, &VerifyOptions::default()).await.unwrap();
    assert!(report.findings.is_empty() && report.deleted_by_retention.is_empty());
}

#[tokio::test]
async fn segments_holding_records_no_export_cursor_has_passed_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let s = store(&data).await;
    // Two sinks: the lowest cursor is at the last record of the oldest segment.
    let first = s.old_segments[0].rsplit('/').next().unwrap();
    let first = first.trim_end_matches(".ndjson");
    let second = s.old_segments[1].rsplit('/').next().unwrap();
    let second = second.trim_end_matches(".ndjson");
    for (sink, after) in [
        ("siem", format!("e-{first}-2")),
        ("files", format!("e-{second}-0")),
    ] {
        let d = data.join("_kubescribe/export").join(sink);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(
            d.join("cursor"),
            serde_json::json!({ "after": after }).to_string(),
        )
        .unwrap();
    }
    let storage = start(&data, RETAIN).await;
    assert!(!exists(&data, &s.old_segments[0]), "exported by every sink");
    assert!(
        exists(&data, &s.old_segments[1]),
        "its records 1 and 2 are not exported to siem yet"
    );
    assert!(exists(&data, &s.old_segments[2]));
    assert!(!exists(&data, &s.old_session), "sessions are not exported");
    let report = verify(&*storage, &VerifyOptions::default()).await.unwrap();
    assert!(report.findings.is_empty(), "{report:?}");
    assert_eq!(report.deleted_by_retention.len(), 2);
}

#[tokio::test]
async fn on_s3_retention_deletes_expired_commit_objects() {
    let weed = Seaweed::start("recordings").unwrap_or_else(|e| panic!("{e}"));
    let storage: Arc<dyn Storage> = Arc::new(weed.storage(S3_SECRET).unwrap());
    let (old, recent) = (ago(10), ago(1));
    for b in [&old, &recent] {
        storage
            .append_records(RecordKind::Event, b, records(b))
            .await
            .unwrap();
    }
    let args = ["--insecure-allow-any-uploader", "--retain-events-days", "7"];
    kubescribe_recorder::spawn(config(&args), storage.clone())
        .await
        .unwrap();
    let left = list_keys(&*storage, "events/").await;
    assert_eq!(
        left,
        vec![batch_key(RecordKind::Event, &recent).to_string()]
    );
    let report = verify(&*storage, &VerifyOptions::default()).await.unwrap();
    assert!(report.findings.is_empty(), "{report:?}");
    assert_eq!(report.deleted_by_retention.len(), 1);
    assert_eq!(
        report.deleted_by_retention[0].object,
        batch_key(RecordKind::Event, &old).to_string()
    );
}
