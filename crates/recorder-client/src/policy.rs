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
//! | session: the streaming protocol cannot be verified | forward unrecorded | 403 `<reason>; failure mode is 'fail closed'; closing connection.` |
//!
//! Every refusal is one type, [`Refusal`], which also writes the response the
//! caller gets ([`Refusal::into_response`]).
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
    /// as in `identity::RecordingRules`).
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
            FailurePolicy::FailClosed => Outcome::Refuse(Refusal::new(
                StatusCode::FORBIDDEN,
                format!(
                    "forbidden: api request \"{url}\" must be recorded, but no recorders are available."
                ),
            )),
        }
    }

    /// The outcome for an exec/attach session when the caller has no
    /// recorder addresses.
    pub fn no_recorders_for_session(self, kind: SessionKind) -> Outcome {
        match self {
            FailurePolicy::FailOpen => Outcome::ForwardUnrecorded {
                reason: UnrecordedReason::NoRecorders,
            },
            FailurePolicy::FailClosed => Outcome::Refuse(Refusal::new(
                StatusCode::FORBIDDEN,
                format!(
                    "forbidden: 'kubectl {}' session must be recorded, but no recorders are available.",
                    kind.as_str()
                ),
            )),
        }
    }

    /// The outcome when [`connect_session`](crate::connect_session) failed.
    /// Under fail closed the proxy answers this refusal before the request
    /// reaches the API server, as a proper `HTTP/1.1 403` with a length
    /// (upstream writes it on the hijacked connection, as `HTTP/0.0`).
    pub fn session_connect_failed(self, error: &ConnectError) -> Outcome {
        self.session_unrecordable(
            UnrecordedReason::SessionNotRecorded(error.clone()),
            &format!("error connecting to session recorders: {error}"),
        )
    }

    /// The outcome when an exec/attach session's streaming protocol cannot
    /// be verified (its `Upgrade` header is not the one its route implies),
    /// so nothing could record it. `reason` says what was seen.
    pub fn session_protocol_unverified(self, reason: &str) -> Outcome {
        self.session_unrecordable(
            UnrecordedReason::SessionProtocolUnverified(reason.to_owned()),
            reason,
        )
    }

    /// A session that cannot be recorded: fail open runs it unrecorded
    /// (`reason`), fail closed refuses it with 403, naming `cause` in
    /// upstream's words.
    fn session_unrecordable(self, reason: UnrecordedReason, cause: &str) -> Outcome {
        match self {
            FailurePolicy::FailOpen => Outcome::ForwardUnrecorded { reason },
            FailurePolicy::FailClosed => Outcome::Refuse(Refusal::new(
                StatusCode::FORBIDDEN,
                format!("{cause}; failure mode is 'fail closed'; closing connection."),
            )),
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
            FailurePolicy::FailClosed => Outcome::Refuse(Refusal::new(
                StatusCode::BAD_GATEWAY,
                format!("error recording Kubernetes API request: {error}"),
            )),
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
    /// Fail open, with queued delivery (`ClientConfig::fail_open`):
    /// the event is queued for delivery in the background (in the spool, or
    /// in memory without one): proxy the request at once.
    Queued,
    /// Fail open and recording did not happen (yet): proxy the request and
    /// log `reason` with upstream's phrase "failure mode is 'fail open';
    /// continuing … without recording."
    ForwardUnrecorded {
        /// Why, and what became of the event.
        reason: UnrecordedReason,
    },
    /// Fail closed and recording did not happen: answer with the refusal,
    /// and do not proxy.
    Refuse(Refusal),
}

impl Outcome {
    /// Whether the proxy should forward the request.
    pub fn forwards(&self) -> bool {
        !matches!(self, Outcome::Refuse(_))
    }
}

/// A request or session refused because it cannot be recorded (fail
/// closed): the status and the one-line body the caller gets instead of the
/// API server's answer. The one refusal type, for API requests and
/// exec/attach sessions alike.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// 403 or 502 (see the module table).
    pub status: StatusCode,
    /// The body, in upstream's wording, without a trailing newline.
    pub message: String,
}

impl Refusal {
    /// A refusal answering `status` with `message`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Refusal {
            status,
            message: message.into(),
        }
    }

    /// The response Tailscale's clients expect, as Go's `http.Error` writes
    /// it: the status, `Content-Type: text/plain; charset=utf-8`,
    /// `X-Content-Type-Options: nosniff`, and the message ending in a newline.
    pub fn into_response(self) -> http::Response<String> {
        let mut body = self.message;
        if !body.ends_with('\n') {
            body.push('\n');
        }
        let mut response = http::Response::new(body);
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        headers.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        headers.insert(
            http::header::X_CONTENT_TYPE_OPTIONS,
            http::HeaderValue::from_static("nosniff"),
        );
        response
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
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
    /// The session recording could not be started: no recorder accepted
    /// the upload.
    SessionNotRecorded(ConnectError),
    /// The session's streaming protocol could not be verified, so nothing
    /// could record it; says what was seen.
    SessionProtocolUnverified(String),
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
            UnrecordedReason::SessionProtocolUnverified(reason) => {
                write!(f, "session not recorded: {reason}")
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_answers_as_go_http_error_does() {
        let response = Refusal::new(StatusCode::FORBIDDEN, "forbidden: no").into_response();
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        assert_eq!(response.body(), "forbidden: no\n");
        assert_eq!(
            response.headers()[http::header::CONTENT_TYPE],
            "text/plain; charset=utf-8"
        );
        assert_eq!(
            response.headers()[http::header::X_CONTENT_TYPE_OPTIONS],
            "nosniff"
        );
    }

    #[test]
    fn an_unverifiable_session_protocol_is_refused_only_under_fail_closed() {
        let reason = "unable to verify that streaming protocol is SPDY";
        assert_eq!(
            FailurePolicy::FailClosed.session_protocol_unverified(reason),
            Outcome::Refuse(Refusal::new(
                StatusCode::FORBIDDEN,
                format!("{reason}; failure mode is 'fail closed'; closing connection.")
            ))
        );
        assert!(FailurePolicy::FailOpen
            .session_protocol_unverified(reason)
            .forwards());
    }
}
