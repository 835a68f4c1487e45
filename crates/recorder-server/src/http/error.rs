//! The one error type of every handler: [`HttpError`] knows its status, its
//! JSON body (`{"error":"…"}`, the message written for the caller) and, for
//! uploads, the `reason` label under which the refusal is counted.
//! Handlers return `Result<_, HttpError>` and answer with `?`; the response
//! is built in one place, [`HttpError::into_response`].

use http::{HeaderValue, Method, Response, StatusCode};

use super::response::{json, ResBody};
use crate::access::Denied;
use crate::body::BodyError;
use crate::pipeline::audit::AuditError;
use crate::pipeline::commit::CommitError;
use crate::pipeline::prepare::BatchError;
use crate::pipeline::{CastError, PrepareError, SlotRefusal};
use crate::query::QueryError;

/// Why a request was not answered with what it asked for.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HttpError {
    /// A known path with a method it does not take.
    #[error("method not allowed; use {allowed}")]
    MethodNotAllowed {
        /// The methods it takes (the `Allow` header).
        allowed: &'static str,
    },
    /// A path no route claims.
    #[error("no such endpoint: {method} {path}")]
    NoSuchEndpoint {
        /// The request's method.
        method: Method,
        /// The request's path.
        path: String,
    },
    /// A path under `/api/` that is no API route.
    #[error("no such API endpoint: {path}")]
    NoSuchApiEndpoint {
        /// The request's path.
        path: String,
    },
    /// The query API was asked to change something.
    #[error("the query API is read-only; use GET")]
    QueryApiReadOnly,
    /// The web UI was asked to change something.
    #[error("the web UI is read-only; use GET")]
    UiReadOnly,
    /// A UI path that is neither a page nor an asset.
    #[error("no such page")]
    NoSuchPage,
    /// The caller may not upload or read.
    #[error(transparent)]
    Denied(#[from] Denied),
    /// A record upload without a `Content-Type`.
    #[error("missing Content-Type; send application/json (one record) or application/x-ndjson (a batch)")]
    NoContentType,
    /// A record upload with a content type that is not JSON or NDJSON.
    #[error("unsupported Content-Type {mime:?}; send application/json (one record) or application/x-ndjson (a batch)")]
    UnsupportedContentType {
        /// The media type sent (lower case, without parameters).
        mime: String,
    },
    /// An upload whose declared length is over its limit.
    #[error("{what} is larger than the limit of {limit} bytes ({flag})")]
    DeclaredTooLarge {
        /// `event` or `batch`.
        what: &'static str,
        /// The limit.
        limit: usize,
        /// The flag that sets it.
        flag: &'static str,
    },
    /// The request body could not be read.
    #[error(transparent)]
    Body(#[from] BodyError),
    /// An invalid record.
    #[error(transparent)]
    Record(#[from] PrepareError),
    /// An invalid batch (nothing of it stored).
    #[error(transparent)]
    Batch(#[from] BatchError),
    /// The group commit failed (nothing acknowledged).
    #[error(transparent)]
    Commit(#[from] CommitError),
    /// The group commit answered without an id (never expected).
    #[error("commit returned no id")]
    NoAck,
    /// A session upload over a limit: every slot taken, or the uploader's
    /// share (the caller's share is a [`CastError::Refused`]).
    #[error(transparent)]
    Slots(SlotRefusal),
    /// A session upload failed.
    #[error(transparent)]
    Cast(#[from] CastError),
    /// A query that cannot be answered.
    #[error(transparent)]
    Query(#[from] QueryError),
    /// The viewing of a cast could not be recorded, so it is not served.
    #[error("this viewing of the session could not be recorded, so the cast is not served (every viewing is audited): {0}")]
    ViewingNotRecorded(#[source] AuditError),
}

impl HttpError {
    /// The response status.
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            HttpError::MethodNotAllowed { .. }
            | HttpError::QueryApiReadOnly
            | HttpError::UiReadOnly => StatusCode::METHOD_NOT_ALLOWED,
            HttpError::NoSuchEndpoint { .. }
            | HttpError::NoSuchApiEndpoint { .. }
            | HttpError::NoSuchPage => StatusCode::NOT_FOUND,
            HttpError::Denied(denied) => denied.status(),
            HttpError::NoContentType | HttpError::UnsupportedContentType { .. } => {
                StatusCode::UNSUPPORTED_MEDIA_TYPE
            }
            HttpError::DeclaredTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            HttpError::Body(body) => body.status(),
            HttpError::Record(_) => StatusCode::BAD_REQUEST,
            HttpError::Batch(BatchError::LineTooLarge { .. }) => StatusCode::PAYLOAD_TOO_LARGE,
            HttpError::Batch(_) => StatusCode::BAD_REQUEST,
            HttpError::Commit(_)
            | HttpError::Slots(SlotRefusal::Total { .. })
            | HttpError::ViewingNotRecorded(_) => StatusCode::SERVICE_UNAVAILABLE,
            HttpError::Slots(_) | HttpError::Cast(CastError::Refused(_)) => {
                StatusCode::TOO_MANY_REQUESTS
            }
            HttpError::Cast(CastError::NoHeader(_)) => StatusCode::REQUEST_TIMEOUT,
            HttpError::NoAck => StatusCode::INTERNAL_SERVER_ERROR,
            HttpError::Cast(CastError::Body(body)) => body.status(),
            HttpError::Cast(CastError::TooLarge(_) | CastError::LineTooLong { .. }) => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            HttpError::Cast(CastError::Storage(_)) => StatusCode::SERVICE_UNAVAILABLE,
            HttpError::Cast(_) => StatusCode::BAD_REQUEST,
            HttpError::Query(
                QueryError::NoSuchRecord { .. } | QueryError::NoSuchSession { .. },
            ) => StatusCode::NOT_FOUND,
            HttpError::Query(QueryError::SessionLive) => StatusCode::CONFLICT,
            HttpError::Query(QueryError::Storage(_)) => StatusCode::SERVICE_UNAVAILABLE,
            HttpError::Query(_) => StatusCode::BAD_REQUEST,
        }
    }

    /// The `reason` label of `requests_rejected_total` when an upload is
    /// refused this way; `None` for what that counter does not count
    /// (failed session uploads are counted by outcome instead).
    pub(crate) fn rejection_reason(&self) -> Option<&'static str> {
        match self {
            HttpError::Denied(_) => Some("forbidden"),
            HttpError::NoContentType | HttpError::UnsupportedContentType { .. } => {
                Some("content_type")
            }
            HttpError::DeclaredTooLarge { .. }
            | HttpError::Batch(BatchError::LineTooLarge { .. }) => Some("too_large"),
            HttpError::Body(body) => Some(body.reason()),
            HttpError::Record(_) | HttpError::Batch(_) => Some("invalid"),
            HttpError::Commit(_) => Some("storage"),
            HttpError::Slots(refusal) => Some(refusal.reason()),
            HttpError::Cast(cast) if cast.is_refusal() => Some(cast.reason()),
            _ => None,
        }
    }

    /// The response: the status, `{"error":"<message>"}`, and `Allow` where
    /// the method was wrong.
    pub(crate) fn into_response(self) -> Response<ResBody> {
        let allow = match &self {
            HttpError::MethodNotAllowed { allowed } => Some(*allowed),
            HttpError::UiReadOnly => Some("GET, HEAD"),
            _ => None,
        };
        let mut res = json(
            self.status(),
            &serde_json::json!({ "error": self.to_string() }),
        );
        if let Some(allow) = allow {
            res.headers_mut()
                .insert(http::header::ALLOW, HeaderValue::from_static(allow));
        }
        res
    }
}
