//! `POST /record` (legacy, HTTP/1.1): the client sends
//! `Expect: 100-continue`; hyper answers `100 Continue` as soon as the body is
//! read. The whole cast is read to EOF and stored; `200` only once it is
//! durable, otherwise a 4xx/5xx naming the problem.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;

use super::body::next_chunk;
use super::cast::{CastError, CastIngest};
use crate::app::App;
use crate::server::{json, json_error, recorder_header, ResBody};

/// `POST /record`.
pub async fn post(app: Arc<App>, peer: SocketAddr, req: Request<Incoming>) -> Response<ResBody> {
    let uploader = match app.auth.uploader(peer, req.headers()).await {
        Ok(u) => u,
        Err(denied) => {
            app.metrics.reject("forbidden");
            tracing::warn!(%peer, reason = %denied, "session upload refused");
            return json_error(denied.status, &denied.message);
        }
    };
    let Ok(_permit) = app.upload_slots.clone().try_acquire_owned() else {
        app.metrics.reject("too_many_uploads");
        return json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!(
                "too many session uploads in progress (limit {}, --max-concurrent-uploads)",
                app.config.limits.max_concurrent_uploads
            ),
        );
    };
    app.metrics.active_uploads.inc();
    let mut body = req.into_body();
    let mut ingest = CastIngest::new(app.clone(), uploader, "v1");
    let idle = app.config.limits.upload_idle_timeout;
    let interval = app.config.limits.ack_interval;
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
    app.metrics.active_uploads.dec();
    match result {
        Ok(size) => {
            let mut res = json(
                StatusCode::OK,
                &serde_json::json!({"id": id, "bytes": size}),
            );
            recorder_header(&mut res);
            res
        }
        Err(e) => {
            let status = match &e {
                CastError::Body(b) => b.status(),
                CastError::TooLarge(_) | CastError::LineTooLong { .. } => {
                    StatusCode::PAYLOAD_TOO_LARGE
                }
                e if e.is_client_error() => StatusCode::BAD_REQUEST,
                _ => StatusCode::SERVICE_UNAVAILABLE,
            };
            json_error(status, &e.to_string())
        }
    }
}
