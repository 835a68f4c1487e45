//! Building the `kubernetes-api-request` event
//! (docs/tailscale-protocol.md#event-schema) and the response record from
//! what the proxy knows about a request, and the records of a request
//! refused after its event could not be stored (each with the proxy's
//! [`Decision`]).

use event_model::{
    BodyCapture, Decision, Event, Extension, Redaction, Request, ResponseRecord, Source,
};
use identity::Impersonation;
use k8s_request_parse::RequestInfo;
use recorder_client::Refusal;

use crate::body::BodyEnd;
use crate::request::body_capture::BodyDigest;
use crate::request::context::RequestContext;

/// What the proxy sends upstream besides the caller's request, recorded in
/// the event's `kubescribe` extension so that an auditor can match the
/// event with the API server's audit event without re-deriving anything.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Upstreamed<'a> {
    /// The `Audit-ID` header sent (the audit event's `auditID`).
    pub(crate) audit_id: &'a str,
    /// The impersonation applied (auth mode), if any.
    pub(crate) impersonation: Option<&'a Impersonation>,
}

/// What of the request body an event carries.
#[derive(Debug, Clone, Copy)]
pub(crate) enum EventBody<'a> {
    /// The captured body: the prefix when `truncated`.
    Captured {
        /// The bytes.
        body: &'a [u8],
        /// Whether they are only the body's first bytes.
        truncated: bool,
    },
    /// None of it: the body was withheld (redacted), and why.
    Withheld(&'a Redaction),
}

/// The request event. The event never carries headers, so never
/// `Authorization`; a withheld body leaves `request.body` empty and says
/// why in `kubescribe.redaction`.
pub(crate) fn request_event(
    ctx: &RequestContext,
    info: &RequestInfo,
    source: Source,
    body: EventBody<'_>,
    upstreamed: Upstreamed<'_>,
) -> Event {
    let (body, capture, redaction) = match body {
        EventBody::Captured { body, truncated } => (
            body,
            Some(BodyCapture {
                truncated,
                captured_bytes: body.len() as u64,
            }),
            None,
        ),
        EventBody::Withheld(redaction) => (&[][..], None, Some(redaction.clone())),
    };
    Event {
        id: String::new(),
        timestamp: ctx.received_unix,
        user_agent: ctx.user_agent.clone(),
        request: Request {
            method: ctx.method.as_str().to_string(),
            path: ctx.target.clone(),
            body: body.to_vec(),
            query_parameters: k8s_request_parse::query::parse_query(&ctx.raw_query),
            ..Default::default()
        },
        kubernetes: info.clone(),
        source,
        kubescribe: Some(Extension {
            key: ctx.id.clone(),
            request_id: ctx.id.clone(),
            body: capture,
            redaction,
            audit_id: upstreamed.audit_id.to_owned(),
            impersonated_user: upstreamed
                .impersonation
                .map(|imp| imp.user().to_owned())
                .unwrap_or_default(),
            impersonated_groups: upstreamed
                .impersonation
                .map(|imp| imp.groups().to_vec())
                .unwrap_or_default(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The response record for a request whose event has key `key`: `status`
/// is what the caller got (`0`: no response), `end` how the response body
/// ended.
pub(crate) fn response_record(
    key: &str,
    status: u16,
    ctx: &RequestContext,
    response_bytes: u64,
    end: &BodyEnd,
    request_body: Option<BodyDigest>,
) -> ResponseRecord {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    let mut error = match end {
        BodyEnd::Complete => None,
        BodyEnd::Failed(e) => Some(format!(
            "response incomplete: the API server's response broke off: {e}"
        )),
        BodyEnd::Dropped => Some(
            "response incomplete: the connection to the caller closed before the response ended"
                .to_string(),
        ),
    };
    if let Some(d) = &request_body {
        if !d.complete && error.is_none() {
            error = Some("request body was not forwarded to its end".to_string());
        }
    }
    ResponseRecord {
        key: key.to_string(),
        timestamp: now,
        status,
        duration_ms: ctx.received.elapsed().as_secs_f64() * 1000.0,
        response_bytes,
        request_body_bytes: request_body.as_ref().map(|d| d.size),
        request_body_sha256: request_body.map(|d| d.sha256),
        error,
        ..Default::default()
    }
}

/// The records of a request refused because its `event` could not be
/// stored in time (fail closed): the same event, now saying so in
/// `kubescribe.decision`, and a response record with the refusal's status
/// and message and the same decision. The proxy sends both after refusing,
/// so that the refused request is on the record once a recorder takes them.
pub(crate) fn refused_records(
    mut event: Event,
    ctx: &RequestContext,
    refusal: &Refusal,
) -> (Event, ResponseRecord) {
    let decision = Decision::RefusedFailClosed;
    if let Some(extension) = event.kubescribe.as_mut() {
        extension.decision = Some(decision.clone());
    }
    // What the caller got: the message, ending in a newline.
    let sent = refusal.message.len() + usize::from(!refusal.message.ends_with('\n'));
    let mut record = response_record(
        &ctx.id,
        refusal.status.as_u16(),
        ctx,
        sent as u64,
        &BodyEnd::Complete,
        None,
    );
    record.error = Some(refusal.message.clone());
    record.decision = Some(decision);
    (event, record)
}
