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
    /// The `Audit-ID` header the proxy sent upstream with this request:
    /// kube-apiserver uses it verbatim as the audit event's `auditID`, so
    /// this joins the event to the API server's audit log. In auth mode it
    /// is always [`key`](Self::key); in noauth mode it may be the caller's
    /// own. Omitted when empty (events from Tailscale's proxy, or written
    /// before this field existed).
    #[serde(rename = "auditID", default, skip_serializing_if = "String::is_empty")]
    pub audit_id: String,
    /// The user the proxy impersonated upstream (`Impersonate-User`), as
    /// sent; omitted when the proxy impersonated no one (noauth mode). The
    /// audit event's `impersonatedUser.username` names the same user.
    #[serde(
        rename = "impersonatedUser",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub impersonated_user: String,
    /// The groups the proxy impersonated upstream (`Impersonate-Group`), in
    /// the order sent; omitted when none. kube-apiserver adds
    /// `system:authenticated` in the audit event's
    /// `impersonatedUser.groups` unless one of them is already
    /// `system:authenticated` or `system:unauthenticated`.
    #[serde(
        rename = "impersonatedGroups",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub impersonated_groups: Vec<String>,
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
