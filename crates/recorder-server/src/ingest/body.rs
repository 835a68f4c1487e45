//! Reading request bodies with a size limit and an idle timeout.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::StatusCode;
use http_body_util::BodyExt;
use hyper::body::Incoming;

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
    /// The connection failed mid-body (truncated upload).
    #[error("request body was cut short: {0}")]
    Broken(String),
}

impl BodyError {
    /// The HTTP status for this error.
    pub fn status(&self) -> StatusCode {
        match self {
            BodyError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            BodyError::Idle(_) => StatusCode::REQUEST_TIMEOUT,
            BodyError::Broken(_) => StatusCode::BAD_REQUEST,
        }
    }

    /// A short label for the rejection metric.
    pub fn reason(&self) -> &'static str {
        match self {
            BodyError::TooLarge { .. } => "too_large",
            BodyError::Idle(_) => "idle_timeout",
            BodyError::Broken(_) => "truncated",
        }
    }
}

/// Reads the next data chunk (skipping trailers), `None` at the end.
pub async fn next_chunk(body: &mut Incoming, idle: Duration) -> Result<Option<Bytes>, BodyError> {
    loop {
        match tokio::time::timeout(idle, body.frame()).await {
            Err(_) => return Err(BodyError::Idle(idle)),
            Ok(None) => return Ok(None),
            Ok(Some(Err(e))) => return Err(BodyError::Broken(e.to_string())),
            Ok(Some(Ok(frame))) => {
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
pub async fn read_limited(
    mut body: Incoming,
    limit: usize,
    idle: Duration,
) -> Result<Bytes, BodyError> {
    let mut buf = BytesMut::new();
    while let Some(chunk) = next_chunk(&mut body, idle).await? {
        if buf.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge { limit });
        }
        if buf.is_empty() && chunk.len() == limit {
            return Ok(chunk);
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

/// The declared `Content-Length`, if any.
pub fn content_length(headers: &http::HeaderMap) -> Option<u64> {
    headers
        .get(http::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}
