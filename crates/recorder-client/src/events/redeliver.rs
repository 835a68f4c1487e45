//! The background task that empties the spool: in order, at least once, in
//! batches of every record kind, with exponential back-off while no
//! recorder accepts (cut short when a recorder's circuit breaker closes).
//! At shutdown it goes on delivering for up to
//! [`SpoolConfig::shutdown_drain`](crate::SpoolConfig::shutdown_drain) while
//! recorders take the batches, then syncs what is left and stops.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::StatusCode;
use tokio::sync::{watch, Notify};

use super::sender::{Outgoing, Route, Sender};
use crate::error::{AttemptError, DeliveryError};
use crate::metrics::Metrics;
use crate::spool::{Peeked, RecordKind, Spool};

/// Runs until `shutdown` turns true (first draining the spool when
/// `drain_at_shutdown` is set by then: a graceful shutdown, not a drop).
/// `appended` is woken when a record is spooled, `available` when a
/// recorder's circuit breaker closes (a retry then starts at once instead of
/// after its back-off).
pub(crate) async fn run(
    spool: Arc<Spool>,
    sender: Arc<Sender>,
    appended: Arc<Notify>,
    available: Arc<Notify>,
    metrics: Metrics,
    mut shutdown: watch::Receiver<bool>,
    drain_at_shutdown: Arc<AtomicBool>,
) {
    let cfg = spool.config().clone();
    let mut backoff = cfg.retry_min;
    let mut singles = false;
    // Records redelivered since the spool was last empty, and since when.
    let mut drained: Option<(u64, Instant)> = None;
    // Whether a delivery failed since then: a backlog worth a line in the log
    // (queued records drain every few milliseconds without one).
    let mut backlog = false;
    // Once shutdown is asked for: until when the spool may still be drained,
    // and whether a delivery or a spool read failed since (then stop at once).
    let mut final_drain: Option<(Instant, bool)> = None;
    loop {
        if *shutdown.borrow() {
            let drain = drain_at_shutdown.load(Ordering::SeqCst);
            let (until, failed) = *final_drain.get_or_insert_with(|| {
                let until = Instant::now()
                    + if drain {
                        cfg.shutdown_drain
                    } else {
                        Duration::ZERO
                    };
                (until, false)
            });
            let left = spool.pending();
            if left == 0 || failed || Instant::now() >= until {
                sync(&spool).await;
                if left > 0 {
                    tracing::warn!(
                        records = left,
                        dir = %cfg.dir.display(),
                        "shutdown: records left in the spool, synced; a proxy started on this spool directory delivers them"
                    );
                }
                return;
            }
        }
        let (max, max_bytes) = if singles {
            (1, 0)
        } else {
            (cfg.redeliver_batch, cfg.redeliver_batch_bytes)
        };
        let peek = {
            let spool = spool.clone();
            tokio::task::spawn_blocking(move || spool.peek(max, max_bytes)).await
        };
        let mut peeked = match peek {
            Ok(Ok(Some(p))) => p,
            Ok(Ok(None)) => {
                if *shutdown.borrow() {
                    // Nothing left to deliver: the check above stops.
                    if let Some((_, failed)) = final_drain.as_mut() {
                        *failed = true;
                    }
                    continue;
                }
                if let Some((n, since)) = drained.take() {
                    if std::mem::take(&mut backlog) {
                        tracing::info!(records = n, took = ?since.elapsed(), "spool drained: every spooled record redelivered");
                    } else {
                        tracing::debug!(records = n, took = ?since.elapsed(), "queued records delivered");
                    }
                }
                tokio::select! {
                    _ = appended.notified() => {}
                    _ = shutdown.changed() => {}
                }
                continue;
            }
            Ok(Err(e)) => {
                tracing::error!(error = %e, "cannot read the event spool; retrying");
                if !stop_draining(&mut final_drain) {
                    wait(&mut shutdown, &available, cfg.retry_max).await;
                }
                continue;
            }
            Err(e) => {
                tracing::error!(error = %e, "spool reader task failed");
                if !stop_draining(&mut final_drain) {
                    wait(&mut shutdown, &available, cfg.retry_max).await;
                }
                continue;
            }
        };
        let Some(addrs) = peeked.records.first().map(|r| r.addrs.clone()) else {
            continue;
        };
        // Events, response records and refused events together: the
        // recorder's batch endpoint takes every record type.
        let records: Vec<Outgoing> = peeked
            .records
            .iter_mut()
            .map(|r| Outgoing {
                kind: r.kind,
                body: Bytes::from(std::mem::take(&mut r.body)),
            })
            .collect();
        let n = records.len() as u64;
        match sender.deliver(&addrs, &records, Route::Redelivery).await {
            Ok(delivered) => {
                tracing::debug!(records = n, recorder = %delivered.recorder, "redelivered spooled records");
                for kind in [
                    RecordKind::Event,
                    RecordKind::Response,
                    RecordKind::RefusedEvent,
                ] {
                    let of_kind = records.iter().filter(|r| r.kind == kind).count() as u64;
                    if of_kind > 0 {
                        metrics.redelivered(kind.label(), of_kind);
                    }
                }
                let (count, _) = drained.get_or_insert((0, Instant::now()));
                *count += n;
                commit(&spool, peeked).await;
                backoff = cfg.retry_min;
                singles = false;
            }
            Err(err) if permanent(&err) => {
                if n > 1 {
                    // Find the record the recorders reject, one at a time.
                    singles = true;
                    continue;
                }
                let (kind, key) = (records[0].kind, &peeked.records[0].key);
                if err
                    .attempts
                    .iter()
                    .all(|(_, e)| matches!(e, AttemptError::NotKubescribe(_)))
                {
                    tracing::debug!(key = %key, kind = kind.label(), "no kubescribe recorder for this spooled record; dropping it");
                    metrics.dropped(kind.label(), "not_kubescribe", 1);
                } else {
                    tracing::error!(error = %err, key = %key, "every recorder rejects this spooled record; dropping it");
                    metrics.dropped(kind.label(), "rejected", 1);
                }
                commit(&spool, peeked).await;
            }
            Err(err) => {
                // Queued records were written unsynced for a prompt first delivery;
                // waiting on a recorder, they must survive power loss too.
                sync(&spool).await;
                backlog = true;
                if stop_draining(&mut final_drain) {
                    continue;
                }
                tracing::warn!(error = %err, records = spool.pending(), retry_in = ?backoff, "spooled records still undeliverable");
                wait(&mut shutdown, &available, backoff).await;
                backoff = (backoff * 2).min(cfg.retry_max);
            }
        }
    }
}

/// During the shutdown drain, marks it failed (the loop then stops) and says
/// so; otherwise false (the caller waits and retries as usual).
fn stop_draining(final_drain: &mut Option<(Instant, bool)>) -> bool {
    match final_drain {
        Some((_, failed)) => {
            *failed = true;
            true
        }
        None => false,
    }
}

async fn commit(spool: &Arc<Spool>, peeked: Peeked) {
    let spool = spool.clone();
    match tokio::task::spawn_blocking(move || spool.commit(&peeked)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::error!(error = %e, "cannot advance the spool cursor; records may be redelivered again")
        }
        Err(e) => tracing::error!(error = %e, "spool commit task failed"),
    }
}

/// Syncs the spool (records queued unsynced included).
async fn sync(spool: &Arc<Spool>) {
    let spool = spool.clone();
    match tokio::task::spawn_blocking(move || spool.sync()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!(error = %e, "cannot sync the spool"),
        Err(e) => tracing::error!(error = %e, "spool sync task failed"),
    }
}

/// Waits `d`, or less when a recorder becomes available or on shutdown.
async fn wait(shutdown: &mut watch::Receiver<bool>, available: &Notify, d: Duration) {
    tokio::select! {
        _ = tokio::time::sleep(d) => {}
        _ = available.notified() => {}
        _ = shutdown.changed() => {}
    }
}

/// Every address refused the record for good: it will never be stored there.
fn permanent(err: &DeliveryError) -> bool {
    !err.attempts.is_empty()
        && err.attempts.iter().all(|(_, e)| match e {
            AttemptError::NotSupported(_) | AttemptError::NotKubescribe(_) => true,
            AttemptError::Status { status, .. } => matches!(
                *status,
                StatusCode::BAD_REQUEST
                    | StatusCode::PAYLOAD_TOO_LARGE
                    | StatusCode::UNPROCESSABLE_ENTITY
            ),
            _ => false,
        })
}
