//! The caller's recording rules: all Kubernetes grant rules merged into one decision
//! (`docs/tailscale-protocol.md#merging-grants`, upstream `determineRecorderConfig`).

use std::net::SocketAddr;

use localapi::{LocalApiError, StatusCache};
use serde::Serialize;

use crate::grants::{parse_rules, GrantError, KubernetesCapRule, KUBERNETES_CAP};
use crate::whois_response::CapMap;

/// Where and how a caller's requests must be recorded. One set of rules covers both API request events
/// and exec/attach session recordings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecordingRules {
    /// Recorder addresses to try, in order (first success wins). Concatenated across rules in
    /// CapMap order; duplicates are kept. When no rule carries any but some name `recorder` tags,
    /// [`resolve_tags`](Self::resolve_tags) fills them in from the proxy node's netmap.
    pub recorder_addrs: Vec<SocketAddr>,
    /// The `recorder` tags the rules name, in CapMap order, each once. Control resolves them into
    /// `recorderAddrs`; they are only consulted when it did not (no rule carries any address).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub recorder_tags: Vec<String>,
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
            recorder_tags: Vec::new(),
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
            for tag in &grant.recorder {
                if !rules.recorder_tags.contains(tag) {
                    rules.recorder_tags.push(tag.clone());
                }
            }
            if grant.enforce_recorder {
                rules.fail_open = false;
            }
            if grant.enable_events {
                rules.enable_events = true;
            }
        }
        rules
    }

    /// Whether the recorders must be found from the `recorder` tags: some rule names tags, and no
    /// rule carries `recorderAddrs` (control did not resolve them). Addresses, when present,
    /// always win: the two are never combined.
    pub fn needs_tag_resolution(&self) -> bool {
        self.recorder_addrs.is_empty() && !self.recorder_tags.is_empty()
    }

    /// Fills in the recorder addresses from the `recorder` tags when
    /// [`needs_tag_resolution`](Self::needs_tag_resolution), as Tailscale finds recorders: the
    /// peers of the proxy node's netmap (tailscaled's status) that carry any of the tags, every
    /// Tailscale address of theirs on port 80, lowest first
    /// ([`localapi::Status::recorders_for_tags`]). Otherwise returns the rules unchanged without
    /// asking. A tag no peer carries adds nothing: with none found, an `enforceRecorder` caller
    /// is refused as when no recorder is granted.
    pub async fn resolve_tags(mut self, netmap: &StatusCache) -> Result<Self, LocalApiError> {
        if self.needs_tag_resolution() {
            self.recorder_addrs = netmap.recorders_for_tags(&self.recorder_tags).await?;
        }
        Ok(self)
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
