//! Request admission: where the recorder client's fail-open/fail-closed
//! decision is applied to an API request, before it is forwarded.
//!
//! Before forwarding, [`admit`] decides from the caller's merged grants whether
//! the request needs an event, may go through unrecorded, or is refused
//! (fail closed with no recorders: 403 for every request, events on or not).
//! After the event was offered to the recorders, [`after_event`] turns the
//! recorder client's [`Outcome`] into forward or refuse (502 under fail closed).
//! Statuses and wording of refusals are Tailscale's
//! (docs/tailscale-protocol.md#event-transport), decided by the recorder
//! client's [`FailurePolicy`].

use identity::RecordingRules;
use recorder_client::{FailurePolicy, Outcome, Refusal, UnrecordedReason};

/// What to do with a request before any event is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Forward without an event (no recorders under fail open, or events off for this caller).
    ForwardWithoutEvent,
    /// Send an event to the caller's recorders first, under this failure policy.
    RecordEvent(FailurePolicy),
    /// Refuse.
    Refuse(Refusal),
}

/// Decide before forwarding. `events_for_all_callers` is
/// `TS_EXPERIMENTAL_KUBE_API_EVENTS` (events for every caller that has recorders).
pub(crate) fn admit(policy: &RecordingRules, events_for_all_callers: bool, url: &str) -> Admission {
    let failure = FailurePolicy::from_fail_open(policy.fail_open);
    if policy.recorder_addrs.is_empty() {
        return match failure.no_recorders_for_request(url) {
            Outcome::Refuse(refusal) => Admission::Refuse(refusal),
            Outcome::Forward | Outcome::Queued | Outcome::ForwardUnrecorded { .. } => {
                Admission::ForwardWithoutEvent
            }
        };
    }
    if policy.enable_events || events_for_all_callers {
        Admission::RecordEvent(failure)
    } else {
        Admission::ForwardWithoutEvent
    }
}

/// Whether Tailscale would count `k8s_auth_proxy_api_request_event_recording_attempted`
/// for this policy (everything except "fail open and no recorders").
pub(crate) fn counts_as_recording_attempt(policy: &RecordingRules) -> bool {
    !(policy.fail_open && policy.recorder_addrs.is_empty())
}

/// What became of the event, when the request may go on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Recorded {
    /// A recorder stored it.
    Stored,
    /// Fail open, queued: to be delivered in the background (`--fail-open-delivery queued`).
    Queued,
    /// Fail open: not stored (spooled or dropped); the reason is for the log.
    NotStored(UnrecordedReason),
}

/// Decide after the event was offered to the recorders.
pub(crate) fn after_event(outcome: Outcome) -> Result<Recorded, Refusal> {
    match outcome {
        Outcome::Forward => Ok(Recorded::Stored),
        Outcome::Queued => Ok(Recorded::Queued),
        Outcome::ForwardUnrecorded { reason } => Ok(Recorded::NotStored(reason)),
        Outcome::Refuse(refusal) => Err(refusal),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::StatusCode;

    fn policy(addrs: &[&str], fail_open: bool, enable_events: bool) -> RecordingRules {
        RecordingRules {
            recorder_addrs: addrs.iter().filter_map(|a| a.parse().ok()).collect(),
            recorder_tags: Vec::new(),
            fail_open,
            enable_events,
        }
    }

    #[test]
    fn fail_closed_without_recorders_refuses_everything() {
        let a = admit(&policy(&[], false, false), false, "/api/v1/pods?limit=1");
        assert_eq!(
            a,
            Admission::Refuse(Refusal {
                status: StatusCode::FORBIDDEN,
                message: "forbidden: api request \"/api/v1/pods?limit=1\" must be recorded, but no recorders are available.".into()
            })
        );
    }

    #[test]
    fn events_only_when_granted_or_forced_and_recorders_exist() {
        assert_eq!(
            admit(&policy(&[], true, true), true, "/"),
            Admission::ForwardWithoutEvent
        );
        assert_eq!(
            admit(&policy(&["100.64.0.5:80"], true, false), false, "/"),
            Admission::ForwardWithoutEvent
        );
        assert_eq!(
            admit(&policy(&["100.64.0.5:80"], true, false), true, "/"),
            Admission::RecordEvent(FailurePolicy::FailOpen)
        );
        assert_eq!(
            admit(&policy(&["100.64.0.5:80"], false, true), false, "/"),
            Admission::RecordEvent(FailurePolicy::FailClosed)
        );
    }

    #[test]
    fn outcomes_map_to_forward_or_refuse() {
        assert_eq!(after_event(Outcome::Forward), Ok(Recorded::Stored));
        let r = after_event(Outcome::Refuse(Refusal {
            status: StatusCode::BAD_GATEWAY,
            message: "error recording Kubernetes API request: x".into(),
        }));
        assert_eq!(r.map_err(|r| r.status), Err(StatusCode::BAD_GATEWAY));
    }
}
