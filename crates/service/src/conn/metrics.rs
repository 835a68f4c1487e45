//! Connection metrics, by listener: open connections, refusals and timeouts.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ListenerLabel {
    listener: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    listener: String,
    reason: String,
}

/// Why a connection was closed before or instead of serving.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The set-up pool was full; this connection in set-up (the oldest from the source with the most)
    /// made room for a new one.
    Evicted,
    /// The source was more than a second ahead of `max_connection_rate_per_source` connections
    /// a second (after a burst of twice that); closed before any TLS handshake.
    RateLimited,
    /// `max_connections` connections were already serving.
    TooMany,
    /// `max_connections_per_source` connections from the same source were already serving.
    TooManyFromSource,
    /// The PROXY protocol header was missing or malformed.
    ProxyHeader,
    /// The TLS handshake failed.
    Tls,
    /// Set-up (PROXY header, TLS, first request head) took longer than `handshake_timeout`.
    HandshakeTimeout,
    /// No request was in flight for `idle_timeout`.
    Idle,
}

impl Refusal {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Evicted => "evicted",
            Refusal::RateLimited => "rate_limited",
            Refusal::TooMany => "too_many",
            Refusal::TooManyFromSource => "too_many_from_source",
            Refusal::ProxyHeader => "proxy_header",
            Refusal::Tls => "tls",
            Refusal::HandshakeTimeout => "handshake_timeout",
            Refusal::Idle => "idle",
        }
    }
}

/// The connection metrics of every listener of a process, registered once.
#[derive(Debug, Clone, Default)]
pub struct ConnectionMetrics {
    open: Family<ListenerLabel, Gauge>,
    closed: Family<ReasonLabel, Counter>,
}

impl ConnectionMetrics {
    /// Registers `connections_open{listener}` and `connections_closed_total{listener,reason}` (closed
    /// by the listener itself: refused, timed out or evicted) in `registry`, under its prefix.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register(
            "connections_open",
            "Connections open, being set up or serving",
            metrics.open.clone(),
        );
        registry.register(
            "connections_closed",
            "Connections the listener closed itself: refused over a limit, timed out, idle or evicted",
            metrics.closed.clone(),
        );
        metrics
    }

    pub(crate) fn opened(&self, listener: &str) {
        self.open_gauge(listener).inc();
    }

    pub(crate) fn released(&self, listener: &str) {
        self.open_gauge(listener).dec();
    }

    pub(crate) fn closed(&self, listener: &str, why: Refusal) {
        self.closed
            .get_or_create(&ReasonLabel {
                listener: listener.to_owned(),
                reason: why.as_str().to_owned(),
            })
            .inc();
    }

    /// Connections the listener has closed for `why` so far (for tests and logs).
    pub fn closed_count(&self, listener: &str, why: Refusal) -> u64 {
        self.closed
            .get_or_create(&ReasonLabel {
                listener: listener.to_owned(),
                reason: why.as_str().to_owned(),
            })
            .get()
    }

    /// Connections open on `listener` now.
    pub fn open_count(&self, listener: &str) -> i64 {
        self.open_gauge(listener).get()
    }

    fn open_gauge(&self, listener: &str) -> Gauge {
        self.open
            .get_or_create(&ListenerLabel {
                listener: listener.to_owned(),
            })
            .clone()
    }
}
