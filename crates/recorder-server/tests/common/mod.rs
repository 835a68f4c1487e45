//! Shared test helpers: an in-process recorder, HTTP/1.1 and h2c clients,
//! and the recorder's S3 storage on a SeaweedFS server (launched by the
//! test-support crate, like every real peer).
#![allow(dead_code, unused_imports, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use clap::Parser;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use kubescribe_recorder::storage::disk::DiskStorage;
use kubescribe_recorder::storage::Storage;
use kubescribe_recorder::{Cli, RecorderHandle};

pub const TOKEN: &str = "test-upload-token-0123456789";

/// A recorder running in this process.
pub struct TestRecorder {
    pub addr: SocketAddr,
    pub app: RecorderHandle,
    pub dir: Option<tempfile::TempDir>,
}

/// Tagged proxy node at 127.0.0.1 (uploader), per the identity crate's file format.
pub const IDENTITY_FILE: &str = r#"entries:
  - name: proxy
    sources: ["127.0.0.1/32"]
    Node: {ID: 7, StableID: nProxyCNTRL, Name: proxy.tail1234.ts.net., User: 1, Tags: ["tag:k8s"]}
    UserProfile: {ID: 1, LoginName: tagged-devices, DisplayName: tagged}
"#;

/// A configuration from `extra` flags, listening on a free loopback port. Unless `extra` says
/// otherwise, loopback connections may read (the tests read back over loopback) and the admin
/// endpoints listen on a free loopback port.
pub fn config(extra: &[&str]) -> kubescribe_recorder::Config {
    let mut args = vec!["kubescribe-recorder", "--listen", "127.0.0.1:0"];
    if !extra.contains(&"--allow-readers") {
        args.extend(["--allow-readers", "loopback"]);
    }
    if !extra.contains(&"--admin-listen") {
        args.extend(["--admin-listen", "127.0.0.1:0"]);
    }
    if !extra.contains(&"--unsigned") && !extra.contains(&"--signing-key") {
        args.extend(["--signing-key", signing_key()]);
    }
    args.extend_from_slice(extra);
    Cli::try_parse_from(args).unwrap().validate().unwrap()
}

/// A signing key for this test process (created once), so that the tests exercise signing.
pub fn signing_key() -> &'static str {
    static KEY: std::sync::OnceLock<(tempfile::TempDir, String)> = std::sync::OnceLock::new();
    &KEY.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("signing.key");
        kubescribe_recorder::signing::generate_signing_key(&path).unwrap();
        let path = path.to_str().unwrap().to_owned();
        (dir, path)
    })
    .1
}

/// Starts the recorder binary on `data` with the upload token `token` and this process's signing
/// key, listening on loopback `port`, plus `extra` flags.
pub fn start_binary(data: &Path, token: &Path, port: u16, extra: &[&str]) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_kubescribe-recorder"))
        .args(["--admin-listen", "off", "--allow-readers", "loopback"])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--signing-key", signing_key()])
        .arg("--dst")
        .arg(data)
        .arg("--upload-token-file")
        .arg(token)
        .args(extra)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

/// A fresh storage directory with an upload token and a free loopback port, for
/// [`start_binary`].
pub struct BinaryStore {
    pub dir: tempfile::TempDir,
    pub token: PathBuf,
    pub data: PathBuf,
    pub port: u16,
    pub addr: SocketAddr,
}

impl BinaryStore {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let token = token_file(dir.path());
        let data = dir.path().join("data");
        let port = free_port();
        let addr = format!("127.0.0.1:{port}").parse().unwrap();
        Self {
            dir,
            token,
            data,
            port,
            addr,
        }
    }
}

/// The keys under `prefix`, sorted.
pub async fn list_keys(storage: &dyn Storage, prefix: &str) -> Vec<String> {
    let mut keys: Vec<String> = storage
        .list(prefix)
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.key)
        .collect();
    keys.sort();
    keys
}

/// Waits until `addr` accepts connections.
pub async fn wait_ready(addr: SocketAddr) {
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("recorder did not start");
}

pub fn token_file(dir: &Path) -> PathBuf {
    let path = dir.join("token");
    std::fs::write(&path, TOKEN).unwrap();
    path
}

/// A disk-backed recorder with an upload token (plus `extra` flags).
pub async fn disk_recorder(extra: &[&str]) -> TestRecorder {
    let dir = tempfile::tempdir().unwrap();
    let token = token_file(dir.path());
    let data = dir.path().join("data");
    let mut args = vec![
        "--dst",
        data.to_str().unwrap(),
        "--upload-token-file",
        token.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let cfg = config(&args);
    let storage: Arc<dyn Storage> = Arc::new(DiskStorage::open(&data).unwrap());
    let (addr, app) = kubescribe_recorder::spawn(cfg, storage).await.unwrap();
    TestRecorder {
        addr,
        app,
        dir: Some(dir),
    }
}

pub fn data_dir(r: &TestRecorder) -> PathBuf {
    r.dir.as_ref().unwrap().path().join("data")
}

/// Status, headers and body of an HTTP/1.1 request.
pub async fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> (StatusCode, http::HeaderMap, Bytes) {
    try_call(addr, method, path, headers, body)
        .await
        .unwrap_or_else(|e| panic!("{method} {path} on {addr}: {e:?}"))
}

/// Why [`try_call`] got no answer.
#[derive(Debug)]
pub enum CallError {
    /// No connection: nothing was sent.
    Connect(std::io::Error),
    /// The connection failed after the request may have been sent.
    Exchange(hyper::Error),
}

/// [`call`], with a failure returned instead of a panic.
pub async fn try_call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Result<(StatusCode, http::HeaderMap, Bytes), CallError> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(CallError::Connect)?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(CallError::Exchange)?;
    tokio::spawn(conn);
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "recorder");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let res = send
        .send_request(req.body(Full::new(body.into())).unwrap())
        .await
        .map_err(CallError::Exchange)?;
    let status = res.status();
    let headers = res.headers().clone();
    let bytes = res
        .into_body()
        .collect()
        .await
        .map_err(CallError::Exchange)?
        .to_bytes();
    Ok((status, headers, bytes))
}

pub fn auth() -> (&'static str, String) {
    ("authorization", format!("Bearer {TOKEN}"))
}

/// POSTs one JSON record with the upload token.
pub async fn post_event(addr: SocketAddr, body: &[u8]) -> (StatusCode, serde_json::Value) {
    try_post_event(addr, body)
        .await
        .unwrap_or_else(|e| panic!("POST /v2/event on {addr}: {e:?}"))
}

/// [`post_event`], with a failure to get an answer returned instead of a panic.
pub async fn try_post_event(
    addr: SocketAddr,
    body: &[u8],
) -> Result<(StatusCode, serde_json::Value), CallError> {
    let bearer = format!("Bearer {TOKEN}");
    let (status, _, bytes) = try_call(
        addr,
        "POST",
        "/v2/event",
        &[
            ("content-type", "application/json"),
            ("authorization", &bearer),
        ],
        body.to_vec(),
    )
    .await?;
    Ok((
        status,
        serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
    ))
}

/// GET on the query API (loopback reader).
pub async fn get_json(addr: SocketAddr, path: &str) -> (StatusCode, serde_json::Value) {
    let (status, _, bytes) = call(addr, "GET", path, &[], Bytes::new()).await;
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
    )
}

/// A Tailscale-shaped event (as the proxy sends it: empty id and destination).
pub fn event_json(verb: &str, name: &str, key: Option<&str>) -> Vec<u8> {
    let mut v = serde_json::json!({
        "type": "kubernetes-api-request", "id": "", "timestamp": 1767225600,
        "userAgent": "kubectl/v1.35.0",
        "request": {"method": "GET", "path": format!("/api/v1/namespaces/default/pods/{name}"), "body": "", "queryParameters": {}},
        "kubernetes": {"IsResourceRequest": true, "Path": format!("/api/v1/namespaces/default/pods/{name}"), "Verb": verb,
            "APIPrefix": "api", "APIGroup": "", "APIVersion": "v1", "Namespace": "default", "Resource": "pods",
            "Subresource": "", "Name": name, "Parts": ["pods", name], "FieldSelector": "", "LabelSelector": ""},
        "source": {"node": "laptop.tail1234.ts.net", "nodeID": "nAbC123CNTRL", "nodeUserID": 4242, "nodeUser": "alice@example.com"},
        "destination": {"node": "", "nodeID": ""}
    });
    if let Some(k) = key {
        v["kubescribe"] = serde_json::json!({"key": k});
    }
    let mut out = serde_json::to_vec(&v).unwrap();
    out.push(b'\n');
    out
}

/// All stored lines of one kind (`events` or `responses`) in a disk store.
/// The records stored under `folder`, without the recorder's audit records of reads (those are
/// [`stored_reads`]).
pub fn stored_lines(data: &Path, folder: &str) -> Vec<serde_json::Value> {
    stored_records(data, folder)
        .into_iter()
        .filter(|r| r["kubescribe"]["auditOf"].is_null())
        .collect()
}

/// The recorder's stored audit records of reads (events marked `kubescribe.auditOf`).
pub fn stored_reads(data: &Path) -> Vec<serde_json::Value> {
    stored_records(data, "events")
        .into_iter()
        .filter(|r| !r["kubescribe"]["auditOf"].is_null())
        .collect()
}

fn stored_records(data: &Path, folder: &str) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    let mut stack = vec![data.join(folder)];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "ndjson") {
                for line in std::fs::read_to_string(&p).unwrap().lines() {
                    out.push(serde_json::from_str(line).unwrap());
                }
            }
        }
    }
    out
}

/// The `.ndjson` files below `dir` (record segments), in no particular order.
pub fn ndjson_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "ndjson") {
                out.push(p);
            }
        }
    }
    out
}

/// How many times each record id is stored in the event objects of `weed`'s bucket.
pub fn ids_in_bucket(weed: &Seaweed) -> std::collections::HashMap<String, usize> {
    let mut ids = std::collections::HashMap::new();
    for (key, data) in weed.read_all("events").unwrap() {
        assert!(
            kubescribe_recorder::storage::layout::parse_key(&key).is_some(),
            "{key}"
        );
        for line in data.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let v: serde_json::Value = serde_json::from_slice(line).unwrap();
            *ids.entry(v["id"].as_str().unwrap().to_owned()).or_insert(0) += 1;
        }
    }
    ids
}

/// An h2c (prior knowledge) client connection.
pub async fn h2c(
    addr: SocketAddr,
) -> hyper::client::conn::http2::SendRequest<
    http_body_util::combinators::BoxBody<Bytes, std::io::Error>,
> {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    send
}

/// A `POST /v2/record` request whose body is whatever is sent on the
/// returned channel, ending when the sender is dropped.
pub fn streaming_record_request(
    host: &str,
) -> (
    tokio::sync::mpsc::Sender<Bytes>,
    http::Request<http_body_util::combinators::BoxBody<Bytes, std::io::Error>>,
) {
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
    let body =
        http_body_util::StreamBody::new(futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv()
                .await
                .map(|b| (Ok::<_, std::io::Error>(hyper::body::Frame::data(b)), rx))
        }))
        .boxed();
    let req = http::Request::post(format!("http://{host}/v2/record"))
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(body)
        .unwrap();
    (tx, req)
}

/// Reads the `{"ack":N}` lines of a `/v2/record` response in the background;
/// the returned value holds the highest N so far. The task ends with the response.
pub fn track_acks(
    res: http::Response<hyper::body::Incoming>,
) -> (Arc<std::sync::Mutex<u64>>, tokio::task::JoinHandle<()>) {
    let max_ack = Arc::new(std::sync::Mutex::new(0u64));
    let reader = {
        let max_ack = max_ack.clone();
        tokio::spawn(async move {
            let mut body = res.into_body();
            let mut buf = Vec::new();
            while let Some(Ok(frame)) = body.frame().await {
                let Ok(d) = frame.into_data() else { continue };
                buf.extend_from_slice(&d);
                while let Some(p) = buf.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = buf.drain(..=p).collect();
                    let v: serde_json::Value = serde_json::from_slice(&line).unwrap_or_default();
                    if let Some(n) = v["ack"].as_u64() {
                        let mut max = max_ack.lock().unwrap();
                        *max = (*max).max(n);
                    }
                }
            }
        })
    };
    (max_ack, reader)
}

/// The stored cast of session `id`, through the query API (which must answer 200).
pub async fn session_cast(addr: SocketAddr, id: &str) -> Bytes {
    let (status, _, body) = call(
        addr,
        "GET",
        &format!("/api/v1/sessions/{id}/cast"),
        &[],
        Bytes::new(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    body
}

pub use test_support::peers::dir as peers_dir;
pub use test_support::seaweed::{Seaweed, ACCESS_KEY as S3_KEY, SECRET_KEY as S3_SECRET};

/// A free port on 127.0.0.1.
pub fn free_port() -> u16 {
    test_support::net::free_port().unwrap()
}

type S3Result =
    Result<kubescribe_recorder::storage::s3::S3Storage, kubescribe_recorder::storage::StorageError>;

/// The recorder's S3 storage on a running SeaweedFS, signing with `secret`.
pub trait SeaweedStorage {
    /// The recorder's S3 back end on this server's bucket.
    fn storage(&self, secret: &str) -> S3Result;
}

impl SeaweedStorage for Seaweed {
    fn storage(&self, secret: &str) -> S3Result {
        kubescribe_recorder::storage::s3::S3Storage::new(
            kubescribe_recorder::storage::s3::S3Config {
                endpoint: self.url(),
                bucket: self.bucket().into(),
                region: test_support::seaweed::REGION.into(),
                allow_http: true,
                credentials: Some((S3_KEY.into(), secret.into())),
            },
        )
    }
}
