//! One delivery attempt over HTTP/1.1: the cached probe, the `POST`, the
//! deadline, and ordered failover across a caller's recorder addresses.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tracing::Instrument;

use super::batch::Batcher;
use super::probe_cache::{ProbeCache, Support};
use super::Delivered;
use crate::config::ClientConfig;
use crate::error::{AttemptError, DeliveryError};
use crate::metrics::Metrics;
use crate::spool::RecordKind;

/// The response header a kubescribe recorder sets on `HEAD /v2/event`.
pub const KUBESCRIBE_RECORDER_HEADER: &str = "x-kubescribe-recorder";

/// Most response body bytes read (and quoted in errors) from a recorder.
const MAX_RESPONSE_BODY: usize = 64 << 10;
/// Most response body bytes quoted in an error message.
const MAX_QUOTED_BODY: usize = 512;

/// The pooled HTTP/1.1 client and the raw exchanges with one recorder.
#[derive(Debug)]
pub(crate) struct Transport {
    http: Client<HttpConnector, Full<Bytes>>,
    attempt_timeout: Duration,
}

impl Transport {
    pub(crate) fn new(cfg: &ClientConfig) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(cfg.dial_timeout.min(cfg.attempt_timeout)));
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

    /// The per-attempt deadline.
    pub(crate) fn attempt_timeout(&self) -> Duration {
        self.attempt_timeout
    }

    /// `HEAD /v2/event`.
    async fn probe(&self, addr: SocketAddr) -> Result<Support, AttemptError> {
        let req = Request::builder()
            .method(Method::HEAD)
            .uri(format!("http://{addr}/v2/event"))
            .body(Full::new(Bytes::new()))
            .map_err(|e| AttemptError::Transport(e.to_string()))?;
        let resp = self.http.request(req).await.map_err(classify)?;
        let status = resp.status();
        let kubescribe = resp
            .headers()
            .get(KUBESCRIBE_RECORDER_HEADER)
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

    /// `POST <path>` with a JSON or NDJSON body; only 200 is success.
    pub(crate) async fn post(
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
            .map_err(|e| AttemptError::Transport(e.to_string()))?;
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

/// When a recorder that failed within the back-off is skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SkipDown {
    /// Always try it (spool redelivery).
    Never,
    /// Skip it only if some other address is not in back-off (fail closed:
    /// refusing costs more than waiting).
    WhenAnotherIsUp,
    /// Skip it (fail open: the event goes to the spool at once).
    Always,
}

/// Sends records to recorders: probe cache, batching, failover, metrics.
#[derive(Debug)]
pub(crate) struct Sender {
    transport: Arc<Transport>,
    probes: ProbeCache,
    batcher: Option<Batcher>,
    metrics: Metrics,
}

impl Sender {
    pub(crate) fn new(cfg: &ClientConfig, metrics: Metrics) -> Self {
        let transport = Arc::new(Transport::new(cfg));
        let batcher = cfg
            .batch
            .enabled
            .then(|| Batcher::new(transport.clone(), cfg.batch.clone()));
        Self {
            transport,
            probes: ProbeCache::new(cfg.probe_ttl, cfg.down_backoff),
            batcher,
            metrics,
        }
    }

    /// Delivers `bodies` (one record, or several to be stored all or nothing)
    /// to the first address that accepts them, trying `addrs` in order.
    /// `skip` says when recorders that failed within the back-off are
    /// reported failed without a round trip.
    pub(crate) async fn deliver(
        &self,
        addrs: &[SocketAddr],
        kind: RecordKind,
        bodies: &[Bytes],
        skip: SkipDown,
    ) -> Result<Delivered, DeliveryError> {
        let down: Vec<_> = addrs
            .iter()
            .map(|a| match skip {
                SkipDown::Never => None,
                _ => self.probes.recently_failed(*a),
            })
            .collect();
        let any_up = down.iter().any(Option::is_none);
        let mut attempts = Vec::new();
        for (&addr, down) in addrs.iter().zip(down) {
            let span = tracing::debug_span!("recorder_send", recorder = %addr, kind = kind.label(), records = bodies.len());
            let skip_this = match skip {
                SkipDown::Never => false,
                SkipDown::Always => down.is_some(),
                SkipDown::WhenAnotherIsUp => down.is_some() && any_up,
            };
            let result = match down {
                Some((ago, last)) if skip_this => Err(AttemptError::RecentlyFailed {
                    ago_ms: ago.as_millis(),
                    last,
                }),
                _ => {
                    self.attempt(addr, kind, bodies)
                        .instrument(span.clone())
                        .await
                }
            };
            match result {
                Ok(()) => {
                    self.probes.succeeded(addr);
                    span.in_scope(|| tracing::debug!("recorder accepted"));
                    return Ok(Delivered { recorder: addr });
                }
                Err(err) => {
                    self.metrics.attempt_failed(kind.label(), err.reason());
                    span.in_scope(|| tracing::debug!(error = %err, "recorder attempt failed"));
                    // A cached "not supported" stays cached; any other
                    // failure makes the next attempt probe again.
                    if !matches!(
                        err,
                        AttemptError::RecentlyFailed { .. }
                            | AttemptError::NotSupported(_)
                            | AttemptError::NotKubescribe(_)
                    ) {
                        self.probes
                            .failed(addr, err.marks_down().then(|| err.to_string()));
                    }
                    attempts.push((addr, err));
                }
            }
        }
        Err(DeliveryError { attempts })
    }

    /// One address, under the attempt deadline.
    async fn attempt(
        &self,
        addr: SocketAddr,
        kind: RecordKind,
        bodies: &[Bytes],
    ) -> Result<(), AttemptError> {
        let deadline = self.transport.attempt_timeout();
        match tokio::time::timeout(deadline, self.attempt_inner(addr, kind, bodies)).await {
            Ok(result) => result,
            Err(_) => Err(AttemptError::Timeout(deadline)),
        }
    }

    async fn attempt_inner(
        &self,
        addr: SocketAddr,
        kind: RecordKind,
        bodies: &[Bytes],
    ) -> Result<(), AttemptError> {
        let support = match self.probes.get(addr) {
            Some(s) => s,
            None => {
                let s = self.transport.probe(addr).await?;
                self.probes.put(addr, s);
                s
            }
        };
        let kubescribe = match support {
            Support::NotSupported => return Err(AttemptError::NotSupported(addr)),
            Support::Supported { kubescribe } => kubescribe,
        };
        if kind == RecordKind::Response && !kubescribe {
            return Err(AttemptError::NotKubescribe(addr));
        }
        match bodies {
            [] => Ok(()),
            [one] => match &self.batcher {
                Some(batcher) if kubescribe => batcher.submit(addr, one.clone()).await,
                _ => {
                    self.transport
                        .post(addr, "/v2/event", "application/json", one.clone())
                        .await
                }
            },
            many if kubescribe => {
                let mut ndjson = Vec::with_capacity(many.iter().map(Bytes::len).sum());
                for b in many {
                    ndjson.extend_from_slice(b);
                }
                self.transport
                    .post(addr, "/v2/events", "application/x-ndjson", ndjson.into())
                    .await
            }
            many => {
                // A Tailscale recorder takes single events only.
                for b in many {
                    self.transport
                        .post(addr, "/v2/event", "application/json", b.clone())
                        .await?;
                }
                Ok(())
            }
        }
    }
}

fn classify(e: hyper_util::client::legacy::Error) -> AttemptError {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    if e.is_connect() {
        AttemptError::Connect(text)
    } else {
        AttemptError::Transport(text)
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
