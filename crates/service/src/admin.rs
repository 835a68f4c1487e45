//! Answers of an admin listener shared by the binaries: the Prometheus
//! `/metrics` page and short plain-text answers.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};
use http_body_util::Full;
use prometheus_client::registry::Registry;

/// The content type of `/metrics`.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// `registry` encoded as OpenMetrics text: `200`, or `500` when encoding fails.
pub fn metrics(registry: &Registry) -> Response<Full<Bytes>> {
    let mut out = String::new();
    match prometheus_client::encoding::text::encode(&mut out, registry) {
        Ok(()) => answer(StatusCode::OK, OPENMETRICS_CONTENT_TYPE, out),
        Err(_) => answer(
            StatusCode::INTERNAL_SERVER_ERROR,
            "text/plain",
            "metrics encoding failed\n",
        ),
    }
}

/// A response with `status`, `content_type` and `body`.
pub fn answer(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(body.into()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static(content_type),
    );
    resp
}
