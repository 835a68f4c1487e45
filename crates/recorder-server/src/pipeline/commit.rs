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
//!
//! A commit that fails may have been stored all the same: a PUT that reached
//! the object store whose answer was lost, one record kind written and not
//! the other. Where appends are idempotent (one object per commit, S3) such a
//! commit is kept ([`Uncertain`]), and a retry of one of its records writes
//! its objects again, same keys and bytes, and is answered with the id it had,
//! instead of storing the record a second time.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::stream::{FuturesOrdered, StreamExt};
use futures_util::FutureExt;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

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
    watermark: CommitWatermark,
}

/// The commit batches whose storage writes are in flight, for readers of
/// storage (the exporter) that must not pass a batch before it has ended:
/// two commits can be in flight at once and the later may land first.
#[derive(Clone, Default)]
pub(crate) struct CommitWatermark(Arc<Mutex<BTreeMap<u64, Uuid>>>);

impl CommitWatermark {
    /// The oldest batch still being written (`None`: none is). Every batch
    /// older than it, and every batch older than the moment before this
    /// call when none is in flight, has ended (stored, or failed).
    pub(crate) fn oldest_in_flight(&self) -> Option<Uuid> {
        let flights = self.0.lock().unwrap_or_else(|e| e.into_inner());
        flights.values().next().copied()
    }

    pub(crate) fn started(&self, seq: u64, batch: Uuid) {
        let mut flights = self.0.lock().unwrap_or_else(|e| e.into_inner());
        flights.insert(seq, batch);
    }

    pub(crate) fn ended(&self, seq: u64) {
        let mut flights = self.0.lock().unwrap_or_else(|e| e.into_inner());
        flights.remove(&seq);
    }
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
        let watermark = CommitWatermark::default();
        tokio::spawn(commit_loop(
            rx,
            storage,
            keys,
            index,
            metrics,
            max_records,
            watermark.clone(),
        ));
        Self { tx, watermark }
    }

    /// Which commits are in flight (see [`CommitWatermark`]).
    pub(crate) fn watermark(&self) -> CommitWatermark {
        self.watermark.clone()
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

/// The most bytes of failed commits kept for a rewrite ([`Uncertain`]); the
/// oldest go first (a retry of one of their records is then stored again).
const UNCERTAIN_MAX_BYTES: usize = 64 << 20;

/// One commit's records as written: enough to write them again.
struct Written {
    batch_id: uuid::Uuid,
    stored_ms: i64,
    events: Bytes,
    responses: Bytes,
    new_keys: Vec<(String, String)>,
    indexed: Vec<(String, usize, RecordKind, Summary)>,
}

impl Written {
    fn bytes(&self) -> usize {
        self.events.len() + self.responses.len()
    }

    /// The event index's entries for these records.
    fn index_entries<'a>(
        events: &'a Bytes,
        responses: &'a Bytes,
        indexed: Vec<(String, usize, RecordKind, Summary)>,
    ) -> impl Iterator<Item = (String, Bytes, Summary)> + 'a {
        indexed.into_iter().map(move |(id, start, kind, summary)| {
            let source = match kind {
                RecordKind::Event => events,
                RecordKind::Response => responses,
            };
            let end = source[start..]
                .iter()
                .position(|b| *b == b'\n')
                .map(|p| start + p + 1)
                .unwrap_or(source.len());
            (id, source.slice(start..end), summary)
        })
    }
}

/// A failed commit whose objects may exist all the same, kept (where
/// [`Storage::append_is_idempotent`]) so that a retry of one of its records
/// writes them again rather than storing the record a second time.
type Uncertain = Written;

/// A commit whose storage writes are in flight.
struct Flight {
    seq: u64,
    result: Result<(), StorageError>,
    started: Instant,
    stored: usize,
    written: Written,
    /// Failed commits written again with this one.
    rewrites: Vec<Uncertain>,
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
    /// Failed commits kept for a rewrite, oldest first, and their size.
    uncertain: BTreeMap<u64, Uncertain>,
    uncertain_bytes: usize,
    next_uncertain: u64,
    /// Keys of the records in `uncertain`: `key -> (id, its entry)`.
    uncertain_keys: HashMap<String, (String, u64)>,
    index: Arc<EventIndex>,
    metrics: Arc<Metrics>,
    watermark: CommitWatermark,
}

async fn commit_loop(
    mut rx: mpsc::Receiver<Submission>,
    storage: Arc<dyn Storage>,
    keys: KeyIndex,
    index: Arc<EventIndex>,
    metrics: Arc<Metrics>,
    max_records: usize,
    watermark: CommitWatermark,
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
        uncertain: BTreeMap::new(),
        uncertain_bytes: 0,
        next_uncertain: 0,
        uncertain_keys: HashMap::new(),
        index,
        metrics,
        watermark,
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
        self.watermark.started(seq, batch_id);
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
        let mut rewrites = Vec::new();
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
                    if let Some((id, entry)) = self.uncertain_keys.get(key).cloned() {
                        // Its failed commit is written again with this one.
                        if let Some(failed) = self.uncertain.remove(&entry) {
                            self.uncertain_bytes -= failed.bytes();
                            for (key, id) in &failed.new_keys {
                                self.uncertain_keys.remove(key);
                                self.in_flight_keys.insert(key.clone(), (id.clone(), seq));
                            }
                            rewrites.push(failed);
                        }
                        acks.push(Acked {
                            id,
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
        let written = Written {
            batch_id,
            stored_ms,
            events: Bytes::from(events),
            responses: Bytes::from(responses),
            new_keys,
            indexed,
        };
        let storage = self.storage.clone();
        async move {
            let writes = std::iter::once(&written)
                .chain(&rewrites)
                .flat_map(|w| {
                    [
                        (RecordKind::Event, w.batch_id, w.events.clone()),
                        (RecordKind::Response, w.batch_id, w.responses.clone()),
                    ]
                })
                .filter(|(_, _, data)| !data.is_empty())
                .map(|(kind, batch, data)| {
                    let storage = &storage;
                    async move { storage.append_records(kind, &batch, data).await }
                });
            let result = futures_util::future::join_all(writes)
                .await
                .into_iter()
                .collect::<Result<Vec<()>, _>>()
                .map(|_| ());
            Flight {
                seq,
                result,
                started,
                stored: n_events + n_responses,
                written,
                rewrites,
                pending,
            }
        }
        .boxed()
    }

    /// Keeps `failed` for a rewrite (see [`Uncertain`]), dropping the oldest
    /// kept beyond [`UNCERTAIN_MAX_BYTES`].
    fn keep_uncertain(&mut self, failed: Uncertain) {
        if failed.new_keys.is_empty() || !self.storage.append_is_idempotent() {
            return;
        }
        let entry = self.next_uncertain;
        self.next_uncertain += 1;
        for (key, id) in &failed.new_keys {
            self.uncertain_keys.insert(key.clone(), (id.clone(), entry));
        }
        self.uncertain_bytes += failed.bytes();
        self.uncertain.insert(entry, failed);
        while self.uncertain_bytes > UNCERTAIN_MAX_BYTES {
            let Some((oldest, dropped)) = self.uncertain.pop_first() else {
                break;
            };
            self.uncertain_bytes -= dropped.bytes();
            for (key, _) in &dropped.new_keys {
                if self
                    .uncertain_keys
                    .get(key)
                    .is_some_and(|(_, e)| *e == oldest)
                {
                    self.uncertain_keys.remove(key);
                }
            }
        }
    }

    /// Answers the waiters of a commit whose writes have ended (in order).
    fn finish(&mut self, flight: Flight) {
        let Flight {
            seq,
            result,
            started,
            stored,
            written,
            rewrites,
            pending,
        } = flight;
        self.watermark.ended(seq);
        let result = match (result, self.fail_through) {
            (Ok(()), Some(through)) if seq <= through => Err(StorageError::Unusable(
                "an earlier commit still in flight failed".into(),
            )),
            (result, _) => result,
        };
        match result {
            Ok(()) => {
                self.metrics
                    .observe_commit(stored, written.bytes(), started.elapsed());
                for Written {
                    stored_ms,
                    events,
                    responses,
                    new_keys,
                    indexed,
                    ..
                } in std::iter::once(written).chain(rewrites)
                {
                    for (key, id) in new_keys {
                        let key = match self.in_flight_keys.entry(key) {
                            Entry::Occupied(e) if e.get().1 == seq => e.remove_entry().0,
                            Entry::Occupied(e) => e.key().clone(),
                            Entry::Vacant(e) => e.into_key(),
                        };
                        self.keys.insert(key, id, stored_ms);
                    }
                    self.index
                        .insert_all(Written::index_entries(&events, &responses, indexed));
                }
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
                for failed in std::iter::once(written).chain(rewrites) {
                    self.keep_uncertain(failed);
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
    use crate::storage::fence::Fence;
    use crate::storage::{MayRecover, ObjectInfo, ObjectKey, RecoveredSession, SessionSink};
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
        // Like the disk: an append done again stores the records again.
        fn append_is_idempotent(&self) -> bool {
            false
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
            _: &Arc<Fence>,
        ) -> Result<Box<dyn SessionSink>, StorageError> {
            Err(nope())
        }
        async fn recover_sessions(
            &self,
            _: MayRecover<'_>,
        ) -> Result<Vec<RecoveredSession>, StorageError> {
            Ok(Vec::new())
        }
    }

    /// A whole-object store (S3-like: one object per commit and kind) whose
    /// next PUT under `events/` or `responses/` can be made to fail, after
    /// storing the object (its answer lost) or without.
    #[derive(Default)]
    struct ObjectStorage {
        objects: Mutex<HashMap<String, Bytes>>,
        /// Folder -> whether the failing PUT stores the object anyway.
        fail_next: Mutex<HashMap<&'static str, bool>>,
    }

    impl ObjectStorage {
        fn fail_next(&self, folder: &'static str, lands: bool) {
            self.fail_next.lock().unwrap().insert(folder, lands);
        }

        /// How many stored lines carry each `"k":"…"` value.
        fn copies(&self) -> HashMap<String, usize> {
            let mut copies = HashMap::new();
            for data in self.objects.lock().unwrap().values() {
                for line in String::from_utf8_lossy(data).lines() {
                    let key = line.split("\"k\":\"").nth(1).unwrap_or("");
                    let key = key.split('"').next().unwrap_or("").to_owned();
                    *copies.entry(key).or_default() += 1;
                }
            }
            copies
        }

        /// Whether a stored line has `id`.
        fn holds(&self, id: &str) -> bool {
            let needle = format!("\"id\":\"{id}\"");
            self.objects
                .lock()
                .unwrap()
                .values()
                .any(|data| String::from_utf8_lossy(data).contains(&needle))
        }
    }

    #[async_trait]
    impl Storage for ObjectStorage {
        fn describe(&self) -> String {
            "objects".into()
        }
        async fn check(&self) -> Result<(), StorageError> {
            Ok(())
        }
        async fn put(&self, key: &ObjectKey, data: Bytes) -> Result<(), StorageError> {
            let folder = key.as_str().split('/').next().unwrap_or("");
            let fail = self.fail_next.lock().unwrap().remove(folder);
            if fail != Some(false) {
                self.objects
                    .lock()
                    .unwrap()
                    .insert(key.as_str().to_owned(), data);
            }
            match fail {
                Some(_) => Err(StorageError::Unusable("the PUT's answer was lost".into())),
                None => Ok(()),
            }
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
            _: &Arc<Fence>,
        ) -> Result<Box<dyn SessionSink>, StorageError> {
            Err(nope())
        }
        async fn recover_sessions(
            &self,
            _: MayRecover<'_>,
        ) -> Result<Vec<RecoveredSession>, StorageError> {
            Ok(Vec::new())
        }
    }

    fn response(key: &str) -> Prepared {
        let prefix = "{\"type\":\"kubescribe-api-response\",\"id\":\"";
        Prepared {
            kind: RecordKind::Response,
            line: format!("{prefix}\",\"k\":\"r-{key}\"}}\n").into_bytes(),
            id_at: prefix.len(),
            key: Some(format!("r:{key}")),
            summary: Summary::Response(crate::record::ResponseSummary::default()),
        }
    }

    // Found by `cargo xtask chaos --storage s3 --mode kill`: the S3 server
    // killed while a commit's PUTs ran stored one kind's object and not the
    // other's (or stored an object whose answer never came); the commit failed,
    // the proxy's retries were stored a second time.
    #[tokio::test]
    async fn a_retry_of_a_failed_commit_whose_objects_landed_is_not_stored_twice() {
        for (folder, lands) in [
            ("responses", true),
            ("events", true),
            ("events", false),
            ("responses", false),
        ] {
            let storage = Arc::new(ObjectStorage::default());
            let committer = Committer::start(
                storage.clone(),
                KeyIndex::new(std::time::Duration::from_secs(60), 100),
                Arc::new(EventIndex::new(1 << 20)),
                Arc::new(Metrics::new()),
                100,
            );
            storage.fail_next(folder, lands);
            let failed = committer
                .commit(vec![record("a"), response("a"), record("b")])
                .await;
            assert!(matches!(failed, Err(CommitError::Storage(_))), "{failed:?}");
            // The retries, one of them alone, then with a new record.
            let first = committer.commit(vec![response("a")]).await.unwrap();
            let acks = committer
                .commit(vec![record("a"), record("b"), response("a"), record("c")])
                .await
                .unwrap();
            assert_eq!(acks[2].id, first[0].id);
            let again = committer.commit(vec![record("b")]).await.unwrap();
            assert_eq!(again[0].id, acks[1].id);
            let copies = storage.copies();
            for key in ["a", "b", "r-a", "c"] {
                assert_eq!(
                    copies.get(key),
                    Some(&1),
                    "{folder} failed (landed: {lands}): {copies:?}"
                );
            }
            for ack in &acks {
                assert!(storage.holds(&ack.id), "{ack:?} is not stored");
            }
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
