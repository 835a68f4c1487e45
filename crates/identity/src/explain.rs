//! The core of `kubescribe-proxy whois`: everything the proxy would decide about one peer, as
//! JSON, for an operator asking "why was this request refused?".

use std::net::SocketAddr;

use localapi::StatusCache;
use serde::Serialize;

use crate::caller::{Caller, Identity};
use crate::grants::GrantError;
use crate::impersonation::{impersonation_headers, Impersonation};
use crate::recording_rules::RecordingRules;
use crate::whois::{WhoIs, WhoIsError};
use crate::whois_response::CapMap;

/// A result carried as a value: serialises as `{"ok": …}` or `{"error": "message"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome<T> {
    /// It worked.
    Ok(T),
    /// It failed, with the operator-facing message.
    Error(String),
}

impl<T> From<Result<T, GrantError>> for Outcome<T> {
    fn from(result: Result<T, GrantError>) -> Self {
        match result {
            Ok(value) => Outcome::Ok(value),
            Err(error) => Outcome::Error(error.to_string()),
        }
    }
}

/// What the proxy would do with requests from one peer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Explanation {
    /// The peer looked up.
    pub peer: SocketAddr,
    /// Its identity.
    pub identity: Identity,
    /// Whether the node is tagged.
    pub tagged: bool,
    /// Its raw grants.
    pub caps: CapMap,
    /// The merged recording rules (or why the grants are refused), with the recorders found from
    /// the `recorder` tags when the rules needed that and a netmap was asked.
    pub recording_rules: Outcome<RecordingRules>,
    /// When the rules name `recorder` tags but no addresses: the addresses the tags resolved to
    /// in the proxy node's netmap, or why they could not be resolved. Absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recorders_from_tags: Option<Outcome<Vec<SocketAddr>>>,
    /// The impersonation headers auth mode would send (or why it would refuse).
    pub impersonation: Outcome<Impersonation>,
    /// The resulting decisions in words, one line each.
    pub verdict: Vec<String>,
}

impl Explanation {
    /// Explains an already resolved caller (`recorder` tags are not resolved: see
    /// [`explain`]).
    pub fn of(peer: SocketAddr, caller: Caller) -> Self {
        let rules = RecordingRules::from_caps(&caller.caps);
        Self::with_rules(peer, caller, rules, None)
    }

    fn with_rules(
        peer: SocketAddr,
        caller: Caller,
        rules: Result<RecordingRules, GrantError>,
        recorders_from_tags: Option<Outcome<Vec<SocketAddr>>>,
    ) -> Self {
        let impersonation = impersonation_headers(&caller);
        let mut verdict = verdict(&rules, &impersonation);
        if let (Ok(rules), Some(found)) = (&rules, &recorders_from_tags) {
            let line = match found {
                Outcome::Ok(addrs) => format!(
                    "no grant carries recorderAddrs; recorder tags {:?} resolved in the proxy node's \
                     netmap to {} address(es)",
                    rules.recorder_tags,
                    addrs.len()
                ),
                Outcome::Error(e) => format!(
                    "no grant carries recorderAddrs; recorder tags {:?} could not be resolved in the \
                     proxy node's netmap: {e}",
                    rules.recorder_tags
                ),
            };
            verdict.insert(0, line);
        }
        Explanation {
            peer,
            tagged: caller.identity.is_tagged(),
            identity: caller.identity,
            caps: caller.caps,
            recording_rules: rules.into(),
            recorders_from_tags,
            impersonation: impersonation.into(),
            verdict,
        }
    }

    /// Pretty JSON, as `kubescribe-proxy whois` prints it.
    pub fn to_json_pretty(&self) -> String {
        // Serialising these plain types cannot fail; fall back to the Debug form just in case.
        serde_json::to_string_pretty(self).unwrap_or_else(|_| format!("{self:?}"))
    }
}

/// Resolves `peer` through `whois` and explains the result. When the caller's rules name
/// `recorder` tags but no addresses and `netmap` is given (the proxy's tailscaled), the tags are
/// resolved there as the proxy would ([`RecordingRules::resolve_tags`]). A WhoIs failure is the
/// error (print it to stderr and exit non-zero); grant and netmap errors are values inside the
/// explanation.
pub async fn explain(
    whois: &dyn WhoIs,
    peer: SocketAddr,
    netmap: Option<&StatusCache>,
) -> Result<Explanation, WhoIsError> {
    let caller = whois.whois(peer).await?;
    let mut rules = RecordingRules::from_caps(&caller.caps);
    let mut found = None;
    if let (Ok(parsed), Some(netmap)) = (&rules, netmap) {
        if parsed.needs_tag_resolution() {
            match parsed.clone().resolve_tags(netmap).await {
                Ok(resolved) => {
                    found = Some(Outcome::Ok(resolved.recorder_addrs.clone()));
                    rules = Ok(resolved);
                }
                Err(e) => found = Some(Outcome::Error(e.to_string())),
            }
        }
    }
    Ok(Explanation::with_rules(peer, caller, rules, found))
}

fn verdict(
    rules: &Result<RecordingRules, GrantError>,
    impersonation: &Result<Impersonation, GrantError>,
) -> Vec<String> {
    let mut lines = Vec::new();
    match rules {
        Err(_) => lines.push(
            "every request is refused (403): the caller's Kubernetes grant does not parse"
                .to_owned(),
        ),
        Ok(p) if p.refuses_everything() => lines.push(
            "every request is refused (403): enforceRecorder is set but no recorder address is \
             granted or found from the recorder tags"
                .to_owned(),
        ),
        Ok(p) if !p.has_recorders() => lines.push(
            "requests are proxied without events or session recordings (no recorder granted)"
                .to_owned(),
        ),
        Ok(p) => {
            let mode = if p.fail_open {
                "fail open: proxied unrecorded if no recorder can be reached"
            } else {
                "fail closed: refused if no recorder can be reached"
            };
            lines.push(format!(
                "exec/attach sessions are recorded to {} recorder address(es); {mode}",
                p.recorder_addrs.len()
            ));
            lines.push(if p.enable_events {
                "every API request is sent as an event before it is proxied".to_owned()
            } else {
                "API request events are off (no enableEvents grant)".to_owned()
            });
        }
    }
    match impersonation {
        Ok(imp) => lines.push(format!(
            "auth mode impersonates user {:?} with {} group(s); noauth mode passes the client's \
             credentials through",
            imp.user(),
            imp.groups().len()
        )),
        Err(_) => lines.push(
            "auth mode refuses every request (403): no valid impersonation can be derived"
                .to_owned(),
        ),
    }
    lines
}
