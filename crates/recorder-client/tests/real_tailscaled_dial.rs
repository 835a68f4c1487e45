//! Through the real tailscaled 1.96: a real `kubescribe-recorder` and tailscaled (userspace
//! networking) share a loopback-only network namespace that this test process is not in, so the
//! only way to the recorder is tailscaled's LocalAPI socket. Events (pooled client) and a session
//! upload (h2c) go through tailscaled's `ts-dial` upgrade: its hijack, its relay, our upgrade
//! handling; what the recorder stored is read back the same way. No tailnet is formed (the recorder's address is loopback inside the namespace, which
//! tailscaled 1.96 dials itself); the end-to-end tailnet tests belong to `tests/system`.
//!
//! Install the binary with `cargo xtask peers`.
#![allow(clippy::unwrap_used)]

mod support;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use localapi::LocalApi;
use recorder_client::{
    ClientConfig, FailurePolicy, Outcome, RecorderClient, RecorderDialer, SessionProtocol,
};
use sha2::{Digest, Sha256};
use support::real::{random_cast, recorder_binary};
use support::{event, test_config};

/// The recorder's address inside the namespace.
const RECORDER: &str = "127.0.0.1:18080";

/// tailscaled and a recorder in one new network namespace (a shell that starts the recorder and
/// then becomes tailscaled); both are killed by their ids on drop.
struct Namespace {
    shell: Child,
    dir: tempfile::TempDir,
}

impl Namespace {
    fn start() -> Namespace {
        let tailscaled = test_support::peers::tailscaled_1_96().unwrap_or_else(|e| panic!("{e}"));
        let dir = tempfile::tempdir().unwrap();
        let log = std::fs::File::create(dir.path().join("namespace.log")).unwrap();
        let script = r#"
            set -e
            ip link set lo up
            "$RECORDER_BIN" --listen "$RECORDER_ADDR" --dst "$DIR/recordings" \
                --signing-key "$DIR/signing.key" --generate-signing-key \
                --insecure-allow-any-uploader --allow-readers loopback --admin-listen off \
                --ack-interval 100ms &
            echo $! > "$DIR/recorder.pid"
            exec "$TAILSCALED" --tun=userspace-networking --statedir="$DIR" \
                --socket="$DIR/ts.sock" --no-logs-no-support
        "#;
        let mut command = Command::new("unshare");
        command
            .args(["-n", "sh", "-c", script])
            .env("RECORDER_BIN", recorder_binary())
            .env("RECORDER_ADDR", RECORDER)
            .env("TAILSCALED", &tailscaled)
            .env("DIR", dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        let shell = command.spawn().expect("spawning `unshare -n sh`");
        Namespace { shell, dir }
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("ts.sock")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("namespace.log")).unwrap_or_default()
    }

    /// `GET path` on the recorder, through tailscaled.
    async fn get(&self, path: &str) -> Result<(u16, Bytes), String> {
        let addr: SocketAddr = RECORDER.parse().unwrap();
        let stream = LocalApi::new(self.socket())
            .dial(addr.ip(), addr.port())
            .await
            .map_err(|e| e.to_string())?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        let driver = tokio::spawn(conn);
        let request = http::Request::get(path)
            .header("host", RECORDER)
            .body(Empty::<Bytes>::new())
            .unwrap();
        let result = async {
            let response = sender
                .send_request(request)
                .await
                .map_err(|e| e.to_string())?;
            let status = response.status().as_u16();
            let mut body = response.into_body();
            let mut bytes = Vec::new();
            loop {
                match tokio::time::timeout(Duration::from_secs(5), body.frame()).await {
                    Ok(Some(Ok(frame))) => {
                        if let Some(data) = frame.data_ref() {
                            bytes.extend_from_slice(data);
                        }
                    }
                    Ok(Some(Err(e))) => return Err(e.to_string()),
                    Ok(None) => break,
                    Err(_) => {
                        return Err(format!("{path}: body stalled after {} bytes", bytes.len()))
                    }
                }
            }
            Ok((status, Bytes::from(bytes)))
        }
        .await;
        driver.abort();
        result
    }

    /// Waits until the recorder answers through tailscaled (or the namespace dies).
    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.shell.try_wait().unwrap() {
                panic!("the namespace exited early ({status}):\n{}", self.log());
            }
            match self.get("/api/v1/events?limit=1").await {
                Ok((200, _)) => return,
                other => assert!(
                    Instant::now() < deadline,
                    "the recorder did not answer through tailscaled: {other:?}\n{}",
                    self.log()
                ),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        // The recorder by the id the shell wrote, then tailscaled (the shell, exec'd).
        if let Ok(pid) = std::fs::read_to_string(self.dir.path().join("recorder.pid")) {
            let pid = pid.trim();
            if !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()) {
                let _ = Command::new("kill").args(["-KILL", pid]).status();
            }
        }
        let _ = self.shell.kill();
        let _ = self.shell.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_and_a_session_reach_a_recorder_only_real_tailscaled_can_reach() {
    let mut ns = Namespace::start();
    ns.wait_ready().await;
    let target: SocketAddr = RECORDER.parse().unwrap();

    // From this namespace there is nothing at that address.
    assert!(
        RecorderDialer::Direct
            .dial(target, Duration::from_secs(2))
            .await
            .is_err(),
        "the recorder must be reachable only through tailscaled"
    );

    let cfg = ClientConfig {
        dialer: RecorderDialer::LocalApi(LocalApi::new(ns.socket())),
        ..test_config()
    };
    let client = RecorderClient::with_metrics(cfg, Default::default()).unwrap();
    for key in ["t1", "t2", "t3"] {
        let outcome = client
            .record_event(&[target], FailurePolicy::FailClosed, &event(key), "/api")
            .await;
        assert_eq!(outcome, Outcome::Forward, "event {key}\n{}", ns.log());
    }
    let (status, body) = ns.get("/api/v1/events?limit=100").await.unwrap();
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let mut keys: Vec<&str> = v["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row["event"]["kubescribe"]["key"].as_str().unwrap())
        .collect();
    keys.sort();
    assert_eq!(keys, ["t1", "t2", "t3"]);

    let cast = random_cast(256 << 10);
    let upload = client.connect_session(&[target]).await.unwrap();
    assert_eq!(upload.protocol(), SessionProtocol::V2);
    for line in cast.split_inclusive(|b| *b == b'\n') {
        upload.send(Bytes::copy_from_slice(line)).await.unwrap();
    }
    let summary = upload.finish().await.unwrap();
    assert_eq!(summary.bytes_sent, cast.len() as u64);
    // Read back through tailscaled: every byte durably stored, the upload ended cleanly. (The
    // cast is read once the listing says `finished`: asked for the moment `finish` returned, the
    // recorder answered 200 with the full Content-Length and then stalled the body.)
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, list) = ns.get("/api/v1/sessions").await.unwrap();
        assert_eq!(status, 200);
        let list: serde_json::Value = serde_json::from_slice(&list).unwrap();
        let session = &list["sessions"][0];
        assert_eq!(
            session["header"]["kubernetes"]["PodName"], "web-0",
            "{list}"
        );
        if session["state"] == "finished" {
            assert_eq!(session["size"], cast.len() as u64, "{list}");
            let id = session["id"].as_str().unwrap();
            let (status, stored) = ns
                .get(&format!("/api/v1/sessions/{id}/cast"))
                .await
                .unwrap();
            assert_eq!(status, 200);
            assert_eq!(Sha256::digest(&stored), Sha256::digest(&cast));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the session did not finish: {list}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
