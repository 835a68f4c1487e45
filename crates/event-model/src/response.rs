//! kubescribe's response record: how the API server answered a recorded request.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::extension::Decision;
use crate::go_serde::null_default;

/// The value of [`ResponseRecord::record_type`].
pub const RESPONSE_RECORD_TYPE: &str = "kubescribe-api-response";

/// The response header (value `1`) with which a recorder answering
/// `HEAD /v2/event` says it is a kubescribe recorder: only such recorders are
/// sent [`ResponseRecord`]s and batches (`POST /v2/events`). Lower-case, as
/// HTTP/2 and `http::HeaderName` spell it.
pub const KUBESCRIBE_RECORDER_HEADER: &str = "x-kubescribe-recorder";

/// The second half of a recorded API request: sent by the proxy once the
/// response is complete, and joined to its [`Event`](crate::Event) by
/// [`ResponseRecord::key`].
///
/// This is a kubescribe extension record type. kubescribe's proxy sends it
/// only to recorders that advertise themselves as kubescribe recorders, so a
/// Tailscale recorder never sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResponseRecord {
    /// Always [`RESPONSE_RECORD_TYPE`].
    #[serde(rename = "type")]
    pub record_type: String,
    /// Empty from the proxy; the recorder sets it to where the record is stored.
    #[serde(default, deserialize_with = "null_default")]
    pub id: String,
    /// The idempotency key of the request's event.
    #[serde(default, deserialize_with = "null_default")]
    pub key: String,
    /// Unix seconds when the response completed.
    #[serde(default, deserialize_with = "null_default")]
    pub timestamp: i64,
    /// The HTTP status the caller received (for an upgrade, 101). `0` when no
    /// response was received (see [`ResponseRecord::error`]).
    #[serde(default, deserialize_with = "null_default")]
    pub status: u16,
    /// Milliseconds from receiving the request to the end of the response body.
    #[serde(rename = "durationMs", default, deserialize_with = "null_default")]
    pub duration_ms: f64,
    /// Response body bytes sent to the caller.
    #[serde(rename = "responseBytes", default, deserialize_with = "null_default")]
    pub response_bytes: u64,
    /// The full request body size, when the event holds only a prefix of it.
    #[serde(
        rename = "requestBodyBytes",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub request_body_bytes: Option<u64>,
    /// The full request body's SHA-256 (lower-case hex), when the event holds
    /// only a prefix of it.
    #[serde(
        rename = "requestBodySHA256",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub request_body_sha256: Option<String>,
    /// Why the exchange did not complete normally (upstream unreachable,
    /// caller went away, …); absent when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What the proxy did with the request: forwarded it, could not get an
    /// answer from the API server, or refused it. Absent in records from
    /// proxies that predate it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<Decision>,
    /// Fields this version does not know, written back out unchanged.
    #[serde(flatten)]
    pub unknown: Map<String, Value>,
}

impl Default for ResponseRecord {
    fn default() -> Self {
        Self {
            record_type: RESPONSE_RECORD_TYPE.to_owned(),
            id: String::new(),
            key: String::new(),
            timestamp: 0,
            status: 0,
            duration_ms: 0.0,
            response_bytes: 0,
            request_body_bytes: None,
            request_body_sha256: None,
            error: None,
            decision: None,
            unknown: Map::new(),
        }
    }
}
