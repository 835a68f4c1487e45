//! Parsing and validating uploaded records: one record, or an NDJSON batch
//! (all or nothing), into [`Prepared`] lines ready for the group commit.

use audit_policy::Redactor;
use event_model::{Destination, Record};

use crate::access::Uploader;
use crate::record::{summarize_owned, RecordKind, Summary};

/// A record ready to store: its Go-JSON line with an empty `id` to fill in.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// Event or response record.
    pub(crate) kind: RecordKind,
    /// The record as one JSON line (ending in `\n`) whose `id` is `""`.
    pub line: Vec<u8>,
    /// Byte offset between the two quotes of `"id":""`.
    pub id_at: usize,
    /// The idempotency key (already prefixed by kind), if any.
    pub(crate) key: Option<String>,
    /// What the query index keeps.
    pub(crate) summary: Summary,
}

/// Why a record was refused.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    /// Not a valid record.
    #[error(transparent)]
    Record(#[from] event_model::RecordError),
    /// Could not be serialised back (never expected).
    #[error("cannot encode record: {0}")]
    Encode(#[source] serde_json::Error),
    /// Serialised with its fields in an unexpected order (never expected).
    #[error("cannot encode record: unexpected field order")]
    FieldOrder,
}

/// Why a batch was refused; nothing of it is stored.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BatchError {
    /// A line is longer than `--max-event-bytes`.
    #[error("line {line}: record is larger than the limit of {limit} bytes (--max-event-bytes); nothing was stored")]
    LineTooLarge {
        /// 1-based line number.
        line: usize,
        /// The limit.
        limit: usize,
    },
    /// A line is not a valid record.
    #[error("line {line}: {source}; nothing was stored")]
    BadLine {
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        source: PrepareError,
    },
    /// No line holds a record.
    #[error("empty batch: no records")]
    Empty,
}

/// The start of every stored event line, up to its `id` value.
const EVENT_HEAD: &str = concat!("{\"type\":\"", "kubernetes-api-request", "\",\"id\":\"");
/// The start of every stored response record line, up to its `id` value.
const RESPONSE_HEAD: &str = concat!("{\"type\":\"", "kubescribe-api-response", "\",\"id\":\"");

/// Parses one record (`bytes`, a JSON object) and prepares it for the
/// commit: `id` emptied (the committer fills it), `destination` set to the
/// authenticated `uploader` when it was identified by WhoIs, and the
/// request body of a Secret (or of a body naming one) withheld, as
/// kubescribe's proxy does (`audit_policy::Redactor`), so that no sender
/// gets Secret data into storage.
pub fn prepare(bytes: &[u8], uploader: &Uploader) -> Result<Prepared, PrepareError> {
    let mut record = Record::from_slice(bytes)?;
    record.set_id(String::new());
    if let Record::Event(event) = &mut record {
        Redactor::default().redact_event(event);
        // An identified peer is the destination; token and anonymous
        // uploads keep what the sender wrote (documented as unverified).
        if !uploader.node.is_empty() || !uploader.node_id.is_empty() {
            event.destination = Destination {
                node: uploader.node.clone(),
                node_id: uploader.node_id.clone(),
                unknown: Default::default(),
            };
        }
    }
    let key = record.idempotency_key();
    let (kind, head) = match record {
        Record::Event(_) => (RecordKind::Event, EVENT_HEAD),
        Record::Response(_) => (RecordKind::Response, RESPONSE_HEAD),
    };
    let line = event_model::to_go_json(&record).map_err(PrepareError::Encode)?;
    if !line.starts_with(head.as_bytes()) || line.get(head.len()) != Some(&b'"') {
        return Err(PrepareError::FieldOrder);
    }
    Ok(Prepared {
        kind,
        line,
        id_at: head.len(),
        key,
        summary: summarize_owned(record),
    })
}

/// Parses an NDJSON batch (`body`, one record per line, blank lines ignored,
/// each line at most `max_line` bytes): every record, or the first reason
/// to refuse the whole batch.
pub(crate) fn prepare_batch(
    body: &[u8],
    uploader: &Uploader,
    max_line: usize,
) -> Result<Vec<Prepared>, BatchError> {
    let mut records = Vec::with_capacity(body.iter().filter(|b| **b == b'\n').count() + 1);
    for (n, line) in body.split(|b| *b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if line.len() > max_line {
            return Err(BatchError::LineTooLarge {
                line: n + 1,
                limit: max_line,
            });
        }
        let prepared = prepare(line, uploader).map_err(|source| BatchError::BadLine {
            line: n + 1,
            source,
        })?;
        records.push(prepared);
    }
    if records.is_empty() {
        return Err(BatchError::Empty);
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::summarize;

    #[test]
    fn prepared_lines_are_exactly_go_json() {
        for body in [
            &br#"{"type":"kubernetes-api-request","id":"x","timestamp":5,"request":{"method":"GET","path":"/a?b=<c>&d","body":""},"source":{"node":"n\u2028","nodeTags":["tag:a"]},"kubescribe":{"key":"k1"}}"#[..],
            &br#"{"type":"kubernetes-api-request","id":"","timestamp":5,"request":{"method":"GET","path":"/plain"}}"#[..],
            &br#"{"type":"kubescribe-api-response","id":"","key":"k1","status":200}"#[..],
        ] {
            let p = prepare(body, &Uploader::default()).unwrap();
            let mut record = Record::from_slice(body).unwrap();
            record.set_id(String::new());
            assert_eq!(p.line, event_model::to_go_json(&record).unwrap());
            assert_eq!(p.summary, summarize(&record).1);
            assert_eq!(p.key, record.idempotency_key());
        }
    }

    #[test]
    fn secret_bodies_are_stored_redacted() {
        // As Tailscale's proxy sends it: the body (base64), no redaction.
        let body = br#"{"type":"kubernetes-api-request","id":"","timestamp":5,"request":{"method":"POST","path":"/api/v1/namespaces/a/pods","body":"eyJhcGlWZXJzaW9uIjoidjEiLCJraW5kIjoiU2VjcmV0Iiwic3RyaW5nRGF0YSI6eyJwIjoiaHVudGVyMi1pbmdlc3QifX0="}}"#;
        let p = prepare(body, &Uploader::default()).unwrap();
        let line = String::from_utf8(p.line).unwrap();
        assert!(!line.contains("eyJhcGlWZXJzaW9uIjoidjEiLCJraW5kIjoiU2VjcmV0Iiwic3RyaW5nRGF0YSI6eyJwIjoiaHVudGVyMi1pbmdlc3QifX0="), "{line}");
        assert!(
            line.contains(r#""redaction":{"reason":"secret","droppedBytes":71}"#),
            "{line}"
        );
    }
}
