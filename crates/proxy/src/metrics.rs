//! The proxy's Prometheus metrics (prometheus-client), including Tailscale's
//! counter names (`k8s_auth_proxy_*`, exposed without a `_total` suffix exactly
//! as tailscaled's clientmetrics are) for dashboards that already use them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

/// Label set of per-status-code request counters.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct CodeLabels {
    /// HTTP status code sent to the caller.
    pub code: u16,
}

/// Label set of the decision counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct DecisionLabels {
    /// The decision's wire string (`forwarded`, `refused-fail-closed`, …).
    pub decision: String,
}

/// Label set of the redaction counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ReasonLabels {
    /// Why the body was withheld (`secret`, `resource`, `policy`).
    pub reason: String,
}

/// Label set of the per-level event counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct LevelLabels {
    /// The audit Policy level (`None`, `Metadata`, `Request`, `RequestResponse`).
    pub level: String,
}

/// Label set of the Policy reload counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ResultLabels {
    /// `ok` or `invalid`.
    pub result: String,
}

/// A counter exposed under its exact name (no `_total`), like Tailscale's clientmetrics.
#[derive(Debug, Clone, Default)]
pub(crate) struct PlainCounter(Arc<AtomicU64>);

impl PlainCounter {
    /// Add one.
    pub(crate) fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    /// Current value.
    pub(crate) fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

impl EncodeMetric for PlainCounter {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        // Encoded as a sample without suffix; typed `counter` below.
        let v = i64::try_from(self.get()).unwrap_or(i64::MAX);
        encoder.encode_gauge(&v)
    }
    fn metric_type(&self) -> MetricType {
        MetricType::Counter
    }
}

/// All proxy metrics. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Metrics {
    /// Responses sent, by status code.
    pub requests: Family<CodeLabels, Counter>,
    /// Request events the proxy tried to record.
    pub events_attempted: Counter,
    /// Request events stored by a recorder before forwarding.
    pub events_delivered: Counter,
    /// Request events queued for delivery in the background (fail open, `queued`).
    pub events_queued: Counter,
    /// Request events not stored (spooled, dropped or refused).
    pub events_failed: Counter,
    /// Requests refused by the failure policy.
    pub requests_refused: Counter,
    /// Requests by what the proxy did with them (`event_model::Decision`).
    pub decisions: Family<DecisionLabels, Counter>,
    /// Time the proxy adds before a request is sent upstream (identity, policy, event), seconds.
    pub added_latency: Histogram,
    /// Upgraded (exec/attach/port-forward) sessions started.
    pub upgrades: Counter,
    /// Events whose request body was withheld, by reason.
    pub redactions: Family<ReasonLabels, Counter>,
    /// Requests by the audit Policy level they were given.
    pub audit_levels: Family<LevelLabels, Counter>,
    /// Audit Policy reloads, by result.
    pub policy_reloads: Family<ResultLabels, Counter>,
    /// Tailscale: `k8s_auth_proxy_requests_proxied`.
    pub ts_requests_proxied: PlainCounter,
    /// Tailscale: `k8s_auth_proxy_api_request_event_recording_attempted`.
    pub ts_event_recording_attempted: PlainCounter,
    /// Tailscale: `k8s_auth_proxy_session_recordings_attempted` (for the session hook).
    pub ts_session_recordings_attempted: PlainCounter,
    /// Tailscale: `k8s_auth_proxy_session_recordings_uploaded` (for the session hook).
    pub ts_session_recordings_uploaded: PlainCounter,
    /// Connections of the API and admin listeners.
    pub connections: service::conn::ConnectionMetrics,
}

impl Metrics {
    /// Create and register every metric in `registry`.
    pub(crate) fn register(registry: &mut Registry) -> Self {
        let m = Metrics {
            requests: Family::default(),
            events_attempted: Counter::default(),
            events_delivered: Counter::default(),
            events_queued: Counter::default(),
            events_failed: Counter::default(),
            requests_refused: Counter::default(),
            decisions: Family::default(),
            // 50 µs .. ~3.3 s
            added_latency: Histogram::new(exponential_buckets(0.000_05, 2.0, 17)),
            upgrades: Counter::default(),
            redactions: Family::default(),
            audit_levels: Family::default(),
            policy_reloads: Family::default(),
            ts_requests_proxied: PlainCounter::default(),
            ts_event_recording_attempted: PlainCounter::default(),
            ts_session_recordings_attempted: PlainCounter::default(),
            ts_session_recordings_uploaded: PlainCounter::default(),
            connections: service::conn::ConnectionMetrics::default(),
        };
        let sub = registry.sub_registry_with_prefix("kubescribe_proxy");
        let m = Metrics {
            connections: service::conn::ConnectionMetrics::register(sub),
            ..m
        };
        sub.register(
            "requests",
            "Responses sent to callers, by status code",
            m.requests.clone(),
        );
        sub.register(
            "events_attempted",
            "API request events the proxy tried to record",
            m.events_attempted.clone(),
        );
        sub.register(
            "events_delivered",
            "API request events stored by a recorder before forwarding",
            m.events_delivered.clone(),
        );
        sub.register(
            "events_queued",
            "API request events of fail-open requests forwarded at once, queued for delivery in the background (--fail-open-delivery queued)",
            m.events_queued.clone(),
        );
        sub.register(
            "events_failed",
            "API request events not stored before forwarding (spooled, dropped or refused)",
            m.events_failed.clone(),
        );
        sub.register(
            "requests_refused",
            "Requests refused by the recorder failure policy",
            m.requests_refused.clone(),
        );
        sub.register(
            "decisions",
            "Requests by what the proxy did with them: forwarded, upstream-error, refused-fail-closed, refused-by-grant",
            m.decisions.clone(),
        );
        sub.register(
            "added_latency_seconds",
            "Time the proxy spends before sending a request upstream (identity, policy, event)",
            m.added_latency.clone(),
        );
        sub.register(
            "upgrades",
            "Upgraded sessions (exec, attach, port-forward) started",
            m.upgrades.clone(),
        );
        sub.register(
            "redacted_events",
            "Events whose request body was withheld, by reason: secret, resource, policy",
            m.redactions.clone(),
        );
        sub.register(
            "audit_level_requests",
            "Requests by the audit Policy level they were given (None: no event)",
            m.audit_levels.clone(),
        );
        sub.register(
            "audit_policy_reloads",
            "Audit Policy reloads (SIGHUP or the file changed), by result: ok, invalid (the previous policy stays)",
            m.policy_reloads.clone(),
        );
        registry.register(
            "k8s_auth_proxy_requests_proxied",
            "Tailscale-compatible: requests proxied",
            m.ts_requests_proxied.clone(),
        );
        registry.register(
            "k8s_auth_proxy_api_request_event_recording_attempted",
            "Tailscale-compatible: API request event recordings attempted",
            m.ts_event_recording_attempted.clone(),
        );
        registry.register(
            "k8s_auth_proxy_session_recordings_attempted",
            "Tailscale-compatible: session recordings attempted",
            m.ts_session_recordings_attempted.clone(),
        );
        registry.register(
            "k8s_auth_proxy_session_recordings_uploaded",
            "Tailscale-compatible: session recordings uploaded",
            m.ts_session_recordings_uploaded.clone(),
        );
        m
    }

    /// Count a request's decision.
    pub(crate) fn decided(&self, decision: &event_model::Decision) {
        self.decisions
            .get_or_create(&DecisionLabels {
                decision: decision.as_str().to_owned(),
            })
            .inc();
    }

    /// Count an event whose request body was withheld.
    pub(crate) fn redacted(&self, reason: audit_policy::Reason) {
        self.redactions
            .get_or_create(&ReasonLabels {
                reason: reason.as_str().to_owned(),
            })
            .inc();
    }

    /// Count a request's audit level.
    pub(crate) fn audit_level(&self, level: audit_policy::Level) {
        self.audit_levels
            .get_or_create(&LevelLabels {
                level: level.as_str().to_owned(),
            })
            .inc();
    }

    /// Count a Policy reload.
    pub(crate) fn policy_reloaded(&self, ok: bool) {
        let result = if ok { "ok" } else { "invalid" };
        self.policy_reloads
            .get_or_create(&ResultLabels {
                result: result.to_owned(),
            })
            .inc();
    }

    /// Count a response by status.
    pub(crate) fn response(&self, status: http::StatusCode) {
        self.requests
            .get_or_create(&CodeLabels {
                code: status.as_u16(),
            })
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tailscale_names_are_exposed_verbatim() {
        let mut r = Registry::default();
        let m = Metrics::register(&mut r);
        m.ts_requests_proxied.inc();
        m.response(http::StatusCode::OK);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &r).unwrap_or_default();
        assert!(
            out.contains("\nk8s_auth_proxy_requests_proxied 1\n"),
            "{out}"
        );
        assert!(
            out.contains("kubescribe_proxy_requests_total{code=\"200\"} 1"),
            "{out}"
        );
    }
}
