//! Events and response records: `POST /v2/event` (one record, stored
//! durably before the `200`; an NDJSON body is handled as a batch) and
//! `POST /v2/events` (a batch, **all or nothing**: either every record is
//! durably stored, or recognised as a duplicate, and the `200` lists their
//! ids in order, or nothing is stored and the error names the first bad line).

use http::{HeaderMap, Request, Response, StatusCode};
use hyper::body::Incoming;

use super::state::Ingest;
use crate::access::Uploader;
use crate::http::error::HttpError;
use crate::http::response::{recorder_header, with_body, ResBody};
use crate::pipeline::commit::Acked;
use crate::pipeline::prepare::{prepare, prepare_batch, Prepared};

/// Accepted request content types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyType {
    /// `application/json`: one record.
    Json,
    /// `application/x-ndjson` (or `application/jsonl`): many records.
    Ndjson,
}

/// Classifies the `Content-Type`.
fn body_type(headers: &HeaderMap) -> Result<BodyType, HttpError> {
    let Some(value) = headers.get(http::header::CONTENT_TYPE) else {
        return Err(HttpError::NoContentType);
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
        "application/x-ndjson" | "application/jsonl" | "application/x-jsonlines" => {
            Ok(BodyType::Ndjson)
        }
        _ => Err(HttpError::UnsupportedContentType { mime }),
    }
}

/// A `200` with a JSON body built by hand (the recorder's own ids need no
/// escaping) and `X-Kubescribe-Recorder: 1`.
fn stored(body: String) -> Response<ResBody> {
    let mut res = with_body(StatusCode::OK, "application/json", body.into_bytes());
    recorder_header(&mut res);
    res
}

impl Ingest {
    /// `POST /v2/event` by `uploader`.
    pub(super) async fn event(
        &self,
        uploader: Uploader,
        req: Request<Incoming>,
    ) -> Result<Response<ResBody>, HttpError> {
        if body_type(req.headers())? == BodyType::Ndjson {
            return self.batch(&uploader, req).await;
        }
        let limit = self.limits.max_event_bytes;
        let (_reserved, body) = self
            .read_record_body(req, limit, "event", "--max-event-bytes")
            .await?;
        let acks = self.commit(vec![prepare(&body, &uploader)?]).await?;
        let ack = acks.into_iter().next().ok_or(HttpError::NoAck)?;
        Ok(stored(format!(
            "{{\"id\":\"{}\",\"duplicate\":{}}}\n",
            ack.id, ack.duplicate
        )))
    }

    /// `POST /v2/events` by `uploader`.
    pub(super) async fn events(
        &self,
        uploader: Uploader,
        req: Request<Incoming>,
    ) -> Result<Response<ResBody>, HttpError> {
        body_type(req.headers())?;
        self.batch(&uploader, req).await
    }

    /// Stores an NDJSON batch for an authorised uploader.
    async fn batch(
        &self,
        uploader: &Uploader,
        req: Request<Incoming>,
    ) -> Result<Response<ResBody>, HttpError> {
        let limit = self.limits.max_batch_bytes;
        let (_reserved, body) = self
            .read_record_body(req, limit, "batch", "--max-batch-bytes")
            .await?;
        let records = prepare_batch(&body, uploader, self.limits.max_event_bytes)?;
        let acks = self.commit(records).await?;
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
        Ok(stored(body))
    }

    /// Counts `records` as received and stores them (all or none).
    async fn commit(&self, records: Vec<Prepared>) -> Result<Vec<Acked>, HttpError> {
        for r in &records {
            self.metrics.received(r.kind.label());
        }
        Ok(self.committer.commit(records).await?)
    }
}
