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
    /// What the proxy did with the request, when it had decided before it
    /// sent this event: only an event sent *after* a refusal carries it
    /// ([`Decision::RefusedFailClosed`]). An event sent before forwarding
    /// (every event of a forwarded request) has none; its
    /// [`ResponseRecord::decision`](crate::ResponseRecord::decision) says
    /// what became of the request. Omitted when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<Decision>,
    /// The audit level at which the proxy recorded this request (its audit
    /// Policy's first matching rule, or the built-in default): `Metadata`
    /// events carry no request body. Omitted by proxies that apply no
    /// Policy (Tailscale's, and kubescribe's before Policy support): readers
    /// then treat an event with a body as `Request`. A request whose level
    /// is `None` is not recorded at all, so that value is never stored.
    #[serde(
        rename = "auditLevel",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub audit_level: Option<AuditLevel>,
    /// Set when the proxy (or the recorder, for an event from a proxy that
    /// does not redact) removed the request body because it may hold
    /// credentials (a Secret's `data`); `request.body` is then empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redaction: Option<Redaction>,
    /// Fields this version does not know, written back out unchanged.
    #[serde(flatten)]
    pub unknown: Map<String, Value>,
}

/// What the proxy did with an API request: `kubescribe.decision` on an event
/// sent after the decision, and `decision` on the request's
/// [`ResponseRecord`](crate::ResponseRecord). On the wire a lower-case,
/// hyphenated string; a value this version does not know is kept as
/// [`Decision::Other`] and written back unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum Decision {
    /// `forwarded`: the request was sent to the API server; the response
    /// record's `status` is the API server's answer (`0`: the caller left
    /// before it came).
    Forwarded,
    /// `upstream-error`: the proxy tried to forward the request but got no
    /// answer from the API server (no connection, the connection ended
    /// before the answer, no credentials); the caller got the proxy's 502,
    /// whose reason is the response record's `error`. When the connection
    /// ended after the request was sent, the API server may have acted on it.
    UpstreamError,
    /// `refused-fail-closed`: not forwarded. The caller's grant requires
    /// recording (`enforceRecorder`) and the event (502), or for exec/attach
    /// the session recording (403), could not be stored in time.
    RefusedFailClosed,
    /// `refused-by-grant`: not forwarded. The caller's grant requires a
    /// recorder but names none, or does not parse (403). Such a request has
    /// no recorder to be recorded to, so this value is never stored; the
    /// proxy counts and logs it.
    RefusedByGrant,
    /// A value this version does not know, as received.
    Other(String),
}

impl Decision {
    /// The wire string.
    pub fn as_str(&self) -> &str {
        match self {
            Decision::Forwarded => "forwarded",
            Decision::UpstreamError => "upstream-error",
            Decision::RefusedFailClosed => "refused-fail-closed",
            Decision::RefusedByGrant => "refused-by-grant",
            Decision::Other(other) => other,
        }
    }

    /// Whether the request was refused (not sent to the API server).
    pub fn is_refusal(&self) -> bool {
        matches!(self, Decision::RefusedFailClosed | Decision::RefusedByGrant)
    }
}

impl From<String> for Decision {
    fn from(s: String) -> Self {
        match s.as_str() {
            "forwarded" => Decision::Forwarded,
            "upstream-error" => Decision::UpstreamError,
            "refused-fail-closed" => Decision::RefusedFailClosed,
            "refused-by-grant" => Decision::RefusedByGrant,
            _ => Decision::Other(s),
        }
    }
}

impl From<Decision> for String {
    fn from(d: Decision) -> Self {
        match d {
            Decision::Other(s) => s,
            known => known.as_str().to_owned(),
        }
    }
}

impl std::fmt::Display for Decision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The level of detail at which a request was recorded, named as in
/// kube-apiserver's `audit.k8s.io/v1` Policy (`Level`). On the wire the
/// Policy's spelling; a value this version does not know is kept as
/// [`AuditLevel::Other`] and written back unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum AuditLevel {
    /// `Metadata`: who, what, when and the outcome; no request body.
    Metadata,
    /// `Request`: metadata and the request body.
    Request,
    /// `RequestResponse`: metadata, request body and, where the recorder
    /// keeps one, the response body (kubescribe's proxy records response
    /// sizes and statuses, not response bodies).
    RequestResponse,
    /// A value this version does not know, as received.
    Other(String),
}

impl AuditLevel {
    /// The wire string, as an audit Policy spells it.
    pub fn as_str(&self) -> &str {
        match self {
            AuditLevel::Metadata => "Metadata",
            AuditLevel::Request => "Request",
            AuditLevel::RequestResponse => "RequestResponse",
            AuditLevel::Other(other) => other,
        }
    }

    /// Whether an event at this level may carry the request body.
    pub fn includes_request_body(&self) -> bool {
        matches!(self, AuditLevel::Request | AuditLevel::RequestResponse)
    }
}

impl From<String> for AuditLevel {
    fn from(s: String) -> Self {
        match s.as_str() {
            "Metadata" => AuditLevel::Metadata,
            "Request" => AuditLevel::Request,
            "RequestResponse" => AuditLevel::RequestResponse,
            _ => AuditLevel::Other(s),
        }
    }
}

impl From<AuditLevel> for String {
    fn from(level: AuditLevel) -> Self {
        match level {
            AuditLevel::Other(s) => s,
            known => known.as_str().to_owned(),
        }
    }
}

impl std::fmt::Display for AuditLevel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why and how much of a request body was withheld from the record.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Redaction {
    /// Why: `secret` (the request's resource holds credentials, or its body
    /// names an object of such a kind), `resource` (a resource the
    /// operator configured to be redacted), or `policy` (the audit Policy's
    /// level for the request is `Metadata`).
    pub reason: String,
    /// Request body bytes not recorded (for a streamed body longer than the
    /// capture limit, the bytes seen before the event was sent; the full
    /// size is in the response record's `requestBodyBytes`).
    #[serde(rename = "droppedBytes")]
    pub dropped_bytes: u64,
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
