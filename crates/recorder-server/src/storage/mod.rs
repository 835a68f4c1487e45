//! Where records go: one trait ([`Storage`]) with a local-directory and an S3 back end.
//!
//! Every back end gives the same guarantees, checked by one shared test suite
//! (`tests/storage_suite.rs`):
//!
//! * [`Storage::put`] returns only once the object is durable (fsync of file and
//!   directory on disk; a completed PUT on S3) and is atomic: readers see the
//!   whole object or nothing.
//! * [`Storage::append_records`] stores one group commit's records and returns
//!   only once they are durable: on S3 as one object per commit (a completed
//!   PUT); on disk appended to an open per-hour segment file (`fdatasync`; the
//!   directory is fsynced when a segment is created). A torn tail left by a
//!   crash is cut by [`Storage::recover_records`] at the next start.
//! * Sessions are appended through a [`SessionSink`]; [`SessionSink::append`]
//!   returns only once the appended bytes are durable. A session cut short by a
//!   crash is finalised by [`Storage::recover_sessions`] at the next start.
//! * Object names come only from [`layout`], never from input.
//!
//! * Replicas sharing a bucket write their session chunks under their owner
//!   name ([`fence::Fence`]); [`Storage::recover_sessions`] finalises only
//!   the sessions whose owner the caller says may be recovered, and leases
//!   are kept with conditional writes ([`LeaseStore`]).
//!
//! Inside, bottom to top: [`layout`] (object names) and [`fence`] (a
//! writer's standing), this module (the traits and their error), `fs`
//! (file-system helpers), `segment` (record segments on disk), `requests`
//! (the object store's requests, counted), then the back ends [`disk`] and
//! [`s3`], and [`batched`] (S3 with records batched through a local
//! write-ahead log of disk segments).

pub mod batched;
pub mod disk;
pub mod fence;
mod fs;
pub mod layout;
mod requests;
pub mod s3;
mod segment;

use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use uuid::Uuid;

use crate::record::RecordKind;
use fence::Fence;
pub use layout::ObjectKey;
use layout::RecordLocation;

/// A storage failure, worded for the operator who reads it in a log.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// A local file-system operation failed.
    #[error("local storage: {op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or directory involved.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The object store rejected or failed a request.
    #[error("object storage: {op} {key}: {source}")]
    ObjectStore {
        /// What was being done.
        op: &'static str,
        /// The object key involved.
        key: String,
        /// The client's error.
        source: object_store::Error,
    },
    /// The object does not exist.
    #[error("object {0} not found")]
    NotFound(String),
    /// Another process holds the storage directory's lock.
    #[error(
        "{dir} is in use by another kubescribe-recorder (it holds {lock}); two recorders must never \
         share a storage directory: stop the other one, or give this one its own --dst"
    )]
    Locked {
        /// The storage directory.
        dir: String,
        /// The lock file.
        lock: String,
    },
    /// A worker thread doing blocking file work failed (panicked).
    #[error("storage worker failed: {0}")]
    Worker(#[source] tokio::task::JoinError),
    /// The S3 client could not be configured.
    #[error("cannot configure S3 client for endpoint {endpoint} bucket {bucket:?}: {source}")]
    S3Client {
        /// The endpoint.
        endpoint: String,
        /// The bucket.
        bucket: String,
        /// The client's error.
        source: object_store::Error,
    },
    /// The start-up check of the bucket failed.
    #[error(
        "cannot use bucket {bucket:?} at {endpoint} (check --dst/TSRECORDER_DST, --bucket/TSRECORDER_BUCKET, \
         that the bucket exists, and the credentials in AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY): {source}"
    )]
    Bucket {
        /// The bucket.
        bucket: String,
        /// The endpoint.
        endpoint: String,
        /// What failed.
        source: Box<StorageError>,
    },
    /// This replica no longer holds its lease on the shared bucket, so it may
    /// not acknowledge what it writes (another replica may already have
    /// finalised its sessions).
    #[error(
        "this recorder ({owner}) no longer holds its lease on the shared bucket (the bucket did not \
         answer its renewals in time); nothing more is acknowledged until it renews"
    )]
    LeaseLost {
        /// The replica's owner name.
        owner: String,
    },
    /// The storage is not usable for another reason, said in the message.
    #[error("{0}")]
    Unusable(String),
}

/// One stored object, as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Its key relative to the storage root.
    pub key: String,
    /// Its size in bytes.
    pub size: u64,
}

/// A session finalised by [`Storage::recover_sessions`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveredSession {
    /// The finished cast object.
    pub key: ObjectKey,
    /// How many bytes it holds.
    pub size: u64,
}

/// An object read with its version ([`LeaseStore::read_versioned`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned {
    /// Its content.
    pub data: Bytes,
    /// Its entity tag, for a conditional replacement.
    pub etag: String,
    /// When the store last wrote it, by the store's clock (Unix milliseconds).
    pub modified_ms: i64,
}

/// The condition of a [`LeaseStore::put_if`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutCondition {
    /// Write whatever is there.
    Always,
    /// Write only if no object exists.
    Absent,
    /// Write only if the object is still at this entity tag.
    Matches(String),
}

/// Conditional writes and the store's clock, for leases among replicas
/// sharing one bucket (only storage that can be shared has them).
#[async_trait]
pub trait LeaseStore: Send + Sync {
    /// Reads `key` with its entity tag and modification time; `Ok(None)` if absent.
    async fn read_versioned(&self, key: &ObjectKey) -> Result<Option<Versioned>, StorageError>;

    /// Writes `key` if `condition` holds; `Ok(false)` when it did not (nothing written).
    async fn put_if(
        &self,
        key: &ObjectKey,
        data: Bytes,
        condition: PutCondition,
    ) -> Result<bool, StorageError>;

    /// Every object under `prefix` with its modification time by the store's clock (Unix ms).
    async fn list_modified(&self, prefix: &str) -> Result<Vec<(String, i64)>, StorageError>;
}

/// Which interrupted sessions [`Storage::recover_sessions`] may finalise:
/// called with the owner named in a session's chunks (`None` for chunks that
/// name none: written by a recorder that did not share its bucket).
pub type MayRecover<'a> = &'a (dyn Fn(Option<&str>) -> bool + Send + Sync);

/// The size of the ranges [`Storage::get_chunks`] reads by default.
pub const CHUNK_BYTES: u64 = 4 << 20;

/// Durable object storage for events, response records and sessions.
#[async_trait]
pub trait Storage: Send + Sync + 'static {
    /// A one-line description for start-up logs (`disk:/var/lib/…`, `s3://…/bucket`).
    fn describe(&self) -> String;

    /// Adds the back end's own metrics to `registry` (the object store's
    /// requests, the batched mode's log). The default has none.
    fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        let _ = registry;
    }

    /// Verifies that the storage can be written and read (called at start-up,
    /// so that bad credentials fail there and not at the first upload).
    async fn check(&self) -> Result<(), StorageError>;

    /// Writes a whole object atomically and durably.
    async fn put(&self, key: &ObjectKey, data: Bytes) -> Result<(), StorageError>;

    /// Stores the `kind` records of commit `batch` (whole lines) durably, in
    /// the partition of `batch`. The default writes one object per commit,
    /// [`layout::batch_key`].
    async fn append_records(
        &self,
        kind: RecordKind,
        batch: &Uuid,
        data: Bytes,
    ) -> Result<(), StorageError> {
        self.put(&layout::batch_key(kind, batch), data).await
    }

    /// Whether [`Storage::append_records`] done again with the same batch and
    /// data leaves it stored once: true for one object per commit (the
    /// default). The commit loop then writes a failed commit, whose objects
    /// may exist all the same, again when one of its records is retried,
    /// rather than storing that record a second time.
    fn append_is_idempotent(&self) -> bool {
        true
    }

    /// How many [`Storage::append_records`] calls may usefully run at once
    /// (the commit loop keeps at most this many commits in flight; they are
    /// acknowledged in order).
    fn append_parallelism(&self) -> usize {
        1
    }

    /// How long after it is acknowledged a record may take to be where other
    /// replicas of a shared bucket can see it: zero (the default) when it is
    /// stored there before the acknowledgement.
    fn visibility_delay(&self) -> std::time::Duration {
        std::time::Duration::ZERO
    }

    /// How many whole-object reads may usefully run at once when many are
    /// read in a row (the start-up rebuild): 1 (the default) for large
    /// objects read from a local disk; more for many small objects over a
    /// network.
    fn read_parallelism(&self) -> usize {
        1
    }

    /// Reads the stored line of record `id` (located by `loc`), `Ok(None)` if
    /// there is no such record. The default reads line `loc.line` of the
    /// batch object.
    async fn read_record(
        &self,
        loc: &RecordLocation,
        id: &str,
    ) -> Result<Option<Bytes>, StorageError> {
        let _ = id;
        let data = match self.get(loc.key.as_str()).await {
            Ok(data) => data,
            Err(StorageError::NotFound(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut start = 0;
        let mut n = 0;
        while start < data.len() {
            let end = data[start..]
                .iter()
                .position(|b| *b == b'\n')
                .map_or(data.len(), |p| start + p);
            if end > start {
                if n == loc.line {
                    return Ok(Some(data.slice(start..end)));
                }
                n += 1;
            }
            start = end + 1;
        }
        Ok(None)
    }

    /// Makes record objects consistent after a crash: cuts bytes that were
    /// never acknowledged (a torn last line). Returns how many objects were
    /// repaired. The default (whole-object stores) has nothing to do.
    async fn recover_records(&self) -> Result<usize, StorageError> {
        Ok(0)
    }

    /// Whether record object `key` is sealed (will never change again). On
    /// disk a segment is sealed once made read-only; on S3 every object is
    /// complete when written (the default).
    async fn is_sealed(&self, key: &str) -> Result<bool, StorageError> {
        let _ = key;
        Ok(true)
    }

    /// Deletes an object (retention); deleting one that does not exist succeeds.
    /// The default refuses: a back end that cannot delete keeps everything.
    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        Err(StorageError::Unusable(format!(
            "{}: this storage cannot delete {key}",
            self.describe()
        )))
    }

    /// Reads a whole object.
    async fn get(&self, key: &str) -> Result<Bytes, StorageError>;

    /// Reads part of an object (the range is clamped to its size).
    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes, StorageError>;

    /// Reads a whole object as a stream of chunks, in order, for objects too
    /// large to hold at once (a sealed segment is hashed this way). The
    /// default reads [`CHUNK_BYTES`] ranges one after another; a back end that
    /// can stream one request does. An object missing at the start is
    /// [`StorageError::NotFound`].
    fn get_chunks<'a>(
        &'a self,
        key: &'a str,
    ) -> futures_util::stream::BoxStream<'a, Result<Bytes, StorageError>> {
        use futures_util::StreamExt;
        futures_util::stream::try_unfold(Some(0u64), move |offset| async move {
            let Some(offset) = offset else {
                return Ok(None);
            };
            let chunk = self.get_range(key, offset..offset + CHUNK_BYTES).await?;
            let len = chunk.len() as u64;
            let next = (len == CHUNK_BYTES).then_some(offset + len);
            Ok(Some((chunk, next)))
        })
        .boxed()
    }

    /// Lists every object under `prefix` (recursively), in no particular order.
    /// Temporary and in-progress objects are not listed.
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StorageError>;

    /// Lists the objects under `prefix` whose keys sort after `after`. The
    /// default lists all and filters; a store that can start a listing at a
    /// key does (record and manifest keys sort by time, so this lists the
    /// recent ones).
    async fn list_after(&self, prefix: &str, after: &str) -> Result<Vec<ObjectInfo>, StorageError> {
        let mut all = self.list(prefix).await?;
        all.retain(|info| info.key.as_str() > after);
        Ok(all)
    }

    /// Starts a new session object at `key`, written as `fence`'s owner; it
    /// becomes visible under `key` once [`SessionSink::finish`] returns (or
    /// after recovery). On shared storage, an append is acknowledged only
    /// while `fence` holds its lease.
    async fn create_session(
        &self,
        key: &ObjectKey,
        fence: &Arc<Fence>,
    ) -> Result<Box<dyn SessionSink>, StorageError>;

    /// Finalises the sessions left in progress by a crash whose owner
    /// `may_recover` allows, keeping every byte that had been made durable.
    async fn recover_sessions(
        &self,
        may_recover: MayRecover<'_>,
    ) -> Result<Vec<RecoveredSession>, StorageError>;

    /// Leases for replicas sharing this storage; `None` (the default) for
    /// storage one process owns.
    fn leases(&self) -> Option<&dyn LeaseStore> {
        None
    }
}

/// An in-progress session object.
#[async_trait]
pub trait SessionSink: Send {
    /// Appends `data` and returns once it is durable, with the total number of
    /// durable bytes so far.
    async fn append(&mut self, data: Bytes) -> Result<u64, StorageError>;

    /// Completes the object under its final key and returns its size.
    async fn finish(self: Box<Self>) -> Result<u64, StorageError>;
}
