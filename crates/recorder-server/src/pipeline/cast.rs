//! Receiving one asciicast v2 stream into storage, shared by `/v2/record`
//! and `/record`.
//!
//! Only whole lines are stored. Each line must be valid UTF-8; the first must
//! be a cast header (a JSON object with `"version": 2`); later lines must be
//! JSON arrays (`[time, code, data]`). The cast is stored as the bytes
//! received (no re-encoding), so a client can compare hashes.
//!
//! * Nothing is stored until the header line has arrived and is valid: a
//!   bad header stores nothing. The header names the caller: the upload's
//!   slot is counted against that caller before anything is stored, and a
//!   caller over its limit stores nothing either (see `slots`).
//! * A bad line later ends the upload with an error; the lines before it stay
//!   stored (they may already have been acknowledged) and the session is
//!   marked `failed` with the reason.
//! * Durable bytes (the `ack` value) are whole validated lines that storage
//!   has confirmed.
//! * Writing is pipelined: validated lines go to a per-session writer task
//!   (at most [`WRITE_QUEUE`] chunks queued, which is the upload's
//!   back-pressure) that appends and syncs them while the next lines are
//!   read and validated; chunks queued during a sync are written together.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use uuid::Uuid;

use super::slots::{SessionCaller, SlotRefusal, UploadSlot};
use crate::access::Uploader;
use crate::body::BodyError;
use crate::index::sessions::failed_marker;
use crate::index::{SessionIndex, SessionInfo, SessionState};
use crate::metrics::Metrics;
use crate::record::new_id;
use crate::storage::fence::Fence;
use crate::storage::layout;
use crate::storage::{ObjectKey, SessionSink, Storage, StorageError};
use crate::tamper::sealer::Sealer;

/// Buffered validated bytes above which they are handed to the writer.
const FLUSH_BYTES: usize = 1024 * 1024;

/// Chunks (of about [`FLUSH_BYTES`]) that may wait for the writer.
const WRITE_QUEUE: usize = 4;

/// Why a cast upload failed.
#[derive(Debug, thiserror::Error)]
pub enum CastError {
    /// A line is not valid UTF-8.
    #[error(
        "cast line {line} is not valid UTF-8 (byte {offset} of the line); the upload stops here"
    )]
    InvalidUtf8 {
        /// 1-based line number.
        line: u64,
        /// Offset of the first bad byte within the line.
        offset: usize,
    },
    /// The first line is not an asciicast v2 header.
    #[error("cast line 1 is not an asciicast v2 header (a JSON object with \"version\": 2): {0}")]
    BadHeader(#[source] HeaderProblem),
    /// A later line is not an asciicast event.
    #[error("cast line {0} is not an asciicast v2 event (a JSON array)")]
    BadEvent(u64),
    /// A line is too long.
    #[error("cast line {line} is longer than {limit} bytes (--max-event-bytes)")]
    LineTooLong {
        /// 1-based line number.
        line: u64,
        /// The limit.
        limit: usize,
    },
    /// The session exceeds the size limit.
    #[error("session is larger than the limit of {0} bytes (--max-session-bytes)")]
    TooLarge(u64),
    /// The stream ended before the header line.
    #[error("the upload ended before a complete cast header line")]
    Empty,
    /// The header line did not arrive in time.
    #[error("no cast header within {0:?} of the upload's start (--session-header-timeout)")]
    NoHeader(Duration),
    /// The caller the header names holds its share of the upload slots.
    #[error(transparent)]
    Refused(SlotRefusal),
    /// Storage failed (shared: a stopped writer reports it again).
    #[error("storage failed: {0}")]
    Storage(#[source] Arc<StorageError>),
    /// The body could not be read.
    #[error(transparent)]
    Body(#[from] BodyError),
}

/// What is wrong with a cast's first line.
#[derive(Debug, thiserror::Error)]
pub enum HeaderProblem {
    /// It is not JSON.
    #[error("{0}")]
    Json(#[source] serde_json::Error),
    /// It is JSON, but not an object with `"version": 2`.
    #[error("missing \"version\": 2")]
    NotVersion2,
}

impl From<StorageError> for CastError {
    fn from(e: StorageError) -> Self {
        CastError::Storage(Arc::new(e))
    }
}

impl CastError {
    /// The `outcome` label of the session metric (and `reason` elsewhere).
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            CastError::InvalidUtf8 { .. } => "invalid_utf8",
            CastError::BadHeader(_) | CastError::BadEvent(_) | CastError::Empty => "invalid",
            CastError::LineTooLong { .. } | CastError::TooLarge(_) => "too_large",
            CastError::Storage(_) => "storage",
            CastError::Body(b) => b.reason(),
            CastError::NoHeader(_) => "header_timeout",
            CastError::Refused(refusal) => refusal.reason(),
        }
    }

    /// Whether the upload was refused before anything was stored, over a
    /// limit of the recorder's (no header in time, the caller's share taken),
    /// rather than failing on what it sent: counted as a rejection too.
    pub(crate) fn is_refusal(&self) -> bool {
        matches!(self, CastError::NoHeader(_) | CastError::Refused(_))
    }
}

/// What a validated cast line is.
#[derive(Debug, Clone, PartialEq)]
pub enum CastLine {
    /// Line 1: the header object.
    Header(Value),
    /// An event line, with its time offset when it has a readable one.
    Event(Option<f64>),
    /// An empty line (kept as received).
    Blank,
}

/// Validates line `n` (1-based, including its `\n`) of a cast.
pub fn check_line(n: u64, line: &[u8], limit: usize) -> Result<CastLine, CastError> {
    if line.len() > limit {
        return Err(CastError::LineTooLong { line: n, limit });
    }
    let text = std::str::from_utf8(line).map_err(|e| CastError::InvalidUtf8 {
        line: n,
        offset: e.valid_up_to(),
    })?;
    let trimmed = text.trim_end_matches(['\n', '\r']);
    if n == 1 {
        let header: Value = serde_json::from_str(trimmed)
            .map_err(|e| CastError::BadHeader(HeaderProblem::Json(e)))?;
        if !header.is_object() || header.get("version").and_then(Value::as_u64) != Some(2) {
            return Err(CastError::BadHeader(HeaderProblem::NotVersion2));
        }
        return Ok(CastLine::Header(header));
    }
    if trimmed.trim().is_empty() {
        return Ok(CastLine::Blank);
    }
    if !(trimmed.starts_with('[') && trimmed.ends_with(']')) {
        return Err(CastError::BadEvent(n));
    }
    let time = trimmed[1..]
        .split(',')
        .next()
        .and_then(|t| t.trim().parse::<f64>().ok())
        .filter(|t| t.is_finite());
    Ok(CastLine::Event(time))
}

/// What every cast upload needs: where casts go, the session index they
/// keep current, the counters, and the limits.
pub(crate) struct CastIntake {
    /// Where casts are stored.
    pub(crate) storage: Arc<dyn Storage>,
    /// The session index (each upload adds and updates its entry).
    pub(crate) sessions: Arc<SessionIndex>,
    /// Counters.
    pub(crate) metrics: Arc<Metrics>,
    /// `--max-session-bytes`.
    pub(crate) max_session_bytes: u64,
    /// `--max-event-bytes`: the longest cast line.
    pub(crate) max_line_bytes: usize,
    /// Told of every cast that ends, so that its next pass covers it (whatever its start date).
    pub(crate) sealer: Arc<Sealer>,
    /// This replica's standing: its chunks name its owner and are
    /// acknowledged only while it holds its lease.
    pub(crate) fence: Arc<Fence>,
}

/// One session upload in progress.
pub(crate) struct CastIngest {
    intake: Arc<CastIntake>,
    id: Uuid,
    key: ObjectKey,
    uploader: Uploader,
    protocol: &'static str,
    /// The upload slot, counted against the caller once the header names it;
    /// released when the upload ends.
    slot: UploadSlot,
    /// The caller, as the header names it (for logs).
    caller: Option<String>,
    writer: Option<Writer>,
    partial: BytesMut,
    ready: BytesMut,
    lines: u64,
    received: u64,
    durable: u64,
    last_time: f64,
}

impl CastIngest {
    /// Starts an upload by `uploader` over `protocol` (`v1` or `v2`), holding
    /// `slot`; nothing is stored until the header line arrives.
    pub(crate) fn new(
        intake: Arc<CastIntake>,
        uploader: Uploader,
        protocol: &'static str,
        slot: UploadSlot,
    ) -> Self {
        let id = new_id();
        Self {
            key: layout::session_key(&id),
            intake,
            id,
            uploader,
            protocol,
            slot,
            caller: None,
            writer: None,
            partial: BytesMut::new(),
            ready: BytesMut::new(),
            lines: 0,
            received: 0,
            durable: 0,
            last_time: 0.0,
        }
    }

    /// The session id.
    pub(crate) fn id(&self) -> &Uuid {
        &self.id
    }

    /// Whether the header line has arrived (and was accepted).
    pub(crate) fn has_header(&self) -> bool {
        self.writer.is_some()
    }

    /// Takes received bytes: validates complete lines and queues them;
    /// writes when enough is queued.
    pub(crate) async fn push(&mut self, data: &[u8]) -> Result<(), CastError> {
        let max_session = self.intake.max_session_bytes;
        let max_line = self.intake.max_line_bytes;
        self.received += data.len() as u64;
        if self.received > max_session {
            return Err(CastError::TooLarge(max_session));
        }
        let mut rest = data;
        while let Some(pos) = memchr::memchr(b'\n', rest) {
            let (head, tail) = rest.split_at(pos + 1);
            rest = tail;
            if self.partial.is_empty() {
                self.accept_line(head).await?;
            } else {
                self.partial.extend_from_slice(head);
                let line = std::mem::take(&mut self.partial);
                self.accept_line(&line).await?;
            }
        }
        if !rest.is_empty() {
            if self.partial.len() + rest.len() > max_line {
                return Err(CastError::LineTooLong {
                    line: self.lines + 1,
                    limit: max_line,
                });
            }
            self.partial.extend_from_slice(rest);
        }
        if self.ready.len() >= FLUSH_BYTES {
            self.flush().await?;
        }
        Ok(())
    }

    async fn accept_line(&mut self, line: &[u8]) -> Result<(), CastError> {
        let n = self.lines + 1;
        match check_line(n, line, self.intake.max_line_bytes)? {
            CastLine::Header(header) => {
                if let Some(caller) = SessionCaller::from_header(&header) {
                    if let Err(refusal) = self.slot.claim_caller(&caller) {
                        tracing::warn!(session = %self.id.simple(), uploader = %self.uploader.label, caller = caller.shown(), "session upload refused: {refusal}");
                        return Err(CastError::Refused(refusal));
                    }
                    self.caller = Some(caller.shown().to_owned());
                }
                self.start(header).await?
            }
            CastLine::Event(Some(t)) => self.last_time = self.last_time.max(t),
            CastLine::Event(None) | CastLine::Blank => {}
        }
        self.lines = n;
        self.ready.extend_from_slice(line);
        Ok(())
    }

    async fn start(&mut self, header: Value) -> Result<(), CastError> {
        let sink = self
            .intake
            .storage
            .create_session(&self.key, &self.intake.fence)
            .await?;
        self.writer = Some(Writer::spawn(sink, self.intake.metrics.clone()));
        let started_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        self.intake.sessions.upsert(
            &self.id,
            SessionInfo {
                id: self.id.simple().to_string(),
                storage_key: self.key.to_string(),
                started_ms,
                header,
                size: 0,
                duration_seconds: 0.0,
                state: SessionState::Live,
                error: None,
                uploader: self.uploader.label.clone(),
                protocol: self.protocol.to_owned(),
            },
        );
        tracing::info!(session = %self.id.simple(), uploader = %self.uploader.label, caller = self.caller.as_deref().unwrap_or("-"), protocol = self.protocol, key = %self.key, "session recording started");
        Ok(())
    }

    /// Hands queued lines to the writer (waiting while its queue is full) and
    /// returns the bytes durable so far. Lines handed over now become durable
    /// shortly after; [`CastIngest::finish`] waits for all of them.
    pub(crate) async fn flush(&mut self) -> Result<u64, CastError> {
        let Some(writer) = self.writer.as_mut() else {
            return Ok(self.durable);
        };
        if !self.ready.is_empty() {
            let data: Bytes = std::mem::take(&mut self.ready).freeze();
            writer.send(data).await?;
        }
        self.durable = writer.durable();
        let (durable, last_time) = (self.durable, self.last_time);
        self.intake.sessions.update(&self.id, |s| {
            s.size = durable;
            s.duration_seconds = last_time;
        });
        Ok(self.durable)
    }

    /// Ends the upload. With `error == None` the stream ended cleanly (a
    /// final unterminated line is kept if valid); otherwise what was
    /// validated is kept and the session is marked failed. Returns the
    /// stored size, or the error that ended the upload.
    pub(crate) async fn finish(mut self, error: Option<CastError>) -> Result<u64, CastError> {
        let mut error = error;
        if error.is_none() && !self.partial.is_empty() {
            let line = std::mem::take(&mut self.partial);
            if let Err(e) = self.accept_line(&line).await {
                error = Some(e);
            }
        }
        if self.writer.is_none() {
            // Nothing was stored: no header ever arrived.
            let e = error.unwrap_or(CastError::Empty);
            self.intake.metrics.session_ended(e.reason());
            return Err(e);
        }
        if let Some(e) = &error {
            // Marked in the cast itself, so that the failure outlives this process.
            self.ready
                .extend_from_slice(&failed_marker(self.last_time, &e.to_string()));
        }
        let flushed = self.flush().await;
        let finished = match self.writer.take() {
            Some(writer) => {
                let (sink, written) = writer.close().await;
                if let Ok(durable) = &written {
                    self.durable = *durable;
                }
                match (flushed, written, sink) {
                    (Ok(_), Ok(_), Some(sink)) => sink.finish().await.map_err(CastError::from),
                    (Err(e), _, _) => Err(e),
                    (Ok(_), Err(e), _) => Err(e),
                    (Ok(_), Ok(_), None) => Ok(self.durable),
                }
            }
            None => flushed,
        };
        if finished.is_ok() {
            self.intake.sealer.note(self.key.as_str());
        }
        let (state, message, result) = match (error, finished) {
            (None, Ok(size)) => (SessionState::Finished, None, Ok(size)),
            (Some(e), Ok(_)) => (SessionState::Failed, Some(e.to_string()), Err(e)),
            (_, Err(e)) => (SessionState::Failed, Some(e.to_string()), Err(e)),
        };
        let outcome = match &result {
            Ok(_) => "finished",
            Err(e) => e.reason(),
        };
        self.intake.metrics.session_ended(outcome);
        let (durable, last_time) = (self.durable, self.last_time);
        self.intake.sessions.update(&self.id, |s| {
            s.state = state;
            s.error = message.clone();
            s.size = durable;
            s.duration_seconds = last_time;
        });
        match &message {
            None => {
                tracing::info!(session = %self.id.simple(), bytes = durable, "session recording finished")
            }
            Some(m) => {
                tracing::warn!(session = %self.id.simple(), bytes = durable, error = %m, "session recording ended with an error; acknowledged bytes are kept")
            }
        }
        result
    }
}

/// The per-session writer task: appends chunks in order, merging those that
/// queued up while the previous append was syncing.
struct Writer {
    tx: mpsc::Sender<Bytes>,
    durable: Arc<AtomicU64>,
    /// `None` once the task has been awaited.
    task: Option<JoinHandle<WriterOutcome>>,
    /// Why the writer stopped, once known.
    failed: Option<Arc<StorageError>>,
}

/// What the writer task ends with: the sink (to finish) or the error that stopped it.
type WriterOutcome = (Option<Box<dyn SessionSink>>, Result<u64, StorageError>);

impl Writer {
    fn spawn(sink: Box<dyn SessionSink>, metrics: Arc<Metrics>) -> Self {
        let (tx, rx) = mpsc::channel(WRITE_QUEUE);
        let durable = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn(write_loop(sink, rx, durable.clone(), metrics));
        Self {
            tx,
            durable,
            task: Some(task),
            failed: None,
        }
    }

    /// Bytes the sink has confirmed durable.
    fn durable(&self) -> u64 {
        self.durable.load(Ordering::Acquire)
    }

    /// The error a stopped writer reports.
    fn stopped(&self) -> CastError {
        match &self.failed {
            Some(why) => CastError::Storage(why.clone()),
            None => StorageError::Unusable("the session writer stopped".into()).into(),
        }
    }

    /// Queues `data`; when the writer has stopped, the error that stopped it.
    async fn send(&mut self, data: Bytes) -> Result<(), CastError> {
        if self.tx.send(data).await.is_ok() {
            return Ok(());
        }
        let Some(task) = self.task.take() else {
            return Err(self.stopped());
        };
        let error = Arc::new(match task.await {
            Ok((_, Err(e))) => e,
            Ok((_, Ok(_))) => StorageError::Unusable("the session writer stopped".into()),
            Err(e) => StorageError::Worker(e),
        });
        self.failed = Some(error.clone());
        Err(CastError::Storage(error))
    }

    /// Waits for every queued chunk; returns the sink and the durable total.
    async fn close(mut self) -> (Option<Box<dyn SessionSink>>, Result<u64, CastError>) {
        let Some(task) = self.task.take() else {
            return (None, Err(self.stopped()));
        };
        drop(self.tx);
        match task.await {
            Ok((sink, result)) => (sink, result.map_err(CastError::from)),
            Err(e) => (None, Err(StorageError::Worker(e).into())),
        }
    }
}

async fn write_loop(
    mut sink: Box<dyn SessionSink>,
    mut rx: mpsc::Receiver<Bytes>,
    durable: Arc<AtomicU64>,
    metrics: Arc<Metrics>,
) -> WriterOutcome {
    let mut total = 0;
    while let Some(first) = rx.recv().await {
        let data = if rx.is_empty() {
            first
        } else {
            let mut merged = BytesMut::from(&first[..]);
            while let Ok(more) = rx.try_recv() {
                merged.extend_from_slice(&more);
            }
            merged.freeze()
        };
        let len = data.len() as u64;
        match sink.append(data).await {
            Ok(n) => {
                total = n;
                durable.store(n, Ordering::Release);
                metrics.session_bytes.inc_by(len);
            }
            Err(e) => return (None, Err(e)),
        }
    }
    (Some(sink), Ok(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines() {
        assert!(matches!(
            check_line(1, b"{\"version\":2}\n", 100),
            Ok(CastLine::Header(_))
        ));
        assert!(matches!(
            check_line(1, b"{\"version\":1}\n", 100),
            Err(CastError::BadHeader(_))
        ));
        assert!(matches!(
            check_line(1, b"[1]\n", 100),
            Err(CastError::BadHeader(_))
        ));
        assert_eq!(
            check_line(2, b"[1.5,\"o\",\"x\"]\n", 100).unwrap(),
            CastLine::Event(Some(1.5))
        );
        assert_eq!(check_line(2, b"\n", 100).unwrap(), CastLine::Blank);
        assert!(matches!(
            check_line(3, b"[1,\"o\",\"\xff\"]\n", 100),
            Err(CastError::InvalidUtf8 { line: 3, offset: 8 })
        ));
        assert!(matches!(
            check_line(2, b"oops\n", 100),
            Err(CastError::BadEvent(2))
        ));
        assert!(matches!(
            check_line(2, &[b'['; 200], 100),
            Err(CastError::LineTooLong { .. })
        ));
    }

    /// A sink that records appends; the first waits for `release`, and the
    /// append numbered `fail_at` (0-based) fails.
    struct TestSink {
        appends: Arc<std::sync::Mutex<Vec<Bytes>>>,
        release: Arc<tokio::sync::Notify>,
        fail_at: Option<usize>,
        total: u64,
    }

    #[async_trait::async_trait]
    impl SessionSink for TestSink {
        async fn append(&mut self, data: Bytes) -> Result<u64, StorageError> {
            let n = self.appends.lock().unwrap().len();
            if n == 0 {
                self.release.notified().await;
            }
            if self.fail_at == Some(n) {
                return Err(StorageError::Unusable("disk on fire".into()));
            }
            self.total += data.len() as u64;
            self.appends.lock().unwrap().push(data);
            Ok(self.total)
        }

        async fn finish(self: Box<Self>) -> Result<u64, StorageError> {
            Ok(self.total)
        }
    }

    fn test_writer(
        fail_at: Option<usize>,
    ) -> (
        Writer,
        Arc<std::sync::Mutex<Vec<Bytes>>>,
        Arc<tokio::sync::Notify>,
    ) {
        let appends = Arc::new(std::sync::Mutex::new(Vec::new()));
        let release = Arc::new(tokio::sync::Notify::new());
        let sink = TestSink {
            appends: appends.clone(),
            release: release.clone(),
            fail_at,
            total: 0,
        };
        let writer = Writer::spawn(Box::new(sink), Arc::new(Metrics::new()));
        (writer, appends, release)
    }

    #[tokio::test]
    async fn writer_merges_chunks_queued_during_a_sync_and_keeps_order() {
        let (mut writer, appends, release) = test_writer(None);
        writer.send(Bytes::from_static(b"one\n")).await.unwrap();
        // Let the writer take the first chunk and block in its append.
        tokio::task::yield_now().await;
        for chunk in [&b"two\n"[..], b"three\n", b"four\n"] {
            writer.send(Bytes::from_static(chunk)).await.unwrap();
        }
        assert_eq!(
            writer.durable(),
            0,
            "nothing is durable before the sink says so"
        );
        release.notify_one();
        let (sink, durable) = writer.close().await;
        assert_eq!(durable.unwrap(), 19);
        assert!(sink.is_some());
        let appends = appends.lock().unwrap().clone();
        assert_eq!(
            appends,
            vec![
                Bytes::from_static(b"one\n"),
                Bytes::from_static(b"two\nthree\nfour\n")
            ]
        );
    }

    #[tokio::test]
    async fn writer_failure_is_reported_by_later_sends_and_close() {
        let (mut writer, appends, release) = test_writer(Some(1));
        release.notify_one();
        writer.send(Bytes::from_static(b"kept\n")).await.unwrap();
        while writer.durable() < 5 {
            tokio::task::yield_now().await;
        }
        let mut error = None;
        for _ in 0..WRITE_QUEUE + 3 {
            if let Err(e) = writer.send(Bytes::from_static(b"lost\n")).await {
                error = Some(e);
                break;
            }
            tokio::task::yield_now().await;
        }
        let error = error.expect("a send fails once the writer has stopped");
        assert!(error.to_string().contains("disk on fire"), "{error}");
        assert_eq!(
            writer.durable(),
            5,
            "what was stored before the failure counts"
        );
        let (sink, result) = writer.close().await;
        assert!(sink.is_none());
        assert!(result.unwrap_err().to_string().contains("disk on fire"));
        assert_eq!(appends.lock().unwrap().len(), 1);
    }

    proptest::proptest! {
        #[test]
        fn check_line_never_panics(n in 1u64..4, bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let _ = check_line(n, &bytes, 256);
        }

        #[test]
        fn valid_utf8_event_lines_are_accepted(t in 0.0f64..1e6, text in "\\PC{0,100}") {
            let mut line = serde_json::to_vec(&serde_json::json!([t, "o", text])).unwrap();
            line.push(b'\n');
            proptest::prop_assert!(matches!(check_line(2, &line, 1 << 20), Ok(CastLine::Event(Some(_)))));
        }
    }
}
