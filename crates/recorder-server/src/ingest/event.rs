//! `HEAD`/`POST /v2/event`: one event or response record, stored durably
//! before the 200. An NDJSON body (`Content-Type: application/x-ndjson`) is
//! handled as a batch (see [`super::batch`]).

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use event_model::{Destination, Record, ResponseRecord};
use http::{HeaderMap, Request, Response, StatusCode};
use hyper::body::Incoming;

use super::body::read_record_body;
use crate::app::App;
use crate::auth::Uploader;
use crate::commit::{CommitError, Prepared};
use crate::query::index::{EventSummary, ResponseSummary, Summary};
use crate::server::{json_error, recorder_header, with_body, ResBody};
use crate::storage::layout::RecordKind;

/// Accepted request content types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyType {
    /// `application/json`: one record.
    Json,
    /// `application/x-ndjson` (or `application/jsonl`): many records.
    Ndjson,
}

/// Classifies the `Content-Type`; `Err` with a message for anything else.
pub fn body_type(headers: &HeaderMap) -> Result<BodyType, String> {
    let Some(value) = headers.get(http::header::CONTENT_TYPE) else {
        return Err("missing Content-Type; send application/json (one record) or application/x-ndjson (a batch)".into());
    };
    let mime = value
        .to_str()
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match mime.as_str() {
        "application/json" => Ok(BodyType::Json),
        "application/x-ndjson" | "application/jsonl" | "application/x-jsonlines" => Ok(BodyType::Ndjson),
        other => Err(format!(
            "unsupported Content-Type {other:?}; send application/json (one record) or application/x-ndjson (a batch)"
        )),
    }
}

/// Why a record was refused.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    /// Not a valid record.
    #[error(transparent)]
    Record(#[from] event_model::RecordError),
    /// Could not be serialised back (never expected).
    #[error("cannot encode record: {0}")]
    Encode(String),
}

fn summarize_event(e: &event_model::Event) -> EventSummary {
    EventSummary {
        timestamp: e.timestamp,
        user: e.source.node_user.clone(),
        node: e.source.node.clone(),
        tags: e.source.node_tags.clone(),
        verb: e.kubernetes.verb.clone(),
        resource: e.kubernetes.resource.clone(),
        namespace: e.kubernetes.namespace.clone(),
        name: e.kubernetes.name.clone(),
        key: e.key().map(str::to_owned),
    }
}

fn summarize_response(r: &ResponseRecord) -> ResponseSummary {
    ResponseSummary { key: r.key.clone() }
}

/// What the index keeps of a parsed record (also used by the start-up rebuild).
pub fn summarize(record: &Record) -> (RecordKind, Summary) {
    match record {
        Record::Event(e) => (RecordKind::Event, Summary::Event(summarize_event(e))),
        Record::Response(r) => (
            RecordKind::Response,
            Summary::Response(summarize_response(r)),
        ),
    }
}

/// The start of every stored event line, up to its `id` value.
const EVENT_HEAD: &str = concat!("{\"type\":\"", "kubernetes-api-request", "\",\"id\":\"");
/// The start of every stored response record line, up to its `id` value.
const RESPONSE_HEAD: &str = concat!("{\"type\":\"", "kubescribe-api-response", "\",\"id\":\"");

/// [`summarize`] for a record that is no longer needed (moves, no copies).
fn summarize_owned(record: Record) -> Summary {
    match record {
        Record::Event(e) => Summary::Event(EventSummary {
            timestamp: e.timestamp,
            key: e.kubescribe.map(|k| k.key),
            user: e.source.node_user,
            node: e.source.node,
            tags: e.source.node_tags,
            verb: e.kubernetes.verb,
            resource: e.kubernetes.resource,
            namespace: e.kubernetes.namespace,
            name: e.kubernetes.name,
        }),
        Record::Response(r) => Summary::Response(ResponseSummary { key: r.key }),
    }
}

/// Parses one record and prepares it for the commit: `id` emptied (the
/// committer fills it), `destination` set to the authenticated uploader.
pub fn prepare(bytes: &[u8], uploader: &Uploader) -> Result<Prepared, PrepareError> {
    let mut record = Record::from_slice(bytes)?;
    record.set_id(String::new());
    if let Record::Event(event) = &mut record {
        // An identified peer is the destination; token and anonymous
        // uploads keep what the sender wrote (documented as unverified).
        if !uploader.node.is_empty() || !uploader.node_id.is_empty() {
            event.destination = Destination {
                node: uploader.node.clone(),
                node_id: uploader.node_id.clone(),
                unknown: Default::default(),
            };
        }
    }
    let key = record.idempotency_key();
    let (kind, head) = match record {
        Record::Event(_) => (RecordKind::Event, EVENT_HEAD),
        Record::Response(_) => (RecordKind::Response, RESPONSE_HEAD),
    };
    let line = event_model::to_go_json(&record).map_err(|e| PrepareError::Encode(e.to_string()))?;
    if !line.starts_with(head.as_bytes()) || line.get(head.len()) != Some(&b'"') {
        return Err(PrepareError::Encode("unexpected field order".into()));
    }
    Ok(Prepared {
        kind,
        line,
        id_at: head.len(),
        key,
        summary: summarize_owned(record),
    })
}

/// Maps a commit failure to a response.
pub fn commit_failed(app: &App, e: CommitError) -> Response<ResBody> {
    app.metrics.reject("storage");
    json_error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string())
}

/// `HEAD /v2/event`.
pub fn head() -> Response<ResBody> {
    let mut res = Response::new(crate::server::empty());
    recorder_header(&mut res);
    res
}

/// `POST /v2/event`.
pub async fn post(app: Arc<App>, peer: SocketAddr, req: Request<Incoming>) -> Response<ResBody> {
    let uploader = match app.auth.uploader(peer, req.headers()).await {
        Ok(u) => u,
        Err(denied) => {
            app.metrics.reject("forbidden");
            tracing::warn!(%peer, reason = %denied, "event upload refused");
            return json_error(denied.status, &denied.message);
        }
    };
    let body_type = match body_type(req.headers()) {
        Ok(t) => t,
        Err(message) => {
            app.metrics.reject("content_type");
            return json_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, &message);
        }
    };
    if body_type == BodyType::Ndjson {
        return super::batch::handle(app, uploader, req).await;
    }
    let limit = app.config.limits.max_event_bytes;
    let (_reserved, body) =
        match read_record_body(&app, req, limit, "event", "--max-event-bytes").await {
            Ok(read) => read,
            Err(response) => return response,
        };
    store_one(&app, &uploader, body).await
}

async fn store_one(app: &App, uploader: &Uploader, body: Bytes) -> Response<ResBody> {
    let prepared = match prepare(&body, uploader) {
        Ok(p) => p,
        Err(e) => {
            app.metrics.reject("invalid");
            return json_error(StatusCode::BAD_REQUEST, &e.to_string());
        }
    };
    app.metrics.received(match prepared.kind {
        RecordKind::Event => "event",
        RecordKind::Response => "response",
    });
    match app.committer.commit(vec![prepared]).await {
        Ok(acks) => {
            let Some(ack) = acks.into_iter().next() else {
                return json_error(StatusCode::INTERNAL_SERVER_ERROR, "commit returned no id");
            };
            // The id is the recorder's own (`e-<hex>-<n>`): nothing to escape.
            let body = format!(
                "{{\"id\":\"{}\",\"duplicate\":{}}}\n",
                ack.id, ack.duplicate
            );
            let mut res = with_body(StatusCode::OK, "application/json", body.into_bytes());
            recorder_header(&mut res);
            res
        }
        Err(e) => commit_failed(app, e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prepared_lines_are_exactly_go_json() {
        for body in [
            &br#"{"type":"kubernetes-api-request","id":"x","timestamp":5,"request":{"method":"GET","path":"/a?b=<c>&d","body":""},"source":{"node":"n\u2028","nodeTags":["tag:a"]},"kubescribe":{"key":"k1"}}"#[..],
            &br#"{"type":"kubernetes-api-request","id":"","timestamp":5,"request":{"method":"GET","path":"/plain"}}"#[..],
            &br#"{"type":"kubescribe-api-response","id":"","key":"k1","status":200}"#[..],
        ] {
            let p = prepare(body, &Uploader::default()).unwrap();
            let mut record = Record::from_slice(body).unwrap();
            record.set_id(String::new());
            assert_eq!(p.line, event_model::to_go_json(&record).unwrap());
            assert_eq!(p.summary, summarize(&record).1);
            assert_eq!(p.key, record.idempotency_key());
        }
    }
}
