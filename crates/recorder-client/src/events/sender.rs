//! Delivery of one record (or a batch of spooled ones) to a caller's
//! recorders: the cached probe, the choice between a single `POST`, a batch
//! and the batcher, and ordered failover across the addresses.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use tracing::Instrument;

use super::batch::Batcher;
use super::probe_cache::{ProbeCache, Support};
use super::transport::Transport;
use super::Delivered;
use crate::config::ClientConfig;
use crate::error::{AttemptError, DeliveryError};
use crate::metrics::Metrics;
use crate::spool::RecordKind;

/// When a recorder that failed within the back-off is skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SkipDown {
    /// Always try it (spool redelivery).
    Never,
    /// Skip it only if some other address is not in back-off (fail closed:
    /// refusing costs more than waiting).
    WhenAnotherIsUp,
    /// Skip it (fail open: the event goes to the spool at once).
    Always,
}

/// Sends records to recorders: probe cache, batching, failover, metrics.
#[derive(Debug)]
pub(crate) struct Sender {
    transport: Arc<Transport>,
    probes: ProbeCache,
    batcher: Option<Batcher>,
    metrics: Metrics,
}

impl Sender {
    pub(crate) fn new(cfg: &ClientConfig, metrics: Metrics) -> Self {
        let transport = Arc::new(Transport::new(cfg));
        let batcher = cfg
            .batch
            .enabled
            .then(|| Batcher::new(transport.clone(), cfg.batch.clone()));
        Self {
            transport,
            probes: ProbeCache::new(cfg.probe_ttl, cfg.down_backoff),
            batcher,
            metrics,
        }
    }

    /// Delivers `bodies` (one record, or several to be stored all or nothing)
    /// to the first address that accepts them, trying `addrs` in order.
    /// `skip` says when recorders that failed within the back-off are
    /// reported failed without a round trip.
    pub(crate) async fn deliver(
        &self,
        addrs: &[SocketAddr],
        kind: RecordKind,
        bodies: &[Bytes],
        skip: SkipDown,
    ) -> Result<Delivered, DeliveryError> {
        let down: Vec<_> = addrs
            .iter()
            .map(|a| match skip {
                SkipDown::Never => None,
                _ => self.probes.recently_failed(*a),
            })
            .collect();
        let any_up = down.iter().any(Option::is_none);
        let mut attempts = Vec::new();
        for (&addr, down) in addrs.iter().zip(down) {
            let span = tracing::debug_span!("recorder_send", recorder = %addr, kind = kind.label(), records = bodies.len());
            let skip_this = match skip {
                SkipDown::Never => false,
                SkipDown::Always => down.is_some(),
                SkipDown::WhenAnotherIsUp => down.is_some() && any_up,
            };
            let result = match down {
                Some((ago, last)) if skip_this => Err(AttemptError::RecentlyFailed {
                    ago_ms: ago.as_millis(),
                    last,
                }),
                _ => {
                    self.attempt(addr, kind, bodies)
                        .instrument(span.clone())
                        .await
                }
            };
            match result {
                Ok(()) => {
                    self.probes.succeeded(addr);
                    span.in_scope(|| tracing::debug!("recorder accepted"));
                    return Ok(Delivered { recorder: addr });
                }
                Err(err) => {
                    self.metrics.attempt_failed(kind.label(), err.reason());
                    span.in_scope(|| tracing::debug!(error = %err, "recorder attempt failed"));
                    // A cached "not supported" stays cached; any other
                    // failure makes the next attempt probe again.
                    if !matches!(
                        err,
                        AttemptError::RecentlyFailed { .. }
                            | AttemptError::NotSupported(_)
                            | AttemptError::NotKubescribe(_)
                    ) {
                        self.probes
                            .failed(addr, err.marks_down().then(|| err.to_string()));
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
        kind: RecordKind,
        bodies: &[Bytes],
    ) -> Result<(), AttemptError> {
        self.transport
            .within_deadline(self.attempt_inner(addr, kind, bodies))
            .await
    }

    async fn attempt_inner(
        &self,
        addr: SocketAddr,
        kind: RecordKind,
        bodies: &[Bytes],
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
        if kind == RecordKind::Response && !kubescribe {
            return Err(AttemptError::NotKubescribe(addr));
        }
        match bodies {
            [] => Ok(()),
            [one] => match &self.batcher {
                Some(batcher) if kubescribe => batcher.submit(addr, one.clone()).await,
                _ => self.transport.post_one(addr, one.clone()).await,
            },
            many if kubescribe => self.transport.post_batch(addr, many.iter()).await,
            many => {
                // A Tailscale recorder takes single events only.
                for b in many {
                    self.transport.post_one(addr, b.clone()).await?;
                }
                Ok(())
            }
        }
    }
}
