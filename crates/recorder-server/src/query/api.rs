//! `GET /api/v1/…`: the query API (documented in `docs/api.md`). Readers
//! only (see `--allow-readers`).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::audit::{self, Viewing};
use super::index::{order_key, EventFilter, Row};
use super::sessions::{SessionFilter, SessionState};
use crate::app::App;
use crate::auth::Reader;
use crate::server::{json, json_error, with_body, ResBody};
use crate::storage::layout::{self, parse_record_id, RecordKind};
use crate::storage::Storage;

/// Default page size.
pub const DEFAULT_LIMIT: usize = 100;
/// Largest page size.
pub const MAX_LIMIT: usize = 1000;

/// A refused query: status and message.
struct ApiError(StatusCode, String);

type ApiResult = Result<Response<ResBody>, ApiError>;

fn bad(message: String) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, message)
}

fn not_found_error(message: String) -> ApiError {
    ApiError(StatusCode::NOT_FOUND, message)
}

fn parse_time(name: &str, value: &str) -> Result<i64, ApiError> {
    if let Ok(secs) = value.parse::<i64>() {
        return Ok(secs);
    }
    OffsetDateTime::parse(value, &Rfc3339)
        .map(|t| t.unix_timestamp())
        .map_err(|_| {
            bad(format!(
                "{name}={value:?}: expected Unix seconds or RFC 3339 (2026-01-31T12:00:00Z)"
            ))
        })
}

fn parse_limit(value: &str) -> Result<usize, ApiError> {
    match value.parse::<usize>() {
        Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        _ => Err(bad(format!("limit={value:?}: expected 1..={MAX_LIMIT}"))),
    }
}

fn query_pairs(req: &Request<Incoming>) -> Vec<(String, String)> {
    req.uri()
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default()
}

fn non_empty(v: String) -> Option<String> {
    (!v.is_empty()).then_some(v)
}

fn event_filter(pairs: Vec<(String, String)>) -> Result<EventFilter, ApiError> {
    let mut f = EventFilter {
        limit: DEFAULT_LIMIT,
        ..Default::default()
    };
    for (k, v) in pairs {
        match k.as_str() {
            "since" => f.since = Some(parse_time("since", &v)?),
            "until" => f.until = Some(parse_time("until", &v)?),
            "user" => f.user = non_empty(v),
            "node" => f.node = non_empty(v),
            "tag" => f.tag = non_empty(v),
            "verb" => f.verb = non_empty(v),
            "resource" => f.resource = non_empty(v),
            "namespace" => f.namespace = non_empty(v),
            "name" => f.name = non_empty(v),
            "q" => f.q = non_empty(v),
            "limit" => f.limit = parse_limit(&v)?,
            "cursor" => {
                let (kind, order) = order_key(&v)
                    .ok_or_else(|| bad(format!("cursor={v:?}: not a cursor from this API")))?;
                if kind != RecordKind::Event {
                    return Err(bad(format!("cursor={v:?}: not an event cursor")));
                }
                f.before = Some(order);
            }
            other => {
                return Err(bad(format!(
                    "unknown query parameter {other:?}; known: since, until, user, node, tag, verb, resource, namespace, name, q, limit, cursor"
                )))
            }
        }
    }
    Ok(f)
}

fn trim_line(line: &Bytes) -> &[u8] {
    line.strip_suffix(b"\n").unwrap_or(line)
}

fn push_row(out: &mut Vec<u8>, id: &str, event: Option<&[u8]>, response: Option<&[u8]>) {
    out.extend_from_slice(b"{\"id\":");
    out.extend_from_slice(&serde_json::to_vec(id).unwrap_or_default());
    out.extend_from_slice(b",\"event\":");
    out.extend_from_slice(event.unwrap_or(b"null"));
    out.extend_from_slice(b",\"response\":");
    out.extend_from_slice(response.unwrap_or(b"null"));
    out.push(b'}');
}

fn json_bytes(out: Vec<u8>) -> Response<ResBody> {
    with_body(StatusCode::OK, "application/json", out)
}

fn list_events(app: &App, pairs: Vec<(String, String)>) -> ApiResult {
    let filter = event_filter(pairs)?;
    let page = app.index.query(&filter);
    let mut out =
        Vec::with_capacity(page.rows.iter().map(|r| r.event.len() + 64).sum::<usize>() + 64);
    out.extend_from_slice(b"{\"events\":[");
    for (
        i,
        Row {
            id,
            event,
            response,
        },
    ) in page.rows.iter().enumerate()
    {
        if i > 0 {
            out.push(b',');
        }
        push_row(
            &mut out,
            id,
            Some(trim_line(event)),
            response.as_ref().map(trim_line),
        );
    }
    out.extend_from_slice(b"],\"nextCursor\":");
    out.extend_from_slice(&serde_json::to_vec(&page.next).unwrap_or_default());
    out.extend_from_slice(b",\"oldestIndexed\":");
    out.extend_from_slice(&serde_json::to_vec(&page.oldest_indexed).unwrap_or_default());
    out.extend_from_slice(b"}\n");
    Ok(json_bytes(out))
}

async fn get_event(app: &App, id: &str) -> ApiResult {
    let not_found = || not_found_error(format!("no record with id {id:?}"));
    if let Some(row) = app.index.get(id) {
        let mut out = Vec::new();
        if id.starts_with('r') {
            push_row(&mut out, id, None, Some(trim_line(&row.event)));
        } else {
            push_row(
                &mut out,
                id,
                Some(trim_line(&row.event)),
                row.response.as_ref().map(trim_line),
            );
        }
        out.push(b'\n');
        return Ok(json_bytes(out));
    }
    // Not (or no longer) indexed: read it from storage.
    let loc = parse_record_id(id).ok_or_else(not_found)?;
    let line = match app.storage.read_record(&loc, id).await {
        Ok(Some(line)) => line,
        Ok(None) | Err(crate::storage::StorageError::NotFound(_)) => return Err(not_found()),
        Err(e) => return Err(ApiError(StatusCode::SERVICE_UNAVAILABLE, e.to_string())),
    };
    let line = &line[..];
    let mut out = Vec::new();
    match loc.kind {
        RecordKind::Event => {
            let key = serde_json::from_slice::<event_model::Event>(line)
                .ok()
                .and_then(|e| e.key().map(str::to_owned));
            let response = key.and_then(|k| app.index.response_by_event_key(&k));
            push_row(&mut out, id, Some(line), response.as_ref().map(trim_line));
        }
        RecordKind::Response => push_row(&mut out, id, None, Some(line)),
    }
    out.push(b'\n');
    Ok(json_bytes(out))
}

fn session_filter(pairs: Vec<(String, String)>) -> Result<SessionFilter, ApiError> {
    let mut f = SessionFilter {
        limit: DEFAULT_LIMIT,
        ..Default::default()
    };
    for (k, v) in pairs {
        match k.as_str() {
            "since" => f.since = Some(parse_time("since", &v)?),
            "until" => f.until = Some(parse_time("until", &v)?),
            "user" => f.user = non_empty(v),
            "node" => f.node = non_empty(v),
            "namespace" => f.namespace = non_empty(v),
            "pod" => f.pod = non_empty(v),
            "live" => {
                f.live = Some(match v.as_str() {
                    "true" | "1" => true,
                    "false" | "0" => false,
                    _ => return Err(bad(format!("live={v:?}: expected true or false"))),
                })
            }
            "limit" => f.limit = parse_limit(&v)?,
            "cursor" => {
                let id = layout::parse_session_id(&v)
                    .ok_or_else(|| bad(format!("cursor={v:?}: not a cursor from this API")))?;
                f.before = Some(id.as_u128());
            }
            other => {
                return Err(bad(format!(
                    "unknown query parameter {other:?}; known: since, until, user, node, namespace, pod, live, limit, cursor"
                )))
            }
        }
    }
    Ok(f)
}

fn stream_cast(storage: Arc<dyn Storage>, key: String, size: u64) -> ResBody {
    const CHUNK: u64 = 1024 * 1024;
    let stream = futures_util::stream::unfold(0u64, move |offset| {
        let storage = storage.clone();
        let key = key.clone();
        async move {
            if offset >= size {
                return None;
            }
            let end = (offset + CHUNK).min(size);
            match storage.get_range(&key, offset..end).await {
                Ok(data) if !data.is_empty() => Some((Ok::<_, Infallible>(Frame::data(data)), end)),
                Ok(_) => None,
                Err(e) => {
                    tracing::warn!(%key, error = %e, "reading a cast failed mid-stream");
                    None
                }
            }
        }
    });
    StreamBody::new(stream).boxed_unsync()
}

/// Who asks, for the session-view audit record.
struct Asker<'a> {
    reader: &'a Reader,
    peer: SocketAddr,
    get: bool,
    target: &'a str,
    user_agent: &'a str,
}

async fn session_route(
    app: &App,
    rest: &str,
    pairs: Vec<(String, String)>,
    asker: &Asker<'_>,
) -> ApiResult {
    if rest.is_empty() {
        let filter = session_filter(pairs)?;
        let (sessions, next) = app.sessions.list(&filter);
        return Ok(json(
            StatusCode::OK,
            &serde_json::json!({"sessions": sessions, "nextCursor": next}),
        ));
    }
    let (id_text, tail) = rest.split_once('/').unwrap_or((rest, ""));
    let not_found = || not_found_error(format!("no session with id {id_text:?}"));
    let id = layout::parse_session_id(id_text).ok_or_else(not_found)?;
    let info = app.sessions.get(&id).ok_or_else(not_found)?;
    match tail {
        "" => Ok(json(
            StatusCode::OK,
            &serde_json::to_value(&info).unwrap_or_default(),
        )),
        "cast" => {
            if info.state == SessionState::Live {
                return Err(ApiError(
                    StatusCode::CONFLICT,
                    "the session is still being recorded; its cast is available once it ends"
                        .into(),
                ));
            }
            if asker.get {
                // Never serve an unrecorded viewing.
                let viewing = Viewing {
                    reader: asker.reader,
                    peer: asker.peer,
                    session: id_text,
                    target: asker.target,
                    user_agent: asker.user_agent,
                };
                match audit::record_viewing(app, &viewing).await {
                    Ok(record) => {
                        tracing::info!(session = %id_text, peer = %asker.peer, %record, "session viewed")
                    }
                    Err(e) => {
                        tracing::error!(session = %id_text, peer = %asker.peer, error = %e, "cannot record a session viewing; cast refused");
                        return Err(ApiError(
                            StatusCode::SERVICE_UNAVAILABLE,
                            format!("this viewing of the session could not be recorded, so the cast is not served (every viewing is audited): {e}"),
                        ));
                    }
                }
            }
            let mut res = Response::new(stream_cast(
                app.storage.clone(),
                info.storage_key.clone(),
                info.size,
            ));
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
        _ => Err(not_found()),
    }
}

/// Serves `/api/…`, every response with the UI's security headers and
/// `Cache-Control: no-store`.
pub async fn handle(app: Arc<App>, peer: SocketAddr, req: Request<Incoming>) -> Response<ResBody> {
    let mut res = answer(app, peer, req).await;
    let headers = res.headers_mut();
    for (name, value) in recorder_ui::SECURITY_HEADERS
        .iter()
        .chain(&[("cache-control", "no-store")])
    {
        headers.insert(
            http::HeaderName::from_static(name),
            http::HeaderValue::from_static(value),
        );
    }
    res
}

async fn answer(app: Arc<App>, peer: SocketAddr, req: Request<Incoming>) -> Response<ResBody> {
    let reader = match app.auth.reader(peer, req.headers()).await {
        Ok(reader) => reader,
        Err(denied) => {
            tracing::info!(%peer, reason = %denied, "query refused");
            return json_error(denied.status, &denied.message);
        }
    };
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return json_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "the query API is read-only; use GET",
        );
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
        peer,
        get: req.method() == Method::GET,
        target,
        user_agent,
    };
    let result = if path == "/api/v1/events" {
        list_events(&app, pairs)
    } else if let Some(id) = path.strip_prefix("/api/v1/events/") {
        get_event(&app, id).await
    } else if path == "/api/v1/sessions" {
        session_route(&app, "", pairs, &asker).await
    } else if let Some(rest) = path.strip_prefix("/api/v1/sessions/") {
        session_route(&app, rest, pairs, &asker).await
    } else {
        Err(not_found_error(format!("no such API endpoint: {path}")))
    };
    result.unwrap_or_else(|ApiError(status, message)| json_error(status, &message))
}
