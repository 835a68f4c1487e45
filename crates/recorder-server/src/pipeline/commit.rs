//! Group commit: concurrent records are written together (one append per
//! kind per batch, see [`Storage::append_records`]), and every waiter is
//! answered once its batch is durable. While one batch is being made durable
//! the next one forms and, once enough records wait, is written too
//! ([`Storage::append_parallelism`] batches in flight); batches are answered
//! in order, and a failed batch fails the batches in flight after it.
//!
//! One task owns the commit loop and the idempotency [`KeyIndex`], so
//! de-duplication needs no locks and has no races: a record whose key is
//! already stored (or earlier in the same batch) is answered with the stored
//! record's id and not written again.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::stream::{FuturesOrdered, StreamExt};
use futures_util::FutureExt;
use tokio::sync::{mpsc, oneshot};

use super::keys::KeyIndex;
use super::prepare::Prepared;
use crate::index::EventIndex;
use crate::metrics::Metrics;
use crate::record::{new_id, record_id, unix_millis, RecordKind, Summary};
use crate::storage::{Storage, StorageError};

/// How one record was acknowledged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Acked {
    /// The stored record's id.
    pub(crate) id: String,
    /// Whether it had been stored before (same idempotency key).
    pub(crate) duplicate: bool,
}

/// A commit failed: nothing of the request was acknowledged.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum CommitError {
    /// Storage failed (the error is shared by every waiter of the commit).
    #[error("storage failed, nothing was stored: {0}")]
    Storage(#[source] Arc<StorageError>),
    /// The recorder is shutting down.
    #[error("the recorder is shutting down")]
    ShuttingDown,
}

struct Submission {
    records: Vec<Prepared>,
    reply: oneshot::Sender<Result<Vec<Acked>, CommitError>>,
}

/// The sending side of the commit loop.
#[derive(Clone)]
pub(crate) struct Committer {
    tx: mpsc::Sender<Submission>,
}

impl Committer {
    /// Starts the commit loop: records go to `storage`, their keys to
    /// `keys`, their lines to `index`; at most `max_records` per commit.
    pub(crate) fn start(
        storage: Arc<dyn Storage>,
        keys: KeyIndex,
        index: Arc<EventIndex>,
        metrics: Arc<Metrics>,
        max_records: usize,
    ) -> Self {
        let (tx, rx) = mpsc::channel(max_records.max(1024));
        tokio::spawn(commit_loop(rx, storage, keys, index, metrics, max_records));
        Self { tx }
    }

    /// Stores `records` durably (all of them or none) and returns their ids in order.
    pub(crate) async fn commit(&self, records: Vec<Prepared>) -> Result<Vec<Acked>, CommitError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Submission { records, reply })
            .await
            .map_err(|_| CommitError::ShuttingDown)?;
        rx.await.map_err(|_| CommitError::ShuttingDown)?
    }
}

/// Records that must be waiting before a commit starts next to one already
/// in flight.
const OVERLAP_MIN_RECORDS: usize = 32;

/// A commit whose storage writes are in flight.
struct Flight {
    seq: u64,
    result: Result<(), StorageError>,
    started: Instant,
    stored_ms: i64,
    events: Bytes,
    responses: Bytes,
    stored: usize,
    new_keys: Vec<(String, String)>,
    indexed: Vec<(String, usize, RecordKind, Summary)>,
    pending: Vec<Pending>,
}

/// The commit loop's own state (no locks: one task owns it).
struct LoopState {
    storage: Arc<dyn Storage>,
    keys: KeyIndex,
    /// Keys of records in commits still in flight: `key -> (id, seq)`.
    in_flight_keys: HashMap<String, (String, u64)>,
    next_seq: u64,
    /// Every commit up to this sequence number fails (an earlier one failed
    /// while it was in flight, and it may reference that one's records).
    fail_through: Option<u64>,
    index: Arc<EventIndex>,
    metrics: Arc<Metrics>,
}

async fn commit_loop(
    mut rx: mpsc::Receiver<Submission>,
    storage: Arc<dyn Storage>,
    keys: KeyIndex,
    index: Arc<EventIndex>,
    metrics: Arc<Metrics>,
    max_records: usize,
) {
    // Up to `depth` commits are in flight at once (the next batch forms and
    // is written while the previous one's fsync runs); they are answered in
    // order. A commit starts at once when none is in flight; next to one in
    // flight only once `overlap_min` records wait, since an fsync for a
    // handful of records costs more than waiting for the running one.
    let depth = storage.append_parallelism().max(1);
    let overlap_min = OVERLAP_MIN_RECORDS.clamp(1, max_records.max(1));
    let mut state = LoopState {
        storage,
        keys,
        in_flight_keys: HashMap::new(),
        next_seq: 0,
        fail_through: None,
        index,
        metrics,
    };
    let mut in_flight = FuturesOrdered::new();
    let mut waiting: Vec<Submission> = Vec::new();
    let mut waiting_records = 0usize;
    let mut open = true;
    loop {
        while open && waiting_records < max_records {
            match rx.try_recv() {
                Ok(next) => {
                    waiting_records += next.records.len();
                    waiting.push(next);
                }
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => open = false,
            }
        }
        let start = !waiting.is_empty()
            && (in_flight.is_empty()
                || (in_flight.len() < depth && waiting_records >= overlap_min));
        if start {
            in_flight.push_back(state.start(std::mem::take(&mut waiting)));
            waiting_records = 0;
            continue;
        }
        if !open && in_flight.is_empty() {
            break;
        }
        // Never both disabled: with nothing in flight, either records wait
        // (started above) or the queue is open and below the limit.
        tokio::select! {
            biased;
            Some(done) = in_flight.next(), if !in_flight.is_empty() => state.finish(done),
            next = rx.recv(), if open && waiting_records < max_records => match next {
                Some(next) => {
                    waiting_records += next.records.len();
                    waiting.push(next);
                }
                None => open = false,
            },
        }
    }
}

struct Pending {
    reply: oneshot::Sender<Result<Vec<Acked>, CommitError>>,
    acks: Vec<Acked>,
}

impl LoopState {
    /// Assigns ids, resolves duplicates and starts the storage writes of one batch.
    fn start(&mut self, batch: Vec<Submission>) -> BoxFuture<'static, Flight> {
        let started = Instant::now();
        let seq = self.next_seq;
        self.next_seq += 1;
        let batch_id = new_id();
        let stored_ms = unix_millis(&batch_id);
        // One allocation per kind: each line grows by its id (under 64 bytes).
        let (mut event_bytes, mut response_bytes) = (0usize, 0usize);
        for record in batch.iter().flat_map(|s| &s.records) {
            match record.kind {
                RecordKind::Event => event_bytes += record.line.len() + 64,
                RecordKind::Response => response_bytes += record.line.len() + 64,
            }
        }
        let mut events = Vec::with_capacity(event_bytes);
        let mut responses = Vec::with_capacity(response_bytes);
        let mut n_events = 0usize;
        let mut n_responses = 0usize;
        let mut new_keys = Vec::new();
        let mut indexed = Vec::new();
        let mut pending = Vec::with_capacity(batch.len());
        // Ids are `record_id`s: the batch part is formatted once.
        let event_id_head = record_id(RecordKind::Event, &batch_id, 0);
        let event_id_head = event_id_head[..event_id_head.len() - 1].to_owned();
        let response_id_head = record_id(RecordKind::Response, &batch_id, 0);
        let response_id_head = response_id_head[..response_id_head.len() - 1].to_owned();
        for Submission { records, reply } in batch {
            let mut acks = Vec::with_capacity(records.len());
            for record in records {
                if let Some(key) = &record.key {
                    let known = self
                        .keys
                        .get(key)
                        .or_else(|| self.in_flight_keys.get(key).map(|(id, _)| id));
                    if let Some(id) = known {
                        acks.push(Acked {
                            id: id.clone(),
                            duplicate: true,
                        });
                        continue;
                    }
                }
                let (buf, n) = match record.kind {
                    RecordKind::Event => (&mut events, &mut n_events),
                    RecordKind::Response => (&mut responses, &mut n_responses),
                };
                let mut id = match record.kind {
                    RecordKind::Event => event_id_head.clone(),
                    RecordKind::Response => response_id_head.clone(),
                };
                let _ = write!(id, "{n}");
                *n += 1;
                let start = buf.len();
                buf.extend_from_slice(&record.line[..record.id_at]);
                buf.extend_from_slice(id.as_bytes());
                buf.extend_from_slice(&record.line[record.id_at..]);
                if let Some(key) = record.key {
                    self.in_flight_keys.insert(key.clone(), (id.clone(), seq));
                    new_keys.push((key, id.clone()));
                }
                indexed.push((id.clone(), start, record.kind, record.summary));
                acks.push(Acked {
                    id,
                    duplicate: false,
                });
            }
            pending.push(Pending { reply, acks });
        }
        let events = Bytes::from(events);
        let responses = Bytes::from(responses);
        let storage = self.storage.clone();
        async move {
            let write = |kind: RecordKind, data: &Bytes| {
                let data = data.clone();
                let storage = &storage;
                async move {
                    if data.is_empty() {
                        Ok(())
                    } else {
                        storage.append_records(kind, &batch_id, data).await
                    }
                }
            };
            let (a, b) = tokio::join!(
                write(RecordKind::Event, &events),
                write(RecordKind::Response, &responses)
            );
            Flight {
                seq,
                result: a.and(b),
                started,
                stored_ms,
                stored: n_events + n_responses,
                events,
                responses,
                new_keys,
                indexed,
                pending,
            }
        }
        .boxed()
    }

    /// Answers the waiters of a commit whose writes have ended (in order).
    fn finish(&mut self, flight: Flight) {
        let Flight {
            seq,
            result,
            started,
            stored_ms,
            events,
            responses,
            stored,
            new_keys,
            indexed,
            pending,
        } = flight;
        let result = match (result, self.fail_through) {
            (Ok(()), Some(through)) if seq <= through => Err(StorageError::Unusable(
                "an earlier commit still in flight failed".into(),
            )),
            (result, _) => result,
        };
        match result {
            Ok(()) => {
                self.metrics.observe_commit(
                    stored,
                    events.len() + responses.len(),
                    started.elapsed(),
                );
                for (key, id) in new_keys {
                    let key = match self.in_flight_keys.entry(key) {
                        Entry::Occupied(e) if e.get().1 == seq => e.remove_entry().0,
                        Entry::Occupied(e) => e.key().clone(),
                        Entry::Vacant(e) => e.into_key(),
                    };
                    self.keys.insert(key, id, stored_ms);
                }
                let entries = indexed.into_iter().map(|(id, start, kind, summary)| {
                    let source = match kind {
                        RecordKind::Event => &events,
                        RecordKind::Response => &responses,
                    };
                    let end = source[start..]
                        .iter()
                        .position(|b| *b == b'\n')
                        .map(|p| start + p + 1)
                        .unwrap_or(source.len());
                    (id, source.slice(start..end), summary)
                });
                self.index.insert_all(entries);
                for p in pending {
                    let duplicates = p.acks.iter().filter(|a| a.duplicate).count();
                    self.metrics.duplicates.inc_by(duplicates as u64);
                    let _ = p.reply.send(Ok(p.acks));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, records = stored, "group commit failed; nothing acknowledged");
                self.metrics.commit_failures.inc();
                // Commits started after this one may have answered duplicates
                // with this one's ids: they fail too, and no key of a commit
                // in flight counts as stored any more.
                if self.fail_through.is_none_or(|t| t < seq) {
                    self.fail_through = Some(self.next_seq.saturating_sub(1));
                    self.in_flight_keys.clear();
                }
                let e = Arc::new(e);
                for p in pending {
                    let _ = p.reply.send(Err(CommitError::Storage(e.clone())));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::EventSummary;
    use crate::storage::{ObjectInfo, ObjectKey, RecoveredSession, SessionSink};
    use async_trait::async_trait;
    use std::ops::Range;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;

    /// Storage whose first append waits for a gate and then fails; the
    /// others succeed at once.
    struct GatedStorage {
        calls: AtomicUsize,
        gate: Mutex<Option<oneshot::Receiver<()>>>,
        stored: Mutex<Vec<Bytes>>,
    }

    fn nope() -> StorageError {
        StorageError::Unusable("not used in this test".into())
    }

    #[async_trait]
    impl Storage for GatedStorage {
        fn describe(&self) -> String {
            "gated".into()
        }
        async fn check(&self) -> Result<(), StorageError> {
            Ok(())
        }
        async fn put(&self, _: &ObjectKey, _: Bytes) -> Result<(), StorageError> {
            Err(nope())
        }
        async fn append_records(
            &self,
            _: RecordKind,
            _: &uuid::Uuid,
            data: Bytes,
        ) -> Result<(), StorageError> {
            if self.calls.fetch_add(1, Ordering::SeqCst) == 0 {
                let gate = self.gate.lock().unwrap().take();
                if let Some(gate) = gate {
                    let _ = gate.await;
                }
                return Err(StorageError::Unusable("disk on fire".into()));
            }
            self.stored.lock().unwrap().push(data);
            Ok(())
        }
        fn append_parallelism(&self) -> usize {
            2
        }
        async fn get(&self, _: &str) -> Result<Bytes, StorageError> {
            Err(nope())
        }
        async fn get_range(&self, _: &str, _: Range<u64>) -> Result<Bytes, StorageError> {
            Err(nope())
        }
        async fn list(&self, _: &str) -> Result<Vec<ObjectInfo>, StorageError> {
            Ok(Vec::new())
        }
        async fn create_session(
            &self,
            _: &ObjectKey,
        ) -> Result<Box<dyn SessionSink>, StorageError> {
            Err(nope())
        }
        async fn recover_sessions(&self) -> Result<Vec<RecoveredSession>, StorageError> {
            Ok(Vec::new())
        }
    }

    fn record(key: &str) -> Prepared {
        let prefix = "{\"type\":\"kubernetes-api-request\",\"id\":\"";
        Prepared {
            kind: RecordKind::Event,
            line: format!("{prefix}\",\"k\":\"{key}\"}}\n").into_bytes(),
            id_at: prefix.len(),
            key: Some(format!("e:{key}")),
            summary: Summary::Event(EventSummary::default()),
        }
    }

    #[tokio::test]
    async fn a_failed_commit_fails_the_commits_in_flight_after_it() {
        let (release, gate) = oneshot::channel();
        let storage = Arc::new(GatedStorage {
            calls: AtomicUsize::new(0),
            gate: Mutex::new(Some(gate)),
            stored: Mutex::new(Vec::new()),
        });
        let committer = Committer::start(
            storage.clone(),
            KeyIndex::new(std::time::Duration::from_secs(60), 100),
            Arc::new(EventIndex::new(1 << 20)),
            Arc::new(Metrics::new()),
            100,
        );
        // Commit 1 (key a) is in flight, held at the gate.
        let first = {
            let c = committer.clone();
            tokio::spawn(async move { c.commit(vec![record("a")]).await })
        };
        while storage.calls.load(Ordering::SeqCst) < 1 {
            tokio::task::yield_now().await;
        }
        // Commit 2 repeats key a (answered with commit 1's id) and adds b and
        // enough others to start next to commit 1; its own write succeeds at once.
        let second = {
            let c = committer.clone();
            let mut records = vec![record("a"), record("b")];
            records.extend((0..OVERLAP_MIN_RECORDS).map(|i| record(&format!("c{i}"))));
            tokio::spawn(async move { c.commit(records).await })
        };
        while storage.calls.load(Ordering::SeqCst) < 2 {
            tokio::task::yield_now().await;
        }
        assert_eq!(storage.stored.lock().unwrap().len(), 1);
        let _ = release.send(());
        assert!(matches!(first.await.unwrap(), Err(CommitError::Storage(_))));
        // It relied on commit 1: nothing of it is acknowledged.
        assert!(matches!(
            second.await.unwrap(),
            Err(CommitError::Storage(_))
        ));
        // Neither key counts as stored: both are stored anew.
        let acks = committer
            .commit(vec![record("a"), record("b")])
            .await
            .unwrap();
        assert!(acks.iter().all(|a| !a.duplicate), "{acks:?}");
        let again = committer.commit(vec![record("b")]).await.unwrap();
        assert_eq!(again[0].id, acks[1].id);
        assert!(again[0].duplicate);
    }
}
