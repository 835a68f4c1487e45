//! The per-request pipeline, one short step each, in data-path order:
//! resolve the caller → what the request is → its `Audit-ID` → admit (and,
//! when the caller's grants ask for it, record the event before anything is
//! forwarded) → forward → attach the response record. Any step may end the
//! request with a [`RequestError`], answered in one place ([`Proxy::answer`]).
//!
//! Every response carries the proxy's [`Decision`] as an extension (never
//! sent): `forwarded` for the API server's answers, the error's own for the
//! proxy's. The response record repeats it, and
//! `kubescribe_proxy_decisions_total` counts it. A request refused because
//! its event could not be stored gets its records sent after the refusal
//! ([`event::refused_records`]).

mod error;
mod response_record;

use std::sync::Arc;

use audit_policy::{AuditConfig, Level, Reason, Redactor, Stage};
use event_model::Decision;
use event_model::Redaction;
use http::{HeaderMap, Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use k8s_request_parse::RequestInfo;
use recorder_client::FailurePolicy;
use tracing::Instrument;

use crate::admission::{self, Admission, Recorded};
use crate::audit::PolicyInForce;
use crate::body::{BoxError, ProxyBody};
use crate::caller::{CallerInfo, CallerResolver};
use crate::event::{self, EventBody, Upstreamed};
use crate::event_sink::EventSink;
use crate::forward::{Forwarder, UpgradeParts};
use crate::headers::{header_text, set_audit_id, upgrade_type};
use crate::metrics::Metrics;
use crate::mode::Mode;
use crate::request::body_capture::{self, DigestSlot};
use crate::request::context::RequestContext;
use crate::session_hook::{SessionContext, SessionMetrics};
use error::RequestError;
use response_record::ResponseRecorder;
use service::conn::ConnInfo;

/// Per-request settings.
#[derive(Debug, Clone)]
pub(crate) struct ProxyOptions {
    /// Request body bytes copied into an event at most.
    pub(crate) max_body_capture: usize,
    /// Events for every caller with recorders (`TS_EXPERIMENTAL_KUBE_API_EVENTS`).
    pub(crate) events_for_all_callers: bool,
    /// Auth or noauth: decides whose `Audit-ID` goes upstream.
    pub(crate) mode: Mode,
    /// Which request bodies are never recorded.
    pub(crate) redactor: Redactor,
    /// The audit Policy in force: what is recorded of each request.
    pub(crate) audit: Arc<PolicyInForce>,
}

/// How a request with an event is recorded: the grants' failure policy
/// and the audit Policy's decision.
#[derive(Debug, Clone, Copy)]
struct Recording<'a> {
    failure: FailurePolicy,
    audit: &'a AuditConfig,
}

/// What an event carries of the request body.
enum Captured {
    /// These bytes (the first ones, when `.1`: truncated).
    Body(bytes::Bytes, bool),
    /// None: withheld, as said.
    Withheld(Redaction),
}

impl Captured {
    fn as_event_body(&self) -> EventBody<'_> {
        match self {
            Captured::Body(body, truncated) => EventBody::Captured {
                body,
                truncated: *truncated,
            },
            Captured::Withheld(redaction) => EventBody::Withheld(redaction),
        }
    }
}

/// An event stored (or, fail open, let go) before forwarding: what the
/// response record needs.
struct RecordedEvent {
    /// The event's key, which the response record repeats.
    key: String,
    /// Where a truncated body's size and digest will be once forwarded.
    digest: Option<DigestSlot>,
}

/// The proxy: composes identity, admission, events and forwarding.
pub(crate) struct Proxy {
    resolver: CallerResolver,
    sink: Arc<dyn EventSink>,
    forwarder: Forwarder,
    metrics: Metrics,
    opts: ProxyOptions,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy").field("opts", &self.opts).finish()
    }
}

impl Proxy {
    /// Compose a proxy.
    pub(crate) fn new(
        resolver: CallerResolver,
        sink: Arc<dyn EventSink>,
        forwarder: Forwarder,
        metrics: Metrics,
        opts: ProxyOptions,
    ) -> Self {
        Proxy {
            resolver,
            sink,
            forwarder,
            metrics,
            opts,
        }
    }

    /// Handle one request from `conn`.
    pub(crate) async fn handle(
        self: Arc<Self>,
        conn: ConnInfo,
        mut req: Request<Incoming>,
    ) -> Response<ProxyBody> {
        let client_upgrade = upgrade_type(req.headers()).map(|_| hyper::upgrade::on(&mut req));
        let (parts, body) = req.into_parts();
        let ctx = RequestContext::new(conn, &parts);
        let span = tracing::info_span!("request", id = %ctx.id, caller = %conn.peer, method = %ctx.method, target = %ctx.target);
        let resp = async {
            match self.pipeline(ctx, parts, body, client_upgrade).await {
                Ok(resp) => resp,
                Err(error) => self.answer(error),
            }
        }
        .instrument(span)
        .await;
        self.metrics.response(resp.status());
        if let Some(decision) = resp.extensions().get::<Decision>() {
            self.metrics.decided(decision);
        }
        resp
    }

    async fn pipeline(
        &self,
        ctx: RequestContext,
        mut parts: http::request::Parts,
        body: Incoming,
        client_upgrade: Option<OnUpgrade>,
    ) -> Result<Response<ProxyBody>, RequestError> {
        let caller = self.resolver.resolve(&ctx.conn, &parts.headers).await?;
        // What the request is, exactly as kube-apiserver would see it.
        let info = k8s_request_parse::request_info(ctx.method.as_str(), &ctx.target)
            .map_err(RequestError::InvalidTarget)?;
        if ctx.method == http::Method::CONNECT {
            return Err(RequestError::ConnectNotForwarded);
        }
        // The audit ID kube-apiserver will log this request under (upgrades
        // included: they are forwarded with these headers too).
        let audit_id = set_audit_id(&mut parts.headers, self.opts.mode, &ctx.id);
        let upstreamed = Upstreamed {
            audit_id: &audit_id,
            impersonation: caller.impersonation.as_ref(),
        };
        // What the audit Policy records of it (`None`: nothing at all: no
        // event, no response record, forwarded whatever the grants say).
        let audit = self.opts.audit.evaluate(&caller, &info, self.opts.mode);
        self.metrics.audit_level(audit.level);
        let (forward_body, recorded) = if audit.level == Level::None {
            (body.map_err(BoxError::from).boxed(), None)
        } else {
            self.admit(&ctx, &caller, &info, upstreamed, body, &audit)
                .await?
        };
        let upgrade = client_upgrade.map(|client| UpgradeParts {
            client,
            context: self.session_context(&ctx, &caller, &info, &parts.headers, &recorded),
        });
        // Armed before forwarding: a caller who leaves before the answer
        // still gets its request a response record.
        // `omitStages: [ResponseComplete]`: no response record.
        let recorded = recorded.filter(|_| !audit.omits(Stage::ResponseComplete));
        let record = recorded.map(|recorded| {
            let recorders = caller.policy.recorder_addrs.clone();
            ResponseRecorder::arm(self.sink.clone(), recorders, ctx.clone(), recorded)
        });
        let resp = self
            .forward(&ctx, &caller, parts, forward_body, upgrade)
            .await;
        Ok(match record {
            Some(record) => record.attach(resp),
            None => resp,
        })
    }

    /// Sends the request upstream. A failure is answered here, so that a
    /// recorded request still gets its response record (saying what the
    /// caller got).
    async fn forward(
        &self,
        ctx: &RequestContext,
        caller: &CallerInfo,
        parts: http::request::Parts,
        body: ProxyBody,
        upgrade: Option<UpgradeParts>,
    ) -> Response<ProxyBody> {
        self.metrics
            .added_latency
            .observe(ctx.received.elapsed().as_secs_f64());
        self.metrics.ts_requests_proxied.inc();
        let impersonation = caller.impersonation.as_ref();
        match self
            .forwarder
            .forward(parts, body, &ctx.target, impersonation, upgrade)
            .await
        {
            Ok(mut resp) => {
                resp.extensions_mut().insert(Decision::Forwarded);
                resp
            }
            Err(error) => self.answer(error.into()),
        }
    }

    /// Admission before any event; records the event first when the
    /// caller's grants ask for one. Returns the body to forward.
    async fn admit(
        &self,
        ctx: &RequestContext,
        caller: &CallerInfo,
        info: &RequestInfo,
        upstreamed: Upstreamed<'_>,
        body: Incoming,
        audit: &AuditConfig,
    ) -> Result<(ProxyBody, Option<RecordedEvent>), RequestError> {
        if admission::counts_as_recording_attempt(&caller.policy) {
            self.metrics.ts_event_recording_attempted.inc();
        }
        match admission::admit(
            &caller.policy,
            self.opts.events_for_all_callers,
            &ctx.target,
        ) {
            Admission::Refuse(refusal) => Err(RequestError::RefusedByGrant(refusal)),
            Admission::ForwardWithoutEvent => Ok((body.map_err(BoxError::from).boxed(), None)),
            Admission::RecordEvent(failure) => {
                let (body, recorded) = self
                    .record_event(
                        ctx,
                        caller,
                        info,
                        upstreamed,
                        body,
                        Recording { failure, audit },
                    )
                    .await?;
                Ok((body, Some(recorded)))
            }
        }
    }

    /// Captures the body, builds the event and delivers it to the caller's
    /// recorders, before the request is forwarded.
    async fn record_event(
        &self,
        ctx: &RequestContext,
        caller: &CallerInfo,
        info: &RequestInfo,
        upstreamed: Upstreamed<'_>,
        body: Incoming,
        recording: Recording<'_>,
    ) -> Result<(ProxyBody, RecordedEvent), RequestError> {
        let Recording { failure, audit } = recording;
        let (forward_body, event_body, digest) = self.capture(info, body, audit).await?;
        let mut ev = event::request_event(
            ctx,
            info,
            caller.source.clone(),
            event_body.as_event_body(),
            upstreamed,
        );
        drop(event_body);
        if let Some(extension) = ev.kubescribe.as_mut() {
            extension.audit_level = audit.level.audit_level();
        }
        self.metrics.events_attempted.inc();
        let outcome = self
            .sink
            .record_event(&caller.policy.recorder_addrs, failure, &ev)
            .await;
        match admission::after_event(outcome) {
            Ok(Recorded::Stored) => {
                self.metrics.events_delivered.inc();
            }
            Ok(Recorded::Queued) => {
                self.metrics.events_queued.inc();
            }
            Ok(Recorded::NotStored(reason)) => {
                self.metrics.events_failed.inc();
                tracing::warn!(
                    "failure mode is 'fail open'; continuing request without recording: {reason}"
                );
            }
            Err(refusal) => {
                self.metrics.events_failed.inc();
                // On the record once a recorder takes it: the event again,
                // saying it was refused, and a response record with the
                // refusal (both in the background, spooled if need be).
                let recorders = &caller.policy.recorder_addrs;
                let (event, record) = event::refused_records(ev, ctx, &refusal);
                self.sink.record_refused(recorders, event, record);
                return Err(RequestError::Refused(refusal));
            }
        };
        let recorded = RecordedEvent {
            key: ctx.id.clone(),
            digest,
        };
        Ok((forward_body, recorded))
    }

    /// The body to forward, what the event carries of it, and where its
    /// digest will be. Whether the body is withheld is decided before it is
    /// read, on the resource (Secrets, --redact-resource) and the audit
    /// level (`Metadata`): such a body is streamed upstream, never buffered,
    /// never copied. Otherwise it is captured, and withheld still if it
    /// names a Secret; `omitManagedFields` strips what it says.
    async fn capture(
        &self,
        info: &RequestInfo,
        body: Incoming,
        audit: &AuditConfig,
    ) -> Result<(ProxyBody, Captured, Option<DigestSlot>), RequestError> {
        let redactor = &self.opts.redactor;
        let withhold = redactor
            .for_request(info)
            .or_else(|| (!audit.level.includes_request_body()).then_some(Reason::Policy));
        if let Some(reason) = withhold {
            let (forward, digest, declared) = body_capture::stream_unrecorded(body);
            // A request without a body (a get, a list) has nothing withheld.
            if declared == Some(0) {
                return Ok((forward, Captured::Body(bytes::Bytes::new(), false), None));
            }
            self.metrics.redacted(reason);
            let withheld = Captured::Withheld(reason.redaction(declared.unwrap_or(0)));
            return Ok((forward, withheld, Some(digest)));
        }
        let captured = body_capture::capture(body, self.opts.max_body_capture)
            .await
            .map_err(RequestError::ReadBody)?;
        let (event_body, truncated, digest) = captured.for_event();
        let Some(reason) = redactor.for_body(&event_body, truncated) else {
            let event_body = match audit.omit_managed_fields && !truncated {
                true => audit_policy::strip_managed_fields(&event_body)
                    .map(bytes::Bytes::from)
                    .unwrap_or(event_body),
                false => event_body,
            };
            let kept = Captured::Body(event_body, truncated);
            return Ok((captured.forward_body(), kept, digest));
        };
        self.metrics.redacted(reason);
        let dropped = event_body.len() as u64;
        let digest = digest.or_else(|| Some(body_capture::digest_of(&event_body)));
        let withheld = Captured::Withheld(reason.redaction(dropped));
        Ok((captured.forward_body(), withheld, digest))
    }

    /// What the session hook learns about an upgrade request.
    fn session_context(
        &self,
        ctx: &RequestContext,
        caller: &Arc<CallerInfo>,
        info: &RequestInfo,
        headers: &HeaderMap,
        recorded: &Option<RecordedEvent>,
    ) -> SessionContext {
        self.metrics.upgrades.inc();
        SessionContext {
            request: ctx.clone(),
            caller: caller.clone(),
            request_info: info.clone(),
            upgrade: header_text(headers, http::header::UPGRADE),
            response_headers: HeaderMap::new(),
            event_key: recorded.as_ref().map(|r| r.key.clone()),
            metrics: SessionMetrics {
                attempted: self.metrics.ts_session_recordings_attempted.clone(),
                uploaded: self.metrics.ts_session_recordings_uploaded.clone(),
            },
        }
    }

    /// Answers a request the proxy will not forward.
    fn answer(&self, error: RequestError) -> Response<ProxyBody> {
        error.log();
        if error.is_recording_refusal() {
            self.metrics.requests_refused.inc();
        }
        error.into_response()
    }
}
