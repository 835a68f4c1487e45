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

use event_model::Decision;
use http::{HeaderMap, Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use k8s_request_parse::RequestInfo;
use recorder_client::FailurePolicy;
use tracing::Instrument;

use crate::admission::{self, Admission, Recorded};
use crate::body::{BoxError, ProxyBody};
use crate::caller::{CallerInfo, CallerResolver};
use crate::event::{self, Upstreamed};
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
        let (forward_body, recorded) = self.admit(&ctx, &caller, &info, upstreamed, body).await?;
        let upgrade = client_upgrade.map(|client| UpgradeParts {
            client,
            context: self.session_context(&ctx, &caller, &info, &parts.headers, &recorded),
        });
        // Armed before forwarding: a caller who leaves before the answer
        // still gets its request a response record.
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
                    .record_event(ctx, caller, info, upstreamed, body, failure)
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
        failure: FailurePolicy,
    ) -> Result<(ProxyBody, RecordedEvent), RequestError> {
        let captured = body_capture::capture(body, self.opts.max_body_capture)
            .await
            .map_err(RequestError::ReadBody)?;
        let (event_body, truncated, digest) = captured.for_event();
        let ev = event::request_event(
            ctx,
            info,
            caller.source.clone(),
            &event_body,
            truncated,
            upstreamed,
        );
        self.metrics.events_attempted.inc();
        let outcome = self
            .sink
            .record_event(&caller.policy.recorder_addrs, failure, &ev)
            .await;
        match admission::after_event(outcome) {
            Ok(Recorded::Stored) => {
                self.metrics.events_delivered.inc();
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
        Ok((captured.forward_body(), recorded))
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
