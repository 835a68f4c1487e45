//! Batches: `POST /v2/events` (or `/v2/event` with an NDJSON body), one
//! record per line, **all or nothing**: either every record is durably stored
//! (or recognised as a duplicate) and the 200 lists their ids in order, or
//! nothing is stored and the error names the first bad line.

use std::net::SocketAddr;
use std::sync::Arc;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;

use super::body::read_record_body;
use super::event::{body_type, commit_failed, prepare};
use crate::app::App;
use crate::auth::Uploader;
use crate::server::{json_error, recorder_header, with_body, ResBody};
use crate::storage::layout::RecordKind;

/// `POST /v2/events`.
pub async fn post(app: Arc<App>, peer: SocketAddr, req: Request<Incoming>) -> Response<ResBody> {
    let uploader = match app.auth.uploader(peer, req.headers()).await {
        Ok(u) => u,
        Err(denied) => {
            app.metrics.reject("forbidden");
            tracing::warn!(%peer, reason = %denied, "batch upload refused");
            return json_error(denied.status, &denied.message);
        }
    };
    if let Err(message) = body_type(req.headers()) {
        app.metrics.reject("content_type");
        return json_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, &message);
    }
    handle(app, uploader, req).await
}

/// Stores an NDJSON batch for an authenticated uploader.
pub async fn handle(
    app: Arc<App>,
    uploader: Uploader,
    req: Request<Incoming>,
) -> Response<ResBody> {
    let limit = app.config.limits.max_batch_bytes;
    let (_reserved, body) =
        match read_record_body(&app, req, limit, "batch", "--max-batch-bytes").await {
            Ok(read) => read,
            Err(response) => return response,
        };
    let max_line = app.config.limits.max_event_bytes;
    let mut records = Vec::with_capacity(body.iter().filter(|b| **b == b'\n').count() + 1);
    for (n, line) in body.split(|b| *b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if line.len() > max_line {
            app.metrics.reject("too_large");
            return json_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("line {}: record is larger than the limit of {max_line} bytes (--max-event-bytes); nothing was stored", n + 1),
            );
        }
        match prepare(line, &uploader) {
            Ok(p) => records.push(p),
            Err(e) => {
                app.metrics.reject("invalid");
                return json_error(
                    StatusCode::BAD_REQUEST,
                    &format!("line {}: {e}; nothing was stored", n + 1),
                );
            }
        }
    }
    if records.is_empty() {
        app.metrics.reject("invalid");
        return json_error(StatusCode::BAD_REQUEST, "empty batch: no records");
    }
    for r in &records {
        app.metrics.received(match r.kind {
            RecordKind::Event => "event",
            RecordKind::Response => "response",
        });
    }
    match app.committer.commit(records).await {
        Ok(acks) => {
            // Ids are the recorder's own (`e-<hex>-<n>`): nothing to escape.
            let duplicates = acks.iter().filter(|a| a.duplicate).count();
            let mut body = String::with_capacity(16 + acks.len() * 48);
            body.push_str("{\"ids\":[");
            for (i, ack) in acks.iter().enumerate() {
                if i > 0 {
                    body.push(',');
                }
                body.push('"');
                body.push_str(&ack.id);
                body.push('"');
            }
            body.push_str(&format!("],\"duplicates\":{duplicates}}}\n"));
            let mut res = with_body(StatusCode::OK, "application/json", body.into_bytes());
            recorder_header(&mut res);
            res
        }
        Err(e) => commit_failed(&app, e),
    }
}
