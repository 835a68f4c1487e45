//! Reading back from storage for the sealer and `verify`: manifests, and objects hashed as a stream.

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
/// object's length, `None` if it does not exist (or is deleted while read).
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
            Some(Err(StorageError::NotFound(_))) => return Ok(None),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::disk::DiskStorage;
    use crate::storage::CHUNK_BYTES;
    use crate::tamper::chain::SegmentChain;
    use sha2::Digest;

    /// Objects of several chunks, one of exactly two (its last range is
    /// empty), and a missing one, hashed as a stream.
    #[tokio::test]
    async fn a_streamed_object_hashes_as_if_read_whole() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let storage = DiskStorage::open(dir.path()).expect("disk storage");
        let record =
            b"{\"type\":\"kubernetes-api-request\",\"id\":\"e-1\",\"body\":\"0123456789\"}\n";
        let chunk = usize::try_from(CHUNK_BYTES).expect("a 64-bit usize");
        for size in [0, chunk * 2, chunk * 2 + record.len() * 3 + 5] {
            let data: Vec<u8> = record.iter().copied().cycle().take(size).collect();
            let key = layout::chains_key(&Uuid::now_v7());
            storage
                .put(&key, Bytes::from(data.clone()))
                .await
                .expect("put");
            let (builder, len) = hash_object(&storage, key.as_str(), ChainBuilder::default())
                .await
                .expect("read")
                .expect("present");
            assert_eq!(len, data.len() as u64);
            assert_eq!(builder.finish(), SegmentChain::of(&data), "{size} bytes");
            let (hasher, _) = hash_object(&storage, key.as_str(), Sha256::new())
                .await
                .expect("read")
                .expect("present");
            assert_eq!(hasher.finalize(), Sha256::digest(&data), "{size} bytes");
        }
        let missing = layout::chains_key(&Uuid::now_v7());
        let none = hash_object(&storage, missing.as_str(), Sha256::new()).await;
        assert!(matches!(none, Ok(None)));
    }
}
