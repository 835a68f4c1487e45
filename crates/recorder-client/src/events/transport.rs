//! The raw HTTP/1.1 exchanges with one recorder: the `HEAD /v2/event` probe
//! and the `POST` of one event or a batch, over a pooled keep-alive client
//! whose connections the client's [`RecorderDialer`](crate::RecorderDialer)
//! opens, each bounded by the attempt deadline.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::probe_cache::Support;
use crate::cause::Cause;
use crate::config::ClientConfig;
use crate::dialer::Connector;
use crate::error::AttemptError;

/// Most response body bytes read (and quoted in errors) from a recorder.
const MAX_RESPONSE_BODY: usize = 64 << 10;
/// Most response body bytes quoted in an error message.
const MAX_QUOTED_BODY: usize = 512;

/// The pooled HTTP/1.1 client and the raw exchanges with one recorder.
#[derive(Debug)]
pub(crate) struct Transport {
    http: Client<Connector, Full<Bytes>>,
    attempt_timeout: Duration,
}

impl Transport {
    pub(crate) fn new(cfg: &ClientConfig) -> Self {
        let connector = Connector::new(
            cfg.dialer.clone(),
            cfg.dial_timeout.min(cfg.attempt_timeout),
        );
        let http = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .pool_idle_timeout(cfg.pool_idle_timeout)
            .pool_max_idle_per_host(cfg.pool_max_idle_per_recorder)
            .build(connector);
        Self {
            http,
            attempt_timeout: cfg.attempt_timeout,
        }
    }

    /// Runs one attempt under the per-attempt deadline.
    pub(crate) async fn within_deadline<T>(
        &self,
        attempt: impl Future<Output = Result<T, AttemptError>>,
    ) -> Result<T, AttemptError> {
        let deadline = self.attempt_timeout;
        tokio::time::timeout(deadline, attempt)
            .await
            .unwrap_or(Err(AttemptError::Timeout(deadline)))
    }

    /// `HEAD /v2/event`.
    pub(crate) async fn probe(&self, addr: SocketAddr) -> Result<Support, AttemptError> {
        let req = Request::builder()
            .method(Method::HEAD)
            .uri(format!("http://{addr}/v2/event"))
            .body(Full::new(Bytes::new()))
            .map_err(|e| AttemptError::Transport(Cause::new(e)))?;
        let resp = self.http.request(req).await.map_err(classify)?;
        let status = resp.status();
        let kubescribe = resp
            .headers()
            .get(event_model::KUBESCRIBE_RECORDER_HEADER)
            .is_some_and(|v| v.as_bytes() == b"1");
        let body = read_body(resp.into_body()).await;
        match status {
            StatusCode::OK => Ok(Support::Supported { kubescribe }),
            StatusCode::NOT_FOUND => Ok(Support::NotSupported),
            status => Err(AttemptError::Status {
                status,
                body: quote(&body),
            }),
        }
    }

    /// `POST /v2/event` of one record (JSON).
    pub(crate) async fn post_one(&self, addr: SocketAddr, body: Bytes) -> Result<(), AttemptError> {
        self.post(addr, "/v2/event", "application/json", body).await
    }

    /// `POST /v2/events` of several records (NDJSON, stored all or nothing;
    /// kubescribe recorders only).
    pub(crate) async fn post_batch<'a>(
        &self,
        addr: SocketAddr,
        bodies: impl Iterator<Item = &'a Bytes> + Clone,
    ) -> Result<(), AttemptError> {
        let mut ndjson = Vec::with_capacity(bodies.clone().map(Bytes::len).sum());
        for body in bodies {
            ndjson.extend_from_slice(body);
        }
        self.post(addr, "/v2/events", "application/x-ndjson", ndjson.into())
            .await
    }

    /// `POST <path>`; only 200 is success.
    async fn post(
        &self,
        addr: SocketAddr,
        path: &str,
        content_type: &'static str,
        body: Bytes,
    ) -> Result<(), AttemptError> {
        let req = Request::builder()
            .method(Method::POST)
            .uri(format!("http://{addr}{path}"))
            .header(header::CONTENT_TYPE, content_type)
            .body(Full::new(body))
            .map_err(|e| AttemptError::Transport(Cause::new(e)))?;
        let resp = self.http.request(req).await.map_err(classify)?;
        let status = resp.status();
        // Read the (small) body so the connection goes back to the pool.
        let body = read_body(resp.into_body()).await;
        if status == StatusCode::OK {
            Ok(())
        } else {
            Err(AttemptError::Status {
                status,
                body: quote(&body),
            })
        }
    }
}

/// A failed request: the connection was never made, or the exchange broke.
fn classify(e: hyper_util::client::legacy::Error) -> AttemptError {
    if e.is_connect() {
        AttemptError::Connect(Cause::new(e))
    } else {
        AttemptError::Transport(Cause::new(e))
    }
}

async fn read_body(mut body: hyper::body::Incoming) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => {
                if let Some(data) = frame.data_ref() {
                    if out.len() + data.len() > MAX_RESPONSE_BODY {
                        break;
                    }
                    out.extend_from_slice(data);
                }
            }
            Err(_) => break,
        }
    }
    out
}

fn quote(body: &[u8]) -> String {
    let end = body.len().min(MAX_QUOTED_BODY);
    String::from_utf8_lossy(&body[..end]).trim_end().to_owned()
}
