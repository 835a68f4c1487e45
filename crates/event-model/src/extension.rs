//! kubescribe's extension object on events: ignored by upstream readers.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The `kubescribe` object on an [`Event`](crate::Event).
///
/// Tailscale's recorder and other upstream-only readers ignore it (Go's JSON
/// decoder skips unknown keys). kubescribe's recorder uses [`Extension::key`]
/// to store each event exactly once however often it is redelivered.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Extension {
    /// The idempotency key: unique per API request (a UUIDv7 from the proxy).
    /// A [`ResponseRecord`](crate::ResponseRecord) refers to its event by it.
    pub key: String,
    /// The proxy's request ID, shared with its logs and tracing spans.
    #[serde(
        rename = "requestID",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub request_id: String,
    /// How much of the request body the event holds, when it is not all of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<BodyCapture>,
    /// Fields this version does not know, written back out unchanged.
    #[serde(flatten)]
    pub unknown: Map<String, Value>,
}

/// How a request body larger than the proxy's capture limit was recorded.
///
/// The event carries the first `capturedBytes` bytes in `request.body`. The
/// body is forwarded whole; its full size and SHA-256 are known only once it
/// has been forwarded, so they travel in the request's
/// [`ResponseRecord`](crate::ResponseRecord).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BodyCapture {
    /// Always true when present: `request.body` is a prefix of the body.
    pub truncated: bool,
    /// How many bytes `request.body` holds.
    #[serde(rename = "capturedBytes")]
    pub captured_bytes: u64,
}
