//! The caller's recording rules: all Kubernetes grant rules merged into one decision
//! (`docs/tailscale-protocol.md#merging-grants`, upstream `determineRecorderConfig`).

use std::net::SocketAddr;

use serde::Serialize;

use crate::grants::{parse_rules, GrantError, KubernetesCapRule, KUBERNETES_CAP};
use crate::whois_response::CapMap;

/// Where and how a caller's requests must be recorded. One set of rules covers both API request events
/// and exec/attach session recordings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecordingRules {
    /// Recorder addresses to try, in order (first success wins). Concatenated across rules in
    /// CapMap order; duplicates are kept.
    pub recorder_addrs: Vec<SocketAddr>,
    /// `true` unless some rule sets `enforceRecorder`: when recording is impossible, proxy anyway.
    /// `false` (fail closed): refuse the request when it cannot be recorded.
    pub fail_open: bool,
    /// Whether some rule sets `enableEvents`: send each API request as an event.
    pub enable_events: bool,
}

impl Default for RecordingRules {
    /// The policy of a caller without Kubernetes grant rules: no recorders, fail open, no events.
    fn default() -> Self {
        RecordingRules {
            recorder_addrs: Vec::new(),
            fail_open: true,
            enable_events: false,
        }
    }
}

impl RecordingRules {
    /// Merges the caller's `tailscale.com/cap/kubernetes` rules (the legacy capability name is not
    /// consulted for recording). Any rule that does not parse makes the whole result an error:
    /// refuse the request.
    pub fn from_caps(caps: &CapMap) -> Result<Self, GrantError> {
        Ok(Self::merge(&parse_rules(caps, KUBERNETES_CAP)?))
    }

    /// Merges already parsed rules: addresses concatenated in order, any `enforceRecorder` ⇒ fail
    /// closed, any `enableEvents` ⇒ events on.
    pub(crate) fn merge(grants: &[KubernetesCapRule]) -> Self {
        let mut rules = RecordingRules::default();
        for grant in grants {
            rules
                .recorder_addrs
                .extend(grant.recorder_addrs.iter().copied());
            if grant.enforce_recorder {
                rules.fail_open = false;
            }
            if grant.enable_events {
                rules.enable_events = true;
            }
        }
        rules
    }

    /// Whether there is any recorder to send to. Sessions are recorded whenever this is true.
    pub fn has_recorders(&self) -> bool {
        !self.recorder_addrs.is_empty()
    }

    /// Whether every request of this caller must be refused because recording is enforced but no
    /// recorder is available (403 for every API request, `docs/tailscale-protocol.md#ordinary-requests`).
    pub fn refuses_everything(&self) -> bool {
        !self.fail_open && self.recorder_addrs.is_empty()
    }
}
