//! Session upload slots are shared fairly: one caller holding its maximum of idle sessions, or one
//! uploader holding its share, does not keep anyone else's session from being recorded; an upload
//! that never names its caller is cut at the header deadline; a quiet session over HTTP/2 is not
//! cut for silence. Every refusal names the limit and whose it is, and is counted.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::StatusCode;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

type Body = http_body_util::combinators::BoxBody<Bytes, std::io::Error>;

/// A TCP stream that stops reading once `deaf` is set (its reads stay pending forever).
struct Deafening {
    inner: tokio::net::TcpStream,
    deaf: Arc<AtomicBool>,
}

impl tokio::io::AsyncRead for Deafening {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.deaf.load(Ordering::SeqCst) {
            return Poll::Pending;
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Deafening {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A cast header naming the caller: a user's node (`srcNodeUser`) or a tagged node.
fn header(user: &str, node: &str, tags: &[&str]) -> Bytes {
    let mut line = serde_json::to_vec(&serde_json::json!({
        "version": 2, "width": 80, "height": 24, "timestamp": 1767225600,
        "command": "sleep 3600", "srcNode": node, "srcNodeID": format!("n-{node}"),
        "srcNodeUser": user, "srcNodeTags": tags,
        "kubernetes": {"PodName": "demo", "Namespace": "default", "Container": "main", "SessionType": "exec"}
    }))
    .unwrap();
    line.push(b'\n');
    Bytes::from(line)
}

fn output(t: f64, text: &str) -> Bytes {
    let mut line = serde_json::to_vec(&serde_json::json!([t, "o", text])).unwrap();
    line.push(b'\n');
    Bytes::from(line)
}

/// A `/v2/record` upload in progress over its own h2c connection: push cast bytes with `send`,
/// end it by dropping `send`; `frames` completes with the answer's status and every frame.
struct Upload {
    send: Option<mpsc::Sender<Bytes>>,
    frames: JoinHandle<(StatusCode, Vec<Value>)>,
}

impl Upload {
    /// Starts an upload to `addr` from `source` (any port), with the upload token when `token`.
    async fn start(addr: SocketAddr, source: IpAddr, token: bool) -> Self {
        Self::start_on(addr, source, token, Arc::new(AtomicBool::new(false))).await
    }

    /// As [`Upload::start`], on a connection that goes deaf once `deaf` is set: it reads nothing
    /// more (so answers no ping), as a vanished peer.
    async fn start_on(
        addr: SocketAddr,
        source: IpAddr,
        token: bool,
        deaf: Arc<AtomicBool>,
    ) -> Self {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::new(source, 0)).unwrap();
        let stream = Deafening {
            inner: socket.connect(addr).await.unwrap(),
            deaf,
        };
        let (mut client, conn) = hyper::client::conn::http2::handshake::<_, _, Body>(
            TokioExecutor::new(),
            TokioIo::new(stream),
        )
        .await
        .unwrap();
        tokio::spawn(conn);
        let (tx, rx) = mpsc::channel::<Bytes>(16);
        let body = StreamBody::new(futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv()
                .await
                .map(|b| (Ok::<_, std::io::Error>(Frame::data(b)), rx))
        }))
        .boxed();
        let mut req = http::Request::post("http://recorder/v2/record");
        if token {
            req = req.header("authorization", format!("Bearer {TOKEN}"));
        }
        let req = req.body(body).unwrap();
        let frames = tokio::spawn(async move {
            let res = client.send_request(req).await.unwrap();
            let status = res.status();
            let mut body = res.into_body();
            let mut buf = Vec::new();
            let mut frames = Vec::new();
            while let Some(Ok(frame)) = body.frame().await {
                if let Ok(data) = frame.into_data() {
                    buf.extend_from_slice(&data);
                }
            }
            for line in buf.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                frames.push(serde_json::from_slice(line).unwrap_or(Value::Null));
            }
            (status, frames)
        });
        Self {
            send: Some(tx),
            frames,
        }
    }

    async fn push(&self, data: Bytes) {
        if let Some(send) = &self.send {
            // A refused upload stops reading: a failed send is what the frames then explain.
            let _ = send.send(data).await;
        }
    }

    /// Ends the body and waits for the answer (bounded).
    async fn finish(mut self) -> (StatusCode, Vec<Value>) {
        self.send.take();
        tokio::time::timeout(Duration::from_secs(20), self.frames)
            .await
            .expect("the upload's answer in time")
            .unwrap()
    }

    /// Waits for the answer without ending the body (a refusal ends it from the recorder's side).
    async fn refused(self) -> (StatusCode, Vec<Value>) {
        tokio::time::timeout(Duration::from_secs(20), self.frames)
            .await
            .expect("the recorder ends a refused upload on its own")
            .unwrap()
    }
}

/// The last frame's error message, if the upload ended with one.
fn error_frame(frames: &[Value]) -> Option<String> {
    frames.last()?.get("error")?.as_str().map(str::to_owned)
}

async fn sessions(addr: SocketAddr, query: &str) -> Vec<Value> {
    let (status, list) = get_json(addr, &format!("/api/v1/sessions?{query}")).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    list["sessions"].as_array().cloned().unwrap_or_default()
}

/// Waits until `count` sessions of `query` are live.
async fn wait_live(addr: SocketAddr, query: &str, count: usize) {
    for _ in 0..100 {
        let live = sessions(addr, query)
            .await
            .iter()
            .filter(|s| s["state"] == "live")
            .count();
        if live >= count {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "{count} live sessions for {query}: {:?}",
        sessions(addr, query).await
    );
}

async fn metrics(r: &TestRecorder) -> String {
    let (_, _, body) = call(
        r.app.admin_addr().unwrap(),
        "GET",
        "/metrics",
        &[],
        Bytes::new(),
    )
    .await;
    String::from_utf8(body.to_vec()).unwrap()
}

const LOCAL: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

#[tokio::test]
async fn one_caller_holding_its_maximum_of_idle_sessions_does_not_block_another() {
    // Short idle timeout: the quiet sessions outlive it (over HTTP/2 silence is no reason to cut).
    let r = disk_recorder(&[
        "--max-uploads-per-caller",
        "3",
        "--upload-idle-timeout",
        "1s",
        "--ack-interval",
        "200ms",
    ])
    .await;
    let alice = header("alice@example.com", "alice-laptop.tail1234.ts.net", &[]);
    let mut held = Vec::new();
    for i in 0..3 {
        let upload = Upload::start(r.addr, LOCAL, true).await;
        upload.push(alice.clone()).await;
        upload
            .push(output(0.1, &format!("alice-session-{i}\r\n")))
            .await;
        held.push(upload);
    }
    wait_live(r.addr, "user=alice@example.com", 3).await;

    // Her fourth is refused once its header names her: why, and whose limit.
    let fourth = Upload::start(r.addr, LOCAL, true).await;
    fourth.push(alice.clone()).await;
    let (status, frames) = fourth.refused().await;
    assert_eq!(
        status,
        StatusCode::OK,
        "v2 answers 200 before the body, then frames"
    );
    let error = error_frame(&frames).expect("an error frame");
    assert!(
        error.contains("user alice@example.com")
            && error.contains("3")
            && error.contains("--max-uploads-per-caller"),
        "{error}"
    );

    // Bob's session is accepted and recorded, whole.
    let bob = Upload::start(r.addr, LOCAL, true).await;
    let bob_header = header("bob@example.com", "bob-laptop.tail1234.ts.net", &[]);
    let bob_line = output(0.2, "bob-was-recorded\r\n");
    bob.push(bob_header.clone()).await;
    bob.push(bob_line.clone()).await;
    let (status, frames) = bob.finish().await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(error_frame(&frames), None, "{frames:?}");
    let want = [bob_header, bob_line].concat();
    assert_eq!(
        frames.last().unwrap()["ack"].as_u64(),
        Some(want.len() as u64)
    );
    let bobs = sessions(r.addr, "user=bob@example.com").await;
    assert_eq!(bobs.len(), 1, "{bobs:?}");
    assert_eq!(bobs[0]["state"], "finished");
    assert_eq!(
        session_cast(r.addr, bobs[0]["id"].as_str().unwrap()).await,
        want
    );

    // Alice's three stayed quiet for longer than --upload-idle-timeout and are still recorded;
    // the refused fourth stored nothing.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let alices = sessions(r.addr, "user=alice@example.com").await;
    assert_eq!(alices.len(), 3, "{alices:?}");
    assert!(alices.iter().all(|s| s["state"] == "live"), "{alices:?}");
    for (i, upload) in held.into_iter().enumerate() {
        upload
            .push(output(9.0, &format!("alice-done-{i}\r\n")))
            .await;
        let (_, frames) = upload.finish().await;
        assert_eq!(error_frame(&frames), None, "{frames:?}");
    }
    let alices = sessions(r.addr, "user=alice@example.com").await;
    assert!(
        alices.iter().all(|s| s["state"] == "finished"),
        "{alices:?}"
    );
    for s in &alices {
        let cast = session_cast(r.addr, s["id"].as_str().unwrap()).await;
        assert!(String::from_utf8_lossy(&cast).contains("alice-done-"));
    }

    // Her slots are hers again: a new session of hers is recorded.
    let again = Upload::start(r.addr, LOCAL, true).await;
    again.push(alice).await;
    let (_, frames) = again.finish().await;
    assert_eq!(error_frame(&frames), None, "{frames:?}");

    let metrics = metrics(&r).await;
    assert!(
        metrics.contains("kubescribe_recorder_requests_rejected_total{reason=\"caller_limit\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("kubescribe_recorder_session_uploads_total{outcome=\"caller_limit\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn legacy_record_refuses_a_caller_over_its_limit_with_429() {
    let r = disk_recorder(&["--max-uploads-per-caller", "1"]).await;
    let ci = header("", "ci-runner.tail1234.ts.net", &["tag:ci"]);
    let held = Upload::start(r.addr, LOCAL, true).await;
    held.push(ci.clone()).await;
    wait_live(r.addr, "node=ci-runner.tail1234.ts.net", 1).await;

    let mut s = tokio::net::TcpStream::connect(r.addr).await.unwrap();
    let mut request = format!(
        "POST /record HTTP/1.1\r\nHost: r\r\nAuthorization: Bearer {TOKEN}\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n",
        ci.len()
    )
    .into_bytes();
    request.extend_from_slice(&ci);
    request.extend_from_slice(b"\r\n");
    s.write_all(&request).await.unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&answer).contains("}") {
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&buf[..n]);
    }
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 429"), "{answer}");
    assert!(
        answer.contains("node ci-runner.tail1234.ts.net (tag:ci)")
            && answer.contains("--max-uploads-per-caller"),
        "{answer}"
    );
    let (_, frames) = held.finish().await;
    assert_eq!(error_frame(&frames), None, "{frames:?}");
    assert_eq!(sessions(r.addr, "").await.len(), 1);
}

const TWO_UPLOADERS: &str = r#"entries:
  - name: proxy-a
    sources: ["127.0.0.1/32"]
    Node: {ID: 7, StableID: nProxyA, Name: proxy-a.tail1234.ts.net., User: 1, Tags: ["tag:k8s"]}
    UserProfile: {ID: 1, LoginName: tagged-devices, DisplayName: tagged}
  - name: proxy-b
    sources: ["127.0.0.2/32"]
    Node: {ID: 8, StableID: nProxyB, Name: proxy-b.tail1234.ts.net., User: 1, Tags: ["tag:k8s"]}
    UserProfile: {ID: 1, LoginName: tagged-devices, DisplayName: tagged}
"#;

#[tokio::test]
async fn one_uploader_holding_its_share_does_not_block_another() {
    let dir = tempfile::tempdir().unwrap();
    let identities = dir.path().join("identities.yaml");
    std::fs::write(&identities, TWO_UPLOADERS).unwrap();
    let data = dir.path().join("data");
    let cfg = config(&[
        "--dst",
        data.to_str().unwrap(),
        "--identity-file",
        identities.to_str().unwrap(),
        "--max-concurrent-uploads",
        "4",
        "--max-uploads-per-uploader",
        "2",
    ]);
    let storage =
        std::sync::Arc::new(kubescribe_recorder::storage::disk::DiskStorage::open(&data).unwrap());
    let (addr, app) = kubescribe_recorder::spawn(cfg, storage).await.unwrap();
    let r = TestRecorder {
        addr,
        app,
        dir: Some(dir),
    };
    let a: IpAddr = "127.0.0.1".parse().unwrap();
    let b: IpAddr = "127.0.0.2".parse().unwrap();

    // Proxy A holds its two slots with quiet sessions of two callers.
    let mut held = Vec::new();
    for user in ["carol@example.com", "dave@example.com"] {
        let upload = Upload::start(addr, a, false).await;
        upload
            .push(header(user, "laptop.tail1234.ts.net", &[]))
            .await;
        held.push(upload);
    }
    wait_live(addr, "", 2).await;
    // Its third upload is refused before anything is read, naming it and the limit.
    let third = Upload::start(addr, a, false).await;
    let (status, frames) = third.refused().await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{frames:?}");
    // Proxy B's session is recorded.
    let other = Upload::start(addr, b, false).await;
    other
        .push(header("erin@example.com", "erin.tail1234.ts.net", &[]))
        .await;
    other.push(output(0.5, "erin-recorded\r\n")).await;
    let (status, frames) = other.finish().await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(error_frame(&frames), None, "{frames:?}");
    let erin = sessions(addr, "user=erin@example.com").await;
    assert_eq!(erin.len(), 1);
    assert_eq!(erin[0]["state"], "finished");
    assert_eq!(erin[0]["uploader"], "proxy-b.tail1234.ts.net");

    // The refusal's body names the uploader and the flag (over HTTP/1.1 to read it whole).
    let mut s = {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::new(a, 0)).unwrap();
        socket.connect(addr).await.unwrap()
    };
    s.write_all(b"POST /record HTTP/1.1\r\nHost: r\r\nTransfer-Encoding: chunked\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let answer = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(answer.starts_with("HTTP/1.1 429"), "{answer}");
    assert!(
        answer.contains("uploader proxy-a.tail1234.ts.net ")
            && answer.contains("--max-uploads-per-uploader"),
        "{answer}"
    );
    for upload in held {
        let (_, frames) = upload.finish().await;
        assert_eq!(error_frame(&frames), None, "{frames:?}");
    }
    let metrics = metrics(&r).await;
    assert!(
        metrics
            .contains("kubescribe_recorder_requests_rejected_total{reason=\"uploader_limit\"} 2"),
        "{metrics}"
    );
}

#[tokio::test]
async fn an_upload_that_names_no_caller_in_time_is_cut_and_frees_its_slot() {
    let r = disk_recorder(&[
        "--session-header-timeout",
        "1s",
        "--max-concurrent-uploads",
        "1",
    ])
    .await;
    // Nothing at all: cut at the deadline with an error frame naming the flag.
    let silent = Upload::start(r.addr, LOCAL, true).await;
    let started = std::time::Instant::now();
    let (_, frames) = silent.refused().await;
    let error = error_frame(&frames).expect("an error frame");
    assert!(error.contains("--session-header-timeout"), "{error}");
    assert!(started.elapsed() >= Duration::from_millis(900));
    // Half a header line, over HTTP/1.1: 408.
    let mut s = tokio::net::TcpStream::connect(r.addr).await.unwrap();
    s.write_all(
        format!("POST /record HTTP/1.1\r\nHost: r\r\nAuthorization: Bearer {TOKEN}\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{{\"ver\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let answer = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("no cast header"), "{answer}");
    // The one slot is free again: a session that sends its header is recorded.
    let ok = Upload::start(r.addr, LOCAL, true).await;
    ok.push(header("alice@example.com", "alice.tail1234.ts.net", &[]))
        .await;
    let (_, frames) = ok.finish().await;
    assert_eq!(error_frame(&frames), None, "{frames:?}");
    assert_eq!(sessions(r.addr, "").await.len(), 1);
    let metrics = metrics(&r).await;
    assert!(
        metrics
            .contains("kubescribe_recorder_requests_rejected_total{reason=\"header_timeout\"} 2"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_quiet_session_of_a_vanished_peer_ends_and_frees_its_slot() {
    // One slot: whether it comes back is plain to see.
    let r = disk_recorder(&[
        "--max-concurrent-uploads",
        "1",
        "--upload-idle-timeout",
        "1s",
    ])
    .await;
    let deaf = Arc::new(AtomicBool::new(false));
    let gone = Upload::start_on(r.addr, LOCAL, true, deaf.clone()).await;
    gone.push(header("alice@example.com", "alice.tail1234.ts.net", &[]))
        .await;
    gone.push(output(0.1, "before-the-peer-vanished\r\n")).await;
    wait_live(r.addr, "", 1).await;
    // The peer vanishes: it sends nothing more and answers no ping. The recorder's keep-alive
    // (a ping after 20 s of silence, 20 s for its answer) ends the connection, and the upload.
    deaf.store(true, Ordering::SeqCst);
    let mut state = Value::Null;
    for _ in 0..120 {
        state = sessions(r.addr, "").await[0]["state"].clone();
        if state != "live" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Ended. (As `finished`, not `failed`: hyper ends the streams of a connection whose keep-alive
    // timed out with RST_STREAM(NO_ERROR), which its request body reports as a clean end.)
    assert!(
        state == "finished" || state == "failed",
        "the vanished peer's session ended: {state}"
    );
    let kept = sessions(r.addr, "").await;
    let cast = session_cast(r.addr, kept[0]["id"].as_str().unwrap()).await;
    assert!(String::from_utf8_lossy(&cast).contains("before-the-peer-vanished"));
    // Its slot is free: the next session is recorded.
    let next = Upload::start(r.addr, LOCAL, true).await;
    next.push(header("bob@example.com", "bob.tail1234.ts.net", &[]))
        .await;
    let (_, frames) = next.finish().await;
    assert_eq!(error_frame(&frames), None, "{frames:?}");
    drop(gone);
}
