//! Listener limits end to end over real sockets: set-up deadline, eviction of the oldest connection in
//! set-up (from the address with the most), serving limits in total and per source (with their refusals), idle timeout with streaming
//! responses counted as busy, PROXY protocol, HTTP/2 idle, graceful shutdown, the per-source rate of new
//! connections.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::TokioExecutor;
use hyper_util::server::conn::auto::Builder;
use service::conn::{
    ConnInfo, ConnectionLimits, ConnectionMetrics, Listener, ListenerOptions, Refusal,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;

const NAME: &str = "test";

struct Server {
    addr: SocketAddr,
    metrics: ConnectionMetrics,
    shutdown: watch::Sender<bool>,
}

fn limits() -> ConnectionLimits {
    ConnectionLimits {
        max_connections: 100,
        max_connections_per_source: 100,
        max_pending: 100,
        max_connection_rate_per_source: 0,
        handshake_timeout: Duration::from_millis(400),
        idle_timeout: Duration::from_millis(400),
    }
}

/// Serves `/` (the peer address as the listener saw it) and `/slow` (a body sent in 5 chunks,
/// 200 ms apart).
async fn start(limits: ConnectionLimits, proxy_protocol: bool) -> Server {
    let metrics = ConnectionMetrics::default();
    let listener = Listener::bind(
        "127.0.0.1:0".parse().unwrap_or_else(|e| panic!("{e}")),
        ListenerOptions {
            name: NAME,
            limits,
            proxy_protocol,
            tls: None,
            metrics: metrics.clone(),
        },
    )
    .await
    .unwrap_or_else(|e| panic!("bind: {e}"));
    let addr = listener.local_addr();
    let (shutdown, shutdown_rx) = watch::channel(false);
    let builder = Arc::new(Builder::new(TokioExecutor::new()));
    tokio::spawn(async move {
        loop {
            let incoming = listener.accept().await;
            let builder = builder.clone();
            let shutdown_rx = shutdown_rx.clone();
            tokio::spawn(async move {
                let Ok(conn) = incoming.handshake().await else {
                    return;
                };
                let info = conn.info();
                let service =
                    hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                        let info: ConnInfo = info;
                        async move { Ok::<_, Infallible>(respond(req.uri().path(), info)) }
                    });
                let _ = conn
                    .serve(builder.clone(), service, false, Some(shutdown_rx))
                    .await;
            });
        }
    });
    Server {
        addr,
        metrics,
        shutdown,
    }
}

fn respond(path: &str, info: ConnInfo) -> Response<Body> {
    if path == "/slow" {
        let chunks = futures_stream(5, Duration::from_millis(200));
        return Response::new(BodyExt::boxed(StreamBody::new(chunks)));
    }
    Response::new(BodyExt::boxed(Full::new(Bytes::from(
        info.peer.to_string(),
    ))))
}

fn futures_stream(
    n: usize,
    every: Duration,
) -> impl futures_util::Stream<Item = Result<Frame<Bytes>, Infallible>> {
    futures_util::stream::unfold(0usize, move |i| async move {
        if i == n {
            return None;
        }
        tokio::time::sleep(every).await;
        Some((Ok(Frame::data(Bytes::from(format!("chunk-{i}\n")))), i + 1))
    })
}

/// Sends one HTTP/1.1 request on `stream` and reads the response head and body (by length or
/// until the connection closes).
async fn get(stream: &mut TcpStream, path: &str) -> String {
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap_or_else(|e| panic!("write: {e}"));
    read_response(stream).await
}

async fn read_response(stream: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut chunk))
            .await
            .unwrap_or_else(|_| panic!("no response: {}", String::from_utf8_lossy(&buf)))
            .unwrap_or(0);
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .and_then(|v| v.trim().parse::<usize>().ok());
            if length.is_some_and(|len| body.len() >= len) || body.ends_with("0\r\n\r\n") {
                break;
            }
        }
    }
    String::from_utf8_lossy(&buf).into_owned()
}

/// Whether the server has closed `stream` (a read returns end of file within `within`).
async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let mut byte = [0u8; 1];
    matches!(
        tokio::time::timeout(within, stream.read(&mut byte)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

async fn connect(addr: SocketAddr) -> TcpStream {
    TcpStream::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("connect: {e}"))
}

#[tokio::test]
async fn a_connection_that_sends_nothing_is_closed_at_the_set_up_deadline() {
    let server = start(limits(), false).await;
    let mut silent = connect(server.addr).await;
    assert!(!closed_within(&mut silent, Duration::from_millis(200)).await);
    assert!(closed_within(&mut silent, Duration::from_secs(2)).await);
    assert_eq!(
        server.metrics.closed_count(NAME, Refusal::HandshakeTimeout),
        1
    );
    // Half a request head is no better than nothing.
    let mut half = connect(server.addr).await;
    half.write_all(b"GET / HTTP/1.1\r\nHost:")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(closed_within(&mut half, Duration::from_secs(2)).await);
    // Half an HTTP/2 preface likewise.
    let mut preface = connect(server.addr).await;
    preface
        .write_all(b"PRI * HTTP/2.0\r\n")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(closed_within(&mut preface, Duration::from_secs(2)).await);
}

#[tokio::test]
async fn when_the_set_up_pool_is_full_the_oldest_is_closed_and_new_requests_are_served() {
    let server = start(
        ConnectionLimits {
            max_pending: 4,
            handshake_timeout: Duration::from_secs(30),
            ..limits()
        },
        false,
    )
    .await;
    let mut silent = Vec::new();
    for _ in 0..10 {
        silent.push(connect(server.addr).await);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut open = 0;
    for s in &mut silent {
        if !closed_within(s, Duration::from_millis(100)).await {
            open += 1;
        }
    }
    assert_eq!(open, 4, "only the newest max_pending connections stay");
    assert_eq!(server.metrics.closed_count(NAME, Refusal::Evicted), 6);
    let mut client = connect(server.addr).await;
    let reply = get(&mut client, "/").await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
}

#[tokio::test]
async fn a_flood_from_one_address_evicts_its_own_connections_not_anothers() {
    let server = start(
        ConnectionLimits {
            max_pending: 4,
            handshake_timeout: Duration::from_secs(30),
            ..limits()
        },
        false,
    )
    .await;
    // A caller on 127.0.0.1 whose request head is still on its way ...
    let mut caller = connect(server.addr).await;
    caller
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap_or_else(|e| panic!("write: {e}"));
    tokio::time::sleep(Duration::from_millis(50)).await;
    // ... while 127.0.0.2 opens ten connections that send nothing: the pool (4) is full after
    // three of them, and every later one evicts 127.0.0.2's oldest, never the caller's.
    let mut silent = Vec::new();
    for _ in 0..10 {
        let socket = tokio::net::TcpSocket::new_v4().unwrap_or_else(|e| panic!("socket: {e}"));
        socket
            .bind("127.0.0.2:0".parse().unwrap_or_else(|e| panic!("{e}")))
            .unwrap_or_else(|e| panic!("bind: {e}"));
        silent.push(
            socket
                .connect(server.addr)
                .await
                .unwrap_or_else(|e| panic!("connect: {e}")),
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut open = 0;
    for s in &mut silent {
        if !closed_within(s, Duration::from_millis(100)).await {
            open += 1;
        }
    }
    assert_eq!(open, 3, "the flooding address keeps what the pool has left");
    assert_eq!(server.metrics.closed_count(NAME, Refusal::Evicted), 7);
    caller
        .write_all(b"\r\n")
        .await
        .unwrap_or_else(|e| panic!("write: {e}"));
    let reply = read_response(&mut caller).await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
}

#[tokio::test]
async fn serving_limits_refuse_with_a_reason() {
    let server = start(
        ConnectionLimits {
            max_connections: 3,
            max_connections_per_source: 2,
            ..limits()
        },
        true,
    )
    .await;
    // Two callers behind one forwarder, told apart by their PROXY headers.
    let from = |ip: &str| -> Vec<u8> {
        let src: SocketAddr = format!("{ip}:40000")
            .parse()
            .unwrap_or_else(|e| panic!("{e}"));
        let dst: SocketAddr = "127.0.0.1:80".parse().unwrap_or_else(|e| panic!("{e}"));
        ppp_v2(src, dst)
    };
    let mut conns = Vec::new();
    for _ in 0..2 {
        let mut c = connect(server.addr).await;
        c.write_all(&from("100.64.0.1"))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let reply = get(&mut c, "/").await;
        assert!(reply.contains("100.64.0.1:40000"), "{reply}");
        conns.push(c);
    }
    let mut third = connect(server.addr).await;
    third
        .write_all(&from("100.64.0.1"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let reply = get(&mut third, "/").await;
    assert!(reply.starts_with("HTTP/1.1 429"), "{reply}");
    assert!(
        reply.contains("too many connections from 100.64.0.1 (limit 2)"),
        "{reply}"
    );
    assert!(closed_within(&mut third, Duration::from_secs(2)).await);

    let mut other = connect(server.addr).await;
    other
        .write_all(&from("100.64.0.2"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(get(&mut other, "/").await.starts_with("HTTP/1.1 200"));
    let mut over = connect(server.addr).await;
    over.write_all(&from("100.64.0.3"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let reply = get(&mut over, "/").await;
    assert!(reply.starts_with("HTTP/1.1 503"), "{reply}");
    assert!(
        reply.contains("too many connections to this server (limit 3)"),
        "{reply}"
    );
    assert_eq!(
        server
            .metrics
            .closed_count(NAME, Refusal::TooManyFromSource),
        1
    );
    assert_eq!(server.metrics.closed_count(NAME, Refusal::TooMany), 1);

    // A connection without a PROXY header is closed.
    let mut bare = connect(server.addr).await;
    bare.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(closed_within(&mut bare, Duration::from_secs(2)).await);
    assert_eq!(server.metrics.closed_count(NAME, Refusal::ProxyHeader), 1);
}

fn ppp_v2(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    ppp::v2::Builder::with_addresses(
        ppp::v2::Version::Two | ppp::v2::Command::Proxy,
        ppp::v2::Protocol::Stream,
        (src, dst),
    )
    .build()
    .unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test]
async fn idle_connections_close_but_streaming_responses_keep_them_open() {
    let server = start(limits(), false).await;
    let mut client = connect(server.addr).await;
    assert!(get(&mut client, "/").await.starts_with("HTTP/1.1 200"));
    assert!(!closed_within(&mut client, Duration::from_millis(150)).await);
    assert!(
        closed_within(&mut client, Duration::from_secs(2)).await,
        "idle keep-alive closed"
    );
    assert_eq!(server.metrics.closed_count(NAME, Refusal::Idle), 1);

    // A response streaming for 1 s (longer than the 400 ms idle timeout) is served whole.
    let mut streaming = connect(server.addr).await;
    let reply = get(&mut streaming, "/slow").await;
    assert!(reply.contains("chunk-4"), "{reply}");
    assert_eq!(server.metrics.closed_count(NAME, Refusal::Idle), 1);
    assert_eq!(server.metrics.open_count(NAME), 1);
}

#[tokio::test]
async fn http2_connections_go_idle_too() {
    let server = start(limits(), false).await;
    let stream = connect(server.addr).await;
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap_or_else(|e| panic!("h2 handshake: {e}"));
    let driver = tokio::spawn(conn);
    let response = sender
        .send_request(
            Request::get("http://x/")
                .body(Full::new(Bytes::new()))
                .unwrap_or_else(|e| panic!("{e}")),
        )
        .await
        .unwrap_or_else(|e| panic!("h2 request: {e}"));
    assert_eq!(response.status(), 200);
    drop(response);
    // The server sends GOAWAY once idle; the client's connection then ends.
    let ended = tokio::time::timeout(Duration::from_secs(3), driver).await;
    assert!(ended.is_ok(), "the idle HTTP/2 connection was closed");
    assert_eq!(server.metrics.closed_count(NAME, Refusal::Idle), 1);
}

#[tokio::test]
async fn shutdown_lets_a_request_in_flight_finish() {
    let server = start(
        ConnectionLimits {
            idle_timeout: Duration::from_secs(30),
            ..limits()
        },
        false,
    )
    .await;
    let mut client = connect(server.addr).await;
    client
        .write_all(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let _ = server.shutdown.send(true);
    let reply = read_response(&mut client).await;
    assert!(reply.contains("chunk-4"), "{reply}");
    assert!(closed_within(&mut client, Duration::from_secs(2)).await);
}

async fn connect_from(source: &str, addr: SocketAddr) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap_or_else(|e| panic!("socket: {e}"));
    let source: SocketAddr = format!("{source}:0")
        .parse()
        .unwrap_or_else(|e| panic!("{e}"));
    socket
        .bind(source)
        .unwrap_or_else(|e| panic!("bind {source}: {e}"));
    socket
        .connect(addr)
        .await
        .unwrap_or_else(|e| panic!("connect from {source}: {e}"))
}

#[tokio::test]
async fn a_source_opening_connections_too_fast_is_paced_then_cut_off_before_set_up_and_others_are_not(
) {
    let server = start(
        ConnectionLimits {
            max_connection_rate_per_source: 5,
            handshake_timeout: Duration::from_secs(30),
            ..limits()
        },
        false,
    )
    .await;
    // 127.0.0.2 opens 30 connections at once: its burst (10) is set up, the next second's worth
    // (5) waits its turn, the rest is closed at once.
    let mut flood = Vec::new();
    for _ in 0..30 {
        flood.push(connect_from("127.0.0.2", server.addr).await);
    }
    let mut kept = Vec::new();
    for mut stream in flood {
        if !closed_within(&mut stream, Duration::from_millis(500)).await {
            kept.push(stream);
        }
    }
    let closed = 30 - kept.len();
    // All but the burst and the paced (and what refilled meanwhile, at 5 a second) are closed.
    assert!((12..=15).contains(&closed), "{closed} closed");
    assert_eq!(
        server.metrics.closed_count(NAME, Refusal::RateLimited),
        closed as u64
    );
    // Every connection kept, more than the burst, is served: the paced ones after their wait.
    for stream in &mut kept {
        assert!(get(stream, "/").await.contains("200 OK"));
    }
    // Another source is served at once; the flooding source, a moment later, is too.
    let mut other = connect_from("127.0.0.3", server.addr).await;
    assert!(get(&mut other, "/").await.contains("200 OK"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut again = connect_from("127.0.0.2", server.addr).await;
    assert!(get(&mut again, "/").await.contains("200 OK"));
    let _ = server.shutdown.send(true);
}
