//! The per-request pipeline, in data-path order:
//! context → identity (WhoIs) → request info → policy → event → forward → response record.

use std::sync::Arc;

use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tracing::Instrument;

use crate::caller::{CallerError, CallerResolver};
use crate::config::Mode;
use crate::event;
use crate::forward::{self, text_response, Forwarder, ObservedBody, ProxyBody, UpgradeParts};
use crate::listener::ConnInfo;
use crate::metrics::Metrics;
use crate::policy::{self, Admission, Recorded};
use crate::recorder::EventSink;
use crate::request::body_capture::{self, Captured, DigestSlot};
use crate::request::context::RequestContext;
use crate::session_hook::SessionContext;

/// Per-request settings.
#[derive(Debug, Clone)]
pub struct ProxyOptions {
    /// auth or noauth.
    pub mode: Mode,
    /// Body capture cap.
    pub max_body_capture: usize,
    /// Events for every caller with recorders.
    pub events_for_all_callers: bool,
}

/// The proxy: composes identity, policy, events and forwarding.
pub struct Proxy {
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

/// The fixed body of a WhoIs failure (Tailscale's wording).
pub const AUTHENTICATE_FAILED: &str = "failed to authenticate caller";

impl Proxy {
    /// Compose a proxy.
    pub fn new(
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
    pub async fn handle(
        self: Arc<Self>,
        conn: ConnInfo,
        mut req: Request<Incoming>,
    ) -> Response<ProxyBody> {
        let client_upgrade =
            forward::upgrade_type(req.headers()).map(|_| hyper::upgrade::on(&mut req));
        let (parts, body) = req.into_parts();
        let ctx = RequestContext::new(conn, &parts);
        let span = tracing::info_span!("request", id = %ctx.id, caller = %conn.caller, method = %ctx.method, target = %ctx.target);
        let resp = self
            .pipeline(ctx, parts, body, client_upgrade)
            .instrument(span)
            .await;
        self.metrics.response(resp.status());
        resp
    }

    async fn pipeline(
        &self,
        ctx: RequestContext,
        parts: http::request::Parts,
        body: Incoming,
        client_upgrade: Option<hyper::upgrade::OnUpgrade>,
    ) -> Response<ProxyBody> {
        // 1. Identity.
        let caller = match self.resolver.resolve(&ctx.conn, &parts.headers).await {
            Ok(c) => c,
            Err(CallerError::Authenticate(e)) => {
                tracing::warn!(error = %e, "{AUTHENTICATE_FAILED}");
                return text_response(StatusCode::INTERNAL_SERVER_ERROR, AUTHENTICATE_FAILED);
            }
            Err(CallerError::Grant(reason)) => {
                tracing::warn!(reason = %reason, "refusing request: the caller's grant is invalid");
                return text_response(
                    StatusCode::FORBIDDEN,
                    format!("forbidden: the caller's tailscale.com/cap/kubernetes grant is invalid: {reason}"),
                );
            }
        };

        // 2. What the request is, exactly as kube-apiserver would see it.
        let info = match k8s_request_parse::request_info(ctx.method.as_str(), &ctx.target) {
            Ok(i) => i,
            Err(e) => {
                tracing::info!(error = %e, "invalid request target");
                return text_response(StatusCode::BAD_REQUEST, format!("invalid request: {e}"));
            }
        };

        // 3. Policy before any event.
        if policy::counts_as_recording_attempt(&caller.policy) {
            self.metrics.ts_event_recording_attempted.inc();
        }
        let mut event_key = None;
        let mut digest: Option<DigestSlot> = None;
        let forward_body: ProxyBody = match policy::admit(
            &caller.policy,
            self.opts.events_for_all_callers,
            &ctx.target,
        ) {
            Admission::Refuse(r) => {
                self.metrics.requests_refused.inc();
                tracing::warn!(status = %r.status, "failure mode is 'fail closed'; refusing request: {}", r.message);
                return text_response(r.status, r.message);
            }
            Admission::ForwardWithoutEvent => body.map_err(forward::BoxError::from).boxed(),
            Admission::RecordEvent(failure) => {
                // 4. The event, before forwarding.
                let captured = match body_capture::capture(body, self.opts.max_body_capture).await {
                    Ok(c) => c,
                    Err(e) => {
                        return text_response(
                            StatusCode::BAD_REQUEST,
                            format!("error reading request body: {e}"),
                        );
                    }
                };
                let (captured_bytes, truncated) = match &captured {
                    Captured::Whole { body, .. } => (body.clone(), false),
                    Captured::Truncated {
                        prefix, digest: d, ..
                    } => {
                        digest = Some(d.clone());
                        (prefix.clone(), true)
                    }
                };
                let ev = event::request_event(
                    &ctx,
                    &info,
                    caller.source.clone(),
                    &captured_bytes,
                    truncated,
                );
                self.metrics.events_attempted.inc();
                let outcome = self
                    .sink
                    .record_event(&caller.policy.recorder_addrs, failure, &ev, &ctx.target)
                    .await;
                match policy::after_event(outcome) {
                    Ok(Recorded::Stored) => {
                        self.metrics.events_delivered.inc();
                    }
                    Ok(Recorded::NotStored(reason)) => {
                        self.metrics.events_failed.inc();
                        tracing::warn!("failure mode is 'fail open'; continuing request without recording: {reason}");
                    }
                    Err(r) => {
                        self.metrics.events_failed.inc();
                        self.metrics.requests_refused.inc();
                        tracing::warn!(status = %r.status, "failure mode is 'fail closed'; refusing request: {}", r.message);
                        return text_response(r.status, r.message);
                    }
                }
                event_key = Some(ctx.id.clone());
                captured.forward_body()
            }
        };

        // 5. Forward.
        self.metrics
            .added_latency
            .observe(ctx.received.elapsed().as_secs_f64());
        self.metrics.ts_requests_proxied.inc();
        let upgrade = client_upgrade.map(|client| {
            self.metrics.upgrades.inc();
            UpgradeParts {
                client,
                context: SessionContext {
                    request: ctx.clone(),
                    caller: caller.clone(),
                    request_info: info.clone(),
                    upgrade: parts
                        .headers
                        .get(http::header::UPGRADE)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_string(),
                    response_headers: http::HeaderMap::new(),
                    event_key: event_key.clone(),
                    metrics: crate::session_hook::SessionMetrics {
                        attempted: self.metrics.ts_session_recordings_attempted.clone(),
                        uploaded: self.metrics.ts_session_recordings_uploaded.clone(),
                    },
                },
            }
        });
        let target = ctx.target.clone();
        let resp = match self
            .forwarder
            .forward(
                parts,
                forward_body,
                &target,
                caller.impersonation.as_ref(),
                upgrade,
            )
            .await
        {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "upstream request failed");
                text_response(StatusCode::BAD_GATEWAY, e.to_string())
            }
        };

        // 6. Response record once the body is done (never blocks the response).
        let Some(key) = event_key else {
            return resp;
        };
        let status = resp.status();
        let sink = self.sink.clone();
        let recorders = caller.policy.recorder_addrs.clone();
        resp.map(move |b| {
            ObservedBody::new(b, move |bytes, complete| {
                let d = digest.and_then(|d| d.lock().ok().and_then(|g| g.clone()));
                let rec = event::response_record(&key, status, &ctx, bytes, complete, d);
                sink.record_response(&recorders, rec);
            })
            .boxed()
        })
    }
}
