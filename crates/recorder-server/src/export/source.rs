//! Stored events in record-id order (commit order), each with its response
//! record, read from storage (disk segments or S3 batch objects) after a
//! cursor.
//!
//! A record is released only once no commit that could precede it is still
//! being written: its batch is older than the oldest commit in flight
//! ([`CommitWatermark`]) and older than a moment ago, so that a later commit
//! that landed first (two commits can be in flight) is never passed before
//! an earlier one has ended. An event waits for its response record up to
//! `response_wait` after it was stored, then goes without one.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use event_model::{Event, Record, ResponseRecord};

use crate::cluster::{Membership, PEER_COMMIT_WINDOW};
use crate::pipeline::commit::CommitWatermark;
use crate::record::{new_id, order_key, unix_millis, OrderKey, RecordKind};
use crate::storage::layout::{self, KeyKind};
use crate::storage::{Storage, StorageError};

const HOUR_MS: i64 = 3_600_000;

/// How long after a batch's id was made it may still be becoming visible
/// in a listing (the watermark covers commits in flight; this covers the
/// moment between making an id and registering it). While other replicas
/// share the bucket, [`PEER_COMMIT_WINDOW`] ([`Source::settling`]): no
/// watermark covers their commits in flight.
const SETTLE_MS: i64 = 1000;

/// Events read ahead of the cursor at most; reading pauses beyond.
const MAX_PENDING: usize = 50_000;

/// One event ready for export.
pub(crate) struct Ready {
    /// Its position.
    pub(crate) order: OrderKey,
    /// The stored event.
    pub(crate) event: Event,
    /// Its response record, if one was stored within the wait.
    pub(crate) response: Option<ResponseRecord>,
}

/// The reading state of one sink.
pub(crate) struct Source {
    storage: Arc<dyn Storage>,
    watermark: Option<CommitWatermark>,
    response_wait: Duration,
    /// Everything at or before this has been delivered.
    after: Option<OrderKey>,
    /// Bytes of each object already read (disk segments grow).
    offsets: HashMap<String, u64>,
    /// Events read, not yet released.
    pending: BTreeMap<OrderKey, Event>,
    /// Response records read, by event key, with their batch time.
    responses: HashMap<String, (i64, ResponseRecord)>,
    /// Objects not read because `pending` was full: nothing at or after
    /// this batch is released.
    horizon: Option<u128>,
    /// Whether other replicas commit to the bucket (see [`SETTLE_MS`]).
    membership: Option<Arc<Membership>>,
}

fn split_lines(data: &Bytes) -> impl Iterator<Item = &[u8]> {
    data.split(|b| *b == b'\n')
        .filter(|line| !line.iter().all(u8::is_ascii_whitespace))
}

fn batch_ms(order: OrderKey) -> i64 {
    unix_millis(&uuid::Uuid::from_u128(order.0))
}

impl Source {
    /// A reader of `storage` after `after`.
    pub(crate) fn new(
        storage: Arc<dyn Storage>,
        watermark: Option<CommitWatermark>,
        response_wait: Duration,
        after: Option<OrderKey>,
    ) -> Self {
        Self {
            storage,
            watermark,
            response_wait,
            after,
            offsets: HashMap::new(),
            pending: BTreeMap::new(),
            responses: HashMap::new(),
            horizon: None,
            membership: None,
        }
    }

    /// Releases a batch only once it is [`PEER_COMMIT_WINDOW`] old while
    /// `membership` knows of other live replicas committing to the bucket
    /// (no watermark here covers their commits in flight).
    pub(crate) fn settling(mut self, membership: Arc<Membership>) -> Self {
        self.membership = Some(membership);
        self
    }

    fn settle_ms(&self) -> i64 {
        match &self.membership {
            Some(m) if m.has_live_peers() => {
                let window = PEER_COMMIT_WINDOW + self.storage.visibility_delay();
                i64::try_from(window.as_millis()).unwrap_or(i64::MAX)
            }
            _ => SETTLE_MS,
        }
    }

    /// Events read and not yet delivered (for the lag metric).
    pub(crate) fn backlog(&self) -> usize {
        self.pending.len()
    }

    /// The oldest event not yet delivered, in Unix milliseconds of its commit.
    pub(crate) fn oldest_pending_ms(&self) -> Option<i64> {
        self.pending.keys().next().map(|o| batch_ms(*o))
    }

    /// Reads what storage holds beyond what was read, then returns up to
    /// `max` events that may be released now, in order (not yet removed:
    /// see [`Source::delivered`]).
    pub(crate) async fn poll(&mut self, max: usize) -> Result<Vec<Ready>, StorageError> {
        // The order matters: the clock, then the commits in flight, then the
        // listing (see the module's comment).
        let now_ms = unix_millis(&new_id());
        let in_flight = self.watermark.as_ref().and_then(|w| w.oldest_in_flight());
        self.read_new().await?;
        let mut limit_ms = now_ms - self.settle_ms();
        if let Some(batch) = in_flight {
            limit_ms = limit_ms.min(unix_millis(&batch) - 1);
        }
        let wait_ms = i64::try_from(self.response_wait.as_millis()).unwrap_or(i64::MAX);
        let mut ready = Vec::new();
        for (order, event) in &self.pending {
            if ready.len() >= max
                || batch_ms(*order) > limit_ms
                || self.horizon.is_some_and(|h| order.0 >= h)
            {
                break;
            }
            // An event without a key (from Tailscale's proxy) has no
            // response record to wait for.
            let Some(key) = event.key() else {
                ready.push(Ready {
                    order: *order,
                    event: event.clone(),
                    response: None,
                });
                continue;
            };
            let response = self.responses.get(key).map(|(_, r)| r.clone());
            if response.is_none() && now_ms - batch_ms(*order) < wait_ms {
                break;
            }
            ready.push(Ready {
                order: *order,
                event: event.clone(),
                response,
            });
        }
        Ok(ready)
    }

    /// Marks everything up to `through` delivered.
    pub(crate) fn delivered(&mut self, through: OrderKey) {
        while let Some(entry) = self.pending.first_entry() {
            if *entry.key() > through {
                break;
            }
            let event = entry.remove();
            if let Some(key) = event.key() {
                self.responses.remove(key);
            }
        }
        self.after = Some(through);
        // Response records of events delivered long ago (or of events never
        // stored) are not kept for ever.
        let floor = batch_ms(through) - 2 * HOUR_MS;
        self.responses.retain(|_, (ms, _)| *ms >= floor);
    }

    /// Reads new bytes of every object that may hold records after the
    /// cursor: event objects first (up to [`MAX_PENDING`] events), then the
    /// response objects those events' responses may be in.
    async fn read_new(&mut self) -> Result<(), StorageError> {
        let after_ms = self.after.map_or(i64::MIN, batch_ms);
        let mut listed = HashMap::new();
        for kind in [RecordKind::Event, RecordKind::Response] {
            let mut objects = Vec::new();
            for info in self.storage.list(layout::folder(kind)).await? {
                let Some((key, KeyKind::Batch(kind, batch))) = layout::parse_key(&info.key) else {
                    continue;
                };
                objects.push((batch, kind, key, info.size));
            }
            objects.sort_by_key(|o| o.0);
            // A segment holds batches of its own hour only. A response record
            // may be stored up to an hour before the events the exporter
            // still waits on (the proxy retries), and is not needed sooner
            // than an hour after the last event object read.
            let (floor, ceiling) = match kind {
                RecordKind::Event => (after_ms, i64::MAX),
                RecordKind::Response => (
                    self.oldest_pending_ms()
                        .unwrap_or(after_ms)
                        .saturating_sub(HOUR_MS),
                    self.horizon.map_or(i64::MAX, |h| {
                        unix_millis(&uuid::Uuid::from_u128(h)) + HOUR_MS
                    }),
                ),
            };
            if kind == RecordKind::Event {
                self.horizon = None;
            }
            for (batch, kind, key, size) in objects {
                let ms = unix_millis(&batch);
                let hour_end = ms - ms.rem_euclid(HOUR_MS) + HOUR_MS;
                if hour_end <= floor || ms > ceiling {
                    continue;
                }
                let read = self.offsets.get(key.as_str()).copied().unwrap_or(0);
                listed.insert(key.to_string(), read);
                if size <= read {
                    continue;
                }
                if kind == RecordKind::Event && self.pending.len() >= MAX_PENDING {
                    self.horizon = Some(
                        self.horizon
                            .map_or(batch.as_u128(), |h| h.min(batch.as_u128())),
                    );
                    continue;
                }
                let data = self.storage.get_range(key.as_str(), read..size).await?;
                // Whole lines only: a disk segment may be read mid-append.
                let Some(end) = data.iter().rposition(|b| *b == b'\n') else {
                    continue;
                };
                let data = data.slice(..end + 1);
                listed.insert(key.to_string(), read + data.len() as u64);
                self.parse(key.as_str(), &data);
            }
        }
        // Objects no longer relevant are forgotten.
        self.offsets = listed;
        Ok(())
    }

    fn parse(&mut self, key: &str, data: &Bytes) {
        for line in split_lines(data) {
            match Record::from_slice(line) {
                Ok(Record::Event(event)) => {
                    let Some((_, order)) = order_key(&event.id) else {
                        continue;
                    };
                    if self.after.is_none_or(|a| order > a) {
                        self.pending.insert(order, event);
                    }
                }
                Ok(Record::Response(response)) => {
                    if response.key.is_empty() {
                        continue;
                    }
                    let ms = order_key(&response.id).map_or(0, |(_, o)| batch_ms(o));
                    self.responses.insert(response.key.clone(), (ms, response));
                }
                Err(e) => {
                    tracing::warn!(%key, error = %e, "export: skipping a stored line that does not parse");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::record_id;
    use crate::storage::disk::DiskStorage;
    use uuid::{NoContext, Timestamp, Uuid};

    /// A batch id made `ago_ms` milliseconds ago.
    fn batch(ago_ms: u64) -> Uuid {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            - Duration::from_millis(ago_ms);
        Uuid::new_v7(Timestamp::from_unix(
            NoContext,
            now.as_secs(),
            now.subsec_nanos(),
        ))
    }

    fn line(batch: &Uuid, key: &str) -> Bytes {
        let id = record_id(RecordKind::Event, batch, 0);
        Bytes::from(format!(
            "{{\"type\":\"kubernetes-api-request\",\"id\":\"{id}\",\"kubescribe\":{{\"key\":\"{key}\"}}}}\n"
        ))
    }

    fn keys(ready: &[Ready]) -> Vec<String> {
        ready
            .iter()
            .map(|r| r.event.key().unwrap_or_default().to_owned())
            .collect()
    }

    #[tokio::test]
    async fn a_commit_in_flight_is_never_overtaken_by_a_later_one() {
        let dir = tempfile::tempdir().unwrap();
        let storage: Arc<dyn Storage> = Arc::new(DiskStorage::open(dir.path()).unwrap());
        let watermark = CommitWatermark::default();
        let mut source = Source::new(
            storage.clone(),
            Some(watermark.clone()),
            Duration::ZERO,
            None,
        );
        let (older, newer) = (batch(3000), batch(2000));
        // The older commit is still being written; the newer one landed.
        watermark.started(0, older);
        storage
            .append_records(RecordKind::Event, &newer, line(&newer, "newer"))
            .await
            .unwrap();
        assert!(source.poll(10).await.unwrap().is_empty());
        storage
            .append_records(RecordKind::Event, &older, line(&older, "older"))
            .await
            .unwrap();
        watermark.ended(0);
        let ready = source.poll(10).await.unwrap();
        assert_eq!(keys(&ready), ["older", "newer"]);
        // Delivered through the first: only the second is left.
        source.delivered(ready[0].order);
        assert_eq!(keys(&source.poll(10).await.unwrap()), ["newer"]);
        // A commit of this very moment waits until it is a second old.
        let fresh = batch(0);
        storage
            .append_records(RecordKind::Event, &fresh, line(&fresh, "fresh"))
            .await
            .unwrap();
        assert_eq!(keys(&source.poll(10).await.unwrap()), ["newer"]);
    }

    #[tokio::test]
    async fn an_event_waits_for_its_response_record_within_the_bound() {
        let dir = tempfile::tempdir().unwrap();
        let storage: Arc<dyn Storage> = Arc::new(DiskStorage::open(dir.path()).unwrap());
        let mut source = Source::new(storage.clone(), None, Duration::from_secs(30), None);
        let (event_batch, response_batch) = (batch(5000), batch(4000));
        storage
            .append_records(RecordKind::Event, &event_batch, line(&event_batch, "k"))
            .await
            .unwrap();
        assert!(source.poll(10).await.unwrap().is_empty(), "waits");
        let response = format!(
            "{{\"type\":\"kubescribe-api-response\",\"id\":\"{}\",\"key\":\"k\",\"status\":201}}\n",
            record_id(RecordKind::Response, &response_batch, 0)
        );
        storage
            .append_records(RecordKind::Response, &response_batch, Bytes::from(response))
            .await
            .unwrap();
        let ready = source.poll(10).await.unwrap();
        assert_eq!(ready.len(), 1);
        assert_eq!(ready[0].response.as_ref().map(|r| r.status), Some(201));
        // Past the bound, an event goes without one.
        let mut impatient = Source::new(storage, None, Duration::from_secs(1), None);
        let old = batch(3000);
        impatient
            .storage
            .append_records(RecordKind::Event, &old, line(&old, "no-response"))
            .await
            .unwrap();
        let ready = impatient.poll(10).await.unwrap();
        assert_eq!(keys(&ready), ["k", "no-response"]);
        assert!(ready[1].response.is_none());
    }
}
