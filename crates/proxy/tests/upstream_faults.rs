//! The proxy when the API server fails: refuses connections, closes them
//! without answering, breaks off a response, never answers, never finishes
//! its TLS handshake, or goes away and comes back on the same port. Each
//! time the caller gets an answer that says what happened (or the stream
//! ends), nothing hangs, and the request's response record says what the
//! caller got.
#![allow(clippy::unwrap_used, clippy::type_complexity)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http::StatusCode;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use kubescribe_proxy::{Components, Credential, Mode, Outcome, PassThrough, UpstreamSpec};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

const EVENTS_GRANT: &str =
    r#"{recorderAddrs: ["127.0.0.1:9"], enableEvents: true, impersonate: {groups: ["eng"]}}"#;

/// A proxy with events for loopback callers, in front of `server`.
async fn proxy_to(
    server: &str,
    insecure: bool,
) -> (
    tempfile::TempDir,
    MemorySink,
    kubescribe_proxy::RunningProxy,
) {
    let dir = tempfile::tempdir().unwrap();
    let sink = MemorySink::new(Outcome::Forward);
    let cfg = config(identity_file(dir.path(), EVENTS_GRANT), Mode::Auth);
    let spec = UpstreamSpec::new(
        server.parse().unwrap(),
        None,
        insecure,
        None,
        None,
        Credential::Bearer("proxy-sa-token".into()),
        "test".into(),
    )
    .unwrap();
    let components = Components {
        whois: cfg.identity.open().unwrap(),
        sink: Arc::new(sink.clone()),
        hook: Arc::new(PassThrough),
        upstream: spec,
    };
    let proxy = kubescribe_proxy::start(&cfg, components, Default::default())
        .await
        .unwrap();
    (dir, sink, proxy)
}

/// A loopback port nothing listens on.
async fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

/// Reads one request head from `tcp`.
async fn read_head(tcp: &mut TcpStream) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if tcp.read(&mut byte).await.unwrap_or(0) == 0 {
            return;
        }
        head.push(byte[0]);
    }
}

/// A raw API server: for every connection, reads the request head and runs `answer`.
async fn raw_upstream<F, Fut>(answer: F) -> SocketAddr
where
    F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let answer = Arc::new(answer);
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let answer = answer.clone();
            tokio::spawn(async move {
                read_head(&mut tcp).await;
                answer(tcp).await;
            });
        }
    });
    addr
}

/// The one response record, waited for (bounded).
async fn one_record(sink: &MemorySink) -> event_model::ResponseRecord {
    let records = sink.wait_responses(1).await;
    assert_eq!(records.len(), 1, "exactly one response record: {records:?}");
    assert_eq!(sink.events().len(), 1, "exactly one event");
    assert_eq!(
        records[0].key,
        sink.events()[0].key().unwrap(),
        "the record is the event's"
    );
    records[0].clone()
}

#[tokio::test]
async fn refused_connections_are_a_502_naming_the_upstream_and_the_cause() {
    let down = closed_port().await;
    let (_d, sink, proxy) = proxy_to(&format!("http://{down}"), false).await;
    let started = Instant::now();
    let got = send(proxy.addr, b"", get("/api/v1/namespaces/default/pods")).await;
    let text = String::from_utf8_lossy(&got.body).into_owned();
    assert_eq!(got.status, StatusCode::BAD_GATEWAY, "{text}");
    assert!(
        text.starts_with(&format!(
            "error forwarding to the API server: cannot connect to {down}: Connection refused"
        )),
        "{text}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "a refused connection is answered at once"
    );
    assert_eq!(
        got.headers.get("content-type").unwrap(),
        "text/plain; charset=utf-8"
    );
    let record = one_record(&sink).await;
    assert_eq!(record.status, 502);
    assert_eq!(record.error.as_deref(), Some(text.trim_end()));
    proxy.shutdown().await;
}

#[tokio::test]
async fn an_api_server_that_closes_without_answering_is_a_502_that_says_so() {
    let up = raw_upstream(|tcp| async move { drop(tcp) }).await;
    let (_d, sink, proxy) = proxy_to(&format!("http://{up}"), false).await;
    let got = send(proxy.addr, b"", get("/api/v1/namespaces/default/pods/web")).await;
    let text = String::from_utf8_lossy(&got.body).into_owned();
    assert_eq!(got.status, StatusCode::BAD_GATEWAY, "{text}");
    assert!(
        text.starts_with(&format!(
            "error forwarding to the API server: the connection to {up} ended before it answered: "
        )),
        "{text}"
    );
    let record = one_record(&sink).await;
    assert_eq!(record.status, 502);
    assert_eq!(record.error.as_deref(), Some(text.trim_end()));
    proxy.shutdown().await;
}

/// The API server sends a response head and part of the body, then goes away.
async fn cut_short(
    head: &'static str,
    part: &'static [u8],
) -> (StatusCode, Vec<u8>, bool, event_model::ResponseRecord) {
    let up = raw_upstream(move |mut tcp| async move {
        let _ = tcp.write_all(head.as_bytes()).await;
        let _ = tcp.write_all(part).await;
        let _ = tcp.flush().await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(tcp);
    })
    .await;
    let (_d, sink, proxy) = proxy_to(&format!("http://{up}"), false).await;
    let tcp = TcpStream::connect(proxy.addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    let resp = tokio::time::timeout(
        Duration::from_secs(10),
        sender.send_request(get("/api/v1/namespaces/default/configmaps?watch=true")),
    )
    .await
    .expect("the response head arrives")
    .unwrap();
    let status = resp.status();
    let mut body = resp.into_body();
    let mut data = Vec::new();
    let mut failed = false;
    // The stream ends (with an error: it was cut) instead of hanging.
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(frame) => data.extend_from_slice(frame.data_ref().map_or(&[][..], |d| d)),
                Err(_) => {
                    failed = true;
                    break;
                }
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the cut-short response ends for the caller");
    let record = one_record(&sink).await;
    proxy.shutdown().await;
    (status, data, failed, record)
}

#[tokio::test]
async fn a_watch_the_api_server_breaks_off_ends_for_the_caller_and_its_record_says_so() {
    let (status, data, failed, record) = cut_short(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"11\r\n{\"type\":\"ADDED\"}\n\r\n",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(data, b"{\"type\":\"ADDED\"}\n", "what arrived is relayed");
    assert!(
        failed,
        "the caller sees the stream was cut, not a clean end"
    );
    assert_eq!(record.status, 200);
    assert_eq!(record.response_bytes, 17);
    let error = record.error.unwrap();
    assert!(
        error.starts_with("response incomplete: the API server's response broke off: "),
        "{error}"
    );
}

#[tokio::test]
async fn a_body_shorter_than_its_length_is_cut_for_the_caller_and_recorded_as_broken_off() {
    let (status, data, failed, record) = cut_short(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n",
        b"{\"kind\":",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(data, b"{\"kind\":");
    assert!(failed);
    assert_eq!(record.status, 200);
    assert!(record
        .error
        .unwrap()
        .starts_with("response incomplete: the API server's response broke off: "));
}

#[tokio::test]
async fn a_caller_that_leaves_before_the_api_server_answers_gets_a_record_and_the_upstream_request_ends(
) {
    // The API server reads the request and never answers; it reports when
    // the proxy closes the connection.
    let (closed_tx, mut closed_rx) = tokio::sync::mpsc::unbounded_channel();
    let up = raw_upstream(move |mut tcp| {
        let closed_tx = closed_tx.clone();
        async move {
            let mut buf = [0u8; 64];
            while matches!(tcp.read(&mut buf).await, Ok(n) if n > 0) {}
            let _ = closed_tx.send(());
        }
    })
    .await;
    let (_d, sink, proxy) = proxy_to(&format!("http://{up}"), false).await;
    let mut tcp = TcpStream::connect(proxy.addr).await.unwrap();
    tcp.write_all(b"GET /api/v1/namespaces/default/pods HTTP/1.1\r\nHost: kubernetes\r\n\r\n")
        .await
        .unwrap();
    // The event is recorded before forwarding; then the caller gives up.
    for _ in 0..200 {
        if !sink.events().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(tcp);
    let record = one_record(&sink).await;
    assert_eq!(record.status, 0, "no response was given");
    assert_eq!(
        record.error.as_deref(),
        Some("no response: the caller closed the connection before the API server answered")
    );
    tokio::time::timeout(Duration::from_secs(5), closed_rx.recv())
        .await
        .expect("the proxy gives up the upstream request of a caller that left");
    proxy.shutdown().await;
}

#[tokio::test]
async fn a_tls_handshake_that_never_completes_is_a_502_after_the_connect_timeout() {
    // Accepts TCP, never speaks TLS.
    let up = raw_upstream(|mut tcp| async move {
        let mut buf = [0u8; 1024];
        while matches!(tcp.read(&mut buf).await, Ok(n) if n > 0) {}
    })
    .await;
    let (_d, sink, proxy) = proxy_to(&format!("https://{up}"), true).await;
    let started = Instant::now();
    let got = tokio::time::timeout(
        Duration::from_secs(30),
        send(proxy.addr, b"", get("/api/v1/pods")),
    )
    .await
    .expect("answered, not hung");
    let text = String::from_utf8_lossy(&got.body).into_owned();
    assert_eq!(got.status, StatusCode::BAD_GATEWAY, "{text}");
    assert!(
        text.contains("cannot connect to")
            && text.contains("connecting to the API server took longer than 10s"),
        "{text}"
    );
    assert!(started.elapsed() >= Duration::from_secs(9));
    assert_eq!(one_record(&sink).await.status, 502);
    proxy.shutdown().await;
}

/// A minimal HTTP/1.1 API server with keep-alive on a given port, whose
/// connections all close when it is stopped.
struct Restartable {
    tasks: JoinSet<()>,
}

impl Restartable {
    async fn start(addr: SocketAddr) -> Self {
        let listener = TcpListener::bind(addr).await.unwrap();
        let mut tasks = JoinSet::new();
        let (conn_tx, mut conn_rx) = tokio::sync::mpsc::unbounded_channel::<TcpStream>();
        tasks.spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                if conn_tx.send(tcp).is_err() {
                    return;
                }
            }
        });
        tasks.spawn(async move {
            let mut conns = JoinSet::new();
            while let Some(tcp) = conn_rx.recv().await {
                conns.spawn(async move {
                    let svc = hyper::service::service_fn(|_req| async {
                        Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(
                            Bytes::from_static(b"{\"kind\":\"PodList\"}"),
                        )))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .keep_alive(true)
                        .serve_connection(TokioIo::new(tcp), svc)
                        .await;
                });
            }
            // Dropping `conns` aborts (closes) every connection.
        });
        Restartable { tasks }
    }

    async fn stop(mut self) {
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
    }
}

#[tokio::test]
async fn after_the_api_server_comes_back_on_its_port_requests_succeed_without_a_proxy_restart() {
    let addr = closed_port().await;
    let up = Restartable::start(addr).await;
    let (_d, _sink, proxy) = proxy_to(&format!("http://{addr}"), false).await;
    // Pooled (keep-alive) upstream connections exist.
    for _ in 0..3 {
        assert_eq!(
            send(proxy.addr, b"", get("/api/v1/pods")).await.status,
            StatusCode::OK
        );
    }
    up.stop().await;
    let down = send(proxy.addr, b"", get("/api/v1/pods")).await;
    assert_eq!(down.status, StatusCode::BAD_GATEWAY);
    let up = Restartable::start(addr).await;
    for i in 0..5 {
        let got = send(proxy.addr, b"", get("/api/v1/pods")).await;
        assert_eq!(
            got.status,
            StatusCode::OK,
            "request {i} after the restart: {}",
            String::from_utf8_lossy(&got.body)
        );
    }
    up.stop().await;
    proxy.shutdown().await;
}
