//! A bounded on-disk spool for records no recorder accepted, so that fail
//! open loses nothing while a recorder is down. It exists only when
//! [`ClientConfig::spool`](crate::ClientConfig::spool) is set (the proxy
//! sets it by default, in its state directory; `--spool-dir none` turns it
//! off); without it such records are dropped and counted
//! (`records_dropped_total{reason="no_spool"}`).
//!
//! # Layout
//!
//! A directory holds segment files `seg-<20-digit sequence>.ksp` (format in
//! [`format`]) and a `cursor` file naming the next record to redeliver
//! (`<segment sequence> <byte offset>`, replaced atomically by rename).
//! Records are appended to the newest segment only; a new segment is started
//! when the current one reaches [`SpoolConfig::segment_bytes`] and on every
//! open, so a torn tail left by a crash is never appended to. Segments whose
//! records have all been redelivered are deleted.
//!
//! # Durability (fsync policy)
//!
//! With [`FsyncPolicy::Always`] (the default) an append returns only after
//! `fdatasync` of the segment (and of the directory for a new segment), and
//! the cursor is synced after each redelivery: a record reported spooled
//! survives power loss. Appends are group-committed: concurrent appenders
//! write their records, then one of them syncs for all, so a burst of
//! fail-open requests costs one `fdatasync` per group, not one each. With [`FsyncPolicy::Never`] records survive a crash
//! of the proxy but not of the machine. Either way a crash may repeat
//! records already redelivered (the cursor lags by at most one batch); the
//! recorder drops them by idempotency key, so delivery is at least once and
//! storage exactly once.
//!
//! # Queued first deliveries
//!
//! With [`FailOpenDelivery::Queued`](crate::FailOpenDelivery::Queued) (the
//! proxy's default) the spool is also the queue of first deliveries: a
//! fail-open event, and every response record and refused event, is written
//! here before anyone waits on it (written, not synced, so
//! it survives the proxy's crash at no `fdatasync` per request) and
//! delivered by the redelivery task in batches, in order. That task syncs the
//! spool before it waits on a recorder that did not take a
//! batch, and on shutdown: a record is unsynced only until a recorder has
//! taken it or a delivery has failed (a power loss in that window, usually
//! milliseconds, can lose it; a crash of the process cannot). Such records
//! count in `records_spooled_total` and,
//! once delivered, `records_redelivered_total`.
//!
//! # At shutdown
//!
//! When the client shuts down, the redelivery task goes on delivering what
//! the spool holds for up to [`SpoolConfig::shutdown_drain`], while
//! recorders take it, so that a replica being replaced (a rollout, a
//! scale-down) leaves nothing behind on a volume that may go with it. What is
//! left then (no recorder answered, or the time ran out) is synced and
//! logged with its count; a process started later on the same directory
//! delivers it.
//!
//! # Redelivery order
//!
//! [`Spool::peek`] hands out consecutive records with the same recorder
//! addresses, whatever their kind (events, response records and events of
//! refused requests interleave, and the recorder's batch endpoint takes them
//! all), up to [`SpoolConfig::redeliver_batch`] records and
//! [`SpoolConfig::redeliver_batch_bytes`] bytes.
//!
//! # When full
//!
//! The spool never exceeds [`SpoolConfig::max_bytes`] of segment files.
//! [`SpoolFullPolicy::DropOldest`] deletes the oldest segment (counting its
//! undelivered records in `records_dropped_total{reason="spool_full_oldest"}`
//! and logging each such drop) until the new record fits;
//! [`SpoolFullPolicy::Refuse`] keeps what is spooled and drops the new record
//! instead (`records_dropped_total{reason="spool_full"}`). Under fail open the
//! request is forwarded in both cases: the spool never turns fail open into
//! fail closed. A record larger than the whole spool is dropped
//! (`reason="too_large"`).

pub mod format;

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

pub use format::{RecordKind, SpoolRecord};

use crate::metrics::Metrics;
use crate::policy::DropReason;
use format::{ReadOutcome, SEGMENT_MAGIC};

/// Where the spool lives and how it behaves.
#[derive(Debug, Clone)]
pub struct SpoolConfig {
    /// The spool directory (created if missing). One proxy process per directory.
    pub dir: PathBuf,
    /// Upper bound on the bytes of all segment files. Default 256 MiB.
    pub max_bytes: u64,
    /// A new segment is started once the current one is this large. Also the
    /// granularity of [`SpoolFullPolicy::DropOldest`]. Default 4 MiB.
    pub segment_bytes: u64,
    /// What to do when a record does not fit. Default drop oldest.
    pub full_policy: SpoolFullPolicy,
    /// When to fsync. Default [`FsyncPolicy::Always`].
    pub fsync: FsyncPolicy,
    /// First wait before retrying redelivery after a failure. Default 250 ms.
    pub retry_min: Duration,
    /// Longest wait between redelivery attempts (the wait doubles up to it).
    /// Default 30 s.
    pub retry_max: Duration,
    /// Most records redelivered in one batch (one `POST /v2/events`).
    /// Default 1024.
    pub redeliver_batch: usize,
    /// Most body bytes redelivered in one batch; a record larger than this
    /// goes alone. Keep it below the recorder's `--max-batch-bytes` (64 MiB).
    /// Default 8 MiB.
    pub redeliver_batch_bytes: usize,
    /// At shutdown, how long the redelivery task goes on delivering what the
    /// spool holds (while recorders take it) before it stops. What is left
    /// stays in the spool, synced, for the next process on this directory.
    /// Default 10 s.
    pub shutdown_drain: Duration,
}

impl SpoolConfig {
    /// The defaults, in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            max_bytes: 256 << 20,
            segment_bytes: 4 << 20,
            full_policy: SpoolFullPolicy::DropOldest,
            fsync: FsyncPolicy::Always,
            retry_min: Duration::from_millis(250),
            retry_max: Duration::from_secs(30),
            redeliver_batch: 1024,
            redeliver_batch_bytes: 8 << 20,
            shutdown_drain: Duration::from_secs(10),
        }
    }
}

/// What happens to a record that does not fit into a full spool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpoolFullPolicy {
    /// `drop-oldest`: delete the oldest segment to make room (newest records win).
    DropOldest,
    /// `refuse`: the spool refuses the new record, which is dropped (oldest
    /// records win). The request itself is still forwarded under fail open.
    Refuse,
}

impl FromStr for SpoolFullPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_named(
            "spool-full policy",
            s,
            &[
                ("drop-oldest", SpoolFullPolicy::DropOldest),
                ("refuse", SpoolFullPolicy::Refuse),
            ],
        )
    }
}

/// When the spool calls fsync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// `always`: after every append and every cursor update.
    Always,
    /// `never`: leave it to the OS (survives a process crash, not power loss).
    Never,
}

impl FromStr for FsyncPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_named(
            "fsync policy",
            s,
            &[
                ("always", FsyncPolicy::Always),
                ("never", FsyncPolicy::Never),
            ],
        )
    }
}

/// The choice named `name`, or a message saying which names there are.
fn parse_named<T: Copy>(what: &str, name: &str, choices: &[(&str, T)]) -> Result<T, String> {
    match choices.iter().find(|(known, _)| *known == name) {
        Some((_, choice)) => Ok(*choice),
        None => {
            let names: Vec<String> = choices
                .iter()
                .map(|(known, _)| format!("{known:?}"))
                .collect();
            Err(format!(
                "unknown {what} {name:?}; expected {}",
                names.join(" or ")
            ))
        }
    }
}

/// A position in the spool: segment sequence and byte offset in its file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Position {
    seq: u64,
    offset: u64,
}

/// Records read from the spool, not yet committed as delivered.
#[derive(Debug)]
pub(crate) struct Peeked {
    /// Where the first record starts.
    pub(crate) start: Position,
    /// Where the record after the last one starts.
    pub(crate) end: Position,
    /// The records, in spool order.
    pub(crate) records: Vec<SpoolRecord>,
}

#[derive(Debug)]
struct Segment {
    seq: u64,
    /// End of the valid records (a torn tail after it is skipped).
    valid: u64,
    /// Bytes on disk, torn tail included.
    disk: u64,
    /// Valid records in the segment.
    records: u64,
}

struct State {
    segments: VecDeque<Segment>,
    /// The newest segment's file, the only one appended to. Shared with the
    /// appender that syncs a group of appends outside the state lock.
    active: Arc<File>,
    read: Position,
    /// Records before `read` in the reader's segment.
    consumed_in_read_seg: u64,
    pending: u64,
    bytes: u64,
    reader: Option<(u64, File)>,
}

/// The spool. All methods do blocking file I/O: call them from
/// `spawn_blocking` in async code.
pub(crate) struct Spool {
    cfg: SpoolConfig,
    state: Mutex<State>,
    /// Everything written up to here is synced (group commit). Taken before
    /// `state` when both are held.
    durable: Mutex<Position>,
    metrics: Metrics,
}

fn seg_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("seg-{seq:020}.ksp"))
}

fn parse_seg_name(name: &str) -> Option<u64> {
    name.strip_prefix("seg-")?
        .strip_suffix(".ksp")?
        .parse()
        .ok()
}

impl Spool {
    /// Opens (or creates) the spool in `cfg.dir`, recovering what a previous
    /// process left: every valid record after the cursor is pending again; a
    /// torn segment tail is skipped.
    pub(crate) fn open(cfg: SpoolConfig, metrics: Metrics) -> io::Result<Self> {
        if cfg.segment_bytes < 64 || cfg.max_bytes < cfg.segment_bytes {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "spool max_bytes must be at least segment_bytes, and segment_bytes at least 64",
            ));
        }
        fs::create_dir_all(&cfg.dir)?;
        let mut seqs = Vec::new();
        for entry in fs::read_dir(&cfg.dir)? {
            let entry = entry?;
            if let Some(seq) = entry.file_name().to_str().and_then(parse_seg_name) {
                seqs.push(seq);
            }
        }
        seqs.sort_unstable();
        let cursor = read_cursor(&cfg.dir);
        let mut segments = VecDeque::new();
        let mut read = None;
        let mut consumed_in_read_seg = 0;
        let mut pending = 0;
        for seq in &seqs {
            let path = seg_path(&cfg.dir, *seq);
            let (seg, offsets) = scan_segment(&path, *seq)?;
            let start = match cursor {
                Some(c) if c.seq > *seq => u64::MAX,
                Some(c) if c.seq == *seq => c.offset.max(SEGMENT_MAGIC.len() as u64),
                _ => SEGMENT_MAGIC.len() as u64,
            };
            let unconsumed = offsets.iter().filter(|o| **o >= start).count() as u64;
            if unconsumed == 0 {
                fs::remove_file(&path)?;
                continue;
            }
            if read.is_none() {
                // Start at the first record at or after the cursor.
                let first = offsets
                    .iter()
                    .copied()
                    .find(|o| *o >= start)
                    .unwrap_or(start);
                read = Some(Position {
                    seq: *seq,
                    offset: first,
                });
                consumed_in_read_seg = seg.records - unconsumed;
            }
            pending += unconsumed;
            if let Some(torn) = &offsets_torn_note(&seg) {
                tracing::warn!(segment = %path.display(), "spool segment has a torn tail after {torn} bytes; skipping it");
            }
            segments.push_back(seg);
        }
        let next_seq = seqs.last().map_or(1, |s| s + 1);
        let active = create_segment(&cfg.dir, next_seq, cfg.fsync)?;
        segments.push_back(Segment {
            seq: next_seq,
            valid: SEGMENT_MAGIC.len() as u64,
            disk: SEGMENT_MAGIC.len() as u64,
            records: 0,
        });
        let read = read.unwrap_or(Position {
            seq: next_seq,
            offset: SEGMENT_MAGIC.len() as u64,
        });
        let bytes = segments.iter().map(|s| s.disk).sum();
        let spool = Spool {
            cfg,
            durable: Mutex::new(Position {
                seq: next_seq,
                offset: SEGMENT_MAGIC.len() as u64,
            }),
            state: Mutex::new(State {
                segments,
                active: Arc::new(active),
                read,
                consumed_in_read_seg,
                pending,
                bytes,
                reader: None,
            }),
            metrics,
        };
        {
            let st = spool.lock();
            spool.metrics.spool_size(st.bytes, st.pending);
            if st.pending > 0 {
                tracing::info!(
                    dir = %spool.cfg.dir.display(),
                    records = st.pending,
                    "spool holds records from a previous run; redelivering them"
                );
            }
        }
        Ok(spool)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves consistent-enough state (every
        // mutation is ordered so that a partial one only loses accounting).
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The spool's configuration.
    pub(crate) fn config(&self) -> &SpoolConfig {
        &self.cfg
    }

    /// Records waiting for redelivery.
    pub(crate) fn pending(&self) -> u64 {
        self.lock().pending
    }

    /// Bytes of segment files on disk.
    #[cfg(test)]
    pub(crate) fn bytes(&self) -> u64 {
        self.lock().bytes
    }

    /// Appends `record`, making room per the full policy. `Ok` means the
    /// record is in the spool (and synced under [`FsyncPolicy::Always`]).
    pub(crate) fn append(&self, record: &SpoolRecord) -> Result<(), DropReason> {
        self.append_synced(record, self.cfg.fsync == FsyncPolicy::Always)
    }

    /// Appends `record` for its first delivery (fail open, queued): written,
    /// so it survives the proxy's crash, but not synced, so it costs the
    /// request no `fdatasync`. The redelivery task [`sync`](Self::sync)s the
    /// spool before it waits on a recorder that did not take a batch, so a
    /// record is unsynced only until a recorder has taken it or a delivery
    /// has failed.
    pub(crate) fn queue(&self, record: &SpoolRecord) -> Result<(), DropReason> {
        self.append_synced(record, false)
    }

    /// Syncs every record appended so far (under [`FsyncPolicy::Always`];
    /// a no-op under [`FsyncPolicy::Never`]).
    pub(crate) fn sync(&self) -> io::Result<()> {
        if self.cfg.fsync != FsyncPolicy::Always {
            return Ok(());
        }
        let end = {
            let st = self.lock();
            let active = st.active_segment();
            Position {
                seq: active.seq,
                offset: active.valid,
            }
        };
        self.sync_to(end)
    }

    fn append_synced(&self, record: &SpoolRecord, sync: bool) -> Result<(), DropReason> {
        let frame = format::encode(record).map_err(|_| DropReason::TooLarge)?;
        let need = frame.len() as u64;
        let magic = SEGMENT_MAGIC.len() as u64;
        if need + magic > self.cfg.max_bytes {
            return Err(DropReason::TooLarge);
        }
        let written = {
            let mut st = self.lock();
            let st = &mut *st;
            // Start a new segment when the current one is full.
            let rotate = {
                let active = st.active_segment();
                active.records > 0 && active.valid + need > self.cfg.segment_bytes
            };
            if rotate {
                self.rotate(st).map_err(|e| DropReason::Io(e.to_string()))?;
            }
            while st.bytes + need > self.cfg.max_bytes {
                match self.cfg.full_policy {
                    SpoolFullPolicy::Refuse => return Err(DropReason::SpoolFull),
                    SpoolFullPolicy::DropOldest => {
                        if st.segments.len() == 1 {
                            // Only the active segment: retire it so it can go.
                            self.rotate(st).map_err(|e| DropReason::Io(e.to_string()))?;
                        }
                        self.drop_oldest(st)
                            .map_err(|e| DropReason::Io(e.to_string()))?;
                    }
                }
            }
            if let Err(e) = self.write_frame(st, &frame) {
                // The segment may now end in a partial record: never append
                // after it again. The reader stops at its last valid record.
                let reason = DropReason::Io(e.to_string());
                if let Err(e2) = self.rotate(st) {
                    tracing::error!(error = %e2, "spool cannot start a new segment after a write error");
                }
                return Err(reason);
            }
            st.pending += 1;
            self.metrics.spool_size(st.bytes, st.pending);
            let active = st.active_segment();
            Position {
                seq: active.seq,
                offset: active.valid,
            }
        };
        if sync {
            if let Err(e) = self.sync_to(written) {
                let mut st = self.lock();
                if let Err(e2) = self.rotate(&mut st) {
                    tracing::error!(error = %e2, "spool cannot start a new segment after a sync error");
                }
                return Err(DropReason::Io(e.to_string()));
            }
        }
        Ok(())
    }

    /// Returns once everything up to `written` is synced: the first appender
    /// to get here syncs the active segment for every record written so
    /// far; those queued behind it usually find their record covered.
    /// Older segments were synced when they were retired ([`Spool::rotate`]).
    fn sync_to(&self, written: Position) -> io::Result<()> {
        let mut durable = self
            .durable
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if *durable >= written {
            return Ok(());
        }
        let (file, upto) = {
            let st = self.lock();
            let active = st.active_segment();
            (
                st.active.clone(),
                Position {
                    seq: active.seq,
                    offset: active.valid,
                },
            )
        };
        file.sync_data()?;
        *durable = upto;
        Ok(())
    }

    fn write_frame(&self, st: &mut State, frame: &[u8]) -> io::Result<()> {
        // Synced by the appender afterwards (`sync_to`), not here.
        let result = (&*st.active).write_all(frame);
        let len = frame.len() as u64;
        let active = st.active_segment_mut();
        match result {
            Ok(()) => {
                active.valid += len;
                active.disk += len;
                active.records += 1;
                st.bytes += len;
                Ok(())
            }
            Err(e) => {
                // Account for whatever may have reached the disk.
                active.disk += len;
                st.bytes += len;
                Err(e)
            }
        }
    }

    /// Starts a new active segment. Under [`FsyncPolicy::Always`] the retired
    /// one is synced first, so a group commit only ever syncs the active one.
    fn rotate(&self, st: &mut State) -> io::Result<()> {
        if self.cfg.fsync == FsyncPolicy::Always {
            st.active.sync_data()?;
        }
        let seq = st.active_segment().seq + 1;
        st.active = Arc::new(create_segment(&self.cfg.dir, seq, self.cfg.fsync)?);
        let magic = SEGMENT_MAGIC.len() as u64;
        st.segments.push_back(Segment {
            seq,
            valid: magic,
            disk: magic,
            records: 0,
        });
        st.bytes += magic;
        Ok(())
    }

    fn drop_oldest(&self, st: &mut State) -> io::Result<()> {
        let Some(oldest) = st.segments.pop_front() else {
            return Ok(());
        };
        let lost = if oldest.seq == st.read.seq {
            oldest.records - st.consumed_in_read_seg
        } else if oldest.seq > st.read.seq {
            oldest.records
        } else {
            0
        };
        fs::remove_file(seg_path(&self.cfg.dir, oldest.seq))?;
        st.bytes -= oldest.disk;
        st.pending -= lost;
        if st.read.seq <= oldest.seq {
            if let Some(next) = st.segments.front() {
                st.read = Position {
                    seq: next.seq,
                    offset: SEGMENT_MAGIC.len() as u64,
                };
                st.consumed_in_read_seg = 0;
            }
        }
        if lost > 0 {
            tracing::warn!(
                records = lost,
                "spool full: dropped its oldest segment (policy drop-oldest)"
            );
            self.metrics.dropped("any", "spool_full_oldest", lost);
        }
        Ok(())
    }

    /// Reads up to `max` consecutive records (and `max_bytes` of bodies,
    /// though always at least one record) from the redelivery position that
    /// share the first one's recorder addresses, of any kind, without
    /// consuming them. `None` when nothing is pending.
    pub(crate) fn peek(&self, max: usize, max_bytes: usize) -> io::Result<Option<Peeked>> {
        let mut st = self.lock();
        let st = &mut *st;
        let max = max.max(1);
        let active_seq = st.active_segment().seq;
        let mut records: Vec<SpoolRecord> = Vec::new();
        let mut bytes = 0usize;
        let mut pos = st.read;
        let mut start = None;
        'segments: while records.len() < max {
            let Some(seg) = st.segments.iter().find(|s| s.seq == pos.seq) else {
                break;
            };
            let valid = seg.valid;
            if pos.offset >= valid {
                if pos.seq == active_seq {
                    break;
                }
                // Next segment.
                let Some(next) = st.segments.iter().find(|s| s.seq > pos.seq) else {
                    break;
                };
                pos = Position {
                    seq: next.seq,
                    offset: SEGMENT_MAGIC.len() as u64,
                };
                continue;
            }
            let file = match &mut st.reader {
                Some((seq, f)) if *seq == pos.seq => f,
                _ => {
                    let f = File::open(seg_path(&self.cfg.dir, pos.seq))?;
                    &mut st.reader.insert((pos.seq, f)).1
                }
            };
            file.seek(SeekFrom::Start(pos.offset))?;
            // One buffered read through this segment's run of records.
            let mut reader = BufReader::with_capacity(256 << 10, file.take(valid - pos.offset));
            loop {
                if records.len() >= max {
                    break 'segments;
                }
                match format::read_record(&mut reader)? {
                    ReadOutcome::Record(record, len) => {
                        if let Some(first) = records.first() {
                            if first.addrs != record.addrs || bytes + record.body.len() > max_bytes
                            {
                                break 'segments;
                            }
                        }
                        bytes += record.body.len();
                        start.get_or_insert(pos);
                        records.push(record);
                        pos.offset += len;
                    }
                    ReadOutcome::End => break,
                    ReadOutcome::Torn(_) => {
                        // Validated at open / written by us: only reachable if the
                        // file was changed behind our back. Skip the rest.
                        tracing::error!(
                            segment = pos.seq,
                            offset = pos.offset,
                            "spool segment unreadable past this offset; skipping its rest"
                        );
                        if let Some(seg) = st.segments.iter_mut().find(|s| s.seq == pos.seq) {
                            seg.valid = pos.offset;
                        }
                        break;
                    }
                }
            }
        }
        match start {
            Some(start) if !records.is_empty() => Ok(Some(Peeked {
                start,
                end: pos,
                records,
            })),
            _ => Ok(None),
        }
    }

    /// Marks the records of `peeked` as delivered: advances the cursor (and
    /// persists it), and deletes segments that are wholly delivered. Does
    /// nothing if those records were dropped meanwhile (full spool).
    pub(crate) fn commit(&self, peeked: &Peeked) -> io::Result<()> {
        let mut st = self.lock();
        let st = &mut *st;
        if st.read.seq > peeked.start.seq
            || (st.read.seq == peeked.start.seq && st.read.offset > peeked.start.offset)
        {
            return Ok(());
        }
        let n = peeked.records.len() as u64;
        if st.read.seq != peeked.end.seq {
            st.consumed_in_read_seg = 0;
        }
        // Count the records consumed in the end segment.
        let in_end_seg = if peeked.start.seq == peeked.end.seq {
            st.consumed_in_read_seg + n
        } else {
            // The batch crossed into a new segment: count its records there.
            count_records_between(&self.cfg.dir, peeked.end.seq, peeked.end.offset)?
        };
        st.read = peeked.end;
        st.consumed_in_read_seg = in_end_seg;
        st.pending = st.pending.saturating_sub(n);
        write_cursor(&self.cfg.dir, st.read, self.cfg.fsync)?;
        let active_seq = st.active_segment().seq;
        while let Some(front) = st.segments.front() {
            let done = front.seq < st.read.seq
                || (front.seq == st.read.seq
                    && front.seq != active_seq
                    && st.read.offset >= front.valid);
            if !done || front.seq == active_seq {
                break;
            }
            let path = seg_path(&self.cfg.dir, front.seq);
            st.bytes -= front.disk;
            if st.reader.as_ref().is_some_and(|(s, _)| *s == front.seq) {
                st.reader = None;
            }
            st.segments.pop_front();
            fs::remove_file(path)?;
        }
        if st.segments.front().is_some_and(|s| s.seq > st.read.seq) {
            if let Some(front) = st.segments.front() {
                st.read = Position {
                    seq: front.seq,
                    offset: SEGMENT_MAGIC.len() as u64,
                };
                st.consumed_in_read_seg = 0;
            }
        }
        self.metrics.spool_size(st.bytes, st.pending);
        Ok(())
    }
}

impl State {
    fn active_segment(&self) -> &Segment {
        // There is always an active segment: `open` creates one and rotation
        // only ever adds.
        self.segments
            .back()
            .unwrap_or_else(|| unreachable!("spool without an active segment"))
    }
    fn active_segment_mut(&mut self) -> &mut Segment {
        self.segments
            .back_mut()
            .unwrap_or_else(|| unreachable!("spool without an active segment"))
    }
}

fn offsets_torn_note(seg: &Segment) -> Option<u64> {
    (seg.disk > seg.valid).then_some(seg.valid)
}

/// Reads a segment file: its summary and the offsets of its valid records.
fn scan_segment(path: &Path, seq: u64) -> io::Result<(Segment, Vec<u64>)> {
    let file = File::open(path)?;
    let disk = file.metadata()?.len();
    let mut r = BufReader::new(file);
    let mut magic = [0u8; 8];
    let magic_len = SEGMENT_MAGIC.len() as u64;
    if r.read_exact(&mut magic).is_err() || &magic != SEGMENT_MAGIC {
        tracing::warn!(segment = %path.display(), "spool segment has no valid header; skipping it");
        return Ok((
            Segment {
                seq,
                valid: magic_len,
                disk,
                records: 0,
            },
            Vec::new(),
        ));
    }
    let mut offsets = Vec::new();
    let mut offset = magic_len;
    while let ReadOutcome::Record(_, len) = format::read_record(&mut r)? {
        offsets.push(offset);
        offset += len;
    }
    Ok((
        Segment {
            seq,
            valid: offset,
            disk,
            records: offsets.len() as u64,
        },
        offsets,
    ))
}

fn count_records_between(dir: &Path, seq: u64, end: u64) -> io::Result<u64> {
    let (_, offsets) = scan_segment(&seg_path(dir, seq), seq)?;
    Ok(offsets.iter().filter(|o| **o < end).count() as u64)
}

fn create_segment(dir: &Path, seq: u64, fsync: FsyncPolicy) -> io::Result<File> {
    let mut f = OpenOptions::new()
        .create_new(true)
        .append(true)
        .open(seg_path(dir, seq))?;
    f.write_all(SEGMENT_MAGIC)?;
    if fsync == FsyncPolicy::Always {
        f.sync_data()?;
        File::open(dir)?.sync_all()?;
    }
    Ok(f)
}

fn read_cursor(dir: &Path) -> Option<Position> {
    let text = fs::read_to_string(dir.join("cursor")).ok()?;
    let mut parts = text.split_whitespace();
    let seq = parts.next()?.parse().ok()?;
    let offset = parts.next()?.parse().ok()?;
    Some(Position { seq, offset })
}

fn write_cursor(dir: &Path, pos: Position, fsync: FsyncPolicy) -> io::Result<()> {
    let tmp = dir.join("cursor.tmp");
    {
        let mut f = File::create(&tmp)?;
        writeln!(f, "{} {}", pos.seq, pos.offset)?;
        if fsync == FsyncPolicy::Always {
            f.sync_data()?;
        }
    }
    fs::rename(&tmp, dir.join("cursor"))?;
    if fsync == FsyncPolicy::Always {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
