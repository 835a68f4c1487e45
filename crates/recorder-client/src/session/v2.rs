//! `/v2/record` over h2c (HTTP/2 with prior knowledge): the probe, the
//! streaming upload, and the ack monitor.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, StatusCode, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::{timeout_at, Instant, MissedTickBehavior};

use super::dial::dial;
use super::upload::{
    conclude, ChannelBody, SessionProtocol, SessionUpload, Shared, UploadStatus, UploadSummary,
};
use crate::ack::{AckDecoder, AckFrame};
use crate::cause::Cause;
use crate::config::SessionOptions;
use crate::error::{SessionAttemptError, UploadError};

/// What the `HEAD /v2/record` probe found.
pub(crate) enum Probe {
    /// An h2c connection whose probe answered 200 over HTTP/2.
    V2(http2::SendRequest<ChannelBody>, JoinHandle<()>),
    /// The recorder is reachable but does not speak v2 (why, for the log).
    NotV2(String),
}

/// Probes `HEAD /v2/record` over h2c. A dial failure is an error (the
/// address is unreachable for v1 too); anything else that is not a 200 over
/// HTTP/2 means "use v1".
pub(crate) async fn probe(
    addr: SocketAddr,
    opts: &SessionOptions,
    deadline: Instant,
) -> Result<Probe, SessionAttemptError> {
    let tcp = dial(addr, opts, deadline).await?;
    let until = deadline.min(Instant::now() + opts.probe_timeout);
    let handshake = http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(15)))
        .keep_alive_timeout(Duration::from_secs(20))
        .handshake::<_, ChannelBody>(TokioIo::new(tcp));
    let (mut send, conn) = match timeout_at(until, handshake).await {
        Ok(Ok(pair)) => pair,
        Ok(Err(e)) => return Ok(Probe::NotV2(format!("h2c handshake failed: {e}"))),
        Err(_) => return Ok(Probe::NotV2("h2c handshake timed out".into())),
    };
    let conn = tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "h2c connection to recorder ended");
        }
    });
    let req = match Request::builder()
        .method(Method::HEAD)
        .uri(format!("http://{addr}/v2/record"))
        .body(ChannelBody::empty())
    {
        Ok(req) => req,
        Err(e) => {
            conn.abort();
            return Err(SessionAttemptError::Request(Cause::new(e)));
        }
    };
    let probe = async {
        send.ready().await?;
        send.send_request(req).await
    };
    match timeout_at(until, probe).await {
        Ok(Ok(resp)) if resp.status() == StatusCode::OK && resp.version() >= Version::HTTP_2 => {
            Ok(Probe::V2(send, conn))
        }
        Ok(Ok(resp)) => {
            conn.abort();
            Ok(Probe::NotV2(format!("probe answered {}", resp.status())))
        }
        Ok(Err(e)) => {
            conn.abort();
            Ok(Probe::NotV2(format!("probe failed: {e}")))
        }
        Err(_) => {
            conn.abort();
            Ok(Probe::NotV2("probe timed out".into()))
        }
    }
}

/// Starts `POST /v2/record` on a probed connection and supervises it.
pub(crate) async fn start(
    addr: SocketAddr,
    mut send: http2::SendRequest<ChannelBody>,
    conn: JoinHandle<()>,
    opts: &SessionOptions,
    deadline: Instant,
) -> Result<SessionUpload, SessionAttemptError> {
    let capacity = opts.channel_capacity.max(1);
    let (tx, rx) = mpsc::channel(capacity);
    let shared = Arc::new(Shared::default());
    let req = Request::builder()
        .method(Method::POST)
        .uri(format!("http://{addr}/v2/record"))
        .body(ChannelBody::new(rx, shared.clone()))
        .map_err(|e| SessionAttemptError::Request(Cause::new(e)))?;
    let until = deadline.min(Instant::now() + opts.response_timeout);
    let resp = match timeout_at(until, async {
        send.ready().await?;
        send.send_request(req).await
    })
    .await
    {
        Ok(Ok(resp)) => resp,
        Ok(Err(e)) => {
            conn.abort();
            return Err(SessionAttemptError::Http(Cause::new(e)));
        }
        Err(_) => {
            conn.abort();
            return Err(SessionAttemptError::NoResponseHeaders);
        }
    };
    if resp.status() != StatusCode::OK {
        conn.abort();
        return Err(SessionAttemptError::Status(resp.status()));
    }
    let (status_tx, status_rx) = watch::channel(UploadStatus::Running);
    let window = opts.ack_window;
    let metrics = opts.metrics.clone();
    let task_shared = shared.clone();
    let task = tokio::spawn(async move {
        let result = monitor(addr, resp.into_body(), &task_shared, window).await;
        conn.abort();
        // Keep the sender alive until the monitor is done with the stream.
        drop(send);
        conclude(result, &status_tx, metrics.as_ref(), addr)
    });
    Ok(SessionUpload::new(
        addr,
        SessionProtocol::V2,
        tx,
        capacity,
        shared,
        status_rx,
        task,
    ))
}

/// Reads ack frames until the recorder ends the response, enforcing the ack
/// window and progress.
async fn monitor(
    addr: SocketAddr,
    mut body: Incoming,
    shared: &Shared,
    window: Duration,
) -> Result<UploadSummary, UploadError> {
    let mut decoder = AckDecoder::default();
    let mut last_frame = Instant::now();
    let mut progress_at = Instant::now();
    let mut acked = 0u64;
    let tick = (window / 4).clamp(Duration::from_millis(5), Duration::from_secs(1));
    let mut ticker = tokio::time::interval(tick);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            frame = body.frame() => match frame {
                None => {
                    decoder.finish().map_err(UploadError::Acks)?;
                    if !shared.finishing.load(Ordering::Acquire) {
                        return Err(UploadError::EndedEarly);
                    }
                    return Ok(UploadSummary {
                        recorder: addr,
                        protocol: SessionProtocol::V2,
                        bytes_sent: shared.sent.load(Ordering::Relaxed),
                        bytes_acked: Some(acked),
                    });
                }
                Some(Err(e)) => return Err(UploadError::Transport(Cause::new(e))),
                Some(Ok(frame)) => {
                    if let Some(data) = frame.data_ref() {
                        let frames = decoder.push(data).map_err(UploadError::Acks)?;
                        for f in frames {
                            last_frame = Instant::now();
                            match f {
                                AckFrame::Ack(n) => {
                                    let sent = shared.sent.load(Ordering::Relaxed);
                                    if n > sent {
                                        return Err(UploadError::OverAcked { acked: n, sent });
                                    }
                                    if n > acked {
                                        acked = n;
                                        progress_at = last_frame;
                                    }
                                }
                                AckFrame::Error(msg) => {
                                    return Err(UploadError::Recorder(msg));
                                }
                            }
                        }
                    }
                }
            },
            _ = ticker.tick() => {}
        }
        let now = Instant::now();
        if now.duration_since(last_frame) >= window {
            return Err(UploadError::NoAcks(window));
        }
        let sent = shared.sent.load(Ordering::Relaxed);
        if acked >= sent {
            progress_at = now;
        } else if now.duration_since(progress_at) >= window {
            return Err(UploadError::AcksStalled {
                acked,
                sent,
                window,
            });
        }
    }
}
