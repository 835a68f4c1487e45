//! The fail-open / fail-closed decision: the one place that says whether a
//! request may go through when recording did not work.
//!
//! | situation | fail open | fail closed |
//! |---|---|---|
//! | event delivered | forward | forward |
//! | no recorder addresses | forward unrecorded | 403 `forbidden: api request "<url>" must be recorded, but no recorders are available.` |
//! | every address failed (network, timeout, non-200, **404 "not supported"**, or a mix) | forward unrecorded; event spooled for redelivery | 502 `error recording Kubernetes API request: <errors>` |
//! | session: no recorder addresses | forward unrecorded | 403 `forbidden: 'kubectl exec' session must be recorded, but no recorders are available.` |
//! | session: no recorder accepted the upload | forward unrecorded | 403 `error connecting to session recorders: <errors>; failure mode is 'fail closed'; closing connection.` |
//!
//! Unlike upstream, a recorder answering 404 never lets a request through
//! unrecorded under fail closed, and a mix of 404s and other errors never
//! refuses a request under fail open.

use std::fmt;

use http::StatusCode;

use crate::error::{ConnectError, DeliveryError};

/// What to do when recording fails: Tailscale's `enforceRecorder` is
/// [`FailurePolicy::FailClosed`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailurePolicy {
    /// Availability first: the request goes through unrecorded (events are
    /// spooled and redelivered later).
    FailOpen,
    /// Recording first: the request is refused.
    FailClosed,
}

impl FailurePolicy {
    /// The policy for a grant's `enforceRecorder` flag negated (`fail_open`
    /// as in `identity::RecorderPolicy`).
    pub fn from_fail_open(fail_open: bool) -> Self {
        if fail_open {
            FailurePolicy::FailOpen
        } else {
            FailurePolicy::FailClosed
        }
    }

    /// Upstream's name for the mode, as used in its log lines.
    pub fn as_str(self) -> &'static str {
        match self {
            FailurePolicy::FailOpen => "fail open",
            FailurePolicy::FailClosed => "fail closed",
        }
    }

    /// The outcome for an API request when the caller has no recorder
    /// addresses. Applies to every request under fail closed, even with
    /// events disabled (upstream since v1.96). `url` is the request target as
    /// received (`r.URL.String()` upstream).
    pub fn no_recorders_for_request(self, url: &str) -> Outcome {
        match self {
            FailurePolicy::FailOpen => Outcome::ForwardUnrecorded {
                reason: UnrecordedReason::NoRecorders,
            },
            FailurePolicy::FailClosed => Outcome::Refuse {
                status: StatusCode::FORBIDDEN,
                message: format!(
                    "forbidden: api request \"{url}\" must be recorded, but no recorders are available."
                ),
            },
        }
    }

    /// The outcome for an exec/attach session when the caller has no
    /// recorder addresses.
    pub fn no_recorders_for_session(self, kind: SessionKind) -> Outcome {
        match self {
            FailurePolicy::FailOpen => Outcome::ForwardUnrecorded {
                reason: UnrecordedReason::NoRecorders,
            },
            FailurePolicy::FailClosed => Outcome::Refuse {
                status: StatusCode::FORBIDDEN,
                message: format!(
                    "forbidden: 'kubectl {}' session must be recorded, but no recorders are available.",
                    kind.as_str()
                ),
            },
        }
    }

    /// The outcome when [`connect_session`](crate::connect_session) failed.
    /// Under fail closed the proxy writes this as a proper `HTTP/1.1 403`
    /// with a length on the hijacked connection (upstream sends `HTTP/0.0`).
    pub fn session_connect_failed(self, error: &ConnectError) -> Outcome {
        match self {
            FailurePolicy::FailOpen => Outcome::ForwardUnrecorded {
                reason: UnrecordedReason::SessionNotRecorded(error.to_string()),
            },
            FailurePolicy::FailClosed => Outcome::Refuse {
                status: StatusCode::FORBIDDEN,
                message: format!(
                    "error connecting to session recorders: {error}; failure mode is 'fail closed'; closing connection."
                ),
            },
        }
    }

    /// The outcome for an event that reached no recorder. Under fail open the
    /// caller has already tried to spool it; `spooled` says how that went.
    pub(crate) fn event_not_delivered(
        self,
        error: DeliveryError,
        spooled: Result<(), DropReason>,
    ) -> Outcome {
        match self {
            FailurePolicy::FailClosed => Outcome::Refuse {
                status: StatusCode::BAD_GATEWAY,
                message: format!("error recording Kubernetes API request: {error}"),
            },
            FailurePolicy::FailOpen => Outcome::ForwardUnrecorded {
                reason: match spooled {
                    Ok(()) => UnrecordedReason::Spooled(error),
                    Err(why) => UnrecordedReason::Dropped { error, why },
                },
            },
        }
    }
}

impl fmt::Display for FailurePolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which kind of streaming session a refusal message names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionKind {
    /// `kubectl exec`.
    Exec,
    /// `kubectl attach` (also `kubectl debug` and `kubectl run -it`).
    Attach,
}

impl SessionKind {
    /// `exec` or `attach`.
    pub fn as_str(self) -> &'static str {
        match self {
            SessionKind::Exec => "exec",
            SessionKind::Attach => "attach",
        }
    }
}

/// What the proxy does with the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The event is durably stored by a recorder: proxy the request.
    Forward,
    /// Fail open and recording did not happen (yet): proxy the request and
    /// log `reason` with upstream's phrase "failure mode is 'fail open';
    /// continuing … without recording."
    ForwardUnrecorded {
        /// Why, and what became of the event.
        reason: UnrecordedReason,
    },
    /// Fail closed and recording did not happen: answer `status` with
    /// `message` as the body, and do not proxy.
    Refuse {
        /// 403 or 502 (see the module table).
        status: StatusCode,
        /// The body, in upstream's wording.
        message: String,
    },
}

impl Outcome {
    /// Whether the proxy should forward the request.
    pub fn forwards(&self) -> bool {
        !matches!(self, Outcome::Refuse { .. })
    }
}

/// Why a fail-open request went through without a stored event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnrecordedReason {
    /// The caller has no recorder addresses: nothing to record to.
    NoRecorders,
    /// No recorder took the event; it is in the spool and will be
    /// redelivered in order (at least once).
    Spooled(DeliveryError),
    /// No recorder took the event and it could not be spooled either: it is
    /// lost (and counted in `events_dropped_total`).
    Dropped {
        /// Why delivery failed.
        error: DeliveryError,
        /// Why it was not spooled.
        why: DropReason,
    },
    /// The session recording could not be started.
    SessionNotRecorded(String),
}

impl fmt::Display for UnrecordedReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UnrecordedReason::NoRecorders => f.write_str("no recorders configured"),
            UnrecordedReason::Spooled(e) => {
                write!(f, "event spooled for redelivery after: {e}")
            }
            UnrecordedReason::Dropped { error, why } => {
                write!(f, "event dropped ({why}) after: {error}")
            }
            UnrecordedReason::SessionNotRecorded(e) => {
                write!(f, "session not recorded: {e}")
            }
        }
    }
}

/// Why an undeliverable event was not spooled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DropReason {
    /// No spool is configured.
    #[error("no spool configured")]
    NoSpool,
    /// The spool is full and its policy is `refuse`.
    #[error("spool full")]
    SpoolFull,
    /// The record alone is larger than the spool.
    #[error("record larger than the spool")]
    TooLarge,
    /// Writing the spool failed.
    #[error("spool write failed: {0}")]
    Io(String),
}

impl DropReason {
    /// A short, fixed label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            DropReason::NoSpool => "no_spool",
            DropReason::SpoolFull => "spool_full",
            DropReason::TooLarge => "too_large",
            DropReason::Io(_) => "spool_io",
        }
    }
}
