//! Export as `audit.k8s.io/v1` Events, checked by the real Go types: the
//! recorder binary exports to `audit-sink` (a webhook receiver that decodes
//! every POSTed EventList strictly with `k8s.io/apiserver/pkg/apis/audit/v1`)
//! and to JSON lines files (decoded strictly by `audit-sink check`), through
//! a receiver that is down, failing and slow, and across recorder restarts.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http::StatusCode;
use kubescribe_recorder::storage::Storage;
use serde_json::{json, Value};
use test_support::AuditSink;

/// A webhook file naming `receiver`.
fn webhook_config(dir: &Path, receiver: &AuditSink) -> PathBuf {
    let path = dir.join("webhook.kubeconfig");
    receiver.webhook_config(&path).unwrap();
    path
}

struct Recorder {
    child: Child,
    addr: SocketAddr,
    admin: SocketAddr,
}

impl Recorder {
    async fn start(dir: &Path, webhook: &Path) -> Self {
        let port = free_port();
        let admin_port = free_port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let admin: SocketAddr = format!("127.0.0.1:{admin_port}").parse().unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_kubescribe-recorder"))
            .args([
                "--listen",
                &addr.to_string(),
                "--admin-listen",
                &admin.to_string(),
            ])
            .arg("--dst")
            .arg(dir.join("data"))
            .arg("--upload-token-file")
            .arg(token_file(dir))
            .args(["--signing-key", signing_key()])
            .arg("--export-webhook-config")
            .arg(webhook)
            .arg("--export-jsonl")
            .arg(dir.join("jsonl"))
            .args([
                "--export-batch-max-size",
                "7",
                "--export-batch-max-wait",
                "100ms",
                "--export-initial-backoff",
                "100ms",
                "--export-response-wait",
                "3s",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                return Self { child, addr, admin };
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("recorder did not start");
    }

    async fn metric(&self, name: &str) -> f64 {
        let (_, _, body) = call(self.admin, "GET", "/metrics", &[], Bytes::new()).await;
        String::from_utf8_lossy(&body)
            .lines()
            .filter(|l| l.starts_with(name))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Uploads request `n`: an event with key `k<n>` and, unless `no_response`,
/// its response record (status 200 + n).
async fn upload(recorder: SocketAddr, n: usize, no_response: bool) {
    let key = format!("k{n:04}");
    let mut event: Value =
        serde_json::from_slice(&event_json("get", &format!("pod-{n}"), Some(&key))).unwrap();
    event["kubescribe"]["auditID"] = json!(key);
    event["kubescribe"]["impersonatedUser"] = json!("alice@example.com");
    let (status, _) = post_event(recorder, event.to_string().as_bytes()).await;
    assert_eq!(status, StatusCode::OK);
    if !no_response {
        let response = json!({"type": "kubescribe-api-response", "id": "", "key": key,
            "timestamp": 1767225601, "status": 200 + n, "durationMs": 2.5, "responseBytes": 10});
        let (status, _) = post_event(recorder, response.to_string().as_bytes()).await;
        assert_eq!(status, StatusCode::OK);
    }
}

async fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every exported event by auditID; panics on an event that is not ours.
fn by_audit_id(events: &[Value]) -> BTreeMap<String, Value> {
    events
        .iter()
        .map(|e| (e["auditID"].as_str().unwrap().to_owned(), e.clone()))
        .collect()
}

/// The JSON lines files' events, after a strict check of each with the Go types.
fn jsonl_events(dir: &Path) -> Vec<Value> {
    test_support::audit_sink::jsonl_events(&dir.join("jsonl")).unwrap()
}

fn cursor(dir: &Path, sink: &str) -> Value {
    let text = std::fs::read_to_string(dir.join(format!("data/_kubescribe/export/{sink}/cursor")))
        .unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Waits until `sink`'s cursor names the last of `events()`: the recorder
/// has seen the acknowledgement and stored the cursor, so nothing received so
/// far can be sent again.
async fn wait_for_cursor(dir: &Path, sink: &str, events: impl Fn() -> Vec<Value>) {
    wait_for("the cursor to catch up", Duration::from_secs(30), || {
        let Some(last) = events().last().cloned() else {
            return false;
        };
        std::fs::read_to_string(dir.join(format!("data/_kubescribe/export/{sink}/cursor")))
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
            .is_some_and(|c| c["after"] == last["annotations"]["kubescribe.io/record-id"])
    })
    .await;
}

/// Record-id order: (batch, line).
fn order(id: &str) -> (String, u64) {
    let mut parts = id.splitn(3, '-');
    parts.next();
    (
        parts.next().unwrap().to_owned(),
        parts.next().unwrap().parse().unwrap(),
    )
}

fn assert_in_order(events: &[Value]) {
    let ids: Vec<(String, u64)> = events
        .iter()
        .map(|e| {
            order(
                e["annotations"]["kubescribe.io/record-id"]
                    .as_str()
                    .unwrap(),
            )
        })
        .collect();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted, "exported in record-id order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_sinks_export_every_event_and_the_go_types_decode_them_strictly() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = AuditSink::start(&dir.path().join("received.jsonl")).unwrap();
    let recorder = Recorder::start(dir.path(), &webhook_config(dir.path(), &receiver)).await;
    for n in 0..20 {
        upload(recorder.addr, n, n == 5).await;
    }
    // As Tailscale's proxy sends it: no kubescribe object, no response record.
    let (status, _) = post_event(recorder.addr, &event_json("list", "tailscale", None)).await;
    assert_eq!(status, StatusCode::OK);
    wait_for("21 events at the webhook", Duration::from_secs(30), || {
        receiver.events().unwrap().len() >= 21
    })
    .await;
    wait_for("21 events in JSON lines", Duration::from_secs(30), || {
        jsonl_events(dir.path()).len() >= 21
    })
    .await;
    // The cursors name the last event delivered.
    wait_for_cursor(dir.path(), "webhook", || receiver.events().unwrap()).await;
    wait_for_cursor(dir.path(), "jsonl", || jsonl_events(dir.path())).await;
    let stats = receiver.stats().unwrap();
    assert_eq!(stats["rejected"], 0, "every batch decoded strictly");
    assert!(
        stats["batches"].as_u64().unwrap() >= 3,
        "batches of at most 7: {stats}"
    );
    for events in [receiver.events().unwrap(), jsonl_events(dir.path())] {
        assert_eq!(events.len(), 21, "once each");
        assert_in_order(&events);
        let by_id = by_audit_id(&events);
        assert_eq!(by_id.len(), 21);
        let keyless = events.last().unwrap();
        assert_eq!(
            keyless["auditID"], keyless["annotations"]["kubescribe.io/record-id"],
            "no key: the record id"
        );
        assert!(keyless["annotations"]["kubescribe.io/response"]
            .as_str()
            .unwrap()
            .contains("no kubescribe.key"));
        assert!(keyless["impersonatedUser"].is_null());
        for n in 0..20 {
            let e = &by_id[&format!("k{n:04}")];
            assert_eq!(e["verb"], "get");
            assert_eq!(e["stage"], "ResponseComplete");
            assert_eq!(e["level"], "Metadata");
            assert_eq!(
                e["requestURI"],
                format!("/api/v1/namespaces/default/pods/pod-{n}")
            );
            assert_eq!(
                e["objectRef"],
                json!({"resource": "pods", "namespace": "default", "name": format!("pod-{n}"), "apiVersion": "v1"})
            );
            assert_eq!(e["user"]["username"], "alice@example.com");
            assert_eq!(
                e["impersonatedUser"],
                json!({"username": "alice@example.com", "groups": ["system:authenticated"]})
            );
            assert_eq!(e["requestReceivedTimestamp"], "2026-01-01T00:00:00.000000Z");
            if n == 5 {
                assert!(e["responseStatus"].is_null());
                assert!(e["annotations"]["kubescribe.io/response"]
                    .as_str()
                    .unwrap()
                    .starts_with("missing"));
            } else {
                assert_eq!(e["responseStatus"]["code"], 200 + n);
                assert_eq!(e["stageTimestamp"], "2026-01-01T00:00:01.000000Z");
            }
        }
    }
    let last = receiver.events().unwrap().last().unwrap()["annotations"]["kubescribe.io/record-id"]
        .clone();
    assert_eq!(cursor(dir.path(), "webhook"), json!({ "after": last }));
    assert_eq!(cursor(dir.path(), "jsonl"), json!({ "after": last }));
    let start = Instant::now();
    while recorder
        .metric("kubescribe_recorder_export_events_total")
        .await
        < 42.0
    {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "export_events_total"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        recorder
            .metric("kubescribe_recorder_export_lag_records")
            .await,
        0.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_down_failing_or_slow_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("received.jsonl");
    let mut receiver = AuditSink::start(&out).unwrap();
    let addr = receiver.addr();
    let recorder = Recorder::start(dir.path(), &webhook_config(dir.path(), &receiver)).await;

    // Failing (500 to every batch): nothing is lost, everything arrives once it recovers.
    receiver.fail().unwrap();
    for n in 0..10 {
        upload(recorder.addr, n, false).await;
    }
    let failures = "kubescribe_recorder_export_failures_total{sink=\"webhook\"}";
    let start = Instant::now();
    while recorder.metric(failures).await < 2.0 {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no failed delivery counted"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(receiver.events().unwrap().is_empty());
    receiver.ok().unwrap();
    wait_for(
        "10 events after the receiver recovered",
        Duration::from_secs(30),
        || receiver.events().unwrap().len() >= 10,
    )
    .await;

    // Down (no listener at all), then up again on the same address. (Once
    // the cursor has caught up: a receiver killed between writing a batch
    // and answering gets that batch again, as at-least-once allows.)
    wait_for_cursor(dir.path(), "webhook", || receiver.events().unwrap()).await;
    receiver.stop();
    for n in 10..20 {
        upload(recorder.addr, n, false).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let receiver = AuditSink::start_on(&out, &addr.to_string()).unwrap();

    // Slow: every answer takes 700 ms.
    receiver.stall(700).unwrap();
    for n in 20..30 {
        upload(recorder.addr, n, false).await;
    }
    wait_for("all 30 events", Duration::from_secs(60), || {
        by_audit_id(&receiver.events().unwrap()).len() >= 30
    })
    .await;
    receiver.ok().unwrap();
    let events = receiver.events().unwrap();
    let ids: HashSet<String> = events
        .iter()
        .map(|e| e["auditID"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 30, "every event arrived");
    assert_eq!(events.len(), 30, "and none twice while the recorder ran");
    assert_in_order(&events);
    assert_eq!(receiver.rejected().unwrap(), 0);
    assert_eq!(
        jsonl_events(dir.path()).len(),
        30,
        "the JSON lines sink is independent"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_recorder_resumes_from_its_cursor() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = AuditSink::start(&dir.path().join("received.jsonl")).unwrap();
    let webhook = webhook_config(dir.path(), &receiver);
    let mut recorder = Recorder::start(dir.path(), &webhook).await;
    for n in 0..10 {
        upload(recorder.addr, n, false).await;
    }
    wait_for("10 events", Duration::from_secs(30), || {
        receiver.events().unwrap().len() >= 10
    })
    .await;
    wait_for_cursor(dir.path(), "webhook", || receiver.events().unwrap()).await;
    // Stop the receiver from acknowledging, store more, kill -9 mid-export.
    receiver.fail().unwrap();
    for n in 10..20 {
        upload(recorder.addr, n, false).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    recorder.kill();
    let before = cursor(dir.path(), "webhook");
    receiver.ok().unwrap();
    let recorder = Recorder::start(dir.path(), &webhook).await;
    wait_for(
        "20 events after the restart",
        Duration::from_secs(30),
        || by_audit_id(&receiver.events().unwrap()).len() >= 20,
    )
    .await;
    // Nothing delivered before the restart is delivered again: the cursor
    // held (a crash between an acknowledgement and the cursor write would
    // send that batch again; the test waited for the cursor, so none here).
    let events = receiver.events().unwrap();
    let ids: Vec<&str> = events
        .iter()
        .map(|e| {
            e["annotations"]["kubescribe.io/record-id"]
                .as_str()
                .unwrap()
        })
        .collect();
    assert_eq!(events.len(), 20, "resumed after {before}: {ids:#?}");
    assert_in_order(&events);
    // And a restart after everything was delivered sends nothing.
    wait_for_cursor(dir.path(), "webhook", || receiver.events().unwrap()).await;
    wait_for("20 events in JSON lines", Duration::from_secs(30), || {
        by_audit_id(&jsonl_events(dir.path())).len() >= 20
    })
    .await;
    wait_for_cursor(dir.path(), "jsonl", || jsonl_events(dir.path())).await;
    // The JSON lines sink was not held up: the kill may have fallen between
    // an append and its cursor write, which sends that batch (at most 7)
    // again after the restart.
    let jsonl_before = jsonl_events(dir.path()).len();
    assert!((20..=27).contains(&jsonl_before), "{jsonl_before} lines");
    drop(recorder);
    let _recorder = Recorder::start(dir.path(), &webhook).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(receiver.events().unwrap().len(), 20);
    assert_eq!(jsonl_events(dir.path()).len(), jsonl_before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_reads_s3_storage_and_keeps_its_cursor_in_the_bucket() {
    let weed = Seaweed::start("recordings").unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().unwrap();
    let receiver = AuditSink::start(&dir.path().join("received.jsonl")).unwrap();
    let webhook = webhook_config(dir.path(), &receiver);
    let token = token_file(dir.path());
    let jsonl = dir.path().join("jsonl");
    let args = [
        "--upload-token-file",
        token.to_str().unwrap(),
        "--export-webhook-config",
        webhook.to_str().unwrap(),
        "--export-jsonl",
        jsonl.to_str().unwrap(),
        "--export-batch-max-size",
        "5",
        "--export-batch-max-wait",
        "100ms",
        "--export-response-wait",
        "2s",
    ];
    let storage: Arc<dyn Storage> = Arc::new(weed.storage(S3_SECRET).unwrap());
    let (addr, _app) = kubescribe_recorder::spawn(config(&args), storage.clone())
        .await
        .unwrap();
    for n in 0..12 {
        upload(addr, n, n == 3).await;
    }
    wait_for("12 events at the webhook", Duration::from_secs(30), || {
        by_audit_id(&receiver.events().unwrap()).len() >= 12
    })
    .await;
    wait_for("12 events in JSON lines", Duration::from_secs(30), || {
        jsonl_events(dir.path()).len() >= 12
    })
    .await;
    assert_eq!(receiver.rejected().unwrap(), 0);
    for events in [receiver.events().unwrap(), jsonl_events(dir.path())] {
        assert_eq!(events.len(), 12, "once each");
        assert_in_order(&events);
        let by_id = by_audit_id(&events);
        assert_eq!(by_id["k0002"]["responseStatus"]["code"], 202);
        assert!(by_id["k0003"]["responseStatus"].is_null());
    }
    let last = receiver.events().unwrap().last().unwrap()["annotations"]["kubescribe.io/record-id"]
        .clone();
    let start = Instant::now();
    loop {
        let stored = storage.get("_kubescribe/export/webhook/cursor").await;
        if let Ok(bytes) = stored {
            if serde_json::from_slice::<Value>(&bytes).unwrap() == json!({ "after": last }) {
                break;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "cursor in the bucket"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
