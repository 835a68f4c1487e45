//! Prometheus counters of the recorder client (`kubescribe_recorder_client_*`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Record kind label: `event` or `response`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct KindLabels {
    kind: &'static str,
}

/// Record kind and reason labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ReasonLabels {
    kind: &'static str,
    reason: &'static str,
}

/// Recorder address label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RecorderLabels {
    recorder: String,
}

/// Recorder address and breaker state labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct TransitionLabels {
    recorder: String,
    to: &'static str,
}

/// Session reason label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct SessionLabels {
    reason: &'static str,
}

/// The client's counters. Cheap to clone (shared handles).
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    attempted: Family<KindLabels, Counter>,
    delivered: Family<KindLabels, Counter>,
    spooled: Family<KindLabels, Counter>,
    redelivered: Family<KindLabels, Counter>,
    dropped: Family<ReasonLabels, Counter>,
    attempt_failures: Family<ReasonLabels, Counter>,
    spool_bytes: Gauge,
    spool_records: Gauge,
    sessions_started: Counter,
    sessions_finished: Counter,
    sessions_failed: Family<SessionLabels, Counter>,
    breaker_open: Family<RecorderLabels, Gauge>,
    breaker_transitions: Family<TransitionLabels, Counter>,
}

impl Metrics {
    /// Creates the counters and registers them under the prefix
    /// `kubescribe_recorder_client` in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Metrics::default();
        let r = registry.sub_registry_with_prefix("kubescribe_recorder_client");
        r.register(
            "records_attempted",
            "Records (events, response records) the proxy asked to deliver",
            m.attempted.clone(),
        );
        r.register(
            "records_delivered",
            "Records a recorder accepted on the first delivery",
            m.delivered.clone(),
        );
        r.register(
            "records_spooled",
            "Records written to the on-disk spool after no recorder accepted them",
            m.spooled.clone(),
        );
        r.register(
            "records_redelivered",
            "Spooled records a recorder later accepted",
            m.redelivered.clone(),
        );
        r.register(
            "records_dropped",
            "Records lost: not deliverable and not spoolable, or dropped from a full spool",
            m.dropped.clone(),
        );
        r.register(
            "attempt_failures",
            "Failed delivery attempts to one recorder address, by reason",
            m.attempt_failures.clone(),
        );
        r.register(
            "spool_bytes",
            "Bytes of spool segment files on disk",
            m.spool_bytes.clone(),
        );
        r.register(
            "spool_records",
            "Records waiting in the spool for redelivery",
            m.spool_records.clone(),
        );
        r.register(
            "session_uploads_started",
            "Session uploads a recorder accepted",
            m.sessions_started.clone(),
        );
        r.register(
            "session_uploads_finished",
            "Session uploads that completed successfully",
            m.sessions_finished.clone(),
        );
        r.register(
            "session_uploads_failed",
            "Session uploads that failed after connecting, by reason",
            m.sessions_failed.clone(),
        );
        r.register(
            "breaker_open",
            "1 while a recorder's circuit breaker is open or half-open (it is skipped), 0 when closed",
            m.breaker_open.clone(),
        );
        r.register(
            "breaker_transitions",
            "Circuit breaker transitions by recorder: to=open, half_open (a probe got an answer), closed",
            m.breaker_transitions.clone(),
        );
        m
    }

    pub(crate) fn attempted(&self, kind: &'static str) {
        self.attempted.get_or_create(&KindLabels { kind }).inc();
    }
    pub(crate) fn delivered(&self, kind: &'static str, n: u64) {
        self.delivered.get_or_create(&KindLabels { kind }).inc_by(n);
    }
    pub(crate) fn spooled(&self, kind: &'static str) {
        self.spooled.get_or_create(&KindLabels { kind }).inc();
    }
    pub(crate) fn redelivered(&self, kind: &'static str, n: u64) {
        self.redelivered
            .get_or_create(&KindLabels { kind })
            .inc_by(n);
    }
    pub(crate) fn dropped(&self, kind: &'static str, reason: &'static str, n: u64) {
        self.dropped
            .get_or_create(&ReasonLabels { kind, reason })
            .inc_by(n);
    }
    pub(crate) fn attempt_failed(&self, kind: &'static str, reason: &'static str) {
        self.attempt_failures
            .get_or_create(&ReasonLabels { kind, reason })
            .inc();
    }
    pub(crate) fn spool_size(&self, bytes: u64, records: u64) {
        self.spool_bytes
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
        self.spool_records
            .set(i64::try_from(records).unwrap_or(i64::MAX));
    }
    pub(crate) fn session_started(&self) {
        self.sessions_started.inc();
    }
    pub(crate) fn session_finished(&self) {
        self.sessions_finished.inc();
    }
    pub(crate) fn session_failed(&self, reason: &'static str) {
        self.sessions_failed
            .get_or_create(&SessionLabels { reason })
            .inc();
    }

    /// A breaker moved `to` `open`, `half_open` or `closed`.
    pub(crate) fn breaker(&self, recorder: std::net::SocketAddr, to: &'static str) {
        let recorder = recorder.to_string();
        self.breaker_open
            .get_or_create(&RecorderLabels {
                recorder: recorder.clone(),
            })
            .set(i64::from(to != "closed"));
        self.breaker_transitions
            .get_or_create(&TransitionLabels { recorder, to })
            .inc();
    }

    /// How often the circuit breaker of `recorder` moved `to` `open`,
    /// `half_open` or `closed` so far.
    pub fn breaker_transitions(&self, recorder: std::net::SocketAddr, to: &'static str) -> u64 {
        self.breaker_transitions
            .get_or_create(&TransitionLabels {
                recorder: recorder.to_string(),
                to,
            })
            .get()
    }

    /// Records dropped so far with `kind` and `reason` (for tests and
    /// operators embedding the client).
    pub fn dropped_count(&self, kind: &'static str, reason: &'static str) -> u64 {
        self.dropped
            .get_or_create(&ReasonLabels { kind, reason })
            .get()
    }

    /// Records redelivered from the spool so far with `kind`.
    pub fn redelivered_count(&self, kind: &'static str) -> u64 {
        self.redelivered.get_or_create(&KindLabels { kind }).get()
    }

    /// Records spooled so far with `kind`.
    pub fn spooled_count(&self, kind: &'static str) -> u64 {
        self.spooled.get_or_create(&KindLabels { kind }).get()
    }
}
