//! A circuit breaker per recorder address: the memory that a recorder just
//! hung or refused connections, so that live sends skip it at once instead
//! of each waiting for its own deadline (see
//! [`BreakerConfig`](crate::BreakerConfig)).
//!
//! ```text
//! closed ──deadline missed / no connection / broken exchange──► open
//!   ▲                                                           │ HEAD probe answered
//!   │ trial answered, or a redelivery stored                    ▼
//!   └───────────────────────────────────────────────────── half-open ──trial failed──► open
//! ```
//!
//! This module is the state machine only, with its metrics and one log line
//! per transition. The sender attempts, reports results here, and runs the
//! background probe while a breaker is open.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{watch, Notify};

use crate::config::BreakerConfig;
use crate::error::AttemptError;
use crate::metrics::Metrics;

/// Why a breaker closed, for its log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ClosedBy {
    /// A live attempt got an answer (the trial of a half-open breaker).
    Answer,
    /// A record was delivered.
    Delivery,
}

#[derive(Debug)]
enum State {
    Closed,
    /// Skipped by live sends; the background probe runs.
    Open {
        since: Instant,
        last: String,
    },
    /// The probe got an answer: the next live attempt (the trial, `Some`
    /// while it runs) decides; every other one is still skipped.
    HalfOpen {
        since: Instant,
        last: String,
        trial: Option<u64>,
    },
}

#[derive(Debug)]
struct Entry {
    state: State,
    /// Openings since a record was last delivered: the probe's back-off exponent.
    flaps: u32,
    /// Counts openings; an attempt started before one is cut short by it.
    openings: watch::Sender<u64>,
    /// Numbers the trials of half-open periods.
    trials: u64,
}

impl Default for Entry {
    fn default() -> Self {
        Entry {
            state: State::Closed,
            flaps: 0,
            openings: watch::channel(0).0,
            trials: 0,
        }
    }
}

/// Leave to attempt an address: cut the attempt short when `opened`
/// changes. A `trial` is the one attempt a half-open breaker lets through;
/// if it ends without a result (its caller went away), the next attempt
/// becomes the trial.
#[derive(Debug)]
pub(crate) struct Admitted {
    pub(crate) opened: watch::Receiver<u64>,
    pub(crate) trial: Option<Trial>,
}

/// The trial attempt of a half-open breaker (see [`Admitted`]).
#[derive(Debug)]
pub(crate) struct Trial {
    breakers: Arc<Breakers>,
    addr: SocketAddr,
    id: u64,
}

impl Drop for Trial {
    fn drop(&mut self) {
        self.breakers.with(|m| {
            if let Some(Entry {
                state: State::HalfOpen { trial, .. },
                ..
            }) = m.get_mut(&self.addr)
            {
                if *trial == Some(self.id) {
                    *trial = None;
                }
            }
        });
    }
}

/// The breakers of every recorder address this client has sent to.
#[derive(Debug)]
pub(crate) struct Breakers {
    cfg: BreakerConfig,
    entries: Mutex<HashMap<SocketAddr, Entry>>,
    metrics: Metrics,
    /// Woken whenever a breaker closes (the spool's redelivery waits on it).
    available: Arc<Notify>,
}

impl Breakers {
    pub(crate) fn new(cfg: BreakerConfig, metrics: Metrics, available: Arc<Notify>) -> Self {
        Self {
            cfg,
            entries: Mutex::new(HashMap::new()),
            metrics,
            available,
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut HashMap<SocketAddr, Entry>) -> R) -> R {
        let mut guard = self
            .entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&mut guard)
    }

    /// Before a live attempt to `addr`: `Err(Unavailable)` while its breaker
    /// is open (or half-open with its trial running); otherwise leave to try.
    pub(crate) fn admit(self: &Arc<Self>, addr: SocketAddr) -> Result<Admitted, AttemptError> {
        let now = Instant::now();
        let trial = self.with(|m| {
            let entry = m.entry(addr).or_default();
            let trial = match &mut entry.state {
                State::Closed => None,
                State::Open { since, last } => return Err(unavailable(now, *since, last)),
                State::HalfOpen {
                    trial: Some(_),
                    since,
                    last,
                } => return Err(unavailable(now, *since, last)),
                State::HalfOpen { trial, .. } => {
                    entry.trials += 1;
                    *trial = Some(entry.trials);
                    Some(entry.trials)
                }
            };
            Ok((entry.openings.subscribe(), trial))
        });
        let (opened, trial) = trial?;
        Ok(Admitted {
            opened,
            trial: trial.map(|id| Trial {
                breakers: self.clone(),
                addr,
                id,
            }),
        })
    }

    /// The error for an attempt cut short because `addr`'s breaker opened.
    pub(crate) fn cut_short(&self, addr: SocketAddr) -> AttemptError {
        let now = Instant::now();
        self.with(|m| match m.get(&addr).map(|e| &e.state) {
            Some(State::Open { since, last } | State::HalfOpen { since, last, .. }) => {
                unavailable(now, *since, last)
            }
            _ => AttemptError::Unavailable {
                ago_ms: 0,
                last: "circuit opened".into(),
            },
        })
    }

    /// Whether `addr`'s breaker is open (not half-open: its trial goes through).
    pub(crate) fn is_open(&self, addr: SocketAddr) -> bool {
        self.with(|m| {
            m.get(&addr)
                .is_some_and(|e| matches!(e.state, State::Open { .. }))
        })
    }

    /// An attempt to `addr` failed with `error`. A failure that says the
    /// recorder is unhealthy opens a closed or half-open breaker, and the
    /// wait before the first probe is returned (the caller starts the probe).
    /// Any other failure is an answer ([`Breakers::answered`]).
    pub(crate) fn failed(&self, addr: SocketAddr, error: &AttemptError) -> Option<Duration> {
        if !self.cfg.enabled {
            return None;
        }
        if !error.marks_down() {
            self.answered(addr, ClosedBy::Answer);
            return None;
        }
        let text = error.to_string();
        let opened = self.with(|m| {
            let entry = m.entry(addr).or_default();
            if let State::Open { last, .. } = &mut entry.state {
                last.clone_from(&text);
                return None;
            }
            entry.state = State::Open {
                since: Instant::now(),
                last: text.clone(),
            };
            let flaps = entry.flaps;
            entry.flaps = entry.flaps.saturating_add(1);
            entry.openings.send_modify(|n| *n += 1);
            Some(self.probe_wait(flaps))
        })?;
        self.metrics.breaker(addr, "open");
        tracing::warn!(
            recorder = %addr,
            error = %text,
            first_probe_in = ?opened,
            "recorder unavailable: circuit breaker open; it is skipped (fail closed fails over or refuses at once, fail open spools) until a probe (HEAD /v2/event) gets an answer"
        );
        Some(opened)
    }

    /// The background probe got an answer: an open breaker turns half-open,
    /// and the next live attempt is its trial.
    pub(crate) fn probe_answered(&self, addr: SocketAddr) {
        let moved = self.with(|m| {
            let entry = m.entry(addr).or_default();
            match &entry.state {
                State::Open { since, last } => {
                    entry.state = State::HalfOpen {
                        since: *since,
                        last: last.clone(),
                        trial: None,
                    };
                    true
                }
                _ => false,
            }
        });
        if moved {
            self.metrics.breaker(addr, "half_open");
            tracing::info!(recorder = %addr, "recorder answered the breaker's probe: circuit half-open, the next request to it is the trial");
        }
    }

    /// `addr` answered a live attempt (even with an error status), or a
    /// record was delivered to it: the breaker closes (a delivery also resets
    /// the probe back-off).
    pub(crate) fn answered(&self, addr: SocketAddr, by: ClosedBy) {
        let was = self.with(|m| {
            let entry = m.entry(addr).or_default();
            if by == ClosedBy::Delivery {
                entry.flaps = 0;
            }
            match std::mem::replace(&mut entry.state, State::Closed) {
                State::Closed => None,
                State::Open { since, .. } | State::HalfOpen { since, .. } => Some(since),
            }
        });
        let Some(since) = was else {
            return;
        };
        self.metrics.breaker(addr, "closed");
        tracing::info!(
            recorder = %addr,
            open_for = ?since.elapsed(),
            closed_by = match by {
                ClosedBy::Answer => "answer",
                ClosedBy::Delivery => "delivery",
            },
            "recorder available again: circuit breaker closed"
        );
        self.available.notify_one();
    }

    /// The next probe interval after one of `current` failed.
    pub(crate) fn next_probe_wait(&self, current: Duration) -> Duration {
        (current * 2).min(self.cfg.probe_interval_max)
    }

    fn probe_wait(&self, flaps: u32) -> Duration {
        let factor = 1u32.checked_shl(flaps.min(16)).unwrap_or(u32::MAX);
        self.cfg
            .probe_interval
            .saturating_mul(factor)
            .min(self.cfg.probe_interval_max)
    }
}

fn unavailable(now: Instant, since: Instant, last: &str) -> AttemptError {
    AttemptError::Unavailable {
        ago_ms: now.duration_since(since).as_millis(),
        last: last.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cause::Cause;

    fn breakers(cfg: BreakerConfig) -> Arc<Breakers> {
        Arc::new(Breakers::new(
            cfg,
            Metrics::default(),
            Arc::new(Notify::new()),
        ))
    }

    fn addr() -> SocketAddr {
        "127.0.0.1:1".parse().unwrap()
    }

    #[test]
    fn unhealthy_failures_open_answers_do_not() {
        let b = breakers(BreakerConfig::default());
        let status = AttemptError::Status {
            status: http::StatusCode::SERVICE_UNAVAILABLE,
            body: String::new(),
        };
        assert_eq!(b.failed(addr(), &status), None);
        assert!(b.admit(addr()).unwrap().trial.is_none());

        let opened = b.admit(addr()).unwrap().opened;
        let timeout = AttemptError::Timeout(Duration::from_secs(3));
        assert_eq!(b.failed(addr(), &timeout), Some(Duration::from_millis(200)));
        assert!(opened.has_changed().unwrap());
        assert!(b.is_open(addr()));
        assert!(matches!(
            b.admit(addr()),
            Err(AttemptError::Unavailable { ref last, .. }) if last.contains("did not answer")
        ));
        // Already open: no second opening, no second probe.
        let connect = AttemptError::Connect(Cause::msg("refused"));
        assert_eq!(b.failed(addr(), &connect), None);
        assert_eq!(b.metrics.breaker_transitions(addr(), "open"), 1);
    }

    #[test]
    fn a_probe_answer_lets_one_trial_through_whose_answer_closes() {
        let b = breakers(BreakerConfig::default());
        let timeout = AttemptError::Timeout(Duration::from_secs(3));
        b.failed(addr(), &timeout);
        b.probe_answered(addr());
        assert!(!b.is_open(addr()), "half-open: the trial may be batched");
        let trial = b.admit(addr()).unwrap();
        assert!(trial.trial.is_some());
        assert!(b.admit(addr()).is_err(), "one trial at a time");
        // A trial whose caller went away frees the way for the next one.
        drop(trial);
        let trial = b.admit(addr()).unwrap();
        assert!(trial.trial.is_some());
        b.answered(addr(), ClosedBy::Answer);
        drop(trial);
        assert!(b.admit(addr()).unwrap().trial.is_none());
        assert_eq!(b.metrics.breaker_transitions(addr(), "half_open"), 1);
        assert_eq!(b.metrics.breaker_transitions(addr(), "closed"), 1);
    }

    #[test]
    fn a_failed_trial_reopens_and_probes_later_until_a_delivery() {
        let b = breakers(BreakerConfig::default());
        let timeout = AttemptError::Timeout(Duration::from_secs(3));
        assert_eq!(b.failed(addr(), &timeout), Some(Duration::from_millis(200)));
        b.probe_answered(addr());
        let trial = b.admit(addr()).unwrap();
        assert_eq!(b.failed(addr(), &timeout), Some(Duration::from_millis(400)));
        drop(trial);
        assert!(b.is_open(addr()));
        b.answered(addr(), ClosedBy::Delivery);
        assert_eq!(b.failed(addr(), &timeout), Some(Duration::from_millis(200)));
        assert_eq!(
            b.next_probe_wait(Duration::from_millis(1500)),
            Duration::from_secs(2)
        );
    }

    #[test]
    fn a_disabled_breaker_never_opens() {
        let b = breakers(BreakerConfig {
            enabled: false,
            ..BreakerConfig::default()
        });
        assert_eq!(
            b.failed(addr(), &AttemptError::Timeout(Duration::from_secs(3))),
            None
        );
        assert!(b.admit(addr()).is_ok());
    }
}
