//! One suite every storage back end must pass: the local directory, S3
//! against a real SeaweedFS server with SigV4 credentials, and S3 with
//! records batched through a local log (plus that log's own guarantees:
//! few objects, shipped within their age, recovered after a crash, each
//! record stored once).
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use bytes::Bytes;
use common::*;
use kubescribe_recorder::record::{self, RecordKind};
use kubescribe_recorder::storage::batched::{BatchOptions, BatchedStorage};
use kubescribe_recorder::storage::disk::DiskStorage;
use kubescribe_recorder::storage::fence::Fence;
use kubescribe_recorder::storage::layout;
use kubescribe_recorder::storage::{Storage, StorageError};

/// A writer that stands alone on its storage.
fn solo() -> Arc<Fence> {
    Arc::new(Fence::solo("suite"))
}

async fn suite(storage: Arc<dyn Storage>) {
    storage.check().await.unwrap();

    // Whole objects: atomic put, get, ranges, listing.
    let batch = record::new_id();
    let key = layout::batch_key(RecordKind::Event, &batch);
    let data = Bytes::from_static(b"{\"a\":1}\n{\"a\":2}\n");
    storage.put(&key, data.clone()).await.unwrap();
    assert_eq!(storage.get(key.as_str()).await.unwrap(), data);
    assert_eq!(
        &storage.get_range(key.as_str(), 8..100).await.unwrap()[..],
        b"{\"a\":2}\n"
    );
    assert!(storage
        .get_range(key.as_str(), 100..200)
        .await
        .unwrap()
        .is_empty());
    let listed = storage.list("events").await.unwrap();
    assert!(
        listed
            .iter()
            .any(|o| o.key == key.as_str() && o.size == data.len() as u64),
        "{listed:?}"
    );
    assert!(storage.list("responses").await.unwrap().is_empty());
    assert!(matches!(
        storage
            .get("events/date=2000-01-01/hour=00/missing.ndjson")
            .await,
        Err(kubescribe_recorder::storage::StorageError::NotFound(_))
    ));

    // Group commits: stored durably in the batch's partition, found by id.
    let mut ids = Vec::new();
    for n in [2usize, 3] {
        let batch = record::new_id();
        let mut data = Vec::new();
        for i in 0..n {
            let id = record::record_id(RecordKind::Response, &batch, i);
            data.extend_from_slice(
                format!(
                    "{{\"type\":\"kubescribe-api-response\",\"id\":\"{id}\",\"key\":\"k{i}\"}}\n"
                )
                .as_bytes(),
            );
            ids.push(id);
        }
        storage
            .append_records(RecordKind::Response, &batch, Bytes::from(data))
            .await
            .unwrap();
    }
    for id in &ids {
        let loc = layout::parse_record_id(id).unwrap();
        let line = storage.read_record(&loc, id).await.unwrap().unwrap();
        let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(v["id"], id.as_str());
    }
    let stored: usize = {
        let mut n = 0;
        for o in storage.list("responses").await.unwrap() {
            assert!(o.key.starts_with("responses/date="), "{o:?}");
            n += storage
                .get(&o.key)
                .await
                .unwrap()
                .split(|b| *b == b'\n')
                .filter(|l| !l.is_empty())
                .count();
        }
        n
    };
    assert_eq!(stored, 5);

    // A finished session: every append durable, then one object.
    let s1 = record::new_id();
    let k1 = layout::session_key(&s1);
    let mut sink = storage.create_session(&k1, &solo()).await.unwrap();
    assert_eq!(
        sink.append(Bytes::from_static(b"{\"version\":2}\n"))
            .await
            .unwrap(),
        14
    );
    assert_eq!(
        sink.append(Bytes::from_static(b"[0.5,\"o\",\"hi\"]\n"))
            .await
            .unwrap(),
        29
    );
    // Not listed while in progress.
    assert!(!storage
        .list("sessions")
        .await
        .unwrap()
        .iter()
        .any(|o| o.key == k1.as_str()));
    assert_eq!(sink.finish().await.unwrap(), 29);
    assert_eq!(
        &storage.get(k1.as_str()).await.unwrap()[..],
        b"{\"version\":2}\n[0.5,\"o\",\"hi\"]\n"
    );

    // A session cut short (the sink is dropped, as in a crash): recovered
    // with everything that was appended.
    let s2 = record::new_id();
    let k2 = layout::session_key(&s2);
    let mut sink = storage.create_session(&k2, &solo()).await.unwrap();
    sink.append(Bytes::from_static(b"{\"version\":2}\n"))
        .await
        .unwrap();
    sink.append(Bytes::from(
        vec![b'x'; 100_000]
            .into_iter()
            .chain(*b"\n")
            .collect::<Vec<u8>>(),
    ))
    .await
    .unwrap();
    drop(sink);
    let recovered = storage.recover_sessions(&|_| true).await.unwrap();
    assert_eq!(recovered.len(), 1, "{recovered:?}");
    assert_eq!(recovered[0].key, k2);
    assert_eq!(recovered[0].size, 14 + 100_001);
    let got = storage.get(k2.as_str()).await.unwrap();
    assert_eq!(got.len(), 14 + 100_001);
    assert!(got.starts_with(b"{\"version\":2}\n"));
    // Recovery is idempotent.
    assert!(storage
        .recover_sessions(&|_| true)
        .await
        .unwrap()
        .is_empty());
    let sessions: Vec<String> = storage
        .list("sessions")
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert!(
        sessions.contains(&k1.to_string()) && sessions.contains(&k2.to_string()),
        "{sessions:?}"
    );
    assert_eq!(sessions.len(), 2, "{sessions:?}");
}

#[tokio::test]
async fn disk_backend_passes_the_suite() {
    let dir = tempfile::tempdir().unwrap();
    suite(Arc::new(DiskStorage::open(dir.path()).unwrap())).await;
}

#[tokio::test]
async fn disk_recovery_cuts_an_unacknowledged_torn_line() {
    let dir = tempfile::tempdir().unwrap();
    let storage = DiskStorage::open(dir.path()).unwrap();
    let key = layout::session_key(&record::new_id());
    let mut sink = storage.create_session(&key, &solo()).await.unwrap();
    sink.append(Bytes::from_static(b"{\"version\":2}\n"))
        .await
        .unwrap();
    drop(sink);
    // Simulate a torn write after the last acknowledged line.
    let partial = dir.path().join(format!("{key}.partial"));
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&partial)
        .unwrap();
    std::io::Write::write_all(&mut f, b"[1.0,\"o\",\"torn").unwrap();
    let recovered = storage.recover_sessions(&|_| true).await.unwrap();
    assert_eq!(recovered[0].size, 14);
    assert_eq!(
        std::fs::read(dir.path().join(key.as_str())).unwrap(),
        b"{\"version\":2}\n"
    );
}

#[tokio::test]
async fn s3_backend_passes_the_suite_against_seaweedfs() {
    let weed = Seaweed::start("recordings").unwrap_or_else(|e| panic!("{e}"));
    suite(Arc::new(weed.storage(S3_SECRET).unwrap())).await;
}

#[tokio::test]
async fn s3_wrong_secret_is_a_clear_startup_error() {
    let weed = Seaweed::start("recordings").unwrap_or_else(|e| panic!("{e}"));
    let storage = weed.storage("not-the-secret").unwrap();
    let err = storage.check().await.unwrap_err().to_string();
    assert!(err.contains("cannot use bucket \"recordings\""), "{err}");
    assert!(err.contains("AWS_SECRET_ACCESS_KEY"), "{err}");
    // And through the binary: exits non-zero with the message, before listening.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kubescribe-recorder"))
        .args([
            "--admin-listen",
            "off",
            "--allow-readers",
            "loopback",
            "--listen",
            "127.0.0.1:0",
            "--insecure-allow-any-uploader",
            "--s3-allow-http",
            "--bucket",
            "recordings",
            "--signing-key",
            signing_key(),
        ])
        .arg("--dst")
        .arg(format!("s3://{}", weed.endpoint()))
        .env("AWS_ACCESS_KEY_ID", S3_KEY)
        .env("AWS_SECRET_ACCESS_KEY", "not-the-secret")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot use bucket"), "{stderr}");
    assert!(!stderr.contains("listening"), "{stderr}");
}

/// A fence of replica `owner` holding its lease for a minute.
fn leased(owner: &str) -> Arc<Fence> {
    let fence = Fence::leased(owner);
    fence.extend_to(std::time::Instant::now() + std::time::Duration::from_secs(60));
    Arc::new(fence)
}

const HEADER: &[u8] = b"{\"version\":2}\n";

#[tokio::test]
async fn s3_replicas_on_one_bucket_recover_only_sessions_they_may_and_write_only_while_leased() {
    use kubescribe_recorder::storage::StorageError;
    let weed = Seaweed::start("recordings").unwrap_or_else(|e| panic!("{e}"));
    let storage: Arc<dyn Storage> = Arc::new(weed.storage(S3_SECRET).unwrap());
    let (a, b) = (leased("replica-a-1"), leased("replica-b-1"));
    let ka = layout::session_key(&record::new_id());
    let kb = layout::session_key(&record::new_id());
    let mut sa = storage.create_session(&ka, &a).await.unwrap();
    let mut sb = storage.create_session(&kb, &b).await.unwrap();
    sa.append(Bytes::from_static(HEADER)).await.unwrap();
    sb.append(Bytes::from_static(HEADER)).await.unwrap();
    drop(sb);

    // Recovery that may take replica b's sessions only leaves a's live one alone.
    let recovered = storage
        .recover_sessions(&|owner| owner == Some("replica-b-1"))
        .await
        .unwrap();
    assert_eq!(
        recovered.iter().map(|r| &r.key).collect::<Vec<_>>(),
        vec![&kb]
    );
    assert_eq!(&storage.get(kb.as_str()).await.unwrap()[..], HEADER);
    assert_eq!(
        sa.append(Bytes::from_static(b"[1.0,\"o\",\"x\"]\n"))
            .await
            .unwrap(),
        HEADER.len() as u64 + 14
    );
    assert_eq!(sa.finish().await.unwrap(), HEADER.len() as u64 + 14);
    assert!(storage
        .recover_sessions(&|_| true)
        .await
        .unwrap()
        .is_empty());

    // A replica that does not hold its lease has nothing acknowledged.
    let lapsed = Arc::new(Fence::leased("replica-c-1"));
    let kc = layout::session_key(&record::new_id());
    let mut sc = storage.create_session(&kc, &lapsed).await.unwrap();
    assert!(matches!(
        sc.append(Bytes::from_static(HEADER)).await,
        Err(StorageError::LeaseLost { .. })
    ));

    // A session composed before a crash cut the deletion of its chunks
    // short: recovery deletes the leftovers and keeps the object as it is.
    let kd = layout::session_key(&record::new_id());
    let mut sd = storage.create_session(&kd, &a).await.unwrap();
    sd.append(Bytes::from_static(HEADER)).await.unwrap();
    drop(sd);
    storage
        .put(
            &kd,
            Bytes::from_static(b"{\"version\":2}\n[9.0,\"o\",\"all\"]\n"),
        )
        .await
        .unwrap();
    assert!(storage
        .recover_sessions(&|_| true)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        &storage.get(kd.as_str()).await.unwrap()[..],
        b"{\"version\":2}\n[9.0,\"o\",\"all\"]\n"
    );
    let leases = storage.leases().unwrap();
    let left = leases.list_modified("sessions/").await.unwrap();
    assert!(
        left.iter()
            .all(|(key, _)| !key.starts_with(kd.as_str()) || key == kd.as_str()),
        "{left:?}"
    );
}

#[tokio::test]
async fn s3_conditional_writes_let_one_writer_win() {
    use kubescribe_recorder::storage::PutCondition;
    let weed = Seaweed::start("recordings").unwrap_or_else(|e| panic!("{e}"));
    let storage = weed.storage(S3_SECRET).unwrap();
    let leases = storage.leases().unwrap();
    let key = layout::session_key(&record::new_id());
    assert!(leases.read_versioned(&key).await.unwrap().is_none());
    assert!(leases
        .put_if(&key, Bytes::from_static(b"one"), PutCondition::Absent)
        .await
        .unwrap());
    assert!(!leases
        .put_if(&key, Bytes::from_static(b"two"), PutCondition::Absent)
        .await
        .unwrap());
    let one = leases.read_versioned(&key).await.unwrap().unwrap();
    assert_eq!(&one.data[..], b"one");
    assert!(one.modified_ms > 1_700_000_000_000);
    assert!(leases
        .put_if(
            &key,
            Bytes::from_static(b"three"),
            PutCondition::Matches(one.etag.clone())
        )
        .await
        .unwrap());
    assert!(
        !leases
            .put_if(
                &key,
                Bytes::from_static(b"four"),
                PutCondition::Matches(one.etag)
            )
            .await
            .unwrap(),
        "a stale entity tag loses"
    );
    assert_eq!(
        &leases.read_versioned(&key).await.unwrap().unwrap().data[..],
        b"three"
    );
}

/// The batched S3 back end on `weed`'s bucket, its log in `dir`, shipping at `max_age`. A log
/// just dropped (a crash, in these tests) is released once its shipper notices: retried.
async fn batched(weed: &Seaweed, dir: &std::path::Path, max_age_ms: u64) -> BatchedStorage {
    for _ in 0..100 {
        match BatchedStorage::open(
            weed.storage(S3_SECRET).unwrap(),
            BatchOptions {
                dir: dir.to_path_buf(),
                max_bytes: 64 << 20,
                max_age: std::time::Duration::from_millis(max_age_ms),
            },
        )
        .await
        {
            Ok(storage) => return storage,
            Err(StorageError::Locked { .. }) => {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await
            }
            Err(e) => panic!("{e}"),
        }
    }
    panic!("the log stayed locked");
}

/// One commit of `n` event records; returns their ids.
async fn commit_events(storage: &dyn Storage, n: usize) -> Vec<String> {
    let batch = record::new_id();
    let mut data = Vec::new();
    let mut ids = Vec::new();
    for i in 0..n {
        let id = record::record_id(RecordKind::Event, &batch, i);
        data.extend_from_slice(
            format!("{{\"type\":\"kubernetes-api-request\",\"id\":\"{id}\",\"n\":{i}}}\n")
                .as_bytes(),
        );
        ids.push(id);
    }
    storage
        .append_records(RecordKind::Event, &batch, Bytes::from(data))
        .await
        .unwrap();
    ids
}

/// The log's segment files.
fn log_segments(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    ndjson_files(dir)
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..300 {
        if done() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
async fn batched_s3_backend_passes_the_suite_against_seaweedfs() {
    let weed = Seaweed::start("recordings").unwrap_or_else(|e| panic!("{e}"));
    let log = tempfile::tempdir().unwrap();
    let storage = batched(&weed, log.path(), 300).await;
    suite(Arc::new(storage.clone())).await;
    // Everything reached the bucket, and left the log.
    let left = log_segments(log.path());
    wait_for(&format!("the log to empty: {left:?}"), || {
        log_segments(log.path()).is_empty()
    })
    .await;
    let responses = weed.read_all("responses").unwrap();
    let lines: usize = responses
        .iter()
        .map(|(_, d)| d.split(|b| *b == b'\n').filter(|l| !l.is_empty()).count())
        .sum();
    assert_eq!(lines, 5, "{responses:?}");
}

#[tokio::test]
async fn batched_s3_ships_many_commits_as_few_objects_within_their_age() {
    let weed = Seaweed::start("recordings").unwrap_or_else(|e| panic!("{e}"));
    let log = tempfile::tempdir().unwrap();
    let storage = batched(&weed, log.path(), 3000).await;
    let started = std::time::Instant::now();
    let mut ids = Vec::new();
    for _ in 0..20 {
        ids.extend(commit_events(&storage, 3).await);
    }
    // Acknowledged (durable in the log) and readable, before any PUT.
    assert!(weed.list("events").unwrap().is_empty());
    let loc = layout::parse_record_id(&ids[7]).unwrap();
    assert!(storage.read_record(&loc, &ids[7]).await.unwrap().is_some());
    let segment = layout::batch_key(
        RecordKind::Event,
        &layout::parse_record_id(&ids[0]).unwrap().batch,
    );
    assert!(!storage.is_sealed(segment.as_str()).await.unwrap());
    wait_for("the log to empty", || log_segments(log.path()).is_empty()).await;
    assert!(
        started.elapsed() < std::time::Duration::from_millis(3500),
        "{:?}",
        started.elapsed()
    );
    // One object (or two, across an hour's end) for 20 commits; each id once.
    let objects = weed.list("events").unwrap();
    assert!(objects.len() <= 2, "{objects:?}");
    let stored = ids_in_bucket(&weed);
    for id in &ids {
        assert_eq!(stored.get(id), Some(&1), "{id}");
    }
    assert_eq!(stored.len(), ids.len());
    // Read back from S3 now, by id: the object is named after an earlier batch.
    for id in [&ids[0], &ids[31], &ids[59]] {
        let loc = layout::parse_record_id(id).unwrap();
        let line = storage.read_record(&loc, id).await.unwrap().unwrap();
        let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(v["id"], id.as_str());
        assert!(storage.is_sealed(&objects[0]).await.unwrap());
    }
}

#[tokio::test]
async fn batched_s3_recovers_its_log_after_a_crash_and_ships_each_record_once() {
    let weed = Seaweed::start("recordings").unwrap_or_else(|e| panic!("{e}"));
    let log = tempfile::tempdir().unwrap();
    let storage = batched(&weed, log.path(), 3_600_000).await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.extend(commit_events(&storage, 2).await);
    }
    let segments = log_segments(log.path());
    assert_eq!(segments.len(), 1, "{segments:?}");
    // The crash: the segment's PUT landed, its removal from the log did not
    // happen; then a torn, unacknowledged line was left after the last commit.
    let key = segments[0]
        .strip_prefix(log.path())
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let landed = std::fs::read(&segments[0]).unwrap();
    let s3 = weed.storage(S3_SECRET).unwrap();
    s3.put(
        &layout::parse_key(&key).unwrap().0,
        Bytes::from(landed.clone()),
    )
    .await
    .unwrap();
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&segments[0])
        .unwrap();
    std::io::Write::write_all(
        &mut f,
        b"{\"type\":\"kubernetes-api-request\",\"id\":\"e-torn",
    )
    .unwrap();
    drop(f);
    drop(storage);

    let storage = batched(&weed, log.path(), 3_600_000).await;
    assert_eq!(storage.recover_records().await.unwrap(), 1);
    wait_for("the log to empty", || log_segments(log.path()).is_empty()).await;
    let stored = ids_in_bucket(&weed);
    assert_eq!(stored.len(), ids.len(), "{stored:?}");
    for id in &ids {
        assert_eq!(stored.get(id), Some(&1), "{id}");
    }
    assert_eq!(s3.get(&key).await.unwrap(), Bytes::from(landed));
    // The next commits start a new segment, which ships too.
    let more = commit_events(&storage, 1).await;
    assert_eq!(log_segments(log.path()).len(), 1);
    drop(storage);
    let _storage = batched(&weed, log.path(), 3_600_000).await;
    wait_for("the log to empty", || log_segments(log.path()).is_empty()).await;
    assert_eq!(ids_in_bucket(&weed).get(&more[0]), Some(&1));
}

#[tokio::test]
async fn batched_s3_acknowledges_while_s3_is_down_and_ships_once_it_is_back() {
    let mut weed = Seaweed::start("recordings").unwrap_or_else(|e| panic!("{e}"));
    let log = tempfile::tempdir().unwrap();
    let storage = batched(&weed, log.path(), 300).await;
    let before = commit_events(&storage, 2).await;
    wait_for("the first commit to ship", || {
        log_segments(log.path()).is_empty()
    })
    .await;
    weed.kill().unwrap();
    // The log still takes (and acknowledges) commits; nothing can ship.
    let mut during = Vec::new();
    for _ in 0..3 {
        during.extend(commit_events(&storage, 2).await);
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(1000)).await;
    assert!(!log_segments(log.path()).is_empty());
    let loc = layout::parse_record_id(&during[0]).unwrap();
    assert!(storage
        .read_record(&loc, &during[0])
        .await
        .unwrap()
        .is_some());
    weed.restart().unwrap();
    for _ in 0..1200 {
        if log_segments(log.path()).is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        log_segments(log.path()).is_empty(),
        "not shipped after S3 came back"
    );
    let stored = ids_in_bucket(&weed);
    assert_eq!(stored.len(), before.len() + during.len(), "{stored:?}");
    for id in before.iter().chain(&during) {
        assert_eq!(stored.get(id), Some(&1), "{id}");
    }
}
