//! The background task that empties the spool: in order, at least once,
//! with exponential back-off while no recorder accepts.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use tokio::sync::{watch, Notify};

use super::sender::{Sender, SkipDown};
use crate::error::{AttemptError, DeliveryError};
use crate::metrics::Metrics;
use crate::spool::{Peeked, Spool};

/// Runs until `shutdown` turns true.
pub(crate) async fn run(
    spool: Arc<Spool>,
    sender: Arc<Sender>,
    notify: Arc<Notify>,
    metrics: Metrics,
    mut shutdown: watch::Receiver<bool>,
) {
    let cfg = spool.config().clone();
    let mut backoff = cfg.retry_min;
    let mut singles = false;
    loop {
        if *shutdown.borrow() {
            return;
        }
        let max = if singles { 1 } else { cfg.redeliver_batch };
        let peek = {
            let spool = spool.clone();
            tokio::task::spawn_blocking(move || spool.peek(max)).await
        };
        let peeked = match peek {
            Ok(Ok(Some(p))) => p,
            Ok(Ok(None)) => {
                tokio::select! {
                    _ = notify.notified() => {}
                    _ = shutdown.changed() => {}
                }
                continue;
            }
            Ok(Err(e)) => {
                tracing::error!(error = %e, "cannot read the event spool; retrying");
                wait(&mut shutdown, cfg.retry_max).await;
                continue;
            }
            Err(e) => {
                tracing::error!(error = %e, "spool reader task failed");
                wait(&mut shutdown, cfg.retry_max).await;
                continue;
            }
        };
        let Some(first) = peeked.records.first() else {
            continue;
        };
        let (kind, addrs) = (first.kind, first.addrs.clone());
        let bodies: Vec<Bytes> = peeked
            .records
            .iter()
            .map(|r| Bytes::from(r.body.clone()))
            .collect();
        let n = bodies.len() as u64;
        match sender.deliver(&addrs, kind, &bodies, SkipDown::Never).await {
            Ok(delivered) => {
                tracing::info!(records = n, recorder = %delivered.recorder, "redelivered spooled records");
                metrics.redelivered(kind.label(), n);
                commit(&spool, peeked).await;
                backoff = cfg.retry_min;
                singles = false;
            }
            Err(err) if permanent(&err) => {
                if n > 1 {
                    // Find the record the recorder rejects, one at a time.
                    singles = true;
                    continue;
                }
                tracing::error!(error = %err, key = %first.key, "every recorder rejects this spooled record; dropping it");
                metrics.dropped(kind.label(), "rejected", n);
                commit(&spool, peeked).await;
            }
            Err(err) => {
                tracing::warn!(error = %err, records = spool.pending(), retry_in = ?backoff, "spooled records still undeliverable");
                wait(&mut shutdown, backoff).await;
                backoff = (backoff * 2).min(cfg.retry_max);
            }
        }
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

async fn wait(shutdown: &mut watch::Receiver<bool>, d: Duration) {
    tokio::select! {
        _ = tokio::time::sleep(d) => {}
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
