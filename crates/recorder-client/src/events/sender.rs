//! Delivery of one record (or a batch of spooled ones) to a caller's
//! recorders: each address's circuit breaker, the cached probe, the choice
//! between a single `POST`, a batch and the batcher, and ordered failover
//! across the addresses (first success wins). Also the background probe of
//! an open breaker.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{watch, Notify};
use tracing::Instrument;

use super::batch::Batcher;
use super::breaker::{Admitted, Breakers, ClosedBy};
use super::probe_cache::{ProbeCache, Support};
use super::transport::Transport;
use super::Delivered;
use crate::config::ClientConfig;
use crate::error::{AttemptError, DeliveryError};
use crate::metrics::Metrics;
use crate::spool::RecordKind;

/// One record to deliver: its kind and its JSON line.
#[derive(Debug, Clone)]
pub(crate) struct Outgoing {
    pub(crate) kind: RecordKind,
    pub(crate) body: Bytes,
}

/// Whose send this is, which decides how circuit breakers apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    /// On behalf of a request (or its response record): a recorder whose
    /// breaker is open is skipped without a round trip, and an attempt is
    /// cut short when its recorder's breaker opens meanwhile.
    Live,
    /// The spool's redelivery: every address is tried whatever its breaker
    /// says, one record or batch at a time (the results still feed the breaker).
    Redelivery,
}

/// Sends records to recorders: breakers, probe cache, batching, failover, metrics.
#[derive(Debug)]
pub(crate) struct Sender {
    transport: Arc<Transport>,
    probes: Arc<ProbeCache>,
    breakers: Arc<Breakers>,
    batcher: Option<Batcher>,
    metrics: Metrics,
    shutdown: watch::Receiver<bool>,
}

impl Sender {
    /// `available` is woken whenever a recorder's breaker closes; background
    /// probes stop when `shutdown` turns true.
    pub(crate) fn new(
        cfg: &ClientConfig,
        metrics: Metrics,
        available: Arc<Notify>,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        let transport = Arc::new(Transport::new(cfg));
        let breakers = Arc::new(Breakers::new(
            cfg.breaker.clone(),
            metrics.clone(),
            available,
        ));
        let batcher = cfg
            .batch
            .enabled
            .then(|| Batcher::new(transport.clone(), breakers.clone(), cfg.batch.clone()));
        Self {
            transport,
            probes: Arc::new(ProbeCache::new(cfg.probe_ttl)),
            breakers,
            batcher,
            metrics,
            shutdown,
        }
    }

    /// Delivers `records` (one, or several to be stored all or nothing) to
    /// the first address that accepts them, trying `addrs` in order.
    pub(crate) async fn deliver(
        &self,
        addrs: &[SocketAddr],
        records: &[Outgoing],
        route: Route,
    ) -> Result<Delivered, DeliveryError> {
        let label = label(records);
        let mut attempts = Vec::new();
        for &addr in addrs {
            let span = tracing::debug_span!("recorder_send", recorder = %addr, kind = label, records = records.len());
            // A half-open breaker's trial is held until its result is in.
            let (result, _trial) = match route {
                Route::Redelivery => (
                    self.attempt(addr, records, route)
                        .instrument(span.clone())
                        .await,
                    None,
                ),
                Route::Live => match self.breakers.admit(addr) {
                    Err(skipped) => (Err(skipped), None),
                    Ok(Admitted { mut opened, trial }) => {
                        let result = tokio::select! {
                            result = self.attempt(addr, records, route).instrument(span.clone()) => result,
                            Ok(()) = opened.changed() => Err(self.breakers.cut_short(addr)),
                        };
                        (result, trial)
                    }
                },
            };
            match result {
                Ok(()) => {
                    self.breakers.answered(addr, ClosedBy::Delivery);
                    span.in_scope(|| tracing::debug!("recorder accepted"));
                    return Ok(Delivered { recorder: addr });
                }
                Err(err) => {
                    self.metrics.attempt_failed(label, err.reason());
                    span.in_scope(|| tracing::debug!(error = %err, "recorder attempt failed"));
                    // A cached "not supported" stays cached; any other
                    // failure makes the next attempt probe again. An
                    // unhealthy recorder's breaker opens; an answer closes it.
                    if !matches!(
                        err,
                        AttemptError::Unavailable { .. }
                            | AttemptError::NotSupported(_)
                            | AttemptError::NotKubescribe(_)
                    ) {
                        self.probes.failed(addr);
                    }
                    if !matches!(err, AttemptError::Unavailable { .. }) {
                        if let Some(first) = self.breakers.failed(addr, &err) {
                            self.spawn_probe(addr, first);
                        }
                    }
                    attempts.push((addr, err));
                }
            }
        }
        Err(DeliveryError { attempts })
    }

    /// One address, under the attempt deadline.
    async fn attempt(
        &self,
        addr: SocketAddr,
        records: &[Outgoing],
        route: Route,
    ) -> Result<(), AttemptError> {
        self.transport
            .within_deadline(self.attempt_inner(addr, records, route))
            .await
    }

    async fn attempt_inner(
        &self,
        addr: SocketAddr,
        records: &[Outgoing],
        route: Route,
    ) -> Result<(), AttemptError> {
        let support = match self.probes.get(addr) {
            Some(s) => s,
            None => {
                let s = self.transport.probe(addr).await?;
                self.probes.put(addr, s);
                s
            }
        };
        let kubescribe = match support {
            Support::NotSupported => return Err(AttemptError::NotSupported(addr)),
            Support::Supported { kubescribe } => kubescribe,
        };
        if !kubescribe && records.iter().any(|r| r.kind.kubescribe_only()) {
            return Err(AttemptError::NotKubescribe(addr));
        }
        match records {
            [] => Ok(()),
            [one] => match &self.batcher {
                Some(batcher) if kubescribe && route == Route::Live => {
                    batcher.submit(addr, one.body.clone()).await
                }
                _ => self.transport.post_one(addr, one.body.clone()).await,
            },
            many if kubescribe => {
                self.transport
                    .post_batch(addr, many.iter().map(|r| &r.body))
                    .await
            }
            many => {
                // A Tailscale recorder takes single events only.
                for r in many {
                    self.transport.post_one(addr, r.body.clone()).await?;
                }
                Ok(())
            }
        }
    }

    /// Probes `addr` in the background while its breaker is open: the first
    /// `HEAD /v2/event` after `first`, then at doubling intervals. Any HTTP
    /// answer makes the breaker half-open (the next live attempt is its
    /// trial); a timeout, refused connection or broken exchange keeps it open.
    fn spawn_probe(&self, addr: SocketAddr, first: Duration) {
        let transport = self.transport.clone();
        let probes = self.probes.clone();
        let breakers = self.breakers.clone();
        let mut shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            let mut wait = first;
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = shutdown.changed() => return,
                }
                if *shutdown.borrow() || !breakers.is_open(addr) {
                    return;
                }
                match transport.within_deadline(transport.probe(addr)).await {
                    Ok(support) => {
                        probes.put(addr, support);
                        breakers.probe_answered(addr);
                        return;
                    }
                    Err(answered) if !answered.marks_down() => {
                        breakers.probe_answered(addr);
                        return;
                    }
                    Err(still_down) => {
                        tracing::debug!(recorder = %addr, error = %still_down, "breaker probe failed");
                        breakers.failed(addr, &still_down);
                        wait = breakers.next_probe_wait(wait);
                    }
                }
            }
        });
    }
}

/// The metrics label of a delivery: its records' kind, or `mixed`.
fn label(records: &[Outgoing]) -> &'static str {
    match records.split_first() {
        None => "event",
        Some((first, rest)) if rest.iter().all(|r| r.kind == first.kind) => first.kind.label(),
        Some(_) => "mixed",
    }
}
