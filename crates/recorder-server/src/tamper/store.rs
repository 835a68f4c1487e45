//! Reading manifests back from storage (shared by the sealer and `verify`).

use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use futures_util::StreamExt;
use sha2::Sha256;
use uuid::Uuid;

use super::chain::ChainBuilder;
use crate::storage::layout::{self, parse_manifest_key};
use crate::storage::{Storage, StorageError};

/// Every manifest object and chains object in storage, oldest first: `(id, key, is_chains)`.
pub(crate) async fn list_manifests(
    storage: &dyn Storage,
) -> Result<Vec<(Uuid, String, bool)>, StorageError> {
    let mut out: Vec<_> = storage
        .list(layout::MANIFESTS)
        .await?
        .into_iter()
        .filter_map(|info| {
            let (id, chains) = parse_manifest_key(&info.key)?;
            Some((id, info.key, chains))
        })
        .collect();
    out.sort();
    Ok(out)
}

/// Reads an object, `None` if it does not exist.
pub(crate) async fn get_opt(
    storage: &dyn Storage,
    key: &str,
) -> Result<Option<Bytes>, StorageError> {
    match storage.get(key).await {
        Ok(data) => Ok(Some(data)),
        Err(StorageError::NotFound(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// What an object's bytes are fed to, in order, when it is hashed.
pub(crate) trait Feed: Send + 'static {
    /// Takes the next bytes.
    fn feed(&mut self, chunk: &[u8]);
}

impl Feed for ChainBuilder {
    fn feed(&mut self, chunk: &[u8]) {
        ChainBuilder::feed(self, chunk);
    }
}

impl Feed for Sha256 {
    fn feed(&mut self, chunk: &[u8]) {
        sha2::Digest::update(self, chunk);
    }
}

/// How many bytes are gathered before they are hashed in one go.
const HASH_BATCH_BYTES: usize = 4 << 20;

/// Streams an object through `sink` with a few MiB held at a time, hashing
/// on tokio's blocking pool (a 64 MiB segment takes tens of milliseconds, too
/// long to hold an async worker that serves uploads): the sink and the
/// object's length, `None` if it does not exist.
pub(crate) async fn hash_object<F: Feed>(
    storage: &dyn Storage,
    key: &str,
    sink: F,
) -> Result<Option<(F, u64)>, StorageError> {
    let sink = Arc::new(Mutex::new(sink));
    let mut chunks = storage.get_chunks(key);
    let (mut pending, mut pending_bytes, mut total) = (Vec::new(), 0usize, 0u64);
    loop {
        let next = match chunks.next().await {
            Some(Ok(chunk)) => Some(chunk),
            Some(Err(StorageError::NotFound(_))) if total == 0 => return Ok(None),
            Some(Err(e)) => return Err(e),
            None => None,
        };
        let done = next.is_none();
        if let Some(chunk) = next {
            total += chunk.len() as u64;
            pending_bytes += chunk.len();
            pending.push(chunk);
        }
        if pending_bytes >= HASH_BATCH_BYTES || (done && !pending.is_empty()) {
            feed_blocking(&sink, std::mem::take(&mut pending)).await;
            pending_bytes = 0;
        }
        if done {
            break;
        }
    }
    drop(chunks);
    let sink = match Arc::try_unwrap(sink) {
        Ok(sink) => sink.into_inner().unwrap_or_else(PoisonError::into_inner),
        // Unreachable: every blocking task that held a clone has ended.
        Err(_) => {
            return Err(StorageError::Unusable(format!(
                "{key}: hashing did not end"
            )))
        }
    };
    Ok(Some((sink, total)))
}

/// Feeds `batch` to `sink` on the blocking pool, or here if the pool cannot
/// run it (the runtime is shutting down).
async fn feed_blocking<F: Feed>(sink: &Arc<Mutex<F>>, batch: Vec<Bytes>) {
    let (shared, chunks) = (sink.clone(), batch.clone());
    match tokio::task::spawn_blocking(move || feed_all(&shared, &chunks)).await {
        Ok(()) => {}
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => feed_all(sink, &batch),
    }
}

fn feed_all<F: Feed>(sink: &Mutex<F>, batch: &[Bytes]) {
    let mut sink = sink.lock().unwrap_or_else(PoisonError::into_inner);
    for chunk in batch {
        sink.feed(chunk);
    }
}

/// Now as RFC 3339 (UTC, seconds).
pub(crate) fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc();
    let now = now.replace_nanosecond(0).unwrap_or(now);
    now.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
