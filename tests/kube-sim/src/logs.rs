//! `pods/log`: a deterministic per-container log that grows by one line every
//! `log_interval` after the pod starts, with `follow`, `tailLines` and `timestamps`.
//!
//! Line `k` (from 1) of container `c` in pod `ns/p` reads
//! `kube-sim ns/p/c line k`. A pod has [`INITIAL_LINES`] lines when it starts.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Response;
use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tokio::sync::mpsc;

use crate::http_util::{full, streaming, with_type, Body, Query};
use crate::resources;
use crate::state::SimState;
use crate::status::ApiError;

/// Lines every container has logged when its pod is created.
pub const INITIAL_LINES: u64 = 3;
/// The most lines a non-tail request returns (older lines are dropped).
const MAX_LINES: u64 = 5_000;

/// The text of line `k` (1-based) of a container's log, without timestamp.
pub fn line_text(namespace: &str, pod: &str, container: &str, k: u64) -> String {
    format!("kube-sim {namespace}/{pod}/{container} line {k}")
}

struct LogSource {
    namespace: String,
    pod: String,
    container: String,
    started: OffsetDateTime,
    interval: Duration,
    timestamps: bool,
}

impl LogSource {
    fn lines_at(&self, now: OffsetDateTime) -> u64 {
        let elapsed = (now - self.started).whole_milliseconds().max(0) as u128;
        let interval = self.interval.as_millis().max(1);
        INITIAL_LINES + u64::try_from(elapsed / interval).unwrap_or(u64::MAX / 2)
    }

    fn line(&self, k: u64) -> String {
        let text = line_text(&self.namespace, &self.pod, &self.container, k);
        if self.timestamps {
            let offset =
                self.interval * u32::try_from(k.saturating_sub(INITIAL_LINES)).unwrap_or(u32::MAX);
            let at = self.started + offset;
            let stamp = at.format(&Rfc3339).unwrap_or_default();
            format!("{stamp} {text}\n")
        } else {
            format!("{text}\n")
        }
    }
}

/// Handles `GET …/pods/{name}/log`.
pub(crate) fn handle(
    state: &Arc<SimState>,
    pod: &Value,
    query: &Query,
) -> Result<Response<Body>, ApiError> {
    let name = pod
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let namespace = pod
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let containers: Vec<String> = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .map(|cs| {
            cs.iter()
                .filter_map(|c| c["name"].as_str())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    let container = match query.get("container").filter(|c| !c.is_empty()) {
        Some(c) if containers.iter().any(|x| x == c) => c.to_string(),
        Some(c) => {
            return Err(ApiError::bad_request(format!(
                "container {c} is not valid for pod {name}"
            )))
        }
        None => containers
            .first()
            .cloned()
            .ok_or_else(|| ApiError::bad_request(format!("pod {name} has no containers")))?,
    };
    let started = pod
        .pointer("/metadata/creationTimestamp")
        .and_then(Value::as_str)
        .and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok())
        .unwrap_or_else(OffsetDateTime::now_utc);
    let source = LogSource {
        namespace: namespace.clone(),
        pod: name.clone(),
        container,
        started,
        interval: state.log_interval,
        timestamps: query.flag("timestamps"),
    };
    let total = source.lines_at(OffsetDateTime::now_utc());
    let tail = query
        .get("tailLines")
        .and_then(|t| t.parse::<u64>().ok())
        .unwrap_or(MAX_LINES)
        .min(MAX_LINES);
    let first = total.saturating_sub(tail) + 1;
    let existing: String = (first..=total).map(|k| source.line(k)).collect();
    if !query.flag("follow") {
        return Ok(with_type(200, "text/plain", full(existing)));
    }
    let (tx, rx) = mpsc::channel(16);
    let state = state.clone();
    tokio::spawn(async move {
        if tx.send(Bytes::from(existing)).await.is_err() {
            return;
        }
        let mut shutdown = state.shutdown.clone();
        let mut next = total + 1;
        loop {
            let due = source.started
                + source.interval * u32::try_from(next - INITIAL_LINES).unwrap_or(u32::MAX);
            let wait = (due - OffsetDateTime::now_utc()).max(time::Duration::ZERO);
            let sleep = Duration::try_from(wait).unwrap_or(Duration::ZERO);
            tokio::select! {
                () = tokio::time::sleep(sleep) => {}
                _ = shutdown.changed() => return,
                () = tx.closed() => return,
            }
            if state
                .store
                .get(resources::pods(), Some(&namespace), &name)
                .is_err()
            {
                return;
            }
            if tx.send(Bytes::from(source.line(next))).await.is_err() {
                return;
            }
            next += 1;
        }
    });
    Ok(streaming("text/plain", rx))
}
