//! Shared test harness: an in-process fake API server that records what it
//! saw, an in-memory event sink, identity files, and a proxy builder.
#![allow(dead_code, clippy::unwrap_used, clippy::type_complexity)]

pub mod apiserver;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use event_model::{Event, ResponseRecord};
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use kubescribe_proxy::BoxError;
use kubescribe_proxy::{Components, PassThrough, RunningProxy};
use kubescribe_proxy::{Config, IdentitySource, LogFormat, Mode, UpstreamSource};
use kubescribe_proxy::{Credential, UpstreamSpec};
use kubescribe_proxy::{EventSink, Outcome};
use recorder_client::FailurePolicy;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

/// One request as the fake upstream saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub target: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// A fake API server.
#[derive(Clone)]
pub struct FakeUpstream {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    /// Released by a test to let a streaming response finish.
    pub release: Arc<Notify>,
}

impl FakeUpstream {
    pub async fn start() -> Self {
        Self::start_with(None).await
    }

    /// A fake API server behind TLS.
    pub async fn start_tls(cfg: Arc<rustls::ServerConfig>) -> Self {
        Self::start_with(Some(tokio_rustls::TlsAcceptor::from(cfg))).await
    }

    async fn start_with(tls: Option<tokio_rustls::TlsAcceptor>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let up = FakeUpstream {
            addr,
            seen: Arc::default(),
            release: Arc::new(Notify::new()),
        };
        let me = up.clone();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let me = me.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let me = me.clone();
                        async move { Ok::<_, Infallible>(me.handle(req).await) }
                    });
                    let builder = hyper::server::conn::http1::Builder::new();
                    match tls {
                        None => {
                            let _ = builder
                                .serve_connection(TokioIo::new(tcp), svc)
                                .with_upgrades()
                                .await;
                        }
                        Some(acceptor) => {
                            if let Ok(s) = acceptor.accept(tcp).await {
                                let _ = builder
                                    .serve_connection(TokioIo::new(s), svc)
                                    .with_upgrades()
                                    .await;
                            }
                        }
                    }
                });
            }
        });
        up
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    async fn handle(
        &self,
        mut req: Request<Incoming>,
    ) -> Response<http_body_util::combinators::BoxBody<Bytes, BoxError>> {
        let upgrade = req.headers().get("upgrade").cloned();
        let on_upgrade = upgrade.as_ref().map(|_| hyper::upgrade::on(&mut req));
        let (parts, body) = req.into_parts();
        let body = body
            .collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        let target = parts
            .uri
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_default();
        self.seen.lock().unwrap().push(Seen {
            method: parts.method.to_string(),
            target: target.clone(),
            headers: parts.headers.clone(),
            body: body.clone(),
        });
        if let (Some(up), Some(on)) = (upgrade, on_upgrade) {
            tokio::spawn(async move {
                if let Ok(u) = on.await {
                    let mut io = TokioIo::new(u);
                    let mut buf = [0u8; 1024];
                    // Echo with a prefix until the client closes.
                    loop {
                        match io.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                let mut out = b"echo:".to_vec();
                                out.extend_from_slice(&buf[..n]);
                                if io.write_all(&out).await.is_err() {
                                    break;
                                }
                            }
                        }
                    }
                }
            });
            let mut r = Response::new(empty());
            *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
            r.headers_mut()
                .insert("connection", "Upgrade".parse().unwrap());
            r.headers_mut().insert("upgrade", up);
            r.headers_mut().insert(
                "x-stream-protocol-version",
                "v4.channel.k8s.io".parse().unwrap(),
            );
            return r;
        }
        if target.contains("watch=true") || target.contains("follow=true") {
            // Stream: one chunk now, then wait for the test to release, then one more.
            let release = self.release.clone();
            let s = futures_util::stream::unfold(0u8, move |state| {
                let release = release.clone();
                async move {
                    match state {
                        0 => Some((
                            Ok::<_, BoxError>(Frame::data(Bytes::from_static(
                                b"{\"type\":\"ADDED\"}\n",
                            ))),
                            1,
                        )),
                        1 => {
                            release.notified().await;
                            Some((
                                Ok(Frame::data(Bytes::from_static(
                                    b"{\"type\":\"MODIFIED\"}\n",
                                ))),
                                2,
                            ))
                        }
                        _ => None,
                    }
                }
            });
            let mut r = Response::new(StreamBody::new(s).boxed());
            r.headers_mut()
                .insert("content-type", "application/json".parse().unwrap());
            return r;
        }
        let status = parts
            .headers
            .get("x-test-status")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u16>().ok())
            .and_then(|s| StatusCode::from_u16(s).ok())
            .unwrap_or(StatusCode::OK);
        let reply = format!(
            "{{\"method\":\"{}\",\"bytes\":{}}}",
            parts.method,
            body.len()
        );
        let mut r = Response::new(full(reply));
        *r.status_mut() = status;
        r.headers_mut()
            .insert("content-type", "application/json".parse().unwrap());
        r.headers_mut()
            .insert("keep-alive", "timeout=5".parse().unwrap());
        r
    }
}

pub fn full(s: impl Into<Bytes>) -> http_body_util::combinators::BoxBody<Bytes, BoxError> {
    Full::new(s.into()).map_err(|e| match e {}).boxed()
}

pub fn empty() -> http_body_util::combinators::BoxBody<Bytes, BoxError> {
    full(Bytes::new())
}

/// An in-memory event sink with a fixed outcome.
#[derive(Clone)]
pub struct MemorySink {
    pub events: Arc<Mutex<Vec<(Vec<SocketAddr>, FailurePolicy, Event)>>>,
    pub responses: Arc<Mutex<Vec<ResponseRecord>>>,
    /// Events sent after their request was refused.
    pub refused: Arc<Mutex<Vec<Event>>>,
    pub outcome: Arc<Mutex<Outcome>>,
    pub response_arrived: Arc<Notify>,
}

impl MemorySink {
    pub fn new(outcome: Outcome) -> Self {
        MemorySink {
            events: Arc::default(),
            responses: Arc::default(),
            refused: Arc::default(),
            outcome: Arc::new(Mutex::new(outcome)),
            response_arrived: Arc::new(Notify::new()),
        }
    }
    pub fn events(&self) -> Vec<Event> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .map(|e| e.2.clone())
            .collect()
    }
    pub fn responses(&self) -> Vec<ResponseRecord> {
        self.responses.lock().unwrap().clone()
    }
    /// Forget every event and response record so far.
    pub fn clear(&self) {
        self.events.lock().unwrap().clear();
        self.responses.lock().unwrap().clear();
    }
    /// Wait (bounded) until `n` response records arrived.
    pub async fn wait_responses(&self, n: usize) -> Vec<ResponseRecord> {
        for _ in 0..500 {
            if self.responses.lock().unwrap().len() >= n {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.responses()
    }
}

#[async_trait]
impl EventSink for MemorySink {
    async fn record_event(
        &self,
        recorders: &[SocketAddr],
        policy: FailurePolicy,
        event: &Event,
    ) -> Outcome {
        let outcome = self.outcome.lock().unwrap().clone();
        if matches!(outcome, Outcome::Forward) {
            self.events
                .lock()
                .unwrap()
                .push((recorders.to_vec(), policy, event.clone()));
        }
        outcome
    }
    fn record_response(&self, _recorders: &[SocketAddr], record: ResponseRecord) {
        self.responses.lock().unwrap().push(record);
        self.response_arrived.notify_waiters();
    }
    fn record_refused(&self, recorders: &[SocketAddr], event: Event, record: ResponseRecord) {
        self.refused.lock().unwrap().push(event);
        self.record_response(recorders, record);
    }
}

/// Identity file: loopback callers are alice (untagged) with the given grant;
/// 100.64.0.9 (via PROXY protocol) is a tagged CI node.
pub fn identity_file(dir: &std::path::Path, grant: &str) -> PathBuf {
    let p = dir.join("identities.yaml");
    let yaml = format!(
        r#"entries:
  - name: ci
    sources: ["100.64.0.9/32"]
    Node: {{ID: 9, StableID: nCI9CNTRL, Name: ci.tail1234.ts.net., User: 1, Tags: ["tag:ci"]}}
    UserProfile: {{ID: 1, LoginName: tagged-devices}}
    CapMap:
      tailscale.com/cap/kubernetes:
        - {grant}
  - name: alice
    sources: ["127.0.0.0/8", "100.64.0.7/32"]
    Node: {{ID: 7, StableID: nAlice7CNTRL, Name: alice-laptop.tail1234.ts.net., User: 42}}
    UserProfile: {{ID: 42, LoginName: alice@example.com, DisplayName: Alice}}
    CapMap:
      tailscale.com/cap/kubernetes:
        - {grant}
"#
    );
    std::fs::write(&p, yaml).unwrap();
    p
}

/// A config for tests: ephemeral ports, an identity file, the fake upstream.
pub fn config(identity: PathBuf, mode: Mode) -> Config {
    Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        tls: None,
        proxy_protocol: false,
        upstream: UpstreamSource::InCluster,
        mode,
        identity: IdentitySource::File(identity),
        recorder_dial: kubescribe_proxy::RecorderDial::Direct,
        admin_listen: "127.0.0.1:0".parse().unwrap(),
        max_body_capture: 1024 * 1024,
        max_header_bytes: 64 * 1024,
        redactor: Default::default(),
        audit_policy: None,
        connections: service::conn::ConnectionLimits::default(),
        events_for_all_callers: false,
        trust_forwarded_for: false,
        whois_cache_ttl: Duration::from_secs(5),
        state_dir: None,
        spool: kubescribe_proxy::SpoolOptions::off(),
        fail_open_delivery: recorder_client::FailOpenDelivery::Queued,
        shutdown_grace: Duration::from_secs(5),
        log_format: LogFormat::Text,
    }
}

pub fn upstream_spec(addr: SocketAddr) -> UpstreamSpec {
    UpstreamSpec::new(
        format!("http://{addr}").parse().unwrap(),
        None,
        false,
        None,
        None,
        Credential::Bearer("proxy-sa-token".into()),
        "test".into(),
    )
    .unwrap()
}

pub async fn start_proxy(
    config: &Config,
    sink: Arc<dyn EventSink>,
    upstream: SocketAddr,
) -> RunningProxy {
    let whois = config.identity.open().unwrap();
    let components = Components {
        whois,
        sink,
        hook: Arc::new(PassThrough),
        upstream: upstream_spec(upstream),
    };
    kubescribe_proxy::start(config, components, Default::default())
        .await
        .unwrap()
}

/// A simple HTTP/1.1 client response.
pub struct Got {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// Send one request on a fresh connection, optionally prefixed by raw bytes (a PROXY header).
pub async fn send(addr: SocketAddr, prefix: &[u8], req: Request<Full<Bytes>>) -> Got {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    if !prefix.is_empty() {
        tcp.write_all(prefix).await.unwrap();
    }
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    let resp = sender.send_request(req).await.unwrap();
    let (parts, body) = resp.into_parts();
    let body = body
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    Got {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

pub fn get(path: &str) -> Request<Full<Bytes>> {
    Request::get(path)
        .header("host", "kubernetes")
        .body(Full::new(Bytes::new()))
        .unwrap()
}

pub fn with_body(method: &str, path: &str, body: impl Into<Bytes>) -> Request<Full<Bytes>> {
    Request::builder()
        .method(method)
        .uri(path)
        .header("host", "kubernetes")
        .header("content-type", "application/json")
        .body(Full::new(body.into()))
        .unwrap()
}

/// PROXY v2 header claiming `src` as the caller.
pub fn proxy_v2(src: SocketAddr) -> Vec<u8> {
    ppp::v2::Builder::with_addresses(
        ppp::v2::Version::Two | ppp::v2::Command::Proxy,
        ppp::v2::Protocol::Stream,
        (src, "127.0.0.1:80".parse::<SocketAddr>().unwrap()),
    )
    .build()
    .unwrap()
}

pub fn _unused(_: TokioExecutor) {}
