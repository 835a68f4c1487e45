//! The recorder on S3 (real SeaweedFS): events and sessions round-trip
//! through the wire endpoints, storage and the query API, including after a
//! restart; in the batched mode, a `kill -9` of the binary with acknowledged
//! events still in its log loses none and stores none twice.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use common::*;
use http::StatusCode;
use kubescribe_recorder::storage::Storage;

#[tokio::test]
async fn events_and_sessions_round_trip_on_s3() {
    let weed = Seaweed::start("recordings").unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().unwrap();
    let token = token_file(dir.path());
    let args = ["--upload-token-file", token.to_str().unwrap()];
    let storage: Arc<dyn Storage> = Arc::new(weed.storage(S3_SECRET).unwrap());
    let (addr, _app) = kubescribe_recorder::spawn(config(&args), storage.clone())
        .await
        .unwrap();

    let (status, v) = post_event(addr, &event_json("delete", "db-0", Some("s3-key-1"))).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let id = v["id"].as_str().unwrap().to_owned();
    let cast = b"{\"version\":2,\"width\":80,\"height\":24,\"timestamp\":1767225600}\n[0.1,\"o\",\"$ \"]\n[0.2,\"r\",\"24x80\"]\n".to_vec();
    let bearer = format!("Bearer {TOKEN}");
    let (status, _, body) = call(
        addr,
        "POST",
        "/record",
        &[("authorization", &bearer)],
        cast.clone(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body:?}");
    let session = serde_json::from_slice::<serde_json::Value>(&body).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // In the bucket, in the documented layout.
    let events = storage.list("events/").await.unwrap();
    assert_eq!(events.len(), 1);
    assert!(events[0].key.starts_with("events/date="), "{events:?}");
    let stored = storage.get(&events[0].key).await.unwrap();
    let line: serde_json::Value = serde_json::from_slice(&stored).unwrap();
    assert_eq!(line["id"], id.as_str());
    let sessions = storage.list("sessions/").await.unwrap();
    assert_eq!(sessions.len(), 1);
    assert!(sessions[0].key.ends_with(&format!("{session}.cast")));
    assert_eq!(&storage.get(&sessions[0].key).await.unwrap()[..], &cast[..]);

    // A second recorder on the same bucket rebuilds its indexes and dedups.
    let (addr2, _app2) = kubescribe_recorder::spawn(config(&args), storage.clone())
        .await
        .unwrap();
    let (status, v) = get_json(addr2, &format!("/api/v1/events/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["event"]["kubernetes"]["Name"], "db-0");
    let (_, v) = post_event(addr2, &event_json("delete", "db-0", Some("s3-key-1"))).await;
    assert_eq!(v["id"], id.as_str());
    assert_eq!(v["duplicate"], true);
    let (_, _, got) = call(
        addr2,
        "GET",
        &format!("/api/v1/sessions/{session}/cast"),
        &[],
        Bytes::new(),
    )
    .await;
    assert_eq!(&got[..], &cast[..]);
}

/// The recorder binary in the batched S3 mode on `weed`, its log in `log`, listening on `port`,
/// admin on `admin`.
fn start_batched(
    weed: &Seaweed,
    store: &BinaryStore,
    log: &std::path::Path,
    admin: u16,
    max_age: &str,
) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_kubescribe-recorder"))
        .args(["--admin-listen", &format!("127.0.0.1:{admin}")])
        .args(["--allow-readers", "loopback"])
        .args(["--listen", &format!("127.0.0.1:{}", store.port)])
        .args(["--signing-key", signing_key()])
        .arg("--upload-token-file")
        .arg(&store.token)
        .args(["--dst", &format!("s3://{}", weed.endpoint())])
        .args(["--bucket", weed.bucket(), "--s3-allow-http"])
        .arg("--s3-batch-dir")
        .arg(log)
        .args(["--s3-batch-max-age", max_age, "--manifest-interval", "1s"])
        // The restarted process leads (and seals) once the killed one's lease expired.
        .args(["--lease-ttl", "3s"])
        .env("AWS_ACCESS_KEY_ID", S3_KEY)
        .env("AWS_SECRET_ACCESS_KEY", S3_SECRET)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

fn log_is_empty(log: &std::path::Path) -> bool {
    ndjson_files(log).is_empty()
}

/// `kill -9` of the batched recorder under load, with acknowledged events still only in its log:
/// at the next start they are shipped, every acknowledged event is in the bucket exactly once and
/// served by the query API, and the bucket verifies clean once the sealer has covered it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn batched_s3_kill_9_between_ack_and_shipping_loses_nothing_and_stores_nothing_twice() {
    let weed = Seaweed::start("recordings").unwrap_or_else(|e| panic!("{e}"));
    let store = BinaryStore::new();
    let log = store.dir.path().join("log");
    let admin_port = free_port();
    let admin: std::net::SocketAddr = format!("127.0.0.1:{admin_port}").parse().unwrap();
    let mut child = start_batched(&weed, &store, &log, admin_port, "800ms");
    wait_ready(store.addr).await;

    let acked = Arc::new(Mutex::new(HashSet::<String>::new()));
    let mut senders = Vec::new();
    for s in 0..8 {
        let (acked, addr) = (acked.clone(), store.addr);
        senders.push(tokio::spawn(async move {
            for i in 0.. {
                let body = event_json("get", &format!("s{s}-{i}"), Some(&format!("k-{s}-{i}")));
                let Ok(Ok((status, v))) = tokio::time::timeout(
                    std::time::Duration::from_secs(5),
                    try_post_event(addr, &body),
                )
                .await
                else {
                    break;
                };
                if status != StatusCode::OK {
                    break;
                }
                acked
                    .lock()
                    .unwrap()
                    .insert(v["id"].as_str().unwrap().to_owned());
            }
        }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    for s in senders {
        let _ = s.await;
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() > 50, "load too small: {}", acked.len());
    let in_bucket = ids_in_bucket(&weed);
    let unshipped: Vec<&String> = acked
        .iter()
        .filter(|id| !in_bucket.contains_key(*id))
        .collect();
    assert!(
        !unshipped.is_empty() && !log_is_empty(&log),
        "the kill found nothing acknowledged and unshipped: the test proves nothing"
    );
    assert!(!in_bucket.is_empty(), "nothing was shipped before the kill");

    let mut child = start_batched(&weed, &store, &log, admin_port, "800ms");
    wait_ready(store.addr).await;
    for _ in 0..200 {
        if log_is_empty(&log) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        log_is_empty(&log),
        "the log was not shipped after the restart"
    );
    let in_bucket = ids_in_bucket(&weed);
    let twice: Vec<_> = in_bucket.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "stored more than once: {twice:?}");
    let lost: Vec<&String> = acked
        .iter()
        .filter(|id| !in_bucket.contains_key(*id))
        .collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged events lost: {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
    // Served by the query API, the ones that waited in the log first.
    for id in unshipped.iter().copied().chain(acked.iter().take(50)) {
        let (status, v) = get_json(store.addr, &format!("/api/v1/events/{id}")).await;
        assert_eq!(status, StatusCode::OK, "{id}");
        assert_eq!(v["event"]["id"], id.as_str());
    }
    // The object store's requests are counted; the log's objects shipped.
    let metrics = |name: &str| {
        test_support::http::metric(admin, name)
            .unwrap()
            .unwrap_or(0.0)
    };
    assert!(metrics("kubescribe_recorder_object_store_requests_total{method=\"PUT\"}") >= 1.0);
    assert!(metrics("kubescribe_recorder_s3_batch_shipped_objects_total") >= 1.0);
    // Sealed once on S3: once the restarted process leads (the killed one's
    // lease expired) and a manifest pass ran, the bucket verifies clean.
    let s3 = weed.storage(S3_SECRET).unwrap();
    let mut report = kubescribe_recorder::tamper::verify::Report::default();
    for _ in 0..40 {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        report = kubescribe_recorder::tamper::verify::verify(&s3, &Default::default())
            .await
            .unwrap();
        if report.findings.is_empty() && report.open_segments.is_empty() {
            break;
        }
    }
    assert!(report.findings.is_empty(), "{report:?}");
    assert!(report.open_segments.is_empty(), "{report:?}");
    assert!(report.records_verified >= acked.len() as u64, "{report:?}");
    child.kill().unwrap();
    child.wait().unwrap();
}
