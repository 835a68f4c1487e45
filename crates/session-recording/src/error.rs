//! The errors a recording reports. None of them ever stops the bytes being
//! forwarded: the proxy decides, from its failure policy, whether the session
//! goes on (fail open) or ends (fail closed).

use std::fmt;

use crate::shared_error::SharedError;
use crate::spdy::SpdyError;
use crate::ws::WsError;

/// Which way bytes flow through the tap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// From kubectl (the client) to the API server: stdin, resizes, SPDY stream set-up.
    ClientToServer,
    /// From the API server to kubectl: stdout, stderr and the error channel.
    ServerToClient,
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Direction::ClientToServer => "client→server",
            Direction::ServerToClient => "server→client",
        })
    }
}

/// Why a [`CastSink`](crate::CastSink) did not take a line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SinkError {
    /// The queue to the recorder is full: the upload is not keeping up.
    #[error("the queue to the session recorder is full ({queued_bytes} bytes waiting, limit {limit_bytes})")]
    Full {
        /// Bytes waiting in the queue when the line was refused.
        queued_bytes: usize,
        /// The queue's limit in bytes.
        limit_bytes: usize,
    },
    /// The upload to the recorder has ended; no further line can be delivered.
    #[error("the upload to the session recorder has ended")]
    Closed,
}

/// Why a session's recording failed or is incomplete.
///
/// Every variant means: the session's bytes were still forwarded unchanged.
/// In fail-closed mode the proxy ends the session; in fail-open mode it logs
/// and counts the gap.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordingError {
    /// The SPDY/3.1 byte stream could not be parsed; recording stopped.
    #[error("malformed SPDY/3.1 stream ({direction}): {source}; recording of this session stopped (bytes are still forwarded)")]
    Spdy {
        /// Which way the malformed bytes were flowing.
        direction: Direction,
        /// What was wrong.
        #[source]
        source: SpdyError,
    },
    /// The WebSocket byte stream could not be parsed; recording stopped.
    #[error("malformed WebSocket stream ({direction}): {source}; recording of this session stopped (bytes are still forwarded)")]
    WebSocket {
        /// Which way the malformed bytes were flowing.
        direction: Direction,
        /// What was wrong.
        #[source]
        source: WsError,
    },
    /// The sink refused a line because its queue was full: the recording has a gap.
    #[error("session recording has a gap: {source}; the recorder is too slow or unreachable")]
    SinkFull {
        /// The sink's report.
        #[source]
        source: SinkError,
    },
    /// The sink is closed: nothing more of this session can be recorded.
    #[error("session recording stopped: {source}")]
    SinkClosed {
        /// The sink's report.
        #[source]
        source: SinkError,
    },
    /// The cast header could not be serialised (a bug, not a network condition).
    #[error("the asciicast header could not be encoded: {0}")]
    HeaderEncoding(#[source] SharedError<serde_json::Error>),
}

impl RecordingError {
    /// Whether the recording stopped for good (as opposed to a gap after which
    /// later lines are still recorded).
    pub fn is_terminal(&self) -> bool {
        !matches!(self, RecordingError::SinkFull { .. })
    }
}
