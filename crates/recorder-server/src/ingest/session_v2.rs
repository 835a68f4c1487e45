//! `HEAD`/`POST /v2/record`: a streaming asciicast body (h2c in practice),
//! answered at once with `200` and a stream of JSON frames:
//!
//! * `{"ack":N}\n`: N is the number of bytes of the cast **durably stored**
//!   (whole validated lines, fsynced on disk / PUT on S3). Sent every
//!   `--ack-interval` (default 1 s) even when nothing new arrived, as the
//!   heartbeat Tailscale's client needs (it gives up after 30 s without a
//!   frame), and once more at the end.
//! * `{"error":"…"}\n`: only as the last frame, when the upload fails.
//!
//! The response ends (EOF) once the whole cast is stored.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use tokio::sync::mpsc;

use super::body::next_chunk;
use super::cast::{CastError, CastIngest};
use crate::app::App;
use crate::server::{json_error, recorder_header, ResBody};

/// `HEAD /v2/record`.
pub fn head() -> Response<ResBody> {
    let mut res = Response::new(crate::server::empty());
    recorder_header(&mut res);
    res
}

fn frame(value: serde_json::Value) -> Bytes {
    let mut line = serde_json::to_vec(&value).unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}

/// `POST /v2/record`.
pub async fn post(app: Arc<App>, peer: SocketAddr, req: Request<Incoming>) -> Response<ResBody> {
    let uploader = match app.auth.uploader(peer, req.headers()).await {
        Ok(u) => u,
        Err(denied) => {
            app.metrics.reject("forbidden");
            tracing::warn!(%peer, reason = %denied, "session upload refused");
            return json_error(denied.status, &denied.message);
        }
    };
    let Ok(permit) = app.upload_slots.clone().try_acquire_owned() else {
        app.metrics.reject("too_many_uploads");
        return json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!(
                "too many session uploads in progress (limit {}, --max-concurrent-uploads)",
                app.config.limits.max_concurrent_uploads
            ),
        );
    };
    let (tx, rx) = mpsc::channel::<Bytes>(8);
    let mut body = req.into_body();
    let task_app = app.clone();
    tokio::spawn(async move {
        let _permit = permit;
        let app = task_app;
        app.metrics.active_uploads.inc();
        let mut ingest = CastIngest::new(app.clone(), uploader, "v2");
        let idle = app.config.limits.upload_idle_timeout;
        let mut ticker = tokio::time::interval(app.config.limits.ack_interval);
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
        app.metrics.active_uploads.dec();
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
    res
}
