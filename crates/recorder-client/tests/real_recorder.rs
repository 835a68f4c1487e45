//! Against the real `kubescribe-recorder` binary (built by cargo from
//! `crates/recorder-server` on first use): failover, batching, the spool
//! across a recorder outage and a client restart with deduplication by key,
//! response records, and a 1 MiB session over h2c compared by SHA-256.
#![allow(clippy::unwrap_used)]

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rand::{Rng, RngCore, SeedableRng};
use recorder_client::{
    FailurePolicy, Outcome, RecorderClient, SessionProtocol, SpoolConfig, UnrecordedReason,
};
use sha2::{Digest, Sha256};
use support::*;

/// Builds the recorder binary once per test process (a no-op when it is up
/// to date) and returns its path.
fn recorder_binary() -> PathBuf {
    static BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(build_recorder).clone()
}

fn build_recorder() -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args([
            "build",
            "-q",
            "-p",
            "kubescribe-recorder",
            "--bin",
            "kubescribe-recorder",
        ])
        .status()
        .expect("cannot run cargo to build kubescribe-recorder");
    assert!(status.success(), "building kubescribe-recorder failed");
    // tests run from target/<profile>/deps/<test binary>
    let exe = std::env::current_exe().unwrap();
    let bin = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("kubescribe-recorder");
    assert!(bin.exists(), "{} missing after build", bin.display());
    bin
}

struct Recorder {
    child: Child,
}

impl Drop for Recorder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn free_port() -> SocketAddr {
    dead_addr().await
}

async fn start_recorder(bin: &Path, dst: &Path, addr: SocketAddr) -> Recorder {
    let log = std::fs::File::create(dst.with_extension("log")).unwrap();
    let child = Command::new(bin)
        .arg("--listen")
        .arg(addr.to_string())
        .arg("--dst")
        .arg(dst)
        .arg("--insecure-allow-any-uploader")
        .args(["--allow-readers", "loopback", "--admin-listen", "off"])
        .arg("--ack-interval")
        .arg("100ms")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("cannot start kubescribe-recorder");
    let r = Recorder { child };
    let client = http_client();
    for _ in 0..600 {
        let req = http::Request::head(format!("http://{addr}/v2/event"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        if let Ok(resp) = client.request(req).await {
            assert_eq!(resp.status(), 200);
            assert_eq!(resp.headers().get("x-kubescribe-recorder").unwrap(), "1");
            return r;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "kubescribe-recorder did not come up on {addr}; see {}",
        dst.with_extension("log").display()
    );
}

fn http_client() -> Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

async fn get(addr: SocketAddr, path: &str) -> Bytes {
    let req = http::Request::get(format!("http://{addr}{path}"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = http_client().request(req).await.unwrap();
    assert_eq!(resp.status(), 200, "GET {path}");
    resp.into_body().collect().await.unwrap().to_bytes()
}

/// Every stored event's idempotency key (with repeats, if any were stored).
async fn stored_keys(addr: SocketAddr) -> Vec<String> {
    let body = get(addr, "/api/v1/events?limit=1000").await;
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let mut keys: Vec<String> = v["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            row["event"]["kubescribe"]["key"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    keys.sort();
    keys
}

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

fn random_cast(size: usize) -> Vec<u8> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let mut out = br#"{"version":2,"width":80,"height":24,"timestamp":1767225600,"command":"/bin/sh","kubernetes":{"PodName":"web-0","Namespace":"default","Container":"c","SessionType":"exec"}}"#.to_vec();
    out.push(b'\n');
    let mut t = 0.0f64;
    while out.len() < size {
        let mut data = vec![0u8; rng.gen_range(1..2048)];
        rng.fill_bytes(&mut data);
        t += rng.gen_range(0.0..0.5);
        let text: String = data.iter().map(|b| char::from(b' ' + b % 94)).collect();
        out.extend(serde_json::to_vec(&serde_json::json!([t, "o", text])).unwrap());
        out.push(b'\n');
    }
    out
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
