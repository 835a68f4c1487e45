//! The web UI (`--ui`): the embedded single-page app of the `recorder-ui`
//! crate. Readers only, like the query API: a refused caller gets the UI's
//! "not authorised" page instead of the app.

use std::net::SocketAddr;
use std::sync::Arc;

use http::{HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::app::App;
use crate::server::{empty, full, json_error, ResBody};

fn add_headers(res: &mut Response<ResBody>, headers: &[(&'static str, &'static str)]) {
    for (name, value) in headers {
        res.headers_mut().insert(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
}

/// Serves UI paths (everything not claimed by the wire, API or metrics
/// routes). Readers only.
pub async fn router(app: Arc<App>, peer: SocketAddr, req: Request<Incoming>) -> Response<ResBody> {
    let head = req.method() == Method::HEAD;
    if req.method() != Method::GET && !head {
        let mut res = json_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "the web UI is read-only; use GET",
        );
        res.headers_mut()
            .insert(http::header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return res;
    }
    if let Err(denied) = app.auth.reader(peer, req.headers()).await {
        tracing::info!(%peer, reason = %denied, "web UI refused");
        let page = recorder_ui::refused_page(denied.status.as_u16(), &denied.message);
        let mut res = Response::new(if head { empty() } else { full(page) });
        *res.status_mut() = denied.status;
        add_headers(&mut res, recorder_ui::REFUSED_PAGE_HEADERS);
        return res;
    }
    let Some(asset) = recorder_ui::asset(req.uri().path()) else {
        return json_error(StatusCode::NOT_FOUND, "no such page");
    };
    let not_modified = req
        .headers()
        .get(http::header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| asset.matches(v));
    let mut res = Response::new(if head || not_modified {
        empty()
    } else {
        full(asset.body)
    });
    if not_modified {
        *res.status_mut() = StatusCode::NOT_MODIFIED;
    }
    add_headers(&mut res, recorder_ui::SECURITY_HEADERS);
    add_headers(
        &mut res,
        &[
            ("content-type", asset.content_type),
            ("cache-control", asset.cache_control),
        ],
    );
    if let Ok(etag) = HeaderValue::from_str(asset.etag) {
        res.headers_mut().insert(http::header::ETAG, etag);
    }
    res
}
