//! Prometheus metrics (`GET /metrics`, text format, via `prometheus-client`):
//! one registry, prefix `kubescribe_recorder_`, counted by every layer.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// A `kind` label: `event` or `response`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    /// Record kind.
    kind: String,
}

/// A `reason` label for rejections.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    /// Why the request was rejected.
    reason: String,
}

/// An `outcome` label for sessions.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    /// How the session upload ended.
    outcome: String,
}

/// A `sink` label: `webhook` or `jsonl`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SinkLabel {
    /// The export sink.
    sink: String,
}

/// The export metrics of one sink.
#[derive(Clone)]
pub(crate) struct SinkMetrics {
    /// Events delivered and acknowledged.
    pub(crate) exported: Counter,
    /// Deliveries that failed (each retried).
    pub(crate) failures: Counter,
    /// Events read and not yet delivered.
    pub(crate) lag_records: Gauge,
    /// Age of the oldest event not yet delivered (since it was stored).
    pub(crate) lag_seconds: Gauge<f64, std::sync::atomic::AtomicU64>,
}

/// Every metric the recorder exports.
pub(crate) struct Metrics {
    registry: Registry,
    /// Records received (parsed, before de-duplication), by kind.
    records_received: Family<KindLabel, Counter>,
    /// Records durably stored (excluding duplicates).
    pub(crate) records_stored: Counter,
    /// Records acknowledged as duplicates of stored ones.
    pub(crate) duplicates: Counter,
    /// Requests rejected, by reason.
    rejected: Family<ReasonLabel, Counter>,
    /// Bytes of records durably stored.
    pub(crate) record_bytes: Counter,
    /// Bytes of session casts durably stored.
    pub(crate) session_bytes: Counter,
    /// Records per group commit.
    pub(crate) batch_records: Histogram,
    /// Latency of one group commit (write + fsync / PUT).
    pub(crate) commit_seconds: Histogram,
    /// Group commits that failed.
    pub(crate) commit_failures: Counter,
    /// Session uploads in progress.
    pub(crate) active_uploads: Gauge,
    /// Session uploads ended, by outcome.
    sessions: Family<OutcomeLabel, Counter>,
    /// Connections of the recorder's listeners.
    pub(crate) connections: service::conn::ConnectionMetrics,
    /// Export: events delivered, by sink.
    exported: Family<SinkLabel, Counter>,
    /// Export: failed deliveries, by sink.
    export_failures: Family<SinkLabel, Counter>,
    /// Export: events not yet delivered, by sink.
    export_lag_records: Family<SinkLabel, Gauge>,
    /// Export: age of the oldest event not yet delivered, by sink.
    export_lag_seconds: Family<SinkLabel, Gauge<f64, std::sync::atomic::AtomicU64>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers all metrics.
    pub(crate) fn new() -> Self {
        let mut registry = Registry::with_prefix("kubescribe_recorder");
        let records_received = Family::<KindLabel, Counter>::default();
        let records_stored = Counter::default();
        let duplicates = Counter::default();
        let rejected = Family::<ReasonLabel, Counter>::default();
        let record_bytes = Counter::default();
        let session_bytes = Counter::default();
        let batch_records = Histogram::new(exponential_buckets(1.0, 2.0, 15));
        let commit_seconds = Histogram::new(exponential_buckets(0.0001, 2.0, 18));
        let commit_failures = Counter::default();
        let active_uploads = Gauge::default();
        let sessions = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "records_received",
            "Records received, by kind (before de-duplication)",
            records_received.clone(),
        );
        registry.register(
            "records_stored",
            "Records durably stored",
            records_stored.clone(),
        );
        registry.register(
            "records_duplicate",
            "Records acknowledged as already stored (same idempotency key)",
            duplicates.clone(),
        );
        registry.register(
            "requests_rejected",
            "Upload requests rejected, by reason",
            rejected.clone(),
        );
        registry.register(
            "record_bytes_stored",
            "Bytes of event and response records durably stored",
            record_bytes.clone(),
        );
        registry.register(
            "session_bytes_stored",
            "Bytes of session recordings durably stored",
            session_bytes.clone(),
        );
        registry.register(
            "commit_batch_records",
            "Records per group commit",
            batch_records.clone(),
        );
        registry.register(
            "commit_duration_seconds",
            "Time to make one group commit durable",
            commit_seconds.clone(),
        );
        registry.register(
            "commit_failures",
            "Group commits that failed (nothing acknowledged)",
            commit_failures.clone(),
        );
        registry.register(
            "session_uploads_active",
            "Session uploads in progress",
            active_uploads.clone(),
        );
        registry.register(
            "session_uploads",
            "Session uploads ended, by outcome",
            sessions.clone(),
        );
        let exported = Family::<SinkLabel, Counter>::default();
        let export_failures = Family::<SinkLabel, Counter>::default();
        let export_lag_records = Family::<SinkLabel, Gauge>::default();
        let export_lag_seconds =
            Family::<SinkLabel, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        registry.register(
            "export_events",
            "Events exported as audit.k8s.io/v1 Events and acknowledged, by sink",
            exported.clone(),
        );
        registry.register(
            "export_failures",
            "Export batches that failed (retried with back-off), by sink",
            export_failures.clone(),
        );
        registry.register(
            "export_lag_records",
            "Stored events read and not yet exported, by sink",
            export_lag_records.clone(),
        );
        registry.register(
            "export_lag_seconds",
            "Age of the oldest stored event not yet exported, by sink",
            export_lag_seconds.clone(),
        );
        let connections = service::conn::ConnectionMetrics::register(&mut registry);
        Self {
            exported,
            export_failures,
            export_lag_records,
            export_lag_seconds,
            registry,
            connections,
            records_received,
            records_stored,
            duplicates,
            rejected,
            record_bytes,
            session_bytes,
            batch_records,
            commit_seconds,
            commit_failures,
            active_uploads,
            sessions,
        }
    }

    /// Counts a rejected request.
    pub(crate) fn reject(&self, reason: &str) {
        self.rejected
            .get_or_create(&ReasonLabel {
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// Counts a received record.
    pub(crate) fn received(&self, kind: &str) {
        self.records_received
            .get_or_create(&KindLabel {
                kind: kind.to_owned(),
            })
            .inc();
    }

    /// Counts an ended session upload.
    pub(crate) fn session_ended(&self, outcome: &str) {
        self.sessions
            .get_or_create(&OutcomeLabel {
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    /// Records one successful group commit.
    pub(crate) fn observe_commit(&self, records: usize, bytes: usize, took: Duration) {
        self.records_stored.inc_by(records as u64);
        self.record_bytes.inc_by(bytes as u64);
        self.batch_records.observe(records as f64);
        self.commit_seconds.observe(took.as_secs_f64());
    }

    /// The export metrics of `sink`.
    pub(crate) fn sink(&self, sink: &str) -> SinkMetrics {
        let label = SinkLabel {
            sink: sink.to_owned(),
        };
        SinkMetrics {
            exported: self.exported.get_or_create(&label).clone(),
            failures: self.export_failures.get_or_create(&label).clone(),
            lag_records: self.export_lag_records.get_or_create(&label).clone(),
            lag_seconds: self.export_lag_seconds.get_or_create(&label).clone(),
        }
    }

    /// The registry, for metrics registered by others (the storage back end's).
    pub(crate) fn registry_mut(&mut self) -> &mut Registry {
        &mut self.registry
    }

    /// The text exposition.
    pub(crate) fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
