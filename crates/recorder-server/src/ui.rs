//! The web UI seam. The UI itself is built separately; until then, with
//! `--ui`, `/` serves a placeholder page linking the query API.

use std::net::SocketAddr;
use std::sync::Arc;

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::app::App;
use crate::server::{json_error, with_body, ResBody};

const PLACEHOLDER: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>kubescribe recorder</title></head>
<body><h1>kubescribe recorder</h1>
<p>The web UI is not part of this build yet. The query API is available:</p>
<ul><li><a href="/api/v1/events">/api/v1/events</a></li>
<li><a href="/api/v1/sessions">/api/v1/sessions</a></li>
<li><a href="/metrics">/metrics</a></li></ul>
</body></html>
"#;

/// Serves UI paths (everything not claimed by the wire, API or metrics
/// routes). Readers only.
pub async fn router(app: Arc<App>, peer: SocketAddr, req: Request<Incoming>) -> Response<ResBody> {
    if let Err(denied) = app.auth.reader(peer, req.headers()).await {
        return json_error(denied.status, &denied.message);
    }
    match (req.method(), req.uri().path()) {
        (&Method::GET | &Method::HEAD, "/") => {
            with_body(StatusCode::OK, "text/html; charset=utf-8", PLACEHOLDER)
        }
        _ => json_error(StatusCode::NOT_FOUND, "no such page"),
    }
}
