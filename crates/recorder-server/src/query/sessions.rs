//! `GET /api/v1/sessions`, `…/sessions/{id}` and `…/sessions/{id}/cast`:
//! pages of the session index, one session's metadata, and the cast
//! streamed from storage in chunks.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::Stream;

use super::QueryError;
use crate::index::{SessionFilter, SessionIndex, SessionInfo, SessionState};
use crate::record::parse_session_id;
use crate::storage::Storage;

/// Bytes of a cast read from storage at a time.
const CAST_CHUNK: u64 = 1024 * 1024;

/// The page of `sessions` that `filter` selects:
/// `{"sessions":[…],"nextCursor":…}`.
pub(crate) fn list(sessions: &SessionIndex, filter: &SessionFilter) -> serde_json::Value {
    let (sessions, next) = sessions.list(filter);
    serde_json::json!({"sessions": sessions, "nextCursor": next})
}

/// Session `id`'s metadata.
pub(crate) fn get(sessions: &SessionIndex, id: &str) -> Result<SessionInfo, QueryError> {
    let not_found = || QueryError::NoSuchSession { id: id.to_owned() };
    let uuid = parse_session_id(id).ok_or_else(not_found)?;
    sessions.get(&uuid).ok_or_else(not_found)
}

/// Whether `session`'s cast may be served: not while it is being recorded.
pub(crate) fn cast_ready(session: &SessionInfo) -> Result<(), QueryError> {
    if session.state == SessionState::Live {
        return Err(QueryError::SessionLive);
    }
    Ok(())
}

/// The first `size` bytes of the cast at `key`, read from `storage` a chunk
/// at a time as the caller consumes them. A read that fails mid-stream is
/// logged and ends the stream (the caller sees a short body).
pub(crate) fn cast_stream(
    storage: Arc<dyn Storage>,
    key: String,
    size: u64,
) -> impl Stream<Item = Bytes> + Send + 'static {
    futures_util::stream::unfold(0u64, move |offset| {
        let storage = storage.clone();
        let key = key.clone();
        async move {
            if offset >= size {
                return None;
            }
            let end = (offset + CAST_CHUNK).min(size);
            match storage.get_range(&key, offset..end).await {
                Ok(data) if !data.is_empty() => Some((data, end)),
                Ok(_) => None,
                Err(e) => {
                    tracing::warn!(%key, error = %e, "reading a cast failed mid-stream");
                    None
                }
            }
        }
    })
}
