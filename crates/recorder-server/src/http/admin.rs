//! The admin endpoints, on their own listener (never the upload port): `/metrics` (Prometheus text
//! format), `/healthz`, `/readyz`.

use std::sync::Arc;

use http::{Method, Request, StatusCode};

use super::error::HttpError;
use super::response::{with_body, ResBody};
use crate::metrics::Metrics;

/// The admin endpoints' state.
pub(crate) struct Admin {
    pub(crate) metrics: Arc<Metrics>,
}

impl Admin {
    /// Answers one admin request.
    pub(crate) fn route<B>(&self, req: &Request<B>) -> http::Response<ResBody> {
        let method = req.method().clone();
        let path = req.uri().path().to_owned();
        if method != Method::GET && method != Method::HEAD {
            return HttpError::MethodNotAllowed {
                allowed: "GET, HEAD",
            }
            .into_response();
        }
        match path.as_str() {
            "/metrics" => with_body(
                StatusCode::OK,
                service::admin::OPENMETRICS_CONTENT_TYPE,
                self.metrics.encode(),
            ),
            // Serving means storage was checked and the indexes rebuilt at start-up.
            "/healthz" | "/readyz" => with_body(StatusCode::OK, "text/plain", "ok\n"),
            _ => HttpError::NoSuchEndpoint { method, path }.into_response(),
        }
    }
}
