//! The batched S3 back end: records are acknowledged once they are durable
//! in a write-ahead log on a local volume, and shipped to S3 in objects of
//! up to `max_bytes`, or once their oldest record is about `max_age` old.
//!
//! * The log is a directory of disk segments (the disk back end's own
//!   machinery, [`DiskStorage`] with one lane per kind): a commit is
//!   appended to the kind's open segment and `fdatasync`ed before it is
//!   acknowledged. A segment is named after its first batch and holds batches
//!   of one hour only, exactly like the S3 object it becomes.
//! * A segment is closed (made read-only) when it reaches `max_bytes`, when
//!   its hour ends, or when its first batch is nearly `max_age` old (a margin
//!   of a fifth of the age, at most a second, is left for the PUT). A closed
//!   segment is shipped as one PUT under the same key it has in the log,
//!   then deleted from the log: the deletion is the mark "shipped". A crash
//!   between the PUT and the deletion ships it again at the next start, same
//!   key, same bytes: the object is overwritten, never stored twice.
//! * At start-up the log is recovered like a disk store (a torn tail cut back
//!   to the last complete line, every segment closed), then everything in it
//!   is shipped.
//! * Until shipped, a segment is read from the log: listings, reads, the
//!   index rebuild and the exporter see log and bucket as one store. A
//!   segment in the log is not sealed (the sealer covers it once it is on
//!   S3).
//! * Sessions, manifests and every other object go to S3 directly, as with
//!   the plain S3 back end.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use uuid::Uuid;

use super::disk::DiskStorage;
use super::fence::Fence;
use super::fs::{blocking, walk_files};
use super::layout::{self, KeyKind, ObjectKey, RecordLocation};
use super::s3::S3Storage;
use super::segment::{self, Closed};
use super::{
    LeaseStore, MayRecover, ObjectInfo, RecoveredSession, SessionSink, Storage, StorageError,
};
use crate::record::{new_id, unix_millis, RecordKind};

/// How records are batched: where the log lives, and when a segment ships.
#[derive(Debug, Clone)]
pub struct BatchOptions {
    /// The log's directory (on a volume that outlives the pod).
    pub dir: PathBuf,
    /// Largest object shipped (a segment is closed before it grows past this).
    pub max_bytes: u64,
    /// Longest a record waits in the log before its object is on S3.
    pub max_age: Duration,
}

/// The log's metrics.
#[derive(Debug, Clone)]
struct LogMetrics {
    shipped_objects: Counter,
    shipped_bytes: Counter,
    ship_failures: Counter,
    unshipped_objects: Gauge,
    ship_age: Histogram,
    ship_age_max: Gauge<f64, AtomicU64>,
}

impl LogMetrics {
    fn new() -> Self {
        Self {
            shipped_objects: Counter::default(),
            shipped_bytes: Counter::default(),
            ship_failures: Counter::default(),
            unshipped_objects: Gauge::default(),
            ship_age: Histogram::new(exponential_buckets(0.125, 2.0, 14)),
            ship_age_max: Gauge::default(),
        }
    }

    fn register(&self, registry: &mut Registry) {
        registry.register(
            "s3_batch_shipped_objects",
            "Closed log segments written to S3 (one PUT each)",
            self.shipped_objects.clone(),
        );
        registry.register(
            "s3_batch_shipped_bytes",
            "Bytes of records shipped from the log to S3",
            self.shipped_bytes.clone(),
        );
        registry.register(
            "s3_batch_ship_failures",
            "Attempts to ship a closed log segment that failed (retried with back-off)",
            self.ship_failures.clone(),
        );
        registry.register(
            "s3_batch_unshipped_segments",
            "Closed log segments waiting to be shipped",
            self.unshipped_objects.clone(),
        );
        registry.register(
            "s3_batch_ship_age_seconds",
            "Age of an object's oldest record when its PUT completed",
            self.ship_age.clone(),
        );
        registry.register(
            "s3_batch_ship_age_max_seconds",
            "The greatest age of a record when its object's PUT completed, since start",
            self.ship_age_max.clone(),
        );
    }

    fn observe_age(&self, secs: f64) {
        self.ship_age.observe(secs);
        if secs > self.ship_age_max.get() {
            self.ship_age_max.set(secs);
        }
    }
}

struct Inner {
    s3: S3Storage,
    log: DiskStorage,
    /// How long a record may stay in the log before it is on S3.
    max_age: Duration,
    /// Segments repaired by the recovery at open, reported once.
    repaired: AtomicUsize,
    metrics: LogMetrics,
}

/// S3 storage whose records go through a local write-ahead log (see the
/// module's documentation).
#[derive(Clone)]
pub struct BatchedStorage {
    inner: Arc<Inner>,
}

/// The age at which a segment is closed: `max_age` less the time left for
/// its PUT (a fifth of the age, at most a second).
fn close_age(max_age: Duration) -> Duration {
    max_age.saturating_sub((max_age / 5).min(Duration::from_secs(1)))
}

fn now_ms() -> i64 {
    unix_millis(&new_id())
}

/// The closed segments in the log (after recovery: all of them), oldest first.
fn closed_in_log(root: &Path) -> Result<Vec<Closed>, StorageError> {
    let mut found = Vec::new();
    for kind in [RecordKind::Event, RecordKind::Response] {
        walk_files(
            &root.join(layout::folder(kind)),
            |name| name.starts_with('.'),
            |path, name, meta| {
                if name.ends_with(".ndjson") && meta.permissions().readonly() {
                    found.push((name.to_owned(), path));
                }
                Ok(())
            },
        )?;
    }
    found.sort();
    Ok(found
        .into_iter()
        .map(|(_, path)| Closed {
            path,
            abandoned: None,
        })
        .collect())
}

impl BatchedStorage {
    /// Opens the log in `options.dir` (creating it; locked for this process),
    /// recovers it after a crash (torn tails cut, every segment closed), and
    /// starts shipping: first whatever the log holds, then each segment as it
    /// closes.
    pub async fn open(s3: S3Storage, options: BatchOptions) -> Result<Self, StorageError> {
        let dir = options.dir.clone();
        let close_at = close_age(options.max_age);
        let log = blocking(move || {
            Ok(DiskStorage::open_exclusive(dir)?.into_log(options.max_bytes, close_at))
        })
        .await?;
        let root = log.root().to_path_buf();
        let (repaired, backlog) = blocking(move || {
            let repaired = segment::recover(&root)?;
            Ok((repaired, closed_in_log(&root)?))
        })
        .await?;
        for (file, outcome) in &repaired {
            tracing::warn!(%file, ?outcome, "cut a log segment back to its last acknowledged line after a crash");
        }
        if !backlog.is_empty() {
            tracing::info!(
                segments = backlog.len(),
                "shipping the log's segments left from the last run to S3"
            );
        }
        let max_age = options.max_age;
        let inner = Arc::new(Inner {
            s3,
            log,
            max_age,
            repaired: AtomicUsize::new(repaired.len()),
            metrics: LogMetrics::new(),
        });
        let tick = (close_at / 10).clamp(Duration::from_millis(10), Duration::from_millis(250));
        tokio::spawn(ship_loop(Arc::downgrade(&inner), backlog, tick));
        Ok(Self { inner })
    }

    /// The log's directory.
    pub fn log_dir(&self) -> &Path {
        self.inner.log.root()
    }

    /// Searches the S3 objects of `loc`'s hour that may hold it (named by its
    /// batch or an earlier one), newest first, for record `id`.
    async fn read_shipped(
        &self,
        loc: &RecordLocation,
        id: &str,
    ) -> Result<Option<Bytes>, StorageError> {
        let mut candidates = Vec::new();
        for info in self
            .inner
            .s3
            .list(&layout::partition(loc.kind, &loc.batch))
            .await?
        {
            if let Some((key, KeyKind::Batch(kind, first))) = layout::parse_key(&info.key) {
                if kind == loc.kind && first <= loc.batch {
                    candidates.push((first, key));
                }
            }
        }
        candidates.sort_by_key(|c| std::cmp::Reverse(c.0));
        let needle = segment::id_needle(id);
        for (_, key) in candidates {
            let mut chunks = self.inner.s3.get_chunks(key.as_str());
            let mut line = Vec::new();
            while let Some(chunk) = chunks.next().await {
                let chunk = match chunk {
                    Ok(chunk) => chunk,
                    Err(StorageError::NotFound(_)) => break,
                    Err(e) => return Err(e),
                };
                let mut rest = &chunk[..];
                while let Some(p) = rest.iter().position(|b| *b == b'\n') {
                    line.extend_from_slice(&rest[..p]);
                    if segment::is_line_of(&line, &needle) {
                        return Ok(Some(Bytes::from(line)));
                    }
                    line.clear();
                    rest = &rest[p + 1..];
                }
                line.extend_from_slice(rest);
            }
            if segment::is_line_of(&line, &needle) {
                return Ok(Some(Bytes::from(line)));
            }
        }
        Ok(None)
    }
}

impl Inner {
    /// Ships one closed segment: PUT under its key, then removed from the
    /// log. Returns the bytes shipped.
    async fn ship(&self, closed: &mut Closed) -> Result<u64, StorageError> {
        if let Some(len) = closed.abandoned {
            let path = closed.path.clone();
            blocking(move || segment::seal_abandoned(&path, len)).await?;
            // Sealed (read-only): a retry must not open it for writing again.
            closed.abandoned = None;
        }
        let key = closed
            .path
            .strip_prefix(self.log.root())
            .ok()
            .map(|rel| {
                rel.components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join("/")
            })
            .and_then(|key| layout::parse_key(&key));
        let Some((key, KeyKind::Batch(_, first))) = key else {
            tracing::warn!(file = %closed.path.display(), "not shipping an unexpected file in the log");
            return Ok(0);
        };
        let data = match self.log.get(key.as_str()).await {
            Ok(data) => data,
            // Shipped already.
            Err(StorageError::NotFound(_)) => return Ok(0),
            Err(e) => return Err(e),
        };
        let len = data.len() as u64;
        if len > 0 {
            self.s3.put(&key, data).await?;
        }
        // The mark "shipped" (a crash before it ships the same bytes again).
        self.log.delete(key.as_str()).await?;
        if len > 0 {
            self.metrics.shipped_objects.inc();
            self.metrics.shipped_bytes.inc_by(len);
            let age_ms = now_ms().saturating_sub(unix_millis(&first)).max(0);
            self.metrics.observe_age(age_ms as f64 / 1000.0);
        }
        Ok(len)
    }
}

/// Closes segments as they come of age and ships closed ones, oldest first;
/// a failed PUT is retried with back-off (1 s, doubling up to 30 s). Ends
/// when the storage is dropped.
async fn ship_loop(inner: Weak<Inner>, mut queue: Vec<Closed>, tick: Duration) {
    let mut backoff = Duration::ZERO;
    let mut retry_at = tokio::time::Instant::now();
    loop {
        {
            let Some(inner) = inner.upgrade() else {
                return;
            };
            let segments = inner.log.segments();
            segments.close_aged(now_ms());
            queue.extend(segments.take_closed());
            inner.metrics.unshipped_objects.set(queue.len() as i64);
            if !queue.is_empty() && tokio::time::Instant::now() >= retry_at {
                while let Some(closed) = queue.first_mut() {
                    match inner.ship(closed).await {
                        Ok(_) => {
                            queue.remove(0);
                            backoff = Duration::ZERO;
                        }
                        Err(e) => {
                            inner.metrics.ship_failures.inc();
                            backoff = (backoff * 2)
                                .clamp(Duration::from_secs(1), Duration::from_secs(30));
                            retry_at = tokio::time::Instant::now() + backoff;
                            tracing::warn!(file = %closed.path.display(), error = %e, retry_in = ?backoff,
                                "could not ship a log segment to S3 (it stays in the log)");
                            break;
                        }
                    }
                }
                inner.metrics.unshipped_objects.set(queue.len() as i64);
            }
        }
        tokio::time::sleep(tick).await;
    }
}

#[async_trait]
impl Storage for BatchedStorage {
    fn describe(&self) -> String {
        format!(
            "{} (records batched through the log in {})",
            self.inner.s3.describe(),
            self.inner.log.root().display()
        )
    }

    fn register_metrics(&self, registry: &mut Registry) {
        self.inner.s3.register_metrics(registry);
        self.inner.metrics.register(registry);
    }

    async fn check(&self) -> Result<(), StorageError> {
        self.inner.log.check().await?;
        self.inner.s3.check().await
    }

    async fn put(&self, key: &ObjectKey, data: Bytes) -> Result<(), StorageError> {
        self.inner.s3.put(key, data).await
    }

    async fn append_records(
        &self,
        kind: RecordKind,
        batch: &Uuid,
        data: Bytes,
    ) -> Result<(), StorageError> {
        self.inner.log.append_records(kind, batch, data).await
    }

    /// Appending to the log again would store the records twice.
    fn append_is_idempotent(&self) -> bool {
        false
    }

    fn append_parallelism(&self) -> usize {
        self.inner.log.append_parallelism()
    }

    /// The log first, then S3: a segment leaves the log only once its PUT
    /// has completed, so a record is always in one or the other.
    async fn read_record(
        &self,
        loc: &RecordLocation,
        id: &str,
    ) -> Result<Option<Bytes>, StorageError> {
        if let Some(line) = self.inner.log.read_record(loc, id).await? {
            return Ok(Some(line));
        }
        self.read_shipped(loc, id).await
    }

    async fn recover_records(&self) -> Result<usize, StorageError> {
        Ok(self.inner.repaired.swap(0, Ordering::Relaxed))
    }

    /// A segment still in the log is not sealed; on S3 it is.
    async fn is_sealed(&self, key: &str) -> Result<bool, StorageError> {
        match self.inner.log.is_sealed(key).await {
            Ok(_) => Ok(false),
            Err(StorageError::NotFound(_)) => self.inner.s3.is_sealed(key).await,
            Err(e) => Err(e),
        }
    }

    /// Retention deletes sealed objects only: those are on S3.
    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        self.inner.s3.delete(key).await
    }

    async fn get(&self, key: &str) -> Result<Bytes, StorageError> {
        match self.inner.log.get(key).await {
            Err(StorageError::NotFound(_)) => self.inner.s3.get(key).await,
            other => other,
        }
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes, StorageError> {
        match self.inner.log.get_range(key, range.clone()).await {
            Err(StorageError::NotFound(_)) => self.inner.s3.get_range(key, range).await,
            other => other,
        }
    }

    fn get_chunks<'a>(&'a self, key: &'a str) -> BoxStream<'a, Result<Bytes, StorageError>> {
        futures_util::stream::once(async move {
            match self.inner.log.is_sealed(key).await {
                Ok(_) => self.inner.log.get_chunks(key),
                Err(_) => self.inner.s3.get_chunks(key),
            }
        })
        .flatten()
        .boxed()
    }

    /// The bucket's objects and the log's segments, as one store.
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StorageError> {
        // The log first: a segment shipped meanwhile is then in the bucket.
        let logged = self.inner.log.list(prefix).await?;
        let mut all: BTreeMap<String, u64> = self
            .inner
            .s3
            .list(prefix)
            .await?
            .into_iter()
            .map(|o| (o.key, o.size))
            .collect();
        for o in logged {
            all.entry(o.key).or_insert(o.size);
        }
        Ok(all
            .into_iter()
            .map(|(key, size)| ObjectInfo { key, size })
            .collect())
    }

    async fn create_session(
        &self,
        key: &ObjectKey,
        fence: &Arc<Fence>,
    ) -> Result<Box<dyn SessionSink>, StorageError> {
        self.inner.s3.create_session(key, fence).await
    }

    async fn recover_sessions(
        &self,
        may_recover: MayRecover<'_>,
    ) -> Result<Vec<RecoveredSession>, StorageError> {
        self.inner.s3.recover_sessions(may_recover).await
    }

    /// The bucket's leases: replicas may share the bucket, each with its own log.
    fn leases(&self) -> Option<&dyn LeaseStore> {
        Some(&self.inner.s3)
    }

    /// A record reaches the bucket (where other replicas see it) up to `--s3-batch-max-age` after it is acknowledged.
    fn visibility_delay(&self) -> Duration {
        self.inner.max_age
    }

    fn read_parallelism(&self) -> usize {
        self.inner.s3.read_parallelism()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_close_age_leaves_time_for_the_put() {
        assert_eq!(close_age(Duration::from_secs(30)), Duration::from_secs(29));
        assert_eq!(
            close_age(Duration::from_secs(1)),
            Duration::from_millis(800)
        );
        assert_eq!(close_age(Duration::ZERO), Duration::ZERO);
    }
}
