//! An in-process fake recorder (HTTP/1.1 and h2c on one port) with
//! switchable failure modes, and helpers shared by the integration tests.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::HashSet;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response};
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

pub mod real;
pub mod tailnet;

/// How the fake answers `/v2/event`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventMode {
    /// Probe 200, POST 200 (stores).
    Ok,
    /// Probe 404 (no /v2/event).
    NotSupported,
    /// Probe 200, POST answers this status.
    PostStatus(u16),
    /// Never answers anything.
    Hang,
}

/// How the fake answers `/v2/record`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionMode {
    /// h2c with acks every few milliseconds.
    V2Acks,
    /// h2c, headers flushed, but never an ack frame.
    V2NoAcks,
    /// h2c, heartbeat frames that never acknowledge any byte (`{}`).
    V2Stalled,
    /// HTTP/1.1 only (no h2c): only the legacy `/record`.
    V1Only,
}

/// What the fake has seen and stored.
#[derive(Default)]
pub struct State {
    pub event_mode: Mutex<Option<EventMode>>,
    pub heads: AtomicUsize,
    pub posts: AtomicUsize,
    pub batches: AtomicUsize,
    pub duplicates: AtomicUsize,
    pub keys: Mutex<HashSet<String>>,
    /// Stored records in arrival order: (key, JSON line).
    pub stored: Mutex<Vec<(String, Vec<u8>)>>,
    pub sessions: Mutex<Vec<(&'static str, Vec<u8>)>>,
    pub v1_hits: AtomicUsize,
    pub v2_hits: AtomicUsize,
}

impl State {
    pub fn set_mode(&self, mode: EventMode) {
        *self.event_mode.lock().unwrap() = Some(mode);
    }
    fn mode(&self) -> EventMode {
        self.event_mode.lock().unwrap().unwrap_or(EventMode::Ok)
    }
    pub fn stored_keys(&self) -> Vec<String> {
        self.stored
            .lock()
            .unwrap()
            .iter()
            .map(|(k, _)| k.clone())
            .collect()
    }
    pub fn heads(&self) -> usize {
        self.heads.load(Ordering::SeqCst)
    }
    pub fn posts(&self) -> usize {
        self.posts.load(Ordering::SeqCst)
    }
    fn store_line(&self, line: &[u8]) {
        let v: serde_json::Value = serde_json::from_slice(line).expect("recorder got invalid JSON");
        let key = v
            .pointer("/kubescribe/key")
            .or_else(|| v.get("key"))
            .and_then(|k| k.as_str())
            .unwrap_or_default()
            .to_owned();
        let kind = v.get("type").and_then(|t| t.as_str()).unwrap_or_default();
        let dedup = format!("{kind}:{key}");
        if !key.is_empty() && !self.keys.lock().unwrap().insert(dedup) {
            self.duplicates.fetch_add(1, Ordering::SeqCst);
            return;
        }
        self.stored.lock().unwrap().push((key, line.to_vec()));
    }
}

/// A running fake recorder.
pub struct Fake {
    pub addr: SocketAddr,
    pub state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Fake {
    /// Starts a fake recorder on 127.0.0.1 (port 0).
    pub async fn start(mode: EventMode, kubescribe: bool, session: SessionMode) -> Fake {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State::default());
        state.set_mode(mode);
        let st = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let st = st.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| handle(st.clone(), kubescribe, session, req));
                    let mut builder = auto::Builder::new(TokioExecutor::new());
                    if session == SessionMode::V1Only {
                        builder = builder.http1_only();
                    }
                    let _ = builder.serve_connection(TokioIo::new(tcp), svc).await;
                });
            }
        });
        Fake { addr, state, task }
    }

    /// The usual kubescribe recorder.
    pub async fn ok() -> Fake {
        Fake::start(EventMode::Ok, true, SessionMode::V2Acks).await
    }
}

/// An address where nothing listens (connection refused).
pub async fn dead_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = l.local_addr().unwrap();
    drop(l);
    a
}

type Resp = Response<Pin<Box<dyn Body<Data = Bytes, Error = Infallible> + Send>>>;

fn full(status: u16, body: &'static str) -> Resp {
    Response::builder()
        .status(status)
        .body(Box::pin(Full::new(Bytes::from_static(body.as_bytes()))) as _)
        .unwrap()
}

async fn handle(
    st: Arc<State>,
    kubescribe: bool,
    session: SessionMode,
    req: Request<Incoming>,
) -> Result<Resp, Infallible> {
    let path = req.uri().path().to_owned();
    match (req.method().clone(), path.as_str()) {
        (Method::HEAD, "/v2/event") => {
            st.heads.fetch_add(1, Ordering::SeqCst);
            match st.mode() {
                EventMode::Hang => std::future::pending().await,
                EventMode::NotSupported => Ok(full(404, "")),
                _ => {
                    let mut r = full(200, "");
                    if kubescribe {
                        r.headers_mut()
                            .insert("x-kubescribe-recorder", "1".parse().unwrap());
                    }
                    Ok(r)
                }
            }
        }
        (Method::POST, "/v2/event" | "/v2/events") => {
            st.posts.fetch_add(1, Ordering::SeqCst);
            if path == "/v2/events" {
                st.batches.fetch_add(1, Ordering::SeqCst);
            }
            let body = req.into_body().collect().await.unwrap().to_bytes();
            match st.mode() {
                EventMode::Hang => std::future::pending().await,
                EventMode::NotSupported => Ok(full(404, "404 page not found\n")),
                EventMode::PostStatus(code) => Ok(full(code, "recorder is unhappy\n")),
                EventMode::Ok => {
                    for line in body.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                        st.store_line(line);
                    }
                    Ok(full(200, ""))
                }
            }
        }
        (Method::HEAD, "/v2/record") => Ok(full(
            if session == SessionMode::V1Only {
                404
            } else {
                200
            },
            "",
        )),
        (Method::POST, "/v2/record") => {
            st.v2_hits.fetch_add(1, Ordering::SeqCst);
            let acks = matches!(session, SessionMode::V2Acks | SessionMode::V2Stalled);
            let stalled = session == SessionMode::V2Stalled;
            let (tx, rx) = mpsc::channel::<Bytes>(64);
            let mut body = req.into_body();
            let st = st.clone();
            tokio::spawn(async move {
                let mut got = Vec::new();
                let mut tick = tokio::time::interval(Duration::from_millis(2));
                loop {
                    tokio::select! {
                        f = body.frame() => match f {
                            Some(Ok(f)) => {
                                if let Some(d) = f.data_ref() {
                                    got.extend_from_slice(d);
                                }
                            }
                            Some(Err(_)) => return,
                            None => break,
                        },
                        _ = tick.tick(), if acks => {
                            let frame = if got.is_empty() || stalled { "{}\n".to_owned() } else { format!("{{\"ack\":{}}}\n", got.len()) };
                            if tx.send(Bytes::from(frame)).await.is_err() { return; }
                        }
                    }
                }
                if acks {
                    let _ = tx
                        .send(Bytes::from(format!("{{\"ack\":{}}}\n", got.len())))
                        .await;
                }
                st.sessions.lock().unwrap().push(("v2", got));
                // Dropping tx ends the response body: upload succeeded.
            });
            Ok(Response::builder()
                .status(200)
                .body(Box::pin(ChanBody(rx)) as _)
                .unwrap())
        }
        (Method::POST, "/record") => {
            st.v1_hits.fetch_add(1, Ordering::SeqCst);
            // hyper sends `100 Continue` when the body is first polled.
            let body = req.into_body().collect().await.unwrap().to_bytes();
            st.sessions.lock().unwrap().push(("v1", body.to_vec()));
            Ok(full(200, ""))
        }
        _ => Ok(full(404, "404 page not found\n")),
    }
}

struct ChanBody(mpsc::Receiver<Bytes>);

impl Body for ChanBody {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b))))
    }
}

/// An event with an idempotency key.
pub fn event(key: &str) -> event_model::Event {
    let mut e = event_model::Event {
        timestamp: 1_767_225_600,
        user_agent: "kubectl/v1.37".into(),
        ..Default::default()
    };
    e.request.method = "GET".into();
    e.request.path = format!("/api/v1/namespaces/default/pods?key={key}");
    e.kubescribe = Some(event_model::Extension {
        key: key.into(),
        ..Default::default()
    });
    e
}

/// Client settings for tests: a deadline generous enough for a loaded
/// machine, no circuit breaker (every send tries every address).
pub fn test_config() -> recorder_client::ClientConfig {
    recorder_client::ClientConfig {
        attempt_timeout: Duration::from_secs(10),
        breaker: recorder_client::BreakerConfig {
            enabled: false,
            ..Default::default()
        },
        ..Default::default()
    }
}

/// [`test_config`] with the circuit breaker on (the production default).
pub fn breaker_config() -> recorder_client::ClientConfig {
    recorder_client::ClientConfig {
        breaker: recorder_client::BreakerConfig::default(),
        ..test_config()
    }
}

/// [`test_config`] with a short deadline, for tests with hung recorders.
pub fn short_deadline_config() -> recorder_client::ClientConfig {
    recorder_client::ClientConfig {
        attempt_timeout: Duration::from_millis(1500),
        ..test_config()
    }
}

/// Waits (polling, bounded generously) until `f` holds.
pub async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..2000 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for: {what}");
}
