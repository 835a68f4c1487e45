//! Response bodies and the small builders every handler uses.

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full};

/// Response header telling kubescribe's client that this is a kubescribe
/// recorder (so it may send batches and response records).
pub(crate) const KUBESCRIBE_RECORDER_HEADER: &str = "x-kubescribe-recorder";

/// Every response body.
pub(crate) type ResBody = UnsyncBoxBody<Bytes, std::convert::Infallible>;

/// An empty body.
pub(crate) fn empty() -> ResBody {
    Empty::new().boxed_unsync()
}

/// A complete body.
pub(crate) fn full(data: impl Into<Bytes>) -> ResBody {
    Full::new(data.into()).boxed_unsync()
}

/// A response with a body and content type.
pub(crate) fn with_body(
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
pub(crate) fn json(status: StatusCode, value: &serde_json::Value) -> Response<ResBody> {
    let mut body = serde_json::to_vec(value).unwrap_or_default();
    body.push(b'\n');
    with_body(status, "application/json", body)
}

/// Adds `X-Kubescribe-Recorder: 1`.
pub(crate) fn recorder_header(res: &mut Response<ResBody>) {
    res.headers_mut()
        .insert(KUBESCRIBE_RECORDER_HEADER, HeaderValue::from_static("1"));
}

/// Adds fixed headers (`name`, `value`) to `res`, replacing any of the same name.
pub(crate) fn add_headers(res: &mut Response<ResBody>, headers: &[(&'static str, &'static str)]) {
    for (name, value) in headers {
        res.headers_mut().insert(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
}
