//! `GET /api/v1/events` and `GET /api/v1/events/{id}`: pages of the event
//! index, and single records (from the index, or read from storage once
//! they are no longer indexed), as JSON.
//!
//! Stored lines are copied into the answer as they are (they are JSON
//! objects already), so listing costs no parsing.

use bytes::Bytes;

use super::QueryError;
use crate::index::{EventFilter, EventIndex, Row};
use crate::record::RecordKind;
use crate::storage::layout::parse_record_id;
use crate::storage::{Storage, StorageError};

fn trim_line(line: &Bytes) -> &[u8] {
    line.strip_suffix(b"\n").unwrap_or(line)
}

fn push_row(out: &mut Vec<u8>, id: &str, event: Option<&[u8]>, response: Option<&[u8]>) {
    out.extend_from_slice(b"{\"id\":");
    out.extend_from_slice(&serde_json::to_vec(id).unwrap_or_default());
    out.extend_from_slice(b",\"event\":");
    out.extend_from_slice(event.unwrap_or(b"null"));
    out.extend_from_slice(b",\"response\":");
    out.extend_from_slice(response.unwrap_or(b"null"));
    out.push(b'}');
}

/// The page of `index` that `filter` selects:
/// `{"events":[…],"nextCursor":…,"oldestIndexed":…}` and a newline.
pub(crate) fn list(index: &EventIndex, filter: &EventFilter) -> Vec<u8> {
    let page = index.query(filter);
    let mut out =
        Vec::with_capacity(page.rows.iter().map(|r| r.event.len() + 64).sum::<usize>() + 64);
    out.extend_from_slice(b"{\"events\":[");
    for (
        i,
        Row {
            id,
            event,
            response,
        },
    ) in page.rows.iter().enumerate()
    {
        if i > 0 {
            out.push(b',');
        }
        push_row(
            &mut out,
            id,
            Some(trim_line(event)),
            response.as_ref().map(trim_line),
        );
    }
    out.extend_from_slice(b"],\"nextCursor\":");
    out.extend_from_slice(&serde_json::to_vec(&page.next).unwrap_or_default());
    out.extend_from_slice(b",\"oldestIndexed\":");
    out.extend_from_slice(&serde_json::to_vec(&page.oldest_indexed).unwrap_or_default());
    out.extend_from_slice(b"}\n");
    out
}

/// Record `id`: `{"id":…,"event":…,"response":…}` and a newline; from
/// `index` when it is there, otherwise read from `storage`.
pub(crate) async fn get(
    index: &EventIndex,
    storage: &dyn Storage,
    id: &str,
) -> Result<Vec<u8>, QueryError> {
    let not_found = || QueryError::NoSuchRecord { id: id.to_owned() };
    let mut out = Vec::new();
    if let Some(row) = index.get(id) {
        if id.starts_with('r') {
            push_row(&mut out, id, None, Some(trim_line(&row.event)));
        } else {
            push_row(
                &mut out,
                id,
                Some(trim_line(&row.event)),
                row.response.as_ref().map(trim_line),
            );
        }
        out.push(b'\n');
        return Ok(out);
    }
    // Not (or no longer) indexed: read it from storage.
    let loc = parse_record_id(id).ok_or_else(not_found)?;
    let line = match storage.read_record(&loc, id).await {
        Ok(Some(line)) => line,
        Ok(None) | Err(StorageError::NotFound(_)) => return Err(not_found()),
        Err(e) => return Err(e.into()),
    };
    let line = &line[..];
    match loc.kind {
        RecordKind::Event => {
            let key = serde_json::from_slice::<event_model::Event>(line)
                .ok()
                .and_then(|e| e.key().map(str::to_owned));
            let response = key.and_then(|k| index.response_by_event_key(&k));
            push_row(&mut out, id, Some(line), response.as_ref().map(trim_line));
        }
        RecordKind::Response => push_row(&mut out, id, None, Some(line)),
    }
    out.push(b'\n');
    Ok(out)
}
