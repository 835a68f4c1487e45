//! The vocabulary every layer shares: the kinds of stored records, the ids
//! the recorder gives records, commit batches and sessions, and the summary
//! of a record that the query index keeps (made when a record is committed,
//! and again when it is read back at start-up).
//!
//! Ids are built only here, from recorder-generated UUIDv7s:
//!
//! ```text
//! e-<batch>-<n>   record n (0-based) of commit <batch>, an event
//! r-<batch>-<n>   the same for a response record
//! <session>       a session
//! ```
//! where `<batch>` and `<session>` are 32 lower-case hex digits. A UUIDv7
//! carries its creation time in milliseconds, so ids sort by commit time.

use event_model::Record;
use uuid::Uuid;

/// What a stored record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecordKind {
    /// A `kubernetes-api-request` event.
    Event,
    /// A `kubescribe-api-response` record.
    Response,
}

impl RecordKind {
    /// The one-letter prefix of record ids of this kind (`e` or `r`).
    pub(crate) fn id_prefix(self) -> char {
        match self {
            RecordKind::Event => 'e',
            RecordKind::Response => 'r',
        }
    }

    /// The `kind` label of the received-records metric.
    pub(crate) fn label(self) -> &'static str {
        match self {
            RecordKind::Event => "event",
            RecordKind::Response => "response",
        }
    }
}

/// A new time-ordered id (UUIDv7) for a commit batch or a session.
pub fn new_id() -> Uuid {
    Uuid::now_v7()
}

/// A UUIDv7 for the moment `unix_ms` (Unix milliseconds; to name where that
/// moment's records sort: ids sort by time).
pub(crate) fn id_at_millis(unix_ms: i64) -> Uuid {
    let ms = u64::try_from(unix_ms.max(0)).unwrap_or(0);
    Uuid::new_v7(uuid::Timestamp::from_unix(
        uuid::NoContext,
        ms / 1000,
        u32::try_from(ms % 1000).unwrap_or(0) * 1_000_000,
    ))
}

/// Unix milliseconds encoded in a UUIDv7 (0 for other UUIDs).
pub(crate) fn unix_millis(id: &Uuid) -> i64 {
    id.get_timestamp()
        .map(|ts| {
            let (secs, nanos) = ts.to_unix();
            i64::try_from(secs).unwrap_or(i64::MAX / 1000) * 1000 + i64::from(nanos / 1_000_000)
        })
        .unwrap_or(0)
}

/// The id of record number `line` (0-based) of commit `batch`:
/// `e-<batch>-<line>` or `r-<batch>-<line>`.
pub fn record_id(kind: RecordKind, batch: &Uuid, line: usize) -> String {
    format!("{}-{}-{}", kind.id_prefix(), batch.simple(), line)
}

/// A record id taken apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RecordId {
    /// Event or response.
    pub(crate) kind: RecordKind,
    /// The commit batch.
    pub(crate) batch: Uuid,
    /// The 0-based line within the batch.
    pub(crate) line: usize,
}

impl RecordId {
    /// Parses an id made by [`record_id`]; `None` for anything else.
    pub(crate) fn parse(id: &str) -> Option<Self> {
        let mut parts = id.splitn(3, '-');
        let kind = match parts.next()? {
            "e" => RecordKind::Event,
            "r" => RecordKind::Response,
            _ => return None,
        };
        let batch = parse_simple_uuid(parts.next()?)?;
        let line_text = parts.next()?;
        if line_text.is_empty()
            || line_text.len() > 9
            || !line_text.bytes().all(|b| b.is_ascii_digit())
        {
            return None;
        }
        let line = line_text.parse().ok()?;
        Some(Self { kind, batch, line })
    }
}

/// Parses a session id (32 lower-case hex digits of a UUIDv7).
pub fn parse_session_id(id: &str) -> Option<Uuid> {
    parse_simple_uuid(id)
}

/// Parses 32 lower-case hex digits of a UUIDv7 (the only UUIDs the recorder
/// makes); `None` for anything else.
pub(crate) fn parse_simple_uuid(text: &str) -> Option<Uuid> {
    if text.len() != 32 || !text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    let id = Uuid::parse_str(text).ok()?;
    (id.get_version_num() == 7).then_some(id)
}

/// The sort order of records: (batch UUID, line).
pub type OrderKey = (u128, u32);

/// Parses a record id into its kind and sort order.
pub fn order_key(id: &str) -> Option<(RecordKind, OrderKey)> {
    let id = RecordId::parse(id)?;
    Some((id.kind, (id.batch.as_u128(), u32::try_from(id.line).ok()?)))
}

/// The record id of `kind` at `order` (the inverse of [`order_key`]).
pub(crate) fn order_id(kind: RecordKind, order: OrderKey) -> String {
    format!("{}-{:032x}-{}", kind.id_prefix(), order.0, order.1)
}

/// What the query index keeps about a record besides its JSON line.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Summary {
    /// A `kubernetes-api-request` event.
    Event(EventSummary),
    /// A `kubescribe-api-response` record.
    Response(ResponseSummary),
}

/// Filterable fields of an event.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct EventSummary {
    /// Event timestamp (Unix seconds, from the proxy).
    pub(crate) timestamp: i64,
    /// `source.nodeUser`.
    pub(crate) user: String,
    /// `source.node`.
    pub(crate) node: String,
    /// `source.nodeTags`.
    pub(crate) tags: Vec<String>,
    /// `kubernetes.Verb`.
    pub(crate) verb: String,
    /// `kubernetes.Resource`.
    pub(crate) resource: String,
    /// `kubernetes.Namespace`.
    pub(crate) namespace: String,
    /// `kubernetes.Name`.
    pub(crate) name: String,
    /// `kubescribe.key` (unprefixed), joining the response record.
    pub(crate) key: Option<String>,
    /// Whether this is the recorder's audit record of a read (`kubescribe.auditOf`).
    pub(crate) read_audit: bool,
}

/// Whether an event's extension marks it as the recorder's audit record of a read.
fn is_read_audit(extension: Option<&event_model::Extension>) -> bool {
    extension.is_some_and(|k| k.unknown.contains_key("auditOf"))
}

/// Joinable fields of a response record.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct ResponseSummary {
    /// The event's idempotency key.
    pub(crate) key: String,
}

/// The kind of `record` and what the index keeps of it.
pub(crate) fn summarize(record: &Record) -> (RecordKind, Summary) {
    match record {
        Record::Event(e) => (
            RecordKind::Event,
            Summary::Event(EventSummary {
                timestamp: e.timestamp,
                user: e.source.node_user.clone(),
                node: e.source.node.clone(),
                tags: e.source.node_tags.clone(),
                verb: e.kubernetes.verb.clone(),
                resource: e.kubernetes.resource.clone(),
                namespace: e.kubernetes.namespace.clone(),
                name: e.kubernetes.name.clone(),
                key: e.key().map(str::to_owned),
                read_audit: is_read_audit(e.kubescribe.as_ref()),
            }),
        ),
        Record::Response(r) => (
            RecordKind::Response,
            Summary::Response(ResponseSummary { key: r.key.clone() }),
        ),
    }
}

/// [`summarize`] for a record that is no longer needed (moves, no copies).
pub(crate) fn summarize_owned(record: Record) -> Summary {
    match record {
        Record::Event(e) => Summary::Event(EventSummary {
            timestamp: e.timestamp,
            read_audit: is_read_audit(e.kubescribe.as_ref()),
            key: e.kubescribe.map(|k| k.key),
            user: e.source.node_user,
            node: e.source.node,
            tags: e.source.node_tags,
            verb: e.kubernetes.verb,
            resource: e.kubernetes.resource,
            namespace: e.kubernetes.namespace,
            name: e.kubernetes.name,
        }),
        Record::Response(r) => Summary::Response(ResponseSummary { key: r.key }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_ids_round_trip_through_their_order() {
        let batch = new_id();
        let id = record_id(RecordKind::Response, &batch, 17);
        let parsed = RecordId::parse(&id).unwrap_or_else(|| unreachable!());
        assert_eq!(
            (parsed.kind, parsed.batch, parsed.line),
            (RecordKind::Response, batch, 17)
        );
        let (kind, order) = order_key(&id).unwrap_or_else(|| unreachable!());
        assert_eq!(order_id(kind, order), id);
    }
}
