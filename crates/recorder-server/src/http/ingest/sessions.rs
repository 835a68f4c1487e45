//! Session recordings (asciicast v2 streams):
//!
//! * `POST /v2/record` (h2c in practice): answered at once with `200` and a
//!   stream of JSON frames. `{"ack":N}\n`: N bytes of the cast are **durably
//!   stored** (whole validated lines, fsynced on disk / PUT on S3); sent
//!   every `--ack-interval` (default 1 s) even when nothing new arrived, as
//!   the heartbeat Tailscale's client needs (it gives up after 30 s without
//!   a frame), and once more at the end. `{"error":"…"}\n`: only as the last
//!   frame, when the upload fails. The response ends once the whole cast is
//!   stored.
//! * `POST /record` (legacy, HTTP/1.1): the client sends
//!   `Expect: 100-continue`; hyper answers `100 Continue` as soon as the body
//!   is read. The whole cast is read to EOF and stored; `200` only once it
//!   is durable, otherwise a 4xx/5xx naming the problem.
//!
//! Both hold an upload slot (see `pipeline::slots`): refused at once over the
//! total or the uploader's share (`503`/`429`), and once the header names the
//! caller, over the caller's share (`429`, or an error frame on `/v2/record`).
//!
//! **Time limits.** The cast header (line 1) must arrive within
//! `--session-header-timeout` of the request: an upload that names no caller
//! holds no slot for long. After it, a session may be silent for as long as
//! it is alive — an interactive shell can wait hours for its user, and
//! the proxy sends no bytes meanwhile. Over HTTP/2 (`/v2/record` as
//! Tailscale's and kubescribe's proxies send it) the recorder pings a
//! connection silent for 20 s: a peer that does not answer within 20 s is gone,
//! and its connection and uploads end, keeping what was received (hyper ends
//! such streams as if cleanly, so the session shows as finished). A
//! live uploader that keeps sessions open without bytes holds its own callers'
//! slots, within their limits. Over HTTP/1.1 there are no pings, so silence
//! longer than `--upload-idle-timeout` ends the upload (`408`).

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::state::Ingest;
use crate::access::{Peer, Uploader};
use crate::body::{next_chunk, next_data};
use crate::http::error::HttpError;
use crate::http::response::{json, recorder_header, ResBody};
use crate::pipeline::cast::{CastError, CastIngest};

/// How long a session upload may wait for its next chunk.
#[derive(Debug, Clone, Copy)]
enum Wait {
    /// Until the header deadline (the header has not arrived): the instant, and the timeout for
    /// the error.
    Header(Instant, Duration),
    /// At most this long (HTTP/1.1, where silence is all the recorder can see).
    Idle(Duration),
    /// As long as the connection lives (HTTP/2, whose pings detect a dead peer).
    Alive,
}

impl Wait {
    /// The wait for `ingest`'s next chunk: the header deadline until the header is in, then as
    /// the protocol allows (`idle` over HTTP/1.1, none over HTTP/2).
    fn next(
        ingest: &CastIngest,
        header_by: Instant,
        header_timeout: Duration,
        idle: Option<Duration>,
    ) -> Self {
        match (ingest.has_header(), idle) {
            (false, _) => Wait::Header(header_by, header_timeout),
            (true, Some(idle)) => Wait::Idle(idle),
            (true, None) => Wait::Alive,
        }
    }
}

/// The next chunk of a session upload within `wait`. Cancel-safe.
async fn next_session_chunk(body: &mut Incoming, wait: Wait) -> Result<Option<Bytes>, CastError> {
    match wait {
        Wait::Header(by, timeout) => tokio::time::timeout_at(by, next_data(body))
            .await
            .map_err(|_| CastError::NoHeader(timeout))?
            .map_err(CastError::from),
        Wait::Idle(idle) => next_chunk(body, idle).await.map_err(CastError::from),
        Wait::Alive => next_data(body).await.map_err(CastError::from),
    }
}

/// One `/v2/record` frame: a JSON object and a newline.
fn frame(value: serde_json::Value) -> Bytes {
    let mut line = serde_json::to_vec(&value).unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}

impl Ingest {
    /// `POST /record` by `uploader` from `peer`.
    pub(super) async fn record_v1(
        &self,
        uploader: Uploader,
        peer: &Peer,
        req: Request<Incoming>,
    ) -> Result<Response<ResBody>, HttpError> {
        let slot = self.upload_slot(&uploader, peer)?;
        self.metrics.active_uploads.inc();
        let header_timeout = self.limits.session_header_timeout;
        let header_by = Instant::now() + header_timeout;
        let idle = self.limits.upload_idle_timeout;
        let mut body = req.into_body();
        let mut ingest = CastIngest::new(self.casts.clone(), uploader, "v1", slot);
        let interval = self.limits.ack_interval;
        let mut last_flush = Instant::now();
        let error: Option<CastError> = loop {
            let wait = Wait::next(&ingest, header_by, header_timeout, Some(idle));
            match next_session_chunk(&mut body, wait).await {
                Ok(Some(data)) => {
                    if let Err(e) = ingest.push(&data).await {
                        break Some(e);
                    }
                    // Keep data durable as it arrives, so a crash loses little.
                    if last_flush.elapsed() >= interval {
                        last_flush = Instant::now();
                        if let Err(e) = ingest.flush().await {
                            break Some(e);
                        }
                    }
                }
                Ok(None) => break None,
                Err(e) => break Some(e),
            }
        };
        let id = ingest.id().simple().to_string();
        let result = ingest.finish(error).await;
        self.metrics.active_uploads.dec();
        let size = result?;
        let mut res = json(
            StatusCode::OK,
            &serde_json::json!({"id": id, "bytes": size}),
        );
        recorder_header(&mut res);
        Ok(res)
    }

    /// `POST /v2/record` by `uploader` from `peer`.
    pub(super) async fn record_v2(
        &self,
        uploader: Uploader,
        peer: &Peer,
        req: Request<Incoming>,
    ) -> Result<Response<ResBody>, HttpError> {
        let slot = self.upload_slot(&uploader, peer)?;
        let (tx, rx) = mpsc::channel::<Bytes>(8);
        // Over HTTP/2 the connection's pings tell a live peer from a dead one; over HTTP/1.1
        // only silence can.
        let idle =
            (req.version() < http::Version::HTTP_2).then_some(self.limits.upload_idle_timeout);
        let mut body = req.into_body();
        let casts = self.casts.clone();
        let metrics = self.metrics.clone();
        let header_timeout = self.limits.session_header_timeout;
        let header_by = Instant::now() + header_timeout;
        let ack_interval = self.limits.ack_interval;
        tokio::spawn(async move {
            metrics.active_uploads.inc();
            let mut ingest = CastIngest::new(casts, uploader, "v2", slot);
            let mut ticker = tokio::time::interval(ack_interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let error: Option<CastError> = loop {
                let wait = Wait::next(&ingest, header_by, header_timeout, idle);
                tokio::select! {
                    chunk = next_session_chunk(&mut body, wait) => match chunk {
                        Ok(Some(data)) => {
                            if let Err(e) = ingest.push(&data).await {
                                break Some(e);
                            }
                        }
                        Ok(None) => break None,
                        Err(e) => break Some(e),
                    },
                    _ = ticker.tick() => {
                        match ingest.flush().await {
                            Ok(durable) => {
                                let _ = tx.try_send(frame(serde_json::json!({"ack": durable})));
                            }
                            Err(e) => break Some(e),
                        }
                    }
                }
            };
            let id = ingest.id().simple().to_string();
            match ingest.finish(error).await {
                Ok(size) => {
                    let _ = tx.send(frame(serde_json::json!({"ack": size}))).await;
                }
                Err(e) => {
                    if e.is_refusal() {
                        metrics.reject(e.reason());
                    }
                    tracing::warn!(session = %id, error = %e, "v2 session upload failed");
                    let _ = tx
                        .send(frame(serde_json::json!({"error": e.to_string()})))
                        .await;
                }
            }
            metrics.active_uploads.dec();
        });
        let stream = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv()
                .await
                .map(|b| (Ok::<_, Infallible>(Frame::data(b)), rx))
        });
        let body = StreamBody::new(stream)
            .map_err(|never| match never {})
            .boxed_unsync();
        let mut res = Response::new(body);
        res.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/x-ndjson"),
        );
        recorder_header(&mut res);
        Ok(res)
    }
}
