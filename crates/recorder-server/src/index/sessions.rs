//! The session index: every session's header and metadata (small: one entry
//! per session, all of them kept), rebuilt from storage at start-up and kept
//! current by the uploads in progress.

use std::collections::BTreeMap;
use std::sync::RwLock;

use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use super::filter::{eq, ListFilter};

/// Where a session is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum SessionState {
    /// Still being uploaded.
    Live,
    /// The upload ended cleanly.
    Finished,
    /// The upload ended with an error (the stored cast holds what was
    /// acknowledged; see `error`).
    Failed,
    /// The recorder restarted during the upload; the cast was finalised at
    /// start-up with everything that had been acknowledged.
    Recovered,
}

/// One session's metadata, as `GET /api/v1/sessions` shows it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct SessionInfo {
    /// The session id (32 hex digits).
    pub(crate) id: String,
    /// The object key of the cast.
    #[serde(rename = "storageKey")]
    pub(crate) storage_key: String,
    /// When the upload started (Unix milliseconds).
    #[serde(rename = "startedMs")]
    pub(crate) started_ms: i64,
    /// The cast header (first line), as sent.
    pub(crate) header: Value,
    /// Durable bytes stored so far.
    pub(crate) size: u64,
    /// The time offset of the last cast event (seconds): the recording's length.
    #[serde(rename = "durationSeconds")]
    pub(crate) duration_seconds: f64,
    /// Life-cycle state.
    pub(crate) state: SessionState,
    /// Why the upload failed, when it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
    /// The uploading peer (node name or `token`).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub(crate) uploader: String,
    /// The wire protocol used (`v2` or `v1`).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub(crate) protocol: String,
}

/// Filters for [`SessionIndex::list`].
#[derive(Debug, Clone, Default)]
pub(crate) struct SessionFilter {
    /// Start time, user (`srcNodeUser`), node (`srcNode`), namespace
    /// (`kubernetes.Namespace` of the header).
    pub(crate) list: ListFilter,
    /// `kubernetes.PodName` of the header.
    pub(crate) pod: Option<String>,
    /// Only live (or only finished) sessions.
    pub(crate) live: Option<bool>,
    /// Only sessions older than this id (the cursor).
    pub(crate) before: Option<u128>,
    /// Page size.
    pub(crate) limit: usize,
}

fn header_str<'a>(header: &'a Value, path: &[&str]) -> &'a str {
    let mut v = header;
    for p in path {
        match v.get(p) {
            Some(next) => v = next,
            None => return "",
        }
    }
    v.as_str().unwrap_or("")
}

impl SessionFilter {
    fn matches(&self, s: &SessionInfo) -> bool {
        self.list.matches(
            s.started_ms.div_euclid(1000),
            header_str(&s.header, &["srcNodeUser"]),
            header_str(&s.header, &["srcNode"]),
            header_str(&s.header, &["kubernetes", "Namespace"]),
        ) && eq(&self.pod, header_str(&s.header, &["kubernetes", "PodName"]))
            && self
                .live
                .is_none_or(|l| l == (s.state == SessionState::Live))
    }
}

/// All sessions by id (time-ordered).
#[derive(Default)]
pub(crate) struct SessionIndex {
    inner: RwLock<BTreeMap<u128, SessionInfo>>,
}

impl SessionIndex {
    /// An empty index.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Adds or replaces a session.
    pub(crate) fn upsert(&self, id: &Uuid, info: SessionInfo) {
        if let Ok(mut inner) = self.inner.write() {
            inner.insert(id.as_u128(), info);
        }
    }

    /// Updates a session in place.
    pub(crate) fn update(&self, id: &Uuid, f: impl FnOnce(&mut SessionInfo)) {
        if let Ok(mut inner) = self.inner.write() {
            if let Some(info) = inner.get_mut(&id.as_u128()) {
                f(info);
            }
        }
    }

    /// One session.
    pub(crate) fn get(&self, id: &Uuid) -> Option<SessionInfo> {
        self.inner.read().ok()?.get(&id.as_u128()).cloned()
    }

    /// Newest-first page, and the cursor for the next page.
    pub(crate) fn list(&self, filter: &SessionFilter) -> (Vec<SessionInfo>, Option<String>) {
        let Ok(inner) = self.inner.read() else {
            return (Vec::new(), None);
        };
        let limit = filter.limit.max(1);
        let range = match filter.before {
            Some(b) => inner.range(..b),
            None => inner.range(..),
        };
        let mut out = Vec::new();
        let mut next = None;
        for (_, s) in range.rev() {
            if !filter.matches(s) {
                continue;
            }
            if out.len() == limit {
                next = out.last().map(|s: &SessionInfo| s.id.clone());
                break;
            }
            out.push(s.clone());
        }
        (out, next)
    }

    /// Number of sessions.
    pub(crate) fn len(&self) -> usize {
        self.inner.read().map(|i| i.len()).unwrap_or(0)
    }
}

/// The time offset of the last complete cast event line in `tail`.
pub(crate) fn last_event_time(tail: &[u8]) -> Option<f64> {
    last_line(tail)?.get(0)?.as_f64()
}

/// The prefix of the asciicast marker (`"m"`) line the recorder appends to a session whose upload
/// failed, before the reason: the cast stays playable, and the failure survives restarts.
pub(crate) const FAILED_MARKER: &str = "kubescribe: upload failed: ";

/// The marker line recording that a session's upload failed with `reason` at `time` seconds.
pub(crate) fn failed_marker(time: f64, reason: &str) -> Vec<u8> {
    let mut line = serde_json::to_vec(&serde_json::json!([
        time,
        "m",
        format!("{FAILED_MARKER}{reason}")
    ]))
    .unwrap_or_default();
    line.push(b'\n');
    line
}

/// Why a stored session failed, when its last line is the recorder's failure marker.
pub(crate) fn failure_in(tail: &[u8]) -> Option<String> {
    let line = last_line(tail)?;
    if line.get(1)?.as_str()? != "m" {
        return None;
    }
    line.get(2)?
        .as_str()?
        .strip_prefix(FAILED_MARKER)
        .map(str::to_owned)
}

fn last_line(tail: &[u8]) -> Option<Value> {
    let text = tail.strip_suffix(b"\n").unwrap_or(tail);
    let start = text
        .iter()
        .rposition(|b| *b == b'\n')
        .map(|p| p + 1)
        .unwrap_or(0);
    serde_json::from_slice(&text[start..]).ok()
}
