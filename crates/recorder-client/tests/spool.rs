//! The spool end to end: a recorder outage and a client restart lose no
//! event and store none twice.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use recorder_client::{FailurePolicy, Outcome, RecorderClient, SpoolConfig, UnrecordedReason};
use support::*;

fn spooling_client(dir: &std::path::Path) -> RecorderClient {
    let mut cfg = test_config();
    let mut sc = SpoolConfig::new(dir);
    sc.retry_min = Duration::from_millis(10);
    sc.retry_max = Duration::from_millis(50);
    sc.redeliver_batch = 7;
    cfg.spool = Some(sc);
    RecorderClient::with_metrics(cfg, Default::default()).unwrap()
}

async fn record(c: &RecorderClient, addr: std::net::SocketAddr, key: &str) -> Outcome {
    c.record_event(&[addr], FailurePolicy::FailOpen, &event(key), "/api")
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_and_restart_lose_nothing_and_store_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let fake = Fake::ok().await;
    let mut want = Vec::new();

    // Recorder up: delivered directly.
    let c1 = spooling_client(dir.path());
    for i in 0..5 {
        want.push(format!("e{i}"));
        assert_eq!(record(&c1, fake.addr, &want[i]).await, Outcome::Forward);
    }
    // Outage: every event is spooled, the request still goes through.
    fake.state.set_mode(EventMode::PostStatus(503));
    for i in 5..45 {
        want.push(format!("e{i}"));
        let out = record(&c1, fake.addr, &format!("e{i}")).await;
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
    assert_eq!(c1.spool_pending(), Some(40));
    // The proxy restarts during the outage.
    c1.shutdown().await;
    drop(c1);
    let c2 = spooling_client(dir.path());
    assert_eq!(
        c2.spool_pending(),
        Some(40),
        "the spool survived the restart"
    );
    for i in 45..60 {
        want.push(format!("e{i}"));
        let out = record(&c2, fake.addr, &format!("e{i}")).await;
        assert!(matches!(out, Outcome::ForwardUnrecorded { .. }));
    }
    // The recorder comes back: the spool drains in order.
    fake.state.set_mode(EventMode::Ok);
    eventually("spool drained", || c2.spool_pending() == Some(0)).await;
    eventually("all stored", || fake.state.stored_keys().len() == 60).await;
    assert_eq!(
        fake.state.stored_keys(),
        want,
        "in order, none lost, none twice"
    );
    assert_eq!(fake.state.duplicates.load(Ordering::SeqCst), 0);
    assert_eq!(c2.metrics().redelivered_count("event"), 55);

    // New events are delivered directly again.
    assert_eq!(record(&c2, fake.addr, "after").await, Outcome::Forward);
    c2.shutdown().await;
    drop(c2);
    // A restart after the drain redelivers nothing.
    let c3 = spooling_client(dir.path());
    assert_eq!(c3.spool_pending(), Some(0));
}

/// A crash can leave the cursor behind what was delivered (at most one
/// batch in practice). Simulated in the extreme: a copy of the spool taken
/// before redelivery is replayed whole after it. The recorder drops every
/// repeat by idempotency key, so nothing is stored twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_spool_is_deduplicated_by_key() {
    let dir = tempfile::tempdir().unwrap();
    let fake = Fake::ok().await;
    fake.state.set_mode(EventMode::PostStatus(503));
    let c1 = spooling_client(dir.path());
    for i in 0..30 {
        record(&c1, fake.addr, &format!("c{i}")).await;
    }
    // A fail-open event is spooled in the background once the recorder refused it: the spool
    // holds all 30 before the "crash" the copy stands for.
    eventually("all 30 spooled", || c1.spool_pending() == Some(30)).await;
    // Dropped without shutdown, as in a crash.
    drop(c1);
    let copy = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), copy.path().join(entry.file_name())).unwrap();
    }

    fake.state.set_mode(EventMode::Ok);
    let c2 = spooling_client(dir.path());
    eventually("spool drained", || c2.spool_pending() == Some(0)).await;
    let want: Vec<_> = (0..30).map(|i| format!("c{i}")).collect();
    eventually("all stored", || fake.state.stored_keys().len() == 30).await;
    assert_eq!(fake.state.stored_keys(), want);

    // The replay starts while the recorder refuses, so that the count below is the copy's whole
    // spool and not what is left after c3's first batch.
    fake.state.set_mode(EventMode::PostStatus(503));
    let c3 = spooling_client(copy.path());
    assert_eq!(c3.spool_pending(), Some(30));
    fake.state.set_mode(EventMode::Ok);
    eventually("replay drained", || c3.spool_pending() == Some(0)).await;
    eventually("replay seen", || {
        fake.state.duplicates.load(Ordering::SeqCst) == 30
    })
    .await;
    assert_eq!(fake.state.stored_keys(), want, "nothing stored twice");
}

fn queued_client(dir: &std::path::Path) -> RecorderClient {
    let mut cfg = test_config();
    cfg.fail_open = recorder_client::FailOpenDelivery::Queued;
    cfg.attempt_timeout = Duration::from_secs(1);
    let mut sc = SpoolConfig::new(dir);
    sc.retry_min = Duration::from_millis(10);
    sc.retry_max = Duration::from_millis(50);
    cfg.spool = Some(sc);
    RecorderClient::with_metrics(cfg, Default::default()).unwrap()
}

fn response(key: &str) -> event_model::ResponseRecord {
    event_model::ResponseRecord {
        key: key.into(),
        timestamp: 1_767_225_601,
        status: 200,
        ..Default::default()
    }
}

/// What the fake stored, in arrival order: `e:KEY` for an event, `r:KEY` for a response record.
fn stored_kinds(fake: &Fake) -> Vec<String> {
    fake.state
        .stored
        .lock()
        .unwrap()
        .iter()
        .map(|(key, line)| {
            let v: serde_json::Value = serde_json::from_slice(line).unwrap();
            let kind = if v.pointer("/kubescribe/key").is_some() {
                "e"
            } else {
                "r"
            };
            format!("{kind}:{key}")
        })
        .collect()
}

/// `--fail-open-delivery queued`: a fail-open request waits for nothing, not even a recorder that
/// hangs (acknowledged delivery would wait out the attempt deadline, then spool); its event and
/// response record are delivered from the spool, in order, once a recorder answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_events_wait_for_nothing_and_arrive_in_order_with_their_response_records() {
    let dir = tempfile::tempdir().unwrap();
    let fake = Fake::ok().await;
    fake.state.set_mode(EventMode::Hang);
    let c = queued_client(dir.path());
    let mut want = Vec::new();
    for i in 0..20 {
        let key = format!("q{i}");
        assert_eq!(record(&c, fake.addr, &key).await, Outcome::Queued);
        c.send_response_record(&[fake.addr], &response(&key));
        want.extend([format!("e:{key}"), format!("r:{key}")]);
    }
    assert_eq!(c.metrics().spooled_count("event"), 20);
    assert_eq!(c.metrics().spooled_count("response"), 20);
    assert!(fake.state.stored_keys().is_empty());
    // The hung attempt runs out (its 1 s deadline), then the recorder answers.
    fake.state.set_mode(EventMode::Ok);
    eventually("queue drained", || c.spool_pending() == Some(0)).await;
    assert_eq!(stored_kinds(&fake), want, "in order, each once");
    assert_eq!(c.metrics().redelivered_count("event"), 20);
    assert_eq!(fake.state.duplicates.load(Ordering::SeqCst), 0);
    c.shutdown().await;
}

/// Queued records are in the spool's files from the moment they are queued: a proxy that dies
/// (dropped without shutdown) before any recorder took them loses none of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_events_survive_a_crash_before_delivery() {
    let dir = tempfile::tempdir().unwrap();
    let fake = Fake::ok().await;
    fake.state.set_mode(EventMode::PostStatus(503));
    let c1 = queued_client(dir.path());
    for i in 0..25 {
        assert_eq!(
            record(&c1, fake.addr, &format!("k{i}")).await,
            Outcome::Queued
        );
    }
    drop(c1);
    fake.state.set_mode(EventMode::Ok);
    let c2 = queued_client(dir.path());
    eventually("queue drained", || c2.spool_pending() == Some(0)).await;
    let want: Vec<_> = (0..25).map(|i| format!("k{i}")).collect();
    eventually("all stored", || fake.state.stored_keys().len() == 25).await;
    assert_eq!(fake.state.stored_keys(), want);
    c2.shutdown().await;
}

/// A queued client whose redelivery task, once a delivery failed, would not retry for a minute:
/// only the shutdown drain can deliver before then.
fn slow_retry_queued_client(dir: &std::path::Path) -> RecorderClient {
    let mut cfg = test_config();
    cfg.fail_open = recorder_client::FailOpenDelivery::Queued;
    cfg.attempt_timeout = Duration::from_secs(1);
    let mut sc = SpoolConfig::new(dir);
    sc.retry_min = Duration::from_secs(60);
    sc.retry_max = Duration::from_secs(60);
    sc.shutdown_drain = Duration::from_secs(60);
    cfg.spool = Some(sc);
    RecorderClient::with_metrics(cfg, Default::default()).unwrap()
}

/// Thirty events `<prefix>0`… queued by a [`slow_retry_queued_client`] whose recorder answers 503:
/// the first delivery has failed, the next retry is a minute away, all thirty wait in the spool.
async fn thirty_queued_behind_a_failing_recorder(
    prefix: &str,
) -> (tempfile::TempDir, Fake, RecorderClient) {
    let dir = tempfile::tempdir().unwrap();
    let fake = Fake::ok().await;
    fake.state.set_mode(EventMode::PostStatus(503));
    let c = slow_retry_queued_client(dir.path());
    for i in 0..30 {
        let key = format!("{prefix}{i}");
        assert_eq!(record(&c, fake.addr, &key).await, Outcome::Queued);
    }
    eventually("a delivery failed", || fake.state.posts() > 0).await;
    assert_eq!(c.spool_pending(), Some(30));
    (dir, fake, c)
}

/// A replica being replaced (a rollout: SIGTERM, then its pod and the spool's volume are gone)
/// first delivers what its spool holds while a recorder takes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_delivers_what_the_spool_holds() {
    // The first delivery failed; the next retry would be a minute away.
    let (_dir, fake, c) = thirty_queued_behind_a_failing_recorder("s").await;
    fake.state.set_mode(EventMode::Ok);
    c.shutdown().await;
    let want: Vec<_> = (0..30).map(|i| format!("s{i}")).collect();
    assert_eq!(
        fake.state.stored_keys(),
        want,
        "delivered before shutdown ended"
    );
    assert_eq!(c.spool_pending(), Some(0));
}

/// With no recorder taking anything, shutdown does not wait out its drain time: the first failed
/// delivery ends it, and the records stay in the spool for the next process on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_leaves_what_no_recorder_takes_for_the_next_process() {
    let (dir, fake, c) = thirty_queued_behind_a_failing_recorder("t").await;
    tokio::time::timeout(Duration::from_secs(30), c.shutdown())
        .await
        .expect("shutdown ends at the first failed delivery, not after its 60 s drain time");
    assert_eq!(c.spool_pending(), Some(30));
    assert!(fake.state.stored_keys().is_empty());
    drop(c);
    fake.state.set_mode(EventMode::Ok);
    let next = queued_client(dir.path());
    eventually("delivered by the next process", || {
        fake.state.stored_keys().len() == 30
    })
    .await;
    next.shutdown().await;
}
