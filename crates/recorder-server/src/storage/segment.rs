//! Record segments on disk: every group commit is appended to an open
//! per-hour segment file and made durable with one `fdatasync`.
//!
//! * A segment is `events/date=…/hour=…/<batch>.ndjson` (or `responses/…`),
//!   named after the first commit batch it holds (a recorder-generated
//!   UUIDv7), so the layout and the key shapes stay those of
//!   the layout module. It holds only batches of its own hour.
//! * Each record kind has [`LANES`] lanes, each with at most one open segment
//!   and at most one commit writing or syncing at a time. Two lanes let one
//!   commit's `fdatasync` overlap the next commit's (the file system joins
//!   them in one journal commit), while every segment still has a single
//!   writer, so an `fsync` error is always seen by the commit it concerns.
//! * A commit is durable once its bytes are written and `fdatasync` has
//!   returned; the directory is fsynced when a segment file is created, so its
//!   entry is durable before the first acknowledgement.
//! * A segment is closed (and made read-only: "sealed") when its hour ends,
//!   when it reaches the size limit, or when a write or sync fails (then it is
//!   abandoned and the next commit starts a new one). Segments are never
//!   reopened for appending: a restarted recorder starts new ones.
//! * A segment left open by a crash may end in bytes that were never
//!   acknowledged: a torn last line, or NUL bytes after a power loss.
//!   [`recover`] cuts every unsealed segment back to its last complete line
//!   before the first NUL (JSON lines never contain a raw NUL) and seals it.
//!   Like session recovery, this assumes one recorder per directory.

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, TryLockError};

use bytes::Bytes;
use uuid::Uuid;

use super::fs::{fsync_dir, io_err, open_rw, walk_files};
use super::layout::{self, KeyKind};
use super::StorageError;
use crate::record::{unix_millis, RecordKind};

/// Lanes per record kind (commits that may be in flight at once).
pub(super) const LANES: usize = 2;

/// Default size at which a segment is closed and the next one started.
pub(super) const DEFAULT_SEGMENT_MAX_BYTES: u64 = 64 * 1024 * 1024;

#[derive(Debug)]
struct OpenSegment {
    partition: String,
    path: PathBuf,
    file: File,
    len: u64,
    /// When its first batch was made (Unix milliseconds).
    first_ms: i64,
}

/// A segment that will never be written again, for a caller that moves
/// closed segments elsewhere (the batched S3 back end ships them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Closed {
    /// The segment file.
    pub(super) path: PathBuf,
    /// `Some(len)`: abandoned after a failed write or sync, not sealed; its
    /// acknowledged records end at `len` (see [`seal_abandoned`]).
    pub(super) abandoned: Option<u64>,
}

/// The open segments of one storage root.
#[derive(Debug)]
pub(super) struct Segments {
    lanes: Vec<Mutex<Option<OpenSegment>>>,
    per_kind: usize,
    max_bytes: u64,
    /// Segments are closed once their first batch is this old.
    max_age_ms: Option<i64>,
    /// Segments closed since the last [`Segments::take_closed`], when tracked.
    closed: Option<Mutex<Vec<Closed>>>,
}

fn kind_index(kind: RecordKind) -> usize {
    match kind {
        RecordKind::Event => 0,
        RecordKind::Response => 1,
    }
}

/// Makes a segment read-only: it is complete and durable, recovery skips it.
fn seal(file: &File, path: &Path) {
    let result = file.metadata().and_then(|meta| {
        let mut permissions = meta.permissions();
        permissions.set_readonly(true);
        file.set_permissions(permissions)
    });
    if let Err(e) = result {
        // Only costs a scan at the next start.
        tracing::warn!(file = %path.display(), error = %e, "could not mark a closed segment read-only");
    }
}

impl Segments {
    /// No open segments yet; `lanes` per record kind; segments close at `max_bytes`.
    pub(super) fn new(max_bytes: u64, lanes: usize) -> Self {
        let per_kind = lanes.max(1);
        Self {
            lanes: (0..2 * per_kind).map(|_| Mutex::new(None)).collect(),
            per_kind,
            max_bytes: max_bytes.max(1),
            max_age_ms: None,
            closed: None,
        }
    }

    /// Closes every segment once its first batch is `max_age` old too (at its
    /// next commit, or by [`Segments::close_aged`]), and keeps a list of the
    /// segments closed for [`Segments::take_closed`].
    pub(super) fn with_max_age(mut self, max_age: std::time::Duration) -> Self {
        self.max_age_ms = Some(i64::try_from(max_age.as_millis()).unwrap_or(i64::MAX));
        self.closed = Some(Mutex::new(Vec::new()));
        self
    }

    fn note_closed(&self, path: &Path, abandoned: Option<u64>) {
        if let Some(closed) = &self.closed {
            closed
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(Closed {
                    path: path.to_path_buf(),
                    abandoned,
                });
        }
    }

    fn close(&self, segment: OpenSegment) {
        seal(&segment.file, &segment.path);
        self.note_closed(&segment.path, None);
    }

    fn aged(&self, open: &OpenSegment, now_ms: i64) -> bool {
        self.max_age_ms
            .is_some_and(|age| now_ms.saturating_sub(open.first_ms) >= age)
    }

    /// The segments closed (or abandoned) since the last call, oldest first.
    pub(super) fn take_closed(&self) -> Vec<Closed> {
        match &self.closed {
            Some(closed) => std::mem::take(&mut *closed.lock().unwrap_or_else(|p| p.into_inner())),
            None => Vec::new(),
        }
    }

    /// Closes the idle segments whose first batch is at least `max_age`
    /// old at `now_ms` (a lane busy with a commit is passed over: that commit
    /// closes it when it is due). Returns how many it closed.
    pub(super) fn close_aged(&self, now_ms: i64) -> usize {
        let mut n = 0;
        for lane in &self.lanes {
            let Ok(mut idle) = lane.try_lock() else {
                continue;
            };
            if idle.as_ref().is_some_and(|o| self.aged(o, now_ms)) {
                if let Some(closed) = idle.take() {
                    self.close(closed);
                    n += 1;
                }
            }
        }
        n
    }

    /// Lanes per record kind.
    pub(super) fn lanes(&self) -> usize {
        self.per_kind
    }

    /// A free lane of `kind` (or, if all are busy, waits for the first).
    fn lane(&self, kind: RecordKind) -> MutexGuard<'_, Option<OpenSegment>> {
        let first = kind_index(kind) * self.per_kind;
        let lanes = &self.lanes[first..first + self.per_kind];
        for lane in lanes {
            match lane.try_lock() {
                Ok(guard) => return guard,
                Err(TryLockError::Poisoned(p)) => return p.into_inner(),
                Err(TryLockError::WouldBlock) => {}
            }
        }
        lanes[0].lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Closes the segments of idle `kind` lanes that belong to an earlier
    /// partition than `partition` (their hour is over).
    fn seal_idle_lanes(&self, kind: RecordKind, partition: &str) {
        let first = kind_index(kind) * self.per_kind;
        for lane in &self.lanes[first..first + self.per_kind] {
            // The caller's own lane is locked: `try_lock` skips it.
            let Ok(mut idle) = lane.try_lock() else {
                continue;
            };
            if idle.as_ref().is_some_and(|o| o.partition != partition) {
                if let Some(closed) = idle.take() {
                    self.close(closed);
                }
            }
        }
    }

    /// Appends the `kind` records of commit `batch` and returns once they are
    /// durable. `create` makes the directory of a new segment (durably).
    pub(super) fn append(
        &self,
        root: &Path,
        kind: RecordKind,
        batch: &Uuid,
        data: &[u8],
        create_dir: impl FnOnce(&Path) -> Result<(), StorageError>,
    ) -> Result<(), StorageError> {
        let partition = layout::partition(kind, batch);
        let mut lane = self.lane(kind);
        if let Some(open) = lane.as_ref() {
            let full = open.len > 0 && open.len + data.len() as u64 > self.max_bytes;
            if open.partition != partition || full || self.aged(open, unix_millis(batch)) {
                if let Some(closed) = lane.take() {
                    self.close(closed);
                }
            }
        }
        let open = match lane.as_mut() {
            Some(open) => open,
            None => {
                self.seal_idle_lanes(kind, &partition);
                lane.insert(create(root, kind, batch, partition, create_dir)?)
            }
        };
        if let Err(e) = open.file.write_all(data) {
            // Take back the partial write so the segment ends in whole lines,
            // then abandon it.
            let _ = open.file.set_len(open.len);
            let err = io_err("append to segment", &open.path)(e);
            self.note_closed(&open.path, Some(open.len));
            *lane = None;
            return Err(err);
        }
        if let Err(e) = open.file.sync_data() {
            // After a failed fsync the page cache cannot be trusted: never
            // write to this segment again (recovery checks it at the next start).
            let err = io_err("fdatasync segment", &open.path)(e);
            self.note_closed(&open.path, Some(open.len));
            *lane = None;
            return Err(err);
        }
        open.len += data.len() as u64;
        Ok(())
    }
}

fn create(
    root: &Path,
    kind: RecordKind,
    batch: &Uuid,
    partition: String,
    create_dir: impl FnOnce(&Path) -> Result<(), StorageError>,
) -> Result<OpenSegment, StorageError> {
    let key = layout::batch_key(kind, batch);
    let path = root.join(key.as_str());
    let dir = root.join(&partition);
    create_dir(&dir)?;
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(io_err("create segment", &path))?;
    fsync_dir(&dir)?;
    Ok(OpenSegment {
        partition,
        path,
        file,
        len: 0,
        first_ms: unix_millis(batch),
    })
}

/// Seals a segment abandoned after a failed write or sync: cut back to
/// `len`, its acknowledged records (what came after was never acknowledged),
/// synced, made read-only.
pub(super) fn seal_abandoned(path: &Path, len: u64) -> Result<(), StorageError> {
    if len == 0 {
        // Nothing in it was ever acknowledged.
        return match fs::remove_file(path) {
            Ok(()) => path.parent().map_or(Ok(()), fsync_dir),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err("remove empty segment", path)(e)),
        };
    }
    let (file, size) = open_rw(path, "open segment", "stat segment")?;
    if size > len {
        file.set_len(len)
            .map_err(io_err("truncate segment", path))?;
    }
    file.sync_all().map_err(io_err("fsync segment", path))?;
    seal(&file, path);
    Ok(())
}

/// Where an unsealed segment's acknowledged data ends: after its last `\n`
/// before the first NUL byte (or the end).
fn valid_prefix(file: &mut File, path: &Path) -> Result<u64, StorageError> {
    let mut buf = vec![0u8; 1024 * 1024];
    let mut offset = 0u64;
    let mut keep = 0u64;
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => return Ok(keep),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_err("read segment", path)(e)),
        };
        let chunk = &buf[..n];
        let clean = chunk.iter().position(|b| *b == 0);
        let scan = &chunk[..clean.unwrap_or(n)];
        if let Some(p) = scan.iter().rposition(|b| *b == b'\n') {
            keep = offset + p as u64 + 1;
        }
        if clean.is_some() {
            return Ok(keep);
        }
        offset += n as u64;
    }
}

/// What [`recover`] did to one segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Recovered {
    /// Cut back to this many bytes.
    Truncated(u64),
    /// Held no complete line and was removed.
    Removed,
}

/// Cuts one unsealed segment back to its acknowledged prefix and seals it;
/// `None` if it was intact.
fn recover_one(path: &Path) -> Result<Option<Recovered>, StorageError> {
    let (mut file, len) = open_rw(path, "open segment", "stat segment")?;
    let keep = valid_prefix(&mut file, path)?;
    let outcome = if keep == 0 {
        drop(file);
        fs::remove_file(path).map_err(io_err("remove empty segment", path))?;
        if let Some(dir) = path.parent() {
            fsync_dir(dir)?;
        }
        return Ok(Some(Recovered::Removed));
    } else if keep < len {
        file.set_len(keep)
            .map_err(io_err("truncate segment", path))?;
        file.sync_all().map_err(io_err("fsync segment", path))?;
        Some(Recovered::Truncated(keep))
    } else {
        None
    };
    seal(&file, path);
    Ok(outcome)
}

/// Checks every unsealed segment under `root` (see the module doc) and
/// returns the ones it had to repair, as paths relative to `root`.
pub(super) fn recover(root: &Path) -> Result<Vec<(String, Recovered)>, StorageError> {
    let mut repaired = Vec::new();
    for kind in [RecordKind::Event, RecordKind::Response] {
        walk_files(
            &root.join(layout::folder(kind)),
            |_| false,
            |path, name, meta| {
                if name.starts_with('.')
                    || !name.ends_with(".ndjson")
                    || meta.permissions().readonly()
                {
                    return Ok(());
                }
                if let Some(outcome) = recover_one(&path)? {
                    let rel = path
                        .strip_prefix(root)
                        .map(|p| p.display().to_string())
                        .unwrap_or_else(|_| path.display().to_string());
                    repaired.push((rel, outcome));
                }
                Ok(())
            },
        )?;
    }
    Ok(repaired)
}

/// Whether `prefix` (a line up to its first comma) is exactly
/// `{"type":"<t>",`, the head of every stored record.
fn is_record_head(prefix: &[u8]) -> bool {
    prefix.starts_with(b"{\"type\":\"")
        && prefix.ends_with(b"\",")
        && prefix.iter().filter(|b| **b == b'"').count() == 4
}

/// The needle [`is_line_of`] looks for: `"id":"<id>"`.
pub(super) fn id_needle(id: &str) -> Vec<u8> {
    format!("\"id\":\"{id}\"").into_bytes()
}

/// Whether `line` is the stored record whose [`id_needle`] is `needle`: a
/// record's own id is the key right after its `type`.
pub(super) fn is_line_of(line: &[u8], needle: &[u8]) -> bool {
    let Some(comma) = line.iter().position(|b| *b == b',') else {
        return false;
    };
    is_record_head(&line[..=comma]) && line[comma + 1..].starts_with(needle)
}

/// The line of record `id` (of `kind`, committed in `batch`): searched in the
/// segments of the batch's hour named by `batch` or an earlier batch, newest
/// first.
pub(super) fn read_record(
    root: &Path,
    kind: RecordKind,
    batch: &Uuid,
    id: &str,
) -> Result<Option<Bytes>, StorageError> {
    let partition = layout::partition(kind, batch);
    let dir = root.join(&partition);
    let entries = match fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err("list directory", &dir)(e)),
    };
    let mut candidates = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_err("list directory", &dir))?;
        let key = format!("{partition}/{}", entry.file_name().to_string_lossy());
        if let Some((_, KeyKind::Batch(k, first))) = layout::parse_key(&key) {
            if k == kind && first <= *batch {
                candidates.push((first, entry.path()));
            }
        }
    }
    candidates.sort_by_key(|c| std::cmp::Reverse(c.0));
    // Read line by line: memory stays at one line (bounded by the ingest
    // limit), whatever the segment's size.
    let own_id = id_needle(id);
    let mut line = Vec::new();
    for (_, path) in candidates {
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_err("open segment", &path)(e)),
        };
        let mut reader = BufReader::with_capacity(256 * 1024, file);
        loop {
            line.clear();
            let n = reader
                .read_until(b'\n', &mut line)
                .map_err(io_err("read segment", &path))?;
            if n == 0 || line.last() != Some(&b'\n') {
                break; // the end, or a line still being written
            }
            if is_line_of(&line, &own_id) {
                line.pop();
                return Ok(Some(Bytes::from(std::mem::take(&mut line))));
            }
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_head() {
        assert!(is_record_head(b"{\"type\":\"kubernetes-api-request\","));
        assert!(!is_record_head(b"{\"type\":\"x\",\"kubescribe\":{"));
    }

    fn batch_at(secs: u64) -> Uuid {
        Uuid::new_v7(uuid::Timestamp::from_unix(uuid::NoContext, secs, 0))
    }

    fn readonly(root: &Path, kind: RecordKind, batch: &Uuid) -> bool {
        let path = root.join(layout::batch_key(kind, batch).as_str());
        fs::metadata(path).unwrap().permissions().readonly()
    }

    #[test]
    fn the_hours_first_commit_closes_every_idle_lane_of_the_last_hour() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let segments = Segments::new(DEFAULT_SEGMENT_MAX_BYTES, 2);
        let mkdir = |d: &Path| fs::create_dir_all(d).map_err(io_err("mkdir", d));
        let kind = RecordKind::Event;
        // 2026-11-28 10:59:00 and 10:59:01 in two lanes, then 11:00:00.
        let (a, b, c) = (
            batch_at(1_795_863_540),
            batch_at(1_795_863_541),
            batch_at(1_795_863_600),
        );
        segments.append(root, kind, &a, b"{}\n", mkdir).unwrap();
        {
            let _busy = segments.lanes[0].lock().unwrap();
            segments.append(root, kind, &b, b"{}\n", mkdir).unwrap();
        }
        assert!(!readonly(root, kind, &a) && !readonly(root, kind, &b));
        segments.append(root, kind, &c, b"{}\n", mkdir).unwrap();
        assert!(readonly(root, kind, &a), "rolled over");
        assert!(
            readonly(root, kind, &b),
            "idle lane of the last hour closed"
        );
        assert!(!readonly(root, kind, &c));
    }

    #[test]
    fn a_log_closes_segments_by_age_and_lists_what_it_closed() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let segments = Segments::new(DEFAULT_SEGMENT_MAX_BYTES, 1)
            .with_max_age(std::time::Duration::from_secs(10));
        let mkdir = |d: &Path| fs::create_dir_all(d).map_err(io_err("mkdir", d));
        // 2026-11-28 10:00:00, then 10:00:05 (same segment), then 10:00:11 (a new one).
        let (a, b, c) = (
            batch_at(1_795_860_000),
            batch_at(1_795_860_005),
            batch_at(1_795_860_011),
        );
        segments
            .append(root, RecordKind::Event, &a, b"{}\n", mkdir)
            .unwrap();
        segments
            .append(root, RecordKind::Event, &b, b"{}\n", mkdir)
            .unwrap();
        assert!(segments.take_closed().is_empty());
        segments
            .append(root, RecordKind::Event, &c, b"{}\n", mkdir)
            .unwrap();
        let closed = segments.take_closed();
        let first = root.join(layout::batch_key(RecordKind::Event, &a).as_str());
        assert_eq!(
            closed,
            vec![Closed {
                path: first.clone(),
                abandoned: None
            }]
        );
        assert!(readonly(root, RecordKind::Event, &a));
        assert_eq!(fs::read(&first).unwrap(), b"{}\n{}\n");
        // Idle: closed once of age, not before.
        assert_eq!(segments.close_aged(1_795_860_020_000), 0);
        assert_eq!(segments.close_aged(1_795_860_021_000), 1);
        assert!(readonly(root, RecordKind::Event, &c));
        assert_eq!(segments.take_closed().len(), 1);
    }

    #[test]
    fn an_abandoned_segment_is_cut_back_to_its_acknowledged_records() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.ndjson");
        fs::write(&path, b"{\"a\":1}\n{\"a\":2}\n{\"a\"").unwrap();
        seal_abandoned(&path, 8).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"{\"a\":1}\n");
        assert!(fs::metadata(&path).unwrap().permissions().readonly());
        let empty = dir.path().join("e.ndjson");
        fs::write(&empty, b"{\"a\"").unwrap();
        seal_abandoned(&empty, 0).unwrap();
        assert!(!empty.exists());
    }

    #[test]
    fn valid_prefix_stops_at_the_first_nul() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.ndjson");
        fs::write(&path, b"{\"a\":1}\n{\"a\":2}\n\0\0\0{\"a\":3}\n{\"a\"").unwrap();
        let mut file = File::open(&path).unwrap();
        assert_eq!(valid_prefix(&mut file, &path).unwrap(), 16);
    }
}
