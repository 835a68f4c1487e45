//! A sink's durable position: `_kubescribe/export/<sink>/cursor` in the
//! storage root, JSON `{"after":"<record id>"}`: every event up to and
//! including that record id has been delivered and acknowledged. Part of the
//! storage format: retention reads it and never deletes records after the
//! lowest cursor.

use std::sync::Arc;

use bytes::Bytes;

use crate::record::{record_id, OrderKey};
use crate::storage::layout::{export_cursor_key, ExportCursor};
use crate::storage::{ObjectKey, Storage, StorageError};

use super::ExportError;

/// One sink's cursor object.
pub(crate) struct Cursor {
    storage: Arc<dyn Storage>,
    key: ObjectKey,
}

impl Cursor {
    /// The cursor of `sink` (a fixed, valid name).
    pub(crate) fn new(storage: Arc<dyn Storage>, sink: &'static str) -> Result<Self, ExportError> {
        let key = export_cursor_key(sink).ok_or(ExportError::SinkName(sink))?;
        Ok(Self { storage, key })
    }

    /// The last delivered record id and its order, `None` when the sink has
    /// never acknowledged anything (export starts at the oldest record).
    pub(crate) async fn load(&self) -> Result<Option<(String, OrderKey)>, ExportError> {
        let data = match self.storage.get(self.key.as_str()).await {
            Ok(data) => data,
            Err(StorageError::NotFound(_)) => return Ok(None),
            Err(source) => return Err(ExportError::Storage(source)),
        };
        let bad = |why: String| ExportError::BadCursor {
            key: self.key.to_string(),
            why,
        };
        let id = ExportCursor::parse(&data).map_err(bad)?;
        let line =
            u32::try_from(id.line).map_err(|_| bad(format!("line {} is out of range", id.line)))?;
        Ok(Some((
            record_id(id.kind, &id.batch, id.line),
            (id.batch.as_u128(), line),
        )))
    }

    /// Stores `after` durably (a whole-object write: readers see the old
    /// cursor or the new one).
    pub(crate) async fn store(&self, after: &str) -> Result<(), ExportError> {
        let data = serde_json::to_vec(&ExportCursor {
            after: after.to_owned(),
        })
        .map_err(|e| ExportError::BadCursor {
            key: self.key.to_string(),
            why: e.to_string(),
        })?;
        self.storage
            .put(&self.key, Bytes::from(data))
            .await
            .map_err(ExportError::Storage)
    }
}
