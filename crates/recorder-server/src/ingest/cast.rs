//! Receiving one asciicast v2 stream into storage, shared by `/v2/record`
//! and `/record`.
//!
//! Only whole lines are stored. Each line must be valid UTF-8; the first must
//! be a cast header (a JSON object with `"version": 2`); later lines must be
//! JSON arrays (`[time, code, data]`). The cast is stored as the bytes
//! received (no re-encoding), so a client can compare hashes.
//!
//! * Nothing is stored until the header line has arrived and is valid: a
//!   bad header stores nothing.
//! * A bad line later ends the upload with an error; the lines before it stay
//!   stored (they may already have been acknowledged) and the session is
//!   marked `failed` with the reason.
//! * Durable bytes (the `ack` value) are whole validated lines that storage
//!   has confirmed.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use serde_json::Value;
use uuid::Uuid;

use crate::app::App;
use crate::auth::Uploader;
use crate::query::sessions::{SessionInfo, SessionState};
use crate::storage::layout;
use crate::storage::{ObjectKey, SessionSink, StorageError};

/// Buffered validated bytes above which they are written at once.
const FLUSH_BYTES: usize = 1024 * 1024;

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
    BadHeader(String),
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
    /// Storage failed.
    #[error("storage failed: {0}")]
    Storage(#[from] StorageError),
    /// The body could not be read.
    #[error(transparent)]
    Body(#[from] super::body::BodyError),
}

impl CastError {
    /// A metric label.
    pub fn reason(&self) -> &'static str {
        match self {
            CastError::InvalidUtf8 { .. } => "invalid_utf8",
            CastError::BadHeader(_) | CastError::BadEvent(_) | CastError::Empty => "invalid",
            CastError::LineTooLong { .. } | CastError::TooLarge(_) => "too_large",
            CastError::Storage(_) => "storage",
            CastError::Body(b) => b.reason(),
        }
    }

    /// Whether the client is at fault (4xx) rather than the recorder (5xx).
    pub fn is_client_error(&self) -> bool {
        !matches!(self, CastError::Storage(_))
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
        let header: Value =
            serde_json::from_str(trimmed).map_err(|e| CastError::BadHeader(e.to_string()))?;
        if !header.is_object() || header.get("version").and_then(Value::as_u64) != Some(2) {
            return Err(CastError::BadHeader("missing \"version\": 2".into()));
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

/// One session upload in progress.
pub struct CastIngest {
    app: Arc<App>,
    id: Uuid,
    key: ObjectKey,
    uploader: Uploader,
    protocol: &'static str,
    sink: Option<Box<dyn SessionSink>>,
    partial: BytesMut,
    ready: BytesMut,
    lines: u64,
    received: u64,
    durable: u64,
    last_time: f64,
}

impl CastIngest {
    /// Starts an upload (nothing is stored until the header line arrives).
    pub fn new(app: Arc<App>, uploader: Uploader, protocol: &'static str) -> Self {
        let id = layout::new_id();
        Self {
            key: layout::session_key(&id),
            app,
            id,
            uploader,
            protocol,
            sink: None,
            partial: BytesMut::new(),
            ready: BytesMut::new(),
            lines: 0,
            received: 0,
            durable: 0,
            last_time: 0.0,
        }
    }

    /// The session id.
    pub fn id(&self) -> &Uuid {
        &self.id
    }

    /// Bytes durably stored so far.
    pub fn durable(&self) -> u64 {
        self.durable
    }

    /// Takes received bytes: validates complete lines and queues them;
    /// writes when enough is queued.
    pub async fn push(&mut self, data: &[u8]) -> Result<(), CastError> {
        let max_session = self.app.config.limits.max_session_bytes;
        let max_line = self.app.config.limits.max_event_bytes;
        self.received += data.len() as u64;
        if self.received > max_session {
            return Err(CastError::TooLarge(max_session));
        }
        let mut rest = data;
        while let Some(pos) = rest.iter().position(|b| *b == b'\n') {
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
        match check_line(n, line, self.app.config.limits.max_event_bytes)? {
            CastLine::Header(header) => self.start(header).await?,
            CastLine::Event(Some(t)) => self.last_time = self.last_time.max(t),
            CastLine::Event(None) | CastLine::Blank => {}
        }
        self.lines = n;
        self.ready.extend_from_slice(line);
        Ok(())
    }

    async fn start(&mut self, header: Value) -> Result<(), CastError> {
        let sink = self.app.storage.create_session(&self.key).await?;
        self.sink = Some(sink);
        let started_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        self.app.sessions.upsert(
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
        tracing::info!(session = %self.id.simple(), uploader = %self.uploader.label, protocol = self.protocol, key = %self.key, "session recording started");
        Ok(())
    }

    /// Writes queued lines and returns the durable byte count.
    pub async fn flush(&mut self) -> Result<u64, CastError> {
        if self.ready.is_empty() {
            return Ok(self.durable);
        }
        let Some(sink) = self.sink.as_mut() else {
            return Ok(self.durable);
        };
        let data: Bytes = std::mem::take(&mut self.ready).freeze();
        let len = data.len() as u64;
        self.durable = sink.append(data).await?;
        self.app.metrics.session_bytes.inc_by(len);
        let (durable, last_time) = (self.durable, self.last_time);
        self.app.sessions.update(&self.id, |s| {
            s.size = durable;
            s.duration_seconds = last_time;
        });
        Ok(self.durable)
    }

    /// Ends the upload. With `error == None` the stream ended cleanly (a
    /// final unterminated line is kept if valid); otherwise what was
    /// validated is kept and the session is marked failed. Returns the
    /// stored size, or the error that ended the upload.
    pub async fn finish(mut self, error: Option<CastError>) -> Result<u64, CastError> {
        let mut error = error;
        if error.is_none() && !self.partial.is_empty() {
            let line = std::mem::take(&mut self.partial);
            if let Err(e) = self.accept_line(&line).await {
                error = Some(e);
            }
        }
        if self.sink.is_none() {
            // Nothing was stored: no header ever arrived.
            let e = error.unwrap_or(CastError::Empty);
            self.app.metrics.session_ended(e.reason());
            return Err(e);
        }
        let flushed = self.flush().await;
        let finished = match (flushed, self.sink.take()) {
            (Ok(_), Some(sink)) => sink.finish().await.map_err(CastError::from),
            (Err(e), _) => Err(e),
            (Ok(_), None) => Ok(self.durable),
        };
        let (state, message, result) = match (error, finished) {
            (None, Ok(size)) => (SessionState::Finished, None, Ok(size)),
            (Some(e), Ok(_)) => (SessionState::Failed, Some(e.to_string()), Err(e)),
            (_, Err(e)) => (SessionState::Failed, Some(e.to_string()), Err(e)),
        };
        let outcome = match &result {
            Ok(_) => "finished",
            Err(e) => e.reason(),
        };
        self.app.metrics.session_ended(outcome);
        let (durable, last_time) = (self.durable, self.last_time);
        self.app.sessions.update(&self.id, |s| {
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
