//! What every list (events and sessions) filters on: a time range, who,
//! and which namespace.

/// The filters both lists share. `None` means "any"; strings match exactly.
#[derive(Debug, Clone, Default)]
pub(crate) struct ListFilter {
    /// Earliest time (Unix seconds, inclusive): the event's `timestamp`, or
    /// when the session started.
    pub(crate) since: Option<i64>,
    /// Latest time (Unix seconds, exclusive).
    pub(crate) until: Option<i64>,
    /// The user: `source.nodeUser`, or the cast header's `srcNodeUser`.
    pub(crate) user: Option<String>,
    /// The node: `source.node`, or the cast header's `srcNode`.
    pub(crate) node: Option<String>,
    /// The namespace: `kubernetes.Namespace` of the event or the cast header.
    pub(crate) namespace: Option<String>,
}

/// Whether `want` is "any" or exactly `have`.
pub(super) fn eq(want: &Option<String>, have: &str) -> bool {
    want.as_deref().is_none_or(|w| w == have)
}

impl ListFilter {
    /// Whether an entry at `secs` by `user` on `node` in `namespace` matches.
    pub(super) fn matches(&self, secs: i64, user: &str, node: &str, namespace: &str) -> bool {
        self.since.is_none_or(|t| secs >= t)
            && self.until.is_none_or(|t| secs < t)
            && eq(&self.user, user)
            && eq(&self.node, node)
            && eq(&self.namespace, namespace)
    }
}
