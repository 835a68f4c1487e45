//! One suite every storage back end must pass: the local directory, and S3
//! against a real SeaweedFS server with SigV4 credentials.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use bytes::Bytes;
use common::*;
use kubescribe_recorder::record::{self, RecordKind};
use kubescribe_recorder::storage::disk::DiskStorage;
use kubescribe_recorder::storage::layout;
use kubescribe_recorder::storage::Storage;

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
    let mut sink = storage.create_session(&k1).await.unwrap();
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
    let mut sink = storage.create_session(&k2).await.unwrap();
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
    let recovered = storage.recover_sessions().await.unwrap();
    assert_eq!(recovered.len(), 1, "{recovered:?}");
    assert_eq!(recovered[0].key, k2);
    assert_eq!(recovered[0].size, 14 + 100_001);
    let got = storage.get(k2.as_str()).await.unwrap();
    assert_eq!(got.len(), 14 + 100_001);
    assert!(got.starts_with(b"{\"version\":2}\n"));
    // Recovery is idempotent.
    assert!(storage.recover_sessions().await.unwrap().is_empty());
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
    let mut sink = storage.create_session(&key).await.unwrap();
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
    let recovered = storage.recover_sessions().await.unwrap();
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
