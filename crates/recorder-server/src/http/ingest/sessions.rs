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

use std::convert::Infallible;
use std::time::Instant;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use tokio::sync::mpsc;

use super::state::Ingest;
use crate::access::Uploader;
use crate::body::next_chunk;
use crate::http::error::HttpError;
use crate::http::response::{json, recorder_header, ResBody};
use crate::pipeline::cast::{CastError, CastIngest};

/// One `/v2/record` frame: a JSON object and a newline.
fn frame(value: serde_json::Value) -> Bytes {
    let mut line = serde_json::to_vec(&value).unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}

impl Ingest {
    /// `POST /record` by `uploader`.
    pub(super) async fn record_v1(
        &self,
        uploader: Uploader,
        req: Request<Incoming>,
    ) -> Result<Response<ResBody>, HttpError> {
        let _slot = self.upload_slot()?;
        self.metrics.active_uploads.inc();
        let mut body = req.into_body();
        let mut ingest = CastIngest::new(self.casts.clone(), uploader, "v1");
        let idle = self.limits.upload_idle_timeout;
        let interval = self.limits.ack_interval;
        let mut last_flush = Instant::now();
        let error: Option<CastError> = loop {
            match next_chunk(&mut body, idle).await {
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
                Err(e) => break Some(e.into()),
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

    /// `POST /v2/record` by `uploader`.
    pub(super) async fn record_v2(
        &self,
        uploader: Uploader,
        req: Request<Incoming>,
    ) -> Result<Response<ResBody>, HttpError> {
        let slot = self.upload_slot()?;
        let (tx, rx) = mpsc::channel::<Bytes>(8);
        let mut body = req.into_body();
        let casts = self.casts.clone();
        let metrics = self.metrics.clone();
        let idle = self.limits.upload_idle_timeout;
        let ack_interval = self.limits.ack_interval;
        tokio::spawn(async move {
            let _slot = slot;
            metrics.active_uploads.inc();
            let mut ingest = CastIngest::new(casts, uploader, "v2");
            let mut ticker = tokio::time::interval(ack_interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let error: Option<CastError> = loop {
                tokio::select! {
                    chunk = next_chunk(&mut body, idle) => match chunk {
                        Ok(Some(data)) => {
                            if let Err(e) = ingest.push(&data).await {
                                break Some(e);
                            }
                        }
                        Ok(None) => break None,
                        Err(e) => break Some(e.into()),
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
