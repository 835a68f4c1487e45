//! Errors at the crate boundary, worded for the operator who reads them in a log.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use http::StatusCode;

use crate::ack::AckDecodeError;
use crate::cause::Cause;
use crate::dialer::DialError;

/// Why one attempt to deliver a record to one recorder address failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttemptError {
    /// The probe answered 404: the recorder has no `/v2/event` endpoint.
    /// Upstream's wording. Under fail closed this is a failure like any other.
    #[error("recorder at address \"{0}\" does not support \"/v2/event\" endpoint")]
    NotSupported(SocketAddr),
    /// The record type needs a kubescribe recorder (response records), and
    /// this one did not advertise `X-Kubescribe-Recorder: 1`.
    #[error("recorder at address \"{0}\" is not a kubescribe recorder and cannot store this record type")]
    NotKubescribe(SocketAddr),
    /// The recorder answered with a status other than 200. Upstream's wording.
    #[error("server returned non-OK status: {status}: {body}")]
    Status {
        /// The status the recorder answered.
        status: StatusCode,
        /// The start of the response body, for the log.
        body: String,
    },
    /// The attempt did not complete within its deadline.
    #[error("recorder did not answer within {0:?}")]
    Timeout(Duration),
    /// The connection could not be established (the [`DialError`] inside says how it was
    /// dialed).
    #[error("cannot connect to recorder: {0}")]
    Connect(#[source] Cause),
    /// The connection broke or the HTTP exchange was malformed.
    #[error("HTTP exchange with recorder failed: {0}")]
    Transport(#[source] Cause),
    /// The recorder's circuit breaker is open: it failed (deadline missed,
    /// no connection, exchange broken) and has not answered a probe since,
    /// so it was skipped without a round trip, or the attempt was cut short
    /// when the breaker opened.
    #[error("recorder unavailable (circuit open since a failure {ago_ms} ms ago: {last})")]
    Unavailable {
        /// Milliseconds since the breaker opened.
        ago_ms: u128,
        /// The failure that opened it.
        last: String,
    },
}

impl AttemptError {
    /// A short, fixed label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            AttemptError::NotSupported(_) => "not_supported",
            AttemptError::NotKubescribe(_) => "not_kubescribe",
            AttemptError::Status { .. } => "status",
            AttemptError::Timeout(_) => "timeout",
            AttemptError::Connect(_) => "connect",
            AttemptError::Transport(_) => "transport",
            AttemptError::Unavailable { .. } => "unavailable",
        }
    }

    /// Whether the recorder is unhealthy (as opposed to having answered):
    /// such a failure opens its circuit breaker.
    pub(crate) fn marks_down(&self) -> bool {
        matches!(
            self,
            AttemptError::Timeout(_) | AttemptError::Connect(_) | AttemptError::Transport(_)
        )
    }
}

/// A record reached none of the recorder addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryError {
    /// Every address tried, in order, with why it failed. Empty when no
    /// recorder address was given.
    pub attempts: Vec<(SocketAddr, AttemptError)>,
}

impl DeliveryError {
    /// Whether every address answered "not supported" (404 probe).
    pub fn all_not_supported(&self) -> bool {
        !self.attempts.is_empty()
            && self
                .attempts
                .iter()
                .all(|(_, e)| matches!(e, AttemptError::NotSupported(_)))
    }
}

impl fmt::Display for DeliveryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.attempts.is_empty() {
            return f.write_str("no recorders configured");
        }
        for (i, (addr, err)) in self.attempts.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "recorder \"{addr}\": {err}")?;
        }
        Ok(())
    }
}

impl std::error::Error for DeliveryError {}

/// The client could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The spool directory could not be opened or recovered.
    #[error("cannot open event spool at {path}: {source}")]
    Spool {
        /// The spool directory.
        path: std::path::PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// The configuration is invalid.
    #[error("invalid recorder client configuration: {0}")]
    Config(String),
    /// Must be called inside a Tokio runtime.
    #[error("the recorder client must be started inside a Tokio runtime")]
    NoRuntime,
}

/// No recorder accepted a session upload.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectError {
    /// The caller has no recorder addresses. Upstream's wording.
    #[error("no recorders configured")]
    NoRecorders,
    /// Every address failed (or the total budget ran out); one entry per
    /// address tried, in order, in upstream's wording.
    #[error("{}", join_attempts(.attempts, .budget_exhausted))]
    AllFailed {
        /// `(address, why)` for each address tried.
        attempts: Vec<(SocketAddr, SessionAttemptError)>,
        /// Whether the total connect budget ran out before every address was tried.
        budget_exhausted: Option<Duration>,
    },
}

fn join_attempts(
    attempts: &[(SocketAddr, SessionAttemptError)],
    budget: &Option<Duration>,
) -> String {
    let mut out = attempts
        .iter()
        .map(|(addr, err)| format!("recording: error starting recording on \"{addr}\": {err}"))
        .collect::<Vec<_>>()
        .join("; ");
    if let Some(budget) = budget {
        if !out.is_empty() {
            out.push_str("; ");
        }
        out.push_str(&format!(
            "recording: connect budget of {budget:?} exhausted before every recorder was tried"
        ));
    }
    out
}

/// Why one recorder address did not take a session upload, mostly in
/// upstream's wording.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionAttemptError {
    /// The connection to the recorder could not be opened (or not within the dial timeout),
    /// the way the client dials ([`RecorderDialer`](crate::RecorderDialer)).
    #[error("{0}")]
    Dial(#[source] DialError),
    /// The HTTP/1.1 handshake of the legacy upload did not complete in time.
    #[error("recording: HTTP/1.1 handshake timed out")]
    HandshakeTimeout,
    /// The upload request could not be built.
    #[error("cannot build request: {0}")]
    Request(#[source] Cause),
    /// The HTTP exchange with the recorder failed.
    #[error("recording: {0}")]
    Http(#[source] Cause),
    /// The recorder answered the upload with a status other than 200.
    #[error("recording: unexpected status: {0}")]
    Status(StatusCode),
    /// The legacy recorder ended the upload before asking for its body.
    #[error("recording: unexpected EOF")]
    UnexpectedEof,
    /// The legacy recorder did not answer `100 Continue` within the
    /// response timeout.
    #[error("recording: recorder did not answer 100 Continue in time")]
    NoContinue,
    /// The recorder sent no response headers to `POST /v2/record` within the
    /// response timeout.
    #[error("recording: no response headers from the recorder in time")]
    NoResponseHeaders,
    /// The total connect budget ran out during this attempt.
    #[error("connect budget exhausted")]
    BudgetExhausted,
}

/// A session upload failed after it had connected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UploadError {
    /// No ack frame within the window. Upstream's wording.
    #[error("did not receive ack frames from the recorder in {0:?}")]
    NoAcks(Duration),
    /// Frames kept arriving but the acknowledged byte count did not move
    /// while data was outstanding.
    #[error("recorder acknowledged {acked} of {sent} bytes and made no progress for {window:?}")]
    AcksStalled {
        /// Bytes acknowledged.
        acked: u64,
        /// Bytes handed to the connection.
        sent: u64,
        /// The ack window.
        window: Duration,
    },
    /// The recorder acknowledged more bytes than were sent.
    #[error("recorder acknowledged {acked} bytes but only {sent} were sent")]
    OverAcked {
        /// Bytes acknowledged.
        acked: u64,
        /// Bytes handed to the connection.
        sent: u64,
    },
    /// The recorder sent an error frame. Upstream's wording.
    #[error("recording: received error from the recorder: {0:?}")]
    Recorder(String),
    /// The ack stream was malformed. Upstream's wording.
    #[error("recording: unexpected error receiving acks: {0}")]
    Acks(#[source] AckDecodeError),
    /// The recorder answered with a status other than 200. Upstream's wording.
    #[error("recording: unexpected status: {0}")]
    Status(StatusCode),
    /// The connection to the recorder broke.
    #[error("recording: connection to recorder failed: {0}")]
    Transport(#[source] Cause),
    /// The recorder ended the upload before the session did.
    #[error("recording: recorder ended the upload before the session ended")]
    EndedEarly,
}

impl UploadError {
    /// A short, fixed label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            UploadError::NoAcks(_) => "no_acks",
            UploadError::AcksStalled { .. } => "acks_stalled",
            UploadError::OverAcked { .. } => "over_acked",
            UploadError::Recorder(_) => "recorder_error",
            UploadError::Acks(_) => "bad_acks",
            UploadError::Status(_) => "status",
            UploadError::Transport(_) => "transport",
            UploadError::EndedEarly => "ended_early",
        }
    }
}

/// Bytes could not be handed to a session upload.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PushError {
    /// The upload's channel is full: the recorder is not keeping up. The
    /// caller decides (fail closed: end the session; fail open: stop recording).
    #[error(
        "session upload channel is full ({capacity} chunks queued); the recorder is not keeping up"
    )]
    Full {
        /// The channel capacity.
        capacity: usize,
    },
    /// The upload has failed; nothing more can be sent.
    #[error("session upload has failed: {0}")]
    Failed(#[source] UploadError),
    /// The upload was already finished.
    #[error("session upload is already finished")]
    Finished,
}
