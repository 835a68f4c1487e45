//! The HTTP side: one listener serving HTTP/1.1 and h2c (or TLS with ALPN),
//! the router, and small response helpers.

pub mod listener;
pub mod router;
pub mod tls;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full};

pub use listener::{serve, Listener};

/// Every response body.
pub type ResBody = UnsyncBoxBody<Bytes, std::convert::Infallible>;

/// An empty body.
pub fn empty() -> ResBody {
    Empty::new().boxed_unsync()
}

/// A complete body.
pub fn full(data: impl Into<Bytes>) -> ResBody {
    Full::new(data.into()).boxed_unsync()
}

/// A response with a body and content type.
pub fn with_body(
    status: StatusCode,
    content_type: &'static str,
    data: impl Into<Bytes>,
) -> Response<ResBody> {
    let mut res = Response::new(full(data));
    *res.status_mut() = status;
    res.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static(content_type),
    );
    res
}

/// A JSON response (one line, trailing newline).
pub fn json(status: StatusCode, value: &serde_json::Value) -> Response<ResBody> {
    let mut body = serde_json::to_vec(value).unwrap_or_default();
    body.push(b'\n');
    with_body(status, "application/json", body)
}

/// `{"error": message}` with a status.
pub fn json_error(status: StatusCode, message: &str) -> Response<ResBody> {
    json(status, &serde_json::json!({ "error": message }))
}

/// Adds `X-Kubescribe-Recorder: 1`.
pub fn recorder_header(res: &mut Response<ResBody>) {
    res.headers_mut().insert(
        crate::ingest::KUBESCRIBE_RECORDER_HEADER,
        HeaderValue::from_static("1"),
    );
}
