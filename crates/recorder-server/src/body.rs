//! Request bodies: reading them with a size limit and an idle timeout,
//! reserving room for them in the in-flight memory budget, and why that
//! failed ([`BodyError`]).

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::StatusCode;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Why a body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// Larger than allowed.
    #[error("request body is larger than the limit of {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: usize,
    },
    /// Nothing arrived for too long.
    #[error("upload stalled: nothing received for {0:?}")]
    Idle(Duration),
    /// Too many bodies in memory at once for too long.
    #[error(
        "the recorder is busy: too much upload data in flight (--max-inflight-bytes); retry later"
    )]
    Busy,
    /// The connection failed mid-body (truncated upload).
    #[error("request body was cut short: {0}")]
    Broken(#[source] hyper::Error),
}

impl BodyError {
    /// The HTTP status that answers this failure.
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            BodyError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            BodyError::Idle(_) => StatusCode::REQUEST_TIMEOUT,
            BodyError::Broken(_) => StatusCode::BAD_REQUEST,
            BodyError::Busy => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The `reason`/`outcome` label of the rejection and session metrics.
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            BodyError::TooLarge { .. } => "too_large",
            BodyError::Idle(_) => "idle_timeout",
            BodyError::Broken(_) => "truncated",
            BodyError::Busy => "busy",
        }
    }
}

/// Reads the next data chunk (skipping trailers), `None` at the end, failing
/// when none arrives within `idle`.
pub(crate) async fn next_chunk(
    body: &mut Incoming,
    idle: Duration,
) -> Result<Option<Bytes>, BodyError> {
    tokio::time::timeout(idle, next_data(body))
        .await
        .map_err(|_| BodyError::Idle(idle))?
}

/// Reads the next non-empty data chunk (skipping trailers and empty frames),
/// `None` at the end; waits as long as it takes (bound it at the call site).
/// Cancel-safe: nothing is held across its awaits.
pub(crate) async fn next_data(body: &mut Incoming) -> Result<Option<Bytes>, BodyError> {
    loop {
        match body.frame().await {
            None => return Ok(None),
            Some(Err(e)) => return Err(BodyError::Broken(e)),
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    if !data.is_empty() {
                        return Ok(Some(data));
                    }
                }
            }
        }
    }
}

/// Reads a whole body of at most `limit` bytes.
pub(crate) async fn read_limited(
    mut body: Incoming,
    limit: usize,
    idle: Duration,
) -> Result<Bytes, BodyError> {
    // A body that arrives in one chunk (the usual single event) is used
    // as it is, without a copy.
    let Some(first) = next_chunk(&mut body, idle).await? else {
        return Ok(Bytes::new());
    };
    if first.len() > limit {
        return Err(BodyError::TooLarge { limit });
    }
    let Some(second) = next_chunk(&mut body, idle).await? else {
        return Ok(first);
    };
    // Room for what the sender declared (never more than the limit).
    let rest = usize::try_from(http_body::Body::size_hint(&body).lower()).unwrap_or(limit);
    let mut buf =
        BytesMut::with_capacity((first.len() + second.len()).saturating_add(rest).min(limit));
    buf.extend_from_slice(&first);
    let mut chunk = Some(second);
    while let Some(data) = chunk {
        if buf.len() + data.len() > limit {
            return Err(BodyError::TooLarge { limit });
        }
        buf.extend_from_slice(&data);
        chunk = next_chunk(&mut body, idle).await?;
    }
    Ok(buf.freeze())
}

/// Reserves room for a body of at most `limit` bytes (its declared length if
/// smaller) in the in-flight budget, counted in KiB. The permit is held until
/// the request's records are committed.
pub(crate) async fn reserve(
    budget: &Arc<Semaphore>,
    declared: Option<u64>,
    limit: usize,
    wait: Duration,
) -> Result<OwnedSemaphorePermit, BodyError> {
    let bytes = declared.map_or(limit as u64, |d| d.min(limit as u64));
    let kib = u32::try_from(bytes.div_ceil(1024).max(1)).unwrap_or(u32::MAX);
    match tokio::time::timeout(wait, budget.clone().acquire_many_owned(kib)).await {
        Ok(Ok(permit)) => Ok(permit),
        _ => Err(BodyError::Busy),
    }
}

/// The declared `Content-Length`, if any.
pub(crate) fn content_length(headers: &http::HeaderMap) -> Option<u64> {
    headers
        .get(http::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}
