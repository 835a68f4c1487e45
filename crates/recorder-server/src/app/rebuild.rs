//! Start-up: finalise interrupted sessions, cut torn record segments, then
//! rebuild the idempotency key index, the event index and the session index
//! from storage.

use std::collections::HashSet;
use std::sync::Arc;

use bytes::Bytes;
use event_model::Record;
use futures_util::StreamExt;
use serde_json::Value;

use crate::index::sessions::{failure_in, last_event_time};
use crate::index::{EventIndex, SessionIndex, SessionInfo, SessionState};
use crate::pipeline::keys::KeyIndex;
use crate::record::{new_id, order_key, summarize, unix_millis, RecordKind, Summary};
use crate::storage::layout::{self, KeyKind};
use crate::storage::{MayRecover, ObjectInfo, Storage, StorageError};

const HOUR_MS: i64 = 3_600_000;

/// What the rebuild found.
#[derive(Debug, Default, Clone)]
pub(crate) struct RebuildReport {
    /// Sessions finalised after a crash.
    pub(crate) recovered_sessions: usize,
    /// Record segments cut back to their last acknowledged line.
    pub(crate) repaired_segments: usize,
    /// Batch objects (segments) read.
    pub(crate) batches_read: usize,
    /// Events in the query index.
    pub(crate) indexed_events: usize,
    /// Idempotency keys remembered.
    pub(crate) keys: usize,
    /// Sessions indexed.
    pub(crate) sessions: usize,
    /// Lines that did not parse (logged).
    pub(crate) bad_lines: usize,
}

fn split_lines(data: &Bytes) -> impl Iterator<Item = Bytes> + '_ {
    let mut start = 0;
    std::iter::from_fn(move || {
        while start < data.len() {
            let end = data[start..]
                .iter()
                .position(|b| *b == b'\n')
                .map(|p| start + p + 1)
                .unwrap_or(data.len());
            let line = data.slice(start..end);
            start = end;
            if !line.iter().all(u8::is_ascii_whitespace) {
                return Some(line);
            }
        }
        None
    })
}

/// One stored record line, parsed.
pub(crate) struct ParsedLine {
    /// The record id.
    pub(crate) id: String,
    /// When asked for: the line, copied (a slice would keep the whole object,
    /// a disk segment is up to 64 MiB, in memory for as long as any of its
    /// lines is indexed), and what the index keeps of it.
    pub(crate) indexed: Option<(Bytes, Summary)>,
    /// Its idempotency key, if it has one.
    pub(crate) idempotency_key: Option<String>,
}

/// The records of the batch object (or segment) `key`, whose bytes are
/// `data`, each with what the index needs when `for_index`; lines that do
/// not parse are logged, counted in `bad_lines` and skipped.
pub(crate) fn parse_batch(
    key: &str,
    data: &Bytes,
    for_index: bool,
    bad_lines: &mut usize,
) -> Vec<ParsedLine> {
    let mut out = Vec::new();
    for line in split_lines(data) {
        let record = match Record::from_slice(&line) {
            Ok(r) => r,
            Err(e) => {
                *bad_lines += 1;
                tracing::warn!(%key, error = %e, "skipping a stored line that does not parse");
                continue;
            }
        };
        out.push(ParsedLine {
            id: record.id().to_owned(),
            indexed: for_index.then(|| (Bytes::copy_from_slice(&line), summarize(&record).1)),
            idempotency_key: record.idempotency_key(),
        });
    }
    out
}

/// Runs the whole start-up rebuild from `storage` into `keys`, `index` and
/// `sessions`, finalising first the interrupted sessions `may_recover` allows.
pub(crate) async fn rebuild(
    storage: &Arc<dyn Storage>,
    may_recover: MayRecover<'_>,
    keys: &mut KeyIndex,
    index: &EventIndex,
    sessions: &SessionIndex,
) -> Result<RebuildReport, StorageError> {
    let mut report = RebuildReport::default();
    let recovered = storage.recover_sessions(may_recover).await?;
    for r in &recovered {
        tracing::warn!(key = %r.key, bytes = r.size, "finalised a session interrupted by a restart (everything acknowledged is kept)");
    }
    report.recovered_sessions = recovered.len();
    let recovered: HashSet<String> = recovered.into_iter().map(|r| r.key.to_string()).collect();
    report.repaired_segments = storage.recover_records().await?;

    // Batch objects (segments), newest first. A segment holds batches of one
    // hour only, so none of its records is older than its name's hour.
    let mut batches = Vec::new();
    for kind in [RecordKind::Event, RecordKind::Response] {
        for info in storage.list(layout::folder(kind)).await? {
            if let Some((key, KeyKind::Batch(kind, id))) = layout::parse_key(&info.key) {
                batches.push((id, kind, key));
            }
        }
    }
    batches.sort_by_key(|b| std::cmp::Reverse(b.0));
    let now_ms = unix_millis(&new_id());
    let mut key_entries = Vec::new();
    let window_start = now_ms - keys.window_ms();
    // Read ahead in order (many small objects on S3); stopping drops the rest.
    let mut reads = futures_util::stream::iter(batches)
        .map(|(id, _kind, key)| async move {
            let data = storage.get(key.as_str()).await;
            (id, key, data)
        })
        .buffered(storage.read_parallelism().max(1));
    while let Some((id, key, data)) = reads.next().await {
        let may_be_in_window = unix_millis(&id) + HOUR_MS >= window_start;
        if !may_be_in_window && index.is_full() {
            break;
        }
        let data = data?;
        report.batches_read += 1;
        let mut entries = Vec::new();
        let for_index = !index.is_full();
        for line in parse_batch(key.as_str(), &data, for_index, &mut report.bad_lines) {
            if may_be_in_window {
                let batch_ms = order_key(&line.id)
                    .map(|(_, (batch, _))| unix_millis(&uuid::Uuid::from_u128(batch)));
                if let (Some(k), Some(ms)) = (line.idempotency_key, batch_ms) {
                    if ms >= window_start {
                        key_entries.push((ms, k, line.id.clone()));
                    }
                }
            }
            if let Some((bytes, summary)) = line.indexed {
                entries.push((line.id, bytes, summary));
            }
        }
        index.insert_all(entries);
    }
    key_entries.sort_by(|a, b| (a.0, &a.2).cmp(&(b.0, &b.2)));
    for (ms, k, id) in key_entries {
        keys.insert(k, id, ms);
    }
    report.keys = keys.len();
    report.indexed_events = index.len();

    // Sessions.
    for info in storage.list(layout::SESSIONS).await? {
        index_session(&**storage, sessions, &info, &recovered).await?;
    }
    report.sessions = sessions.len();
    Ok(report)
}

/// Adds the finished session object `info` to `sessions` (in the state
/// `recovered` says, or failed when its tail says so); anything else listed
/// is skipped. Returns whether it was a session.
pub(crate) async fn index_session(
    storage: &dyn Storage,
    sessions: &SessionIndex,
    info: &ObjectInfo,
    recovered: &HashSet<String>,
) -> Result<bool, StorageError> {
    let Some((key, KeyKind::Session(id))) = layout::parse_key(&info.key) else {
        return Ok(false);
    };
    let head = storage.get_range(key.as_str(), 0..65536).await?;
    let header_line = head.split(|b| *b == b'\n').next().unwrap_or(&[]);
    let header: Value = serde_json::from_slice(header_line).unwrap_or(Value::Null);
    let tail_start = info.size.saturating_sub(65536);
    let tail = storage
        .get_range(key.as_str(), tail_start..info.size)
        .await?;
    let error = failure_in(&tail);
    let state = if error.is_some() {
        SessionState::Failed
    } else if recovered.contains(key.as_str()) {
        SessionState::Recovered
    } else {
        SessionState::Finished
    };
    sessions.upsert(
        &id,
        SessionInfo {
            id: id.simple().to_string(),
            storage_key: key.to_string(),
            started_ms: unix_millis(&id),
            header,
            size: info.size,
            duration_seconds: last_event_time(&tail).unwrap_or(0.0),
            state,
            error,
            uploader: String::new(),
            protocol: String::new(),
        },
    );
    Ok(true)
}
