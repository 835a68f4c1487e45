//! The web UI (`--ui`): the embedded single-page app of the `recorder-ui`
//! crate. Readers only, like the query API: a refused caller gets the UI's
//! "not authorised" page instead of the app.

use std::sync::Arc;

use http::{HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use super::error::HttpError;
use super::response::{add_headers, empty, full, ResBody};
use crate::access::{Peer, ReadAccess};

/// What the web UI needs.
pub(crate) struct WebUi {
    /// Who may read.
    access: Arc<ReadAccess>,
}

impl WebUi {
    /// The web UI, for the readers `access` admits.
    pub(crate) fn new(access: Arc<ReadAccess>) -> Self {
        Self { access }
    }

    /// Serves UI paths (everything not claimed by the wire, API and metrics
    /// routes). Readers only.
    pub(crate) async fn handle(&self, peer: &Peer, req: Request<Incoming>) -> Response<ResBody> {
        self.page(peer, req)
            .await
            .unwrap_or_else(HttpError::into_response)
    }

    async fn page(
        &self,
        peer: &Peer,
        req: Request<Incoming>,
    ) -> Result<Response<ResBody>, HttpError> {
        let head = req.method() == Method::HEAD;
        if req.method() != Method::GET && !head {
            return Err(HttpError::UiReadOnly);
        }
        if let Err(denied) = self.access.check(peer, req.headers()).await {
            tracing::info!(%peer, reason = %denied, "web UI refused");
            // A page, not JSON: the browser shows it.
            let status = denied.status();
            let page = recorder_ui::refused_page(status.as_u16(), &denied.to_string());
            let mut res = Response::new(if head { empty() } else { full(page) });
            *res.status_mut() = status;
            add_headers(&mut res, recorder_ui::REFUSED_PAGE_HEADERS);
            return Ok(res);
        }
        let asset = recorder_ui::asset(req.uri().path()).ok_or(HttpError::NoSuchPage)?;
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
        Ok(res)
    }
}
