//! Reading manifests back from storage (shared by the sealer and `verify`).

use bytes::Bytes;
use uuid::Uuid;

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

/// Now as RFC 3339 (UTC, seconds).
pub(crate) fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc();
    let now = now.replace_nanosecond(0).unwrap_or(now);
    now.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
