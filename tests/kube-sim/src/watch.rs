//! Streaming watches (`?watch=1`): newline-delimited `{"type":…,"object":…}` events,
//! resuming from a resourceVersion, with optional bookmarks and `timeoutSeconds`.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Response;
use serde_json::{json, Value};
use tokio::sync::{broadcast, mpsc};

use crate::http_util::{streaming, Body, Query};
use crate::rendering::Rendering;
use crate::resources::ResourceDef;
use crate::selectors::ListFilter;
use crate::state::SimState;
use crate::status::ApiError;
use crate::store::{EventType, StoreEvent};

/// The longest a watch stays open (kube-apiserver picks 30–60 minutes).
const MAX_WATCH: Duration = Duration::from_secs(1800);

fn encode(kind: &str, object: Value) -> Bytes {
    let mut line = serde_json::to_vec(&json!({"type": kind, "object": object})).unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}

struct Watcher {
    def: &'static ResourceDef,
    namespace: Option<String>,
    filter: ListFilter,
    rendering: Rendering,
}

impl Watcher {
    /// What this watcher sees of an event: nothing, or the event (a modification that
    /// moves an object into or out of the selection is seen as ADDED or DELETED).
    fn view(&self, event: &StoreEvent) -> Option<EventType> {
        if !self.in_scope(event) {
            return None;
        }
        let now = self.filter.matches(&event.object);
        match (
            event.kind,
            event.previous.as_ref().map(|p| self.filter.matches(p)),
        ) {
            (EventType::Modified, Some(before)) => match (before, now) {
                (true, true) => Some(EventType::Modified),
                (false, true) => Some(EventType::Added),
                (true, false) => Some(EventType::Deleted),
                (false, false) => None,
            },
            (kind, _) => now.then_some(kind),
        }
    }

    fn in_scope(&self, event: &StoreEvent) -> bool {
        std::ptr::eq(event.def, self.def)
            && (!self.def.namespaced
                || self.namespace.as_deref().is_none_or(|ns| {
                    event
                        .object
                        .pointer("/metadata/namespace")
                        .and_then(Value::as_str)
                        == Some(ns)
                }))
    }

    fn render(&self, kind: EventType, object: &Value) -> Bytes {
        let rv = object
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .unwrap_or_default();
        encode(kind.as_str(), self.rendering.one(self.def, object, rv))
    }
}

/// Starts a watch response.
pub(crate) fn handle(
    state: &Arc<SimState>,
    def: &'static ResourceDef,
    namespace: Option<&str>,
    filter: ListFilter,
    query: &Query,
    rendering: Rendering,
) -> Result<Response<Body>, ApiError> {
    let watcher = Watcher {
        def,
        namespace: namespace.map(str::to_string),
        filter,
        rendering,
    };
    let requested = query
        .get("resourceVersion")
        .filter(|rv| !rv.is_empty() && *rv != "0");
    let (initial, receiver) = match requested {
        None => {
            let (items, receiver, _) = state.store.list_and_watch(def, namespace, &watcher.filter);
            (
                items
                    .iter()
                    .map(|o| watcher.render(EventType::Added, o))
                    .collect::<Vec<_>>(),
                receiver,
            )
        }
        Some(rv) => {
            let since = rv
                .parse::<u64>()
                .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {rv:?}")))?;
            let (receiver, replay, _) = state.store.watch_from(since);
            let Some(replay) = replay else {
                return Err(ApiError::gone(format!("too old resource version: {since}")));
            };
            (
                replay
                    .iter()
                    .filter_map(|e| watcher.view(e).map(|kind| watcher.render(kind, &e.object)))
                    .collect(),
                receiver,
            )
        }
    };
    let timeout = query
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map_or(MAX_WATCH, |t| Duration::from_secs(t).min(MAX_WATCH));
    let bookmarks = query.flag("allowWatchBookmarks");
    let (tx, rx) = mpsc::channel(64);
    let shutdown = state.shutdown.clone();
    let store_rv = state.clone();
    tokio::spawn(async move {
        for line in initial {
            if tx.send(line).await.is_err() {
                return;
            }
        }
        let _ = tokio::time::timeout(
            timeout,
            pump(watcher, receiver, tx, shutdown, bookmarks, store_rv),
        )
        .await;
    });
    Ok(streaming("application/json", rx))
}

async fn pump(
    watcher: Watcher,
    mut receiver: broadcast::Receiver<StoreEvent>,
    tx: mpsc::Sender<Bytes>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
    bookmarks: bool,
    state: Arc<SimState>,
) {
    let mut bookmark_timer = tokio::time::interval(Duration::from_secs(60));
    bookmark_timer.tick().await;
    loop {
        tokio::select! {
            event = receiver.recv() => match event {
                Ok(event) => {
                    if let Some(kind) = watcher.view(&event) {
                        if tx.send(watcher.render(kind, &event.object)).await.is_err() {
                            return;
                        }
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    let status = ApiError::gone("the watch fell behind; too old resource version").to_status();
                    let _ = tx.send(encode("ERROR", status)).await;
                    return;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
            _ = bookmark_timer.tick(), if bookmarks => {
                let rv = state.store.resource_version().to_string();
                let object = json!({"kind": watcher.def.kind, "apiVersion": watcher.def.api_version(), "metadata": {"resourceVersion": rv}});
                if tx.send(encode("BOOKMARK", object)).await.is_err() {
                    return;
                }
            }
            _ = shutdown.changed() => return,
            () = tx.closed() => return,
        }
    }
}
