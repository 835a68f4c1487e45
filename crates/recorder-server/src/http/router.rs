//! Which handler serves which method and path, and the state of each route
//! group ([`Routes`]).

use crate::access::Peer;
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use super::api::QueryApi;
use super::error::HttpError;
use super::ingest::{Ingest, Upload};
use super::response::{with_body, ResBody};
use super::ui::WebUi;

/// Every route group with its own state.
pub(crate) struct Routes {
    /// `/v2/event`, `/v2/events`, `/v2/record`, `/record`.
    pub(crate) ingest: Ingest,
    /// `/api/…`.
    pub(crate) api: QueryApi,
    /// Every other path, with `--ui`.
    pub(crate) ui: Option<WebUi>,
    /// `/api/v1/signing-key`: the manifests' public key (hex), `None` with `--unsigned`.
    pub(crate) signing_key: Option<String>,
}

impl Routes {
    /// Routes one request from `peer`.
    pub(crate) async fn route(&self, peer: &Peer, req: Request<Incoming>) -> Response<ResBody> {
        let path = req.uri().path().to_owned();
        let method = req.method().clone();
        let not_allowed = |allowed| HttpError::MethodNotAllowed { allowed }.into_response();
        match path.as_str() {
            "/v2/event" => match method {
                Method::HEAD => Ingest::head(),
                Method::POST => self.ingest.post(Upload::Event, peer, req).await,
                _ => not_allowed("HEAD, POST"),
            },
            "/v2/events" => match method {
                Method::HEAD => Ingest::head(),
                Method::POST => self.ingest.post(Upload::Events, peer, req).await,
                _ => not_allowed("HEAD, POST"),
            },
            "/v2/record" => match method {
                Method::HEAD => Ingest::head(),
                Method::POST => self.ingest.post(Upload::RecordV2, peer, req).await,
                _ => not_allowed("HEAD, POST"),
            },
            "/record" => match method {
                Method::POST => self.ingest.post(Upload::RecordV1, peer, req).await,
                _ => not_allowed("POST"),
            },
            "/healthz" => with_body(StatusCode::OK, "text/plain", "ok\n"),
            "/api/v1/signing-key" => match method {
                Method::GET => {
                    let body = match &self.signing_key {
                        Some(key) => serde_json::json!({"alg": "ed25519", "publicKey": key}),
                        None => serde_json::json!({"alg": "none"}),
                    };
                    with_body(StatusCode::OK, "application/json", body.to_string())
                }
                _ => not_allowed("GET"),
            },
            p if p.starts_with("/api/") => self.api.handle(peer, req).await,
            _ => match &self.ui {
                Some(ui) => ui.handle(peer, req).await,
                None => HttpError::NoSuchEndpoint { method, path }.into_response(),
            },
        }
    }
}
