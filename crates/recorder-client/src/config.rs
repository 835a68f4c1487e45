//! Tunables of the recorder client, with defaults that are safe in production.

use std::time::Duration;

use crate::dialer::RecorderDialer;
use crate::metrics::Metrics;
use crate::spool::SpoolConfig;

/// How the client delivers events. Every field has a production default
/// ([`ClientConfig::default`]).
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Deadline on one delivery attempt to one recorder address: probe (when
    /// not cached), connect, request and response together. A hung recorder
    /// costs at most this much per address. Default 3 s.
    pub attempt_timeout: Duration,
    /// Deadline on opening a connection to a recorder, whichever way
    /// [`dialer`](Self::dialer) opens it. Default 5 s (upstream's per-dial
    /// limit); the attempt deadline still applies on top.
    pub dial_timeout: Duration,
    /// How connections to recorders are opened (events and session uploads
    /// alike): direct TCP (the default), through tailscaled's LocalAPI, or
    /// through a SOCKS5 proxy.
    pub dialer: RecorderDialer,
    /// How long a `HEAD /v2/event` probe result is trusted. Any delivery error
    /// to that address drops it early. Default 60 s.
    pub probe_ttl: Duration,
    /// The circuit breaker each recorder address has: after a deadline miss
    /// or a failed connection, the recorder is skipped at once by every live
    /// send until a background probe gets an answer from it.
    pub breaker: BreakerConfig,
    /// Idle keep-alive connections are closed after this long. Default 30 s.
    pub pool_idle_timeout: Duration,
    /// At most this many idle connections are kept per recorder. Default 64.
    pub pool_max_idle_per_recorder: usize,
    /// Coalescing of concurrent events to one kubescribe recorder.
    pub batch: BatchConfig,
    /// The on-disk spool for undeliverable events under fail open. `None`
    /// keeps no spool: such events are dropped and counted.
    pub spool: Option<SpoolConfig>,
    /// Whether a fail-open request waits for its event. Default
    /// [`FailOpenDelivery::Acknowledged`] (the proxy's default is
    /// [`FailOpenDelivery::Queued`]).
    pub fail_open: FailOpenDelivery,
    /// Settings used by [`RecorderClient::connect_session`](crate::RecorderClient::connect_session).
    pub session: SessionOptions,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            attempt_timeout: Duration::from_secs(3),
            dial_timeout: Duration::from_secs(5),
            dialer: RecorderDialer::Direct,
            probe_ttl: Duration::from_secs(60),
            breaker: BreakerConfig::default(),
            pool_idle_timeout: Duration::from_secs(30),
            pool_max_idle_per_recorder: 64,
            batch: BatchConfig::default(),
            spool: None,
            fail_open: FailOpenDelivery::default(),
            session: SessionOptions::default(),
        }
    }
}

/// How [`RecorderClient::record_event`](crate::RecorderClient::record_event)
/// delivers a fail-open event: what the request waits for before it is
/// forwarded. Fail closed always waits for a recorder's acknowledgement.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum FailOpenDelivery {
    /// Forwarded once a recorder acknowledged the event (durably stored), or
    /// when none did, once it was spooled (or dropped without a spool).
    #[default]
    Acknowledged,
    /// Forwarded at once: the event is written to the spool, unsynced
    /// (it survives the proxy's crash; it is synced before the redelivery
    /// task waits on a recorder that did not take it), and delivered from
    /// there in batches with the response records, in order. Without a
    /// spool it is sent from memory in the background.
    Queued,
}

impl FailOpenDelivery {
    /// The name `--fail-open-delivery` takes.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Acknowledged => "acknowledged",
            Self::Queued => "queued",
        }
    }
}

impl std::str::FromStr for FailOpenDelivery {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [Self::Acknowledged, Self::Queued]
            .into_iter()
            .find(|mode| mode.as_str() == s)
            .ok_or_else(|| format!("unknown fail-open delivery {s:?}: queued or acknowledged"))
    }
}

/// The circuit breaker of each recorder address.
///
/// **Closed** (the normal state): records are sent to the recorder.
/// **Open**: after an attempt to it missed its deadline, could not connect,
/// or broke off, the recorder is skipped without a round trip by every live
/// send, whatever the failure policy: fail-closed requests fail over to the
/// next address at once, or are refused when there is none; fail-open
/// records go straight to the spool. Attempts already waiting on it are cut
/// short the moment it opens. While open, a background probe
/// (`HEAD /v2/event`, under the attempt deadline) is sent after
/// [`probe_interval`](Self::probe_interval), then at doubling intervals up to
/// [`probe_interval_max`](Self::probe_interval_max). **Half-open**: the probe
/// got an answer; the next live attempt is let through as the trial (the
/// others are still skipped while it runs); its answer closes the breaker,
/// its failure opens it again. A record the spool's redelivery gets stored
/// closes it too (redelivery is never held back by a breaker).
#[derive(Debug, Clone)]
pub struct BreakerConfig {
    /// Whether failures open the breaker at all. Default true. When false
    /// every send tries every address and waits for its deadline.
    pub enabled: bool,
    /// Wait before the first probe of an open breaker. It doubles for each
    /// opening without a record delivered since the last one (a failed
    /// trial: a recorder that answers `HEAD` but not `POST` costs one
    /// request's deadline per probe, not one per request). Default 200 ms.
    pub probe_interval: Duration,
    /// Longest wait between probes, and so the longest a recorder that is
    /// back is still skipped. Default 2 s.
    pub probe_interval_max: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            probe_interval: Duration::from_millis(200),
            probe_interval_max: Duration::from_secs(2),
        }
    }
}

/// Coalescing of concurrent events into one `POST /v2/events` (NDJSON, all or
/// nothing). Only ever used towards recorders that answered the probe with
/// `X-Kubescribe-Recorder: 1`; a Tailscale recorder gets single events only.
#[derive(Debug, Clone)]
pub struct BatchConfig {
    /// Whether to coalesce at all. Default true. No event ever waits for a
    /// batch to fill: a batch is whatever queued up while the previous one
    /// was in flight, and a lone event is sent as a plain `POST /v2/event`.
    pub enabled: bool,
    /// Most events in one batch. Default 256.
    pub max_events: usize,
    /// Most body bytes in one batch. Default 4 MiB.
    pub max_bytes: usize,
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            max_events: 256,
            max_bytes: 4 << 20,
        }
    }
}

/// How [`connect_session`](crate::connect_session) connects and how the
/// upload is supervised.
#[derive(Debug, Clone)]
pub struct SessionOptions {
    /// Deadline on opening one connection, whichever way. Default 5 s (upstream).
    pub dial_timeout: Duration,
    /// How connections are opened; set by [`RecorderClient`](crate::RecorderClient)
    /// from [`ClientConfig::dialer`]. Default direct TCP.
    pub dialer: RecorderDialer,
    /// Deadline on the `HEAD /v2/record` probe. Default 10 s (upstream).
    pub probe_timeout: Duration,
    /// Deadline on the recorder's response headers (`POST /v2/record`) or its
    /// `100 Continue` (`POST /record`). Upstream waits forever. Default 10 s.
    pub response_timeout: Duration,
    /// Budget for connecting across all addresses. Default 30 s (upstream).
    pub total_timeout: Duration,
    /// v2 uploads fail when no ack frame arrives for this long, or when acks
    /// stop advancing for this long while data is outstanding. Also bounds
    /// the wait for the recorder's final answer after
    /// [`SessionUpload::finish`](crate::SessionUpload::finish). Default 30 s.
    pub ack_window: Duration,
    /// Capacity of the channel between the data path and the upload, in
    /// pushed chunks. A full channel is reported to the pusher. Default 4096.
    pub channel_capacity: usize,
    /// Where upload counters go; set by [`RecorderClient`](crate::RecorderClient).
    pub metrics: Option<Metrics>,
}

impl Default for SessionOptions {
    fn default() -> Self {
        Self {
            dial_timeout: Duration::from_secs(5),
            dialer: RecorderDialer::Direct,
            probe_timeout: Duration::from_secs(10),
            response_timeout: Duration::from_secs(10),
            total_timeout: Duration::from_secs(30),
            ack_window: Duration::from_secs(30),
            channel_capacity: 4096,
            metrics: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::FailOpenDelivery;

    #[test]
    fn fail_open_delivery_names_round_trip_and_others_are_refused() {
        for mode in [FailOpenDelivery::Acknowledged, FailOpenDelivery::Queued] {
            assert_eq!(mode.as_str().parse::<FailOpenDelivery>(), Ok(mode));
        }
        let err = "later".parse::<FailOpenDelivery>().unwrap_err();
        assert!(err.contains("queued or acknowledged"), "{err}");
    }
}
