//! `GET /api/v1/…`: the query API (documented in `docs/api.md`), for
//! readers only (see `--allow-readers`), with the state it needs
//! ([`QueryApi`]). Every viewing of a cast is recorded first
//! (`pipeline::audit`); no record, no cast.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use futures_util::StreamExt;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};

use super::error::HttpError;
use super::response::{add_headers, json, with_body, ResBody};
use crate::access::{Peer, ReadAccess, Reader};
use crate::index::{EventIndex, SessionIndex};
use crate::pipeline::audit::{self, Viewed, Viewing};
use crate::pipeline::commit::Committer;
use crate::query::{events, params, sessions, QueryError};
use crate::storage::Storage;
use crate::tamper::sealer::Sealer;

/// What the query API needs.
pub(crate) struct QueryApi {
    /// Who may read.
    access: Arc<ReadAccess>,
    /// Recent events.
    events: Arc<EventIndex>,
    /// All sessions.
    sessions: Arc<SessionIndex>,
    /// Where records and casts are read from.
    storage: Arc<dyn Storage>,
    /// Where session-view audit records are committed.
    audit: Committer,
    /// Checks a session cast against its manifest.
    sealer: Arc<Sealer>,
}

/// Who asks, for the session-view audit record.
struct Asker<'a> {
    reader: &'a Reader,
    peer: SocketAddr,
    get: bool,
    target: &'a str,
    user_agent: &'a str,
}

fn query_pairs(req: &Request<Incoming>) -> Vec<(String, String)> {
    req.uri().query().map(params::pairs).unwrap_or_default()
}

fn json_bytes(out: Vec<u8>) -> Response<ResBody> {
    with_body(StatusCode::OK, "application/json", out)
}

impl QueryApi {
    /// The query API's state: readers authorised by `access`, answers from
    /// `events`, `sessions` and `storage`, viewings recorded through `audit`.
    pub(crate) fn new(
        access: Arc<ReadAccess>,
        events: Arc<EventIndex>,
        sessions: Arc<SessionIndex>,
        storage: Arc<dyn Storage>,
        audit: Committer,
        sealer: Arc<Sealer>,
    ) -> Self {
        Self {
            access,
            events,
            sessions,
            storage,
            audit,
            sealer,
        }
    }

    /// Serves `/api/…`, every response with the UI's security headers and
    /// `Cache-Control: no-store`.
    pub(crate) async fn handle(&self, peer: &Peer, req: Request<Incoming>) -> Response<ResBody> {
        let mut res = self
            .answer(peer, req)
            .await
            .unwrap_or_else(HttpError::into_response);
        add_headers(&mut res, recorder_ui::SECURITY_HEADERS);
        add_headers(&mut res, &[("cache-control", "no-store")]);
        res
    }

    async fn answer(
        &self,
        peer: &Peer,
        req: Request<Incoming>,
    ) -> Result<Response<ResBody>, HttpError> {
        let reader = self
            .access
            .check(peer, req.headers())
            .await
            .map_err(|denied| {
                tracing::info!(%peer, reason = %denied, "query refused");
                HttpError::Denied(denied)
            })?;
        if req.method() != Method::GET && req.method() != Method::HEAD {
            return Err(HttpError::QueryApiReadOnly);
        }
        let path = req.uri().path().to_owned();
        let pairs = query_pairs(&req);
        let target = req
            .uri()
            .path_and_query()
            .map_or(path.as_str(), |pq| pq.as_str());
        let user_agent = req
            .headers()
            .get(http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let asker = Asker {
            reader: &reader,
            peer: peer.addr(),
            get: req.method() == Method::GET,
            target,
            user_agent,
        };
        // Each read that reveals recorded content is itself recorded first (below, and casts in
        // `session`); HEAD reveals nothing and is not.
        if path == "/api/v1/events" {
            let filter = params::event_filter(pairs)?;
            self.record_viewing(Viewed::Events, &asker).await?;
            Ok(json_bytes(events::list(&self.events, &filter)))
        } else if let Some(id) = path.strip_prefix("/api/v1/events/") {
            let event = events::get(&self.events, &*self.storage, id).await?;
            self.record_viewing(Viewed::Event(id), &asker).await?;
            Ok(json_bytes(event))
        } else if path == "/api/v1/sessions" {
            let filter = params::session_filter(pairs)?;
            self.record_viewing(Viewed::Sessions, &asker).await?;
            Ok(json(
                StatusCode::OK,
                &sessions::list(&self.sessions, &filter),
            ))
        } else if path == "/api/v1/verification" {
            // One UTC day checked against its signed manifests (no recorded content: not a viewing).
            let date = params::verification_day(pairs)?;
            let check = self
                .sealer
                .check_day(date)
                .await
                .map_err(QueryError::from)?;
            Ok(json(
                StatusCode::OK,
                &serde_json::to_value(&check).unwrap_or_default(),
            ))
        } else if let Some(rest) = path.strip_prefix("/api/v1/sessions/") {
            self.session(rest, &asker).await
        } else {
            Err(HttpError::NoSuchApiEndpoint { path })
        }
    }

    /// `/api/v1/sessions/{id}` and `/api/v1/sessions/{id}/cast`.
    async fn session(&self, rest: &str, asker: &Asker<'_>) -> Result<Response<ResBody>, HttpError> {
        let (id, tail) = rest.split_once('/').unwrap_or((rest, ""));
        let info = sessions::get(&self.sessions, id)?;
        match tail {
            "" => {
                self.record_viewing(Viewed::Session(id), asker).await?;
                Ok(json(
                    StatusCode::OK,
                    &serde_json::to_value(&info).unwrap_or_default(),
                ))
            }
            "cast" => {
                sessions::cast_ready(&info)?;
                self.record_viewing(Viewed::Cast(id), asker).await?;
                let stream =
                    sessions::cast_stream(self.storage.clone(), info.storage_key, info.size)
                        .map(|data| Ok::<_, Infallible>(Frame::data(data)));
                let mut res = Response::new(StreamBody::new(stream).boxed_unsync());
                res.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("application/x-asciicast"),
                );
                res.headers_mut().insert(
                    http::header::CONTENT_LENGTH,
                    http::HeaderValue::from(info.size),
                );
                Ok(res)
            }
            // Whether the cast matches its signed manifest (no recorded content: not a viewing).
            "verification" => {
                let check = self
                    .sealer
                    .check_session(info.storage_key.as_str())
                    .await
                    .map_err(QueryError::from)?;
                Ok(json(
                    StatusCode::OK,
                    &serde_json::to_value(&check).unwrap_or_default(),
                ))
            }
            _ => Err(QueryError::NoSuchSession { id: id.to_owned() }.into()),
        }
    }

    /// Records this read (a `GET`; `HEAD` reveals nothing); content whose read cannot be recorded is
    /// never served.
    async fn record_viewing(&self, viewed: Viewed<'_>, asker: &Asker<'_>) -> Result<(), HttpError> {
        if !asker.get {
            return Ok(());
        }
        let viewing = Viewing {
            reader: asker.reader,
            peer: asker.peer,
            viewed,
            target: asker.target,
            user_agent: asker.user_agent,
        };
        match audit::record_viewing(&self.audit, &viewing).await {
            Ok(record) => {
                tracing::debug!(target = %asker.target, peer = %asker.peer, %record, "read recorded");
                Ok(())
            }
            Err(e) => {
                tracing::error!(target = %asker.target, peer = %asker.peer, error = %e, "cannot record a read; refused");
                Err(HttpError::ViewingNotRecorded(e))
            }
        }
    }
}
