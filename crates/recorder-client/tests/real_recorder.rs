//! Against the real `kubescribe-recorder` binary (built by cargo from
//! `crates/recorder-server` on first use): failover, batching, the spool
//! across a recorder outage and a client restart with deduplication by key,
//! response records, and a 1 MiB session over h2c compared by SHA-256.
#![allow(clippy::unwrap_used)]

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use recorder_client::{
    FailurePolicy, Outcome, RecorderClient, SessionProtocol, SpoolConfig, UnrecordedReason,
};
use sha2::{Digest, Sha256};
use support::real::*;
use support::*;

/// The `status` of the response record joined to the event with `key`.
async fn response_status(addr: SocketAddr, key: &str) -> Option<u64> {
    let body = get(addr, "/api/v1/events?limit=1000").await;
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    v["events"]
        .as_array()?
        .iter()
        .find(|r| r["event"]["kubescribe"]["key"] == key)?["response"]["status"]
        .as_u64()
}

fn spooling_client(dir: &Path) -> RecorderClient {
    let mut cfg = test_config();
    let mut sc = SpoolConfig::new(dir);
    sc.retry_min = Duration::from_millis(20);
    sc.retry_max = Duration::from_millis(200);
    cfg.spool = Some(sc);
    RecorderClient::with_metrics(cfg, Default::default()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn real_recorder_events_outage_restart_and_dedup() {
    let bin = recorder_binary();
    let tmp = tempfile::tempdir().unwrap();
    let dst = tmp.path().join("recordings");
    let spool_dir = tmp.path().join("spool");
    let addr = free_port().await;
    let recorder = start_recorder(&bin, &dst, addr).await;
    let dead = dead_addr().await;
    let mut want = Vec::new();

    let c1 = spooling_client(&spool_dir);
    // Ordered failover: a dead address first.
    want.push("first".to_owned());
    assert_eq!(
        c1.record_event(
            &[dead, addr],
            FailurePolicy::FailClosed,
            &event("first"),
            "/api"
        )
        .await,
        Outcome::Forward
    );
    // Concurrent events (batched to a kubescribe recorder).
    let mut tasks = Vec::new();
    for i in 0..200 {
        let c = c1.clone();
        want.push(format!("c{i}"));
        tasks.push(tokio::spawn(async move {
            c.record_event(
                &[addr],
                FailurePolicy::FailClosed,
                &event(&format!("c{i}")),
                "/",
            )
            .await
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), Outcome::Forward);
    }
    // A response record joins its event.
    c1.send_response_record(
        &[addr],
        &event_model::ResponseRecord {
            key: "first".into(),
            status: 200,
            ..Default::default()
        },
    );

    let mut joined = false;
    for _ in 0..500 {
        if response_status(addr, "first").await == Some(200) {
            joined = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(joined, "the response record was stored with its event");

    // Outage.
    drop(recorder);
    for i in 0..20 {
        want.push(format!("o{i}"));
        let out = c1
            .record_event(
                &[addr],
                FailurePolicy::FailOpen,
                &event(&format!("o{i}")),
                "/",
            )
            .await;
        assert!(
            matches!(
                out,
                Outcome::ForwardUnrecorded {
                    reason: UnrecordedReason::Spooled(_)
                }
            ),
            "{out:?}"
        );
    }
    let out = c1
        .record_event(&[addr], FailurePolicy::FailClosed, &event("refused"), "/")
        .await;
    assert!(matches!(out, Outcome::Refuse(_)));
    // The proxy restarts during the outage.
    c1.shutdown().await;
    drop(c1);
    let c2 = spooling_client(&spool_dir);
    for i in 20..30 {
        want.push(format!("o{i}"));
        c2.record_event(
            &[addr],
            FailurePolicy::FailOpen,
            &event(&format!("o{i}")),
            "/",
        )
        .await;
    }
    assert_eq!(c2.spool_pending(), Some(30));
    // Keep a copy of the spool to replay later (a crash that lost the cursor).
    let replay = tmp.path().join("replay");
    std::fs::create_dir(&replay).unwrap();
    for e in std::fs::read_dir(&spool_dir).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), replay.join(e.file_name())).unwrap();
    }

    // The recorder comes back with the same storage.
    let recorder = start_recorder(&bin, &dst, addr).await;
    eventually("spool drained", || c2.spool_pending() == Some(0)).await;
    want.sort();
    assert_eq!(
        stored_keys(addr).await,
        want,
        "no event lost, none stored twice"
    );

    // Replaying the whole spool stores nothing again.
    let c3 = spooling_client(&replay);
    eventually("replay drained", || c3.spool_pending() == Some(0)).await;
    assert_eq!(
        stored_keys(addr).await,
        want,
        "the recorder dropped the repeats by key"
    );
    drop(recorder);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_recorder_session_v2_one_mib_sha256() {
    let bin = recorder_binary();
    let tmp = tempfile::tempdir().unwrap();
    let dst = tmp.path().join("recordings");
    let addr = free_port().await;
    let _recorder = start_recorder(&bin, &dst, addr).await;
    let client = RecorderClient::with_metrics(test_config(), Default::default()).unwrap();
    let cast = random_cast(1 << 20);
    let up = client.connect_session(&[addr]).await.unwrap();
    assert_eq!(up.protocol(), SessionProtocol::V2);
    for line in cast.split_inclusive(|b| *b == b'\n') {
        up.send(Bytes::copy_from_slice(line)).await.unwrap();
    }
    let summary = up.finish().await.unwrap();
    assert_eq!(summary.bytes_sent, cast.len() as u64);
    let list: serde_json::Value =
        serde_json::from_slice(&get(addr, "/api/v1/sessions").await).unwrap();
    let id = list["sessions"][0]["id"].as_str().unwrap().to_owned();
    let stored = get(addr, &format!("/api/v1/sessions/{id}/cast")).await;
    assert_eq!(
        hex::encode(Sha256::digest(&stored)),
        hex::encode(Sha256::digest(&cast))
    );
}
