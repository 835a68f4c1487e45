//! The real `kubescribe-recorder` binary (built by cargo from
//! `crates/recorder-server` on first use) and what tests ask it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rand::{Rng, RngCore, SeedableRng};

use super::dead_addr;

/// Builds the recorder binary once per test process (a no-op when it is up
/// to date) and returns its path.
pub fn recorder_binary() -> PathBuf {
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

pub struct Recorder {
    child: Child,
}

impl Drop for Recorder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub async fn free_port() -> SocketAddr {
    dead_addr().await
}

pub async fn start_recorder(bin: &Path, dst: &Path, addr: SocketAddr) -> Recorder {
    let log = std::fs::File::create(dst.with_extension("log")).unwrap();
    let child = Command::new(bin)
        .arg("--listen")
        .arg(addr.to_string())
        .arg("--dst")
        .arg(dst)
        .arg("--signing-key")
        .arg(dst.with_extension("signing-key"))
        .arg("--generate-signing-key")
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

pub fn http_client() -> Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

pub async fn get(addr: SocketAddr, path: &str) -> Bytes {
    let req = http::Request::get(format!("http://{addr}{path}"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = http_client().request(req).await.unwrap();
    assert_eq!(resp.status(), 200, "GET {path}");
    resp.into_body().collect().await.unwrap().to_bytes()
}

/// Every stored event's idempotency key (with repeats, if any were stored).
pub async fn stored_keys(addr: SocketAddr) -> Vec<String> {
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

/// A random asciicast of about `size` bytes.
pub fn random_cast(size: usize) -> Vec<u8> {
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
