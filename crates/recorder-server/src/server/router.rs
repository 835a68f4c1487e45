//! Which handler serves which method and path.

use std::net::SocketAddr;
use std::sync::Arc;

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use super::{json_error, with_body, ResBody};
use crate::app::App;
use crate::ingest::{batch, event, session_v1, session_v2};
use crate::{query, ui};

fn method_not_allowed(allowed: &'static str) -> Response<ResBody> {
    let mut res = json_error(
        StatusCode::METHOD_NOT_ALLOWED,
        &format!("method not allowed; use {allowed}"),
    );
    res.headers_mut()
        .insert(http::header::ALLOW, http::HeaderValue::from_static(allowed));
    res
}

/// Routes one request.
pub async fn route(app: Arc<App>, peer: SocketAddr, req: Request<Incoming>) -> Response<ResBody> {
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    match path.as_str() {
        "/v2/event" => match method {
            Method::HEAD => event::head(),
            Method::POST => event::post(app, peer, req).await,
            _ => method_not_allowed("HEAD, POST"),
        },
        "/v2/events" => match method {
            Method::HEAD => event::head(),
            Method::POST => batch::post(app, peer, req).await,
            _ => method_not_allowed("HEAD, POST"),
        },
        "/v2/record" => match method {
            Method::HEAD => session_v2::head(),
            Method::POST => session_v2::post(app, peer, req).await,
            _ => method_not_allowed("HEAD, POST"),
        },
        "/record" => match method {
            Method::POST => session_v1::post(app, peer, req).await,
            _ => method_not_allowed("POST"),
        },
        "/metrics" => match method {
            Method::GET => with_body(
                StatusCode::OK,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                app.metrics.encode(),
            ),
            _ => method_not_allowed("GET"),
        },
        "/healthz" => with_body(StatusCode::OK, "text/plain", "ok\n"),
        p if p.starts_with("/api/") => query::api::handle(app, peer, req).await,
        _ if app.config.ui => ui::router(app, peer, req).await,
        _ => json_error(
            StatusCode::NOT_FOUND,
            &format!("no such endpoint: {method} {path}"),
        ),
    }
}
