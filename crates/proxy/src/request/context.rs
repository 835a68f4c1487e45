//! What the proxy knows about one request before it is forwarded.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use http::request::Parts;
use http::Method;

use crate::headers::header_text;
use service::conn::ConnInfo;

/// Per-request context, shared by the event, the response record, logs and the session hook.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// Unique request id (UUIDv7); also the event's idempotency key.
    pub id: String,
    /// The connection it arrived on.
    pub conn: ConnInfo,
    /// HTTP method.
    pub method: Method,
    /// The request-target as received: path plus `?rawquery`. Go's `r.URL.String()`, which
    /// Tailscale's proxy records, gives the same for origin-form targets in Go's canonical
    /// escaping; it adds scheme and host for an absolute-form target and re-escapes other paths
    /// (docs/compatibility.md).
    pub target: String,
    /// The raw query string ("" when absent).
    pub raw_query: String,
    /// `User-Agent` ("" if absent).
    pub user_agent: String,
    /// When the request head was handed to the proxy.
    pub received: Instant,
    /// The same instant as Unix seconds (the event's `timestamp`).
    pub received_unix: i64,
}

impl RequestContext {
    /// Build from the request head.
    pub fn new(conn: ConnInfo, parts: &Parts) -> Self {
        let received = Instant::now();
        let received_unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        let target = parts
            .uri
            .path_and_query()
            .map(|pq| pq.as_str().to_string())
            .unwrap_or_else(|| parts.uri.path().to_string());
        RequestContext {
            id: uuid::Uuid::now_v7().to_string(),
            conn,
            method: parts.method.clone(),
            raw_query: parts.uri.query().unwrap_or("").to_string(),
            target,
            user_agent: header_text(&parts.headers, http::header::USER_AGENT),
            received,
            received_unix,
        }
    }
}
