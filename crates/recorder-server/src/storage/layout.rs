//! Object names: the time-partitioned layout documented in `docs/storage.md`.
//!
//! Every name is built here from recorder-generated UUIDv7s and the clock;
//! nothing from an upload ever becomes part of a path.
//!
//! ```text
//! events/date=YYYY-MM-DD/hour=HH/<segment>.ndjson     kubernetes-api-request events
//! responses/date=YYYY-MM-DD/hour=HH/<segment>.ndjson  kubescribe-api-response records
//! sessions/date=YYYY-MM-DD/<session>.cast             asciicast v2 recordings
//! ```
//! The partition is derived from the UUIDv7's millisecond timestamp (UTC), so
//! an id alone says which partition holds its record. A `<segment>` is named
//! after the first commit batch it holds: on S3 every batch is its own
//! object; on disk a segment collects the batches of one hour (see the disk
//! back end).
//!
//! The bottom of the storage layer: it knows the record vocabulary
//! ([`crate::record`]) and nothing else of the crate.

use std::fmt;

use time::OffsetDateTime;
use uuid::Uuid;

use crate::record::{parse_simple_uuid, RecordId, RecordKind};

/// A storage key built by this module (so it is always a safe relative path).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey(String);

impl ObjectKey {
    /// The key as a `/`-separated relative path.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Re-validates a listed key; `None` for anything that is not exactly
    /// the shape this module produces.
    pub(crate) fn parse(key: &str) -> Option<Self> {
        let parsed = parse_key(key)?;
        Some(parsed.0)
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The top-level folder of records of `kind`: `events` or `responses`.
pub(crate) fn folder(kind: RecordKind) -> &'static str {
    match kind {
        RecordKind::Event => "events",
        RecordKind::Response => "responses",
    }
}

/// Folder of finished and in-progress sessions.
pub(crate) const SESSIONS: &str = "sessions";

/// Folder of manifests and their chains objects (docs/storage.md, "Tamper evidence").
pub const MANIFESTS: &str = "_kubescribe/manifests";

/// The manifest object of manifest `id`: `_kubescribe/manifests/<id>.json`.
pub fn manifest_key(id: &Uuid) -> ObjectKey {
    ObjectKey(format!("{MANIFESTS}/{}.json", id.simple()))
}

/// The chains object of manifest `id`: `_kubescribe/manifests/<id>.chains`.
pub fn chains_key(id: &Uuid) -> ObjectKey {
    ObjectKey(format!("{MANIFESTS}/{}.chains", id.simple()))
}

/// The manifest id and whether it is the chains object, for a key under [`MANIFESTS`].
pub fn parse_manifest_key(key: &str) -> Option<(Uuid, bool)> {
    let file = key.strip_prefix(MANIFESTS)?.strip_prefix('/')?;
    let (id, chains) = match file.strip_suffix(".json") {
        Some(id) => (id, false),
        None => (file.strip_suffix(".chains")?, true),
    };
    let id = parse_simple_uuid(id)?;
    let expected = if chains {
        chains_key(&id)
    } else {
        manifest_key(&id)
    };
    (expected.as_str() == key).then_some((id, chains))
}

fn partition_time(id: &Uuid) -> OffsetDateTime {
    let millis = id
        .get_timestamp()
        .map(|ts| {
            let (secs, nanos) = ts.to_unix();
            i128::from(secs) * 1000 + i128::from(nanos / 1_000_000)
        })
        .unwrap_or(0);
    OffsetDateTime::from_unix_timestamp_nanos(millis * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

fn date_of(t: OffsetDateTime) -> String {
    format!("{:04}-{:02}-{:02}", t.year(), u8::from(t.month()), t.day())
}

/// The partition folder (`events/date=…/hour=…`) of the records of `batch`.
pub(crate) fn partition(kind: RecordKind, batch: &Uuid) -> String {
    let t = partition_time(batch);
    format!("{}/date={}/hour={:02}", folder(kind), date_of(t), t.hour())
}

/// The object holding one commit batch of `kind` (on disk: the segment that
/// starts with that batch).
pub fn batch_key(kind: RecordKind, batch: &Uuid) -> ObjectKey {
    ObjectKey(format!(
        "{}/{}.ndjson",
        partition(kind, batch),
        batch.simple()
    ))
}

/// The object holding one session recording.
pub fn session_key(session: &Uuid) -> ObjectKey {
    ObjectKey(format!(
        "{}/{}.cast",
        session_folder(session),
        session.simple()
    ))
}

/// The folder of the sessions started on the day of `session`: `sessions/date=YYYY-MM-DD`.
pub(crate) fn session_folder(session: &Uuid) -> String {
    format!("{SESSIONS}/date={}", date_of(partition_time(session)))
}

/// Where the replicas sharing a bucket keep their leases (docs/storage.md,
/// "Several recorders on one bucket").
pub(crate) const LEASES: &str = "_kubescribe/leases";

/// The lease of replica `owner`: `_kubescribe/leases/replicas/<owner>`,
/// rewritten by its owner while it runs (its modification time is the
/// lease). `None` unless `owner` is a valid owner name.
pub(crate) fn replica_lease_key(owner: &str) -> Option<ObjectKey> {
    super::fence::is_valid_owner(owner).then(|| ObjectKey(format!("{LEASES}/replicas/{owner}")))
}

/// The owner of a key listed under `_kubescribe/leases/replicas/`.
pub(crate) fn replica_lease_owner(key: &str) -> Option<&str> {
    let owner = key.strip_prefix(LEASES)?.strip_prefix("/replicas/")?;
    super::fence::is_valid_owner(owner).then_some(owner)
}

/// The leader lease: `_kubescribe/leases/leader`, naming the replica that
/// seals, sweeps, exports and recovers (replaced only by a conditional write).
pub(crate) fn leader_lease_key() -> ObjectKey {
    ObjectKey(format!("{LEASES}/leader"))
}

/// Where export cursors live: `_kubescribe/export/<sink>/cursor`.
pub(crate) const EXPORT_CURSORS: &str = "_kubescribe/export";

/// The legal-hold marker: while it exists, retention deletes nothing.
pub(crate) const LEGAL_HOLD: &str = "_kubescribe/legal-hold";

/// The cursor of export sink `sink`: `_kubescribe/export/<sink>/cursor`,
/// [`ExportCursor`] as JSON (retention never deletes records after the
/// lowest cursor). `sink` is one of the exporter's own fixed names (lower-case
/// letters and `-`); anything else is refused.
pub(crate) fn export_cursor_key(sink: &'static str) -> Option<ObjectKey> {
    let valid = !sink.is_empty() && sink.bytes().all(|b| b.is_ascii_lowercase() || b == b'-');
    valid.then(|| ObjectKey(format!("{EXPORT_CURSORS}/{sink}/cursor")))
}

/// An export cursor's content, `{"after":"<event record id>"}`: every event up
/// to and including that record has been delivered. Written by the exporter,
/// read by it and by retention.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct ExportCursor {
    /// The last event record delivered.
    pub(crate) after: String,
}

impl ExportCursor {
    /// Reads a cursor object: its event record id, or why it is not one.
    pub(crate) fn parse(data: &[u8]) -> Result<RecordId, String> {
        let cursor: ExportCursor = serde_json::from_slice(data).map_err(|e| e.to_string())?;
        match RecordId::parse(&cursor.after) {
            Some(id) if id.kind == RecordKind::Event => Ok(id),
            _ => Err(format!("{:?} is not an event record id", cursor.after)),
        }
    }
}

/// Where a record id points: its kind, commit batch and line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordLocation {
    /// Event or response.
    pub kind: RecordKind,
    /// The commit batch (its time names the partition).
    pub batch: Uuid,
    /// The batch object (on S3 the object itself; on disk the segment that
    /// holds the batch is named by this or an earlier batch of the same hour).
    pub key: ObjectKey,
    /// The 0-based line within the batch.
    pub line: usize,
}

/// Where record `id` (made by [`crate::record::record_id`]) is stored;
/// `None` for anything that is not exactly such an id.
pub fn parse_record_id(id: &str) -> Option<RecordLocation> {
    let RecordId { kind, batch, line } = RecordId::parse(id)?;
    Some(RecordLocation {
        kind,
        batch,
        key: batch_key(kind, &batch),
        line,
    })
}

/// What a listed key is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyKind {
    /// A batch of records.
    Batch(RecordKind, Uuid),
    /// A session recording.
    Session(Uuid),
}

/// Parses a key of one of the shapes above; `None` for anything else.
pub fn parse_key(key: &str) -> Option<(ObjectKey, KeyKind)> {
    let parts: Vec<&str> = key.split('/').collect();
    match parts.as_slice() {
        [folder, _date, _hour, file] if *folder == "events" || *folder == "responses" => {
            let kind = if *folder == "events" {
                RecordKind::Event
            } else {
                RecordKind::Response
            };
            let id = parse_simple_uuid(file.strip_suffix(".ndjson")?)?;
            let expected = batch_key(kind, &id);
            (expected.as_str() == key).then_some((expected, KeyKind::Batch(kind, id)))
        }
        [folder, _date, file] if *folder == SESSIONS => {
            let id = parse_simple_uuid(file.strip_suffix(".cast")?)?;
            let expected = session_key(&id);
            (expected.as_str() == key).then_some((expected, KeyKind::Session(id)))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{new_id, record_id};

    #[test]
    fn ids_round_trip_to_their_objects() {
        let batch = new_id();
        let id = record_id(RecordKind::Event, &batch, 17);
        let loc = parse_record_id(&id).unwrap();
        assert_eq!(loc.key, batch_key(RecordKind::Event, &batch));
        assert_eq!(loc.line, 17);
        assert_eq!(loc.batch, batch);
        assert_eq!(
            format!(
                "{}/{}.ndjson",
                partition(RecordKind::Event, &batch),
                batch.simple()
            ),
            loc.key.as_str()
        );
        assert!(loc.key.as_str().starts_with("events/date="));
        assert_eq!(
            parse_key(loc.key.as_str()).unwrap().1,
            KeyKind::Batch(RecordKind::Event, batch)
        );
        let s = new_id();
        let key = session_key(&s);
        assert_eq!(parse_key(key.as_str()).unwrap().1, KeyKind::Session(s));
    }

    #[test]
    fn hostile_ids_are_rejected() {
        for bad in [
            "",
            "e-../../etc-1",
            "x-0-1",
            "e-0193-1",
            "e-ABCDEF-1",
            "e-00000000000000000000000000000000-1",
        ] {
            assert!(parse_record_id(bad).is_none(), "{bad}");
        }
        assert!(parse_key("sessions/../x.cast").is_none());
        assert!(parse_key("events/date=2026-01-01/hour=00/x.ndjson").is_none());
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics_and_only_accepts_own_shapes(s in "\\PC{0,80}") {
            if let Some(loc) = parse_record_id(&s) {
                proptest::prop_assert!(!loc.key.as_str().contains(".."));
            }
            if let Some((key, _)) = parse_key(&s) {
                proptest::prop_assert_eq!(key.as_str(), s.as_str());
            }
        }
    }
}
