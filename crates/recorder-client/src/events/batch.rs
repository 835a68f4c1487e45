//! Coalescing of concurrent events to one kubescribe recorder into a single
//! `POST /v2/events` (NDJSON, stored all or nothing).
//!
//! One task per recorder address drains a queue: it takes whatever events
//! queued up while its previous request was in flight (up to the batch
//! limits) and sends them together. Nothing ever waits for a batch to fill,
//! so a lone event costs exactly one `POST /v2/event`, and under load the
//! number of requests (and recorder fsyncs) per event falls. Events still
//! queued when the recorder's circuit breaker opens fail at once.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use super::breaker::Breakers;
use super::transport::Transport;
use crate::cause::Cause;
use crate::config::BatchConfig;
use crate::error::AttemptError;

/// Queue length per recorder; when full, events bypass batching.
const QUEUE: usize = 4096;

struct Item {
    body: Bytes,
    reply: oneshot::Sender<Result<(), AttemptError>>,
}

/// The per-recorder batching queues.
pub(crate) struct Batcher {
    transport: Arc<Transport>,
    breakers: Arc<Breakers>,
    cfg: BatchConfig,
    queues: Mutex<HashMap<SocketAddr, mpsc::Sender<Item>>>,
}

impl std::fmt::Debug for Batcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batcher").field("cfg", &self.cfg).finish()
    }
}

impl Batcher {
    pub(crate) fn new(
        transport: Arc<Transport>,
        breakers: Arc<Breakers>,
        cfg: BatchConfig,
    ) -> Self {
        Self {
            transport,
            breakers,
            cfg,
            queues: Mutex::new(HashMap::new()),
        }
    }

    /// Delivers one event to `addr`, possibly together with others.
    pub(crate) async fn submit(&self, addr: SocketAddr, body: Bytes) -> Result<(), AttemptError> {
        let (reply, wait) = oneshot::channel();
        let queue = {
            let mut queues = self
                .queues
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            queues
                .entry(addr)
                .or_insert_with(|| self.spawn(addr))
                .clone()
        };
        match queue.try_send(Item { body, reply }) {
            Ok(()) => wait.await.unwrap_or_else(|_| {
                Err(AttemptError::Transport(Cause::msg("batching task ended")))
            }),
            Err(
                mpsc::error::TrySendError::Full(item) | mpsc::error::TrySendError::Closed(item),
            ) => self.transport.post_one(addr, item.body).await,
        }
    }

    fn spawn(&self, addr: SocketAddr) -> mpsc::Sender<Item> {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(run(
            addr,
            rx,
            self.transport.clone(),
            self.breakers.clone(),
            self.cfg.clone(),
        ));
        tx
    }
}

async fn run(
    addr: SocketAddr,
    mut rx: mpsc::Receiver<Item>,
    transport: Arc<Transport>,
    breakers: Arc<Breakers>,
    cfg: BatchConfig,
) {
    let max_events = cfg.max_events.max(1);
    while let Some(first) = rx.recv().await {
        let mut bytes = first.body.len();
        let mut batch = vec![first];
        while batch.len() < max_events {
            match rx.try_recv() {
                Ok(item) => {
                    bytes += item.body.len();
                    batch.push(item);
                    if bytes >= cfg.max_bytes {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
        if breakers.is_open(addr) {
            // The recorder went down while these waited: they fail over (or
            // are refused) now, not at their deadlines.
            let skipped = breakers.cut_short(addr);
            for item in batch {
                let _ = item.reply.send(Err(skipped.clone()));
            }
            continue;
        }
        let send = async {
            if let [one] = batch.as_slice() {
                transport.post_one(addr, one.body.clone()).await
            } else {
                tracing::trace!(recorder = %addr, events = batch.len(), "sending event batch");
                transport
                    .post_batch(addr, batch.iter().map(|item| &item.body))
                    .await
            }
        };
        let result = transport.within_deadline(send).await;
        for item in batch {
            // The submitter may have given up (its own deadline); fine.
            let _ = item.reply.send(result.clone());
        }
    }
}
