//! What the API server received through a proxy against what the recorder
//! stored: every request a caller sent through the proxy that kube-apiserver's
//! audit log shows must have its event, one for one.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::identities::TestIdentity;
use crate::stack::Stack;
use crate::Error;

/// Requests counted by request URI (path and query as the API server received them).
pub type UriCounts = BTreeMap<String, usize>;

/// The comparison for one caller.
#[derive(Debug, Default)]
pub struct Received {
    /// Requests in the audit log (one per audit ID).
    pub audited: usize,
    /// Events the recorder stored.
    pub recorded: usize,
    /// URIs the API server received more often than events name them, with the shortfall.
    pub without_event: UriCounts,
    /// URIs events name more often than the API server received them, with the excess.
    pub without_request: UriCounts,
}

impl Received {
    /// Whether every audited request has its event and every event its request.
    pub fn matches(&self) -> bool {
        self.without_event.is_empty() && self.without_request.is_empty()
    }
}

impl std::fmt::Display for Received {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} requests in the audit log, {} events",
            self.audited, self.recorded
        )?;
        for (uri, n) in &self.without_event {
            write!(f, "\n  received {n}× more than recorded: {uri}")?;
        }
        for (uri, n) in &self.without_request {
            write!(f, "\n  recorded {n}× more than received: {uri}")?;
        }
        Ok(())
    }
}

/// Audit events that `matches`, one per audit ID (a watch writes one when its response starts and
/// another when it completes), counted by `requestURI`.
pub fn audited(stack: &Stack, matches: impl Fn(&Value) -> bool) -> Result<UriCounts, Error> {
    let plane = stack
        .upstream
        .control_plane()
        .ok_or("the audit log needs the real kube-apiserver upstream")?;
    let mut seen = std::collections::HashSet::new();
    let mut counts = UriCounts::new();
    for event in plane.audit_events()? {
        let id = event["auditID"].as_str().unwrap_or_default().to_owned();
        if matches(&event) && seen.insert(id) {
            *counts
                .entry(event["requestURI"].as_str().unwrap_or_default().to_owned())
                .or_default() += 1;
        }
    }
    Ok(counts)
}

/// Events the recorder stored for `query` (e.g. `user=alice%40example.com`), counted by
/// `request.path` (path and query as the caller sent them).
pub fn recorded(stack: &Stack, query: &str) -> Result<UriCounts, Error> {
    let mut counts = UriCounts::new();
    for row in stack.all_events(query)? {
        *counts
            .entry(
                row["event"]["request"]["path"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
            .or_default() += 1;
    }
    Ok(counts)
}

/// The audit log (requests the auth-mode proxy sent as `impersonated`) against the events stored for
/// `query`, waited on for up to `timeout` until they agree (the audit log's last lines and the events
/// of requests still in flight may lag).
pub fn through_proxy(
    stack: &Stack,
    impersonated: &str,
    query: &str,
    timeout: Duration,
) -> Result<Received, Error> {
    let proxy_user = stack.upstream.proxy_user();
    compare(
        stack,
        |e| {
            e["user"]["username"] == proxy_user && e["impersonatedUser"]["username"] == impersonated
        },
        query,
        timeout,
    )
}

/// [`through_proxy`] for the caller `identity`: the user the proxy impersonates for it, and its
/// events by user (a user's node) or by node name (a tagged node).
pub fn for_caller(
    stack: &Stack,
    identity: &TestIdentity,
    timeout: Duration,
) -> Result<Received, Error> {
    let user = identity.impersonated_user();
    let query = if identity.tags.is_empty() {
        format!("user={}", user.replace('@', "%40"))
    } else {
        format!("node={user}")
    };
    through_proxy(stack, &user, &query, timeout)
}

/// The audit events that `matches` against the events stored for `query`, as [`through_proxy`].
pub fn compare(
    stack: &Stack,
    matches: impl Fn(&Value) -> bool,
    query: &str,
    timeout: Duration,
) -> Result<Received, Error> {
    let deadline = Instant::now() + timeout;
    loop {
        let audit = audited(stack, &matches)?;
        let events = recorded(stack, query)?;
        let received = Received {
            audited: audit.values().sum(),
            recorded: events.values().sum(),
            without_event: difference(&audit, &events),
            without_request: difference(&events, &audit),
        };
        if received.matches() || Instant::now() > deadline {
            return Ok(received);
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// How many more times each key is in `a` than in `b` (keys where it is more).
fn difference(a: &UriCounts, b: &UriCounts) -> UriCounts {
    a.iter()
        .filter_map(|(uri, n)| {
            let more = n.saturating_sub(b.get(uri).copied().unwrap_or(0));
            (more > 0).then(|| (uri.clone(), more))
        })
        .collect()
}
