//! The in-memory object store: one global resourceVersion counter, namespace scoping,
//! optimistic concurrency and a bounded event history for watches.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

use serde_json::{json, Value};
use tokio::sync::broadcast;

use crate::clock::now_rfc3339;
use crate::resources::{self, ResourceDef};
use crate::selectors::ListFilter;
use crate::status::ApiError;

/// How many past events a watch can resume from.
const HISTORY: usize = 10_000;

/// The kind of a watch event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// Object created.
    Added,
    /// Object changed.
    Modified,
    /// Object removed.
    Deleted,
}

impl EventType {
    /// The watch event `type` string.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Added => "ADDED",
            Self::Modified => "MODIFIED",
            Self::Deleted => "DELETED",
        }
    }
}

/// A change to one object, as delivered to watchers.
#[derive(Debug, Clone)]
pub struct StoreEvent {
    /// The resourceVersion the change produced.
    pub rv: u64,
    /// What happened.
    pub kind: EventType,
    /// Which resource the object belongs to.
    pub def: &'static ResourceDef,
    /// The object after the change (before it, for deletions, with the new rv).
    pub object: Value,
    /// For modifications: the object before the change (so selector watches can turn
    /// an object leaving or entering the selection into DELETED / ADDED).
    pub previous: Option<Value>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    group: &'static str,
    plural: &'static str,
    namespace: String,
    name: String,
}

impl Key {
    fn new(def: &'static ResourceDef, namespace: Option<&str>, name: &str) -> Self {
        Self {
            group: def.group,
            plural: def.plural,
            namespace: if def.namespaced {
                namespace.unwrap_or_default().to_string()
            } else {
                String::new()
            },
            name: name.to_string(),
        }
    }
}

#[derive(Default)]
struct Inner {
    rv: u64,
    objects: BTreeMap<Key, Value>,
    history: VecDeque<StoreEvent>,
}

/// The object store shared by every request.
pub struct Store {
    inner: Mutex<Inner>,
    events: broadcast::Sender<StoreEvent>,
}

impl Default for Store {
    fn default() -> Self {
        Self::new()
    }
}

fn name_of(obj: &Value) -> Option<&str> {
    obj.pointer("/metadata/name").and_then(Value::as_str)
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
}

fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let bytes = uuid::Uuid::new_v4().into_bytes();
    bytes
        .iter()
        .take(5)
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect()
}

impl Store {
    /// An empty store.
    pub fn new() -> Self {
        let (events, _) = broadcast::channel(4096);
        Self {
            inner: Mutex::new(Inner::default()),
            events,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn emit(&self, inner: &mut Inner, event: StoreEvent) {
        if inner.history.len() == HISTORY {
            inner.history.pop_front();
        }
        inner.history.push_back(event.clone());
        let _ = self.events.send(event);
    }

    /// The current global resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.lock().rv
    }

    /// Creates an object. `namespace` is the namespace from the URL.
    pub fn create(
        &self,
        def: &'static ResourceDef,
        namespace: Option<&str>,
        mut obj: Value,
    ) -> Result<Value, ApiError> {
        if !obj.is_object() {
            return Err(ApiError::bad_request(
                "the request body must be a JSON object",
            ));
        }
        check_type(def, &mut obj)?;
        let mut inner = self.lock();
        let metadata = obj
            .as_object_mut()
            .map(|m| m.entry("metadata").or_insert_with(|| json!({})))
            .filter(|m| m.is_object())
            .ok_or_else(|| ApiError::bad_request("metadata must be an object"))?;
        if metadata
            .get("name")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            match metadata.get("generateName").and_then(Value::as_str) {
                Some(prefix) if !prefix.is_empty() => {
                    metadata["name"] = json!(format!("{prefix}{}", random_suffix()))
                }
                _ => {
                    return Err(ApiError::invalid(
                        def.kind,
                        "",
                        "metadata.name: Required value: name or generateName is required",
                    ))
                }
            }
        }
        let name = name_of(&obj).unwrap_or_default().to_string();
        if !valid_name(&name) {
            return Err(ApiError::invalid(def.kind, &name, format!("metadata.name: Invalid value: {name:?}: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.'")));
        }
        if def.namespaced {
            let ns = namespace.unwrap_or_default();
            if let Some(body_ns) = obj.pointer("/metadata/namespace").and_then(Value::as_str) {
                if !body_ns.is_empty() && body_ns != ns {
                    return Err(ApiError::bad_request("the namespace of the provided object does not match the namespace sent on the request"));
                }
            }
            if !inner
                .objects
                .contains_key(&Key::new(resources::namespaces(), None, ns))
            {
                return Err(ApiError::not_found("namespaces", ns));
            }
            obj["metadata"]["namespace"] = json!(ns);
        } else if let Some(m) = obj["metadata"].as_object_mut() {
            m.remove("namespace");
        }
        let key = Key::new(def, namespace, &name);
        if inner.objects.contains_key(&key) {
            return Err(ApiError::already_exists(&def.group_resource(), &name));
        }
        inner.rv += 1;
        let rv = inner.rv;
        let now = now_rfc3339();
        let metadata = &mut obj["metadata"];
        metadata["uid"] = json!(uuid::Uuid::new_v4().to_string());
        metadata["resourceVersion"] = json!(rv.to_string());
        metadata["creationTimestamp"] = json!(now);
        if def.has_spec {
            metadata["generation"] = json!(1);
        }
        if let Some(m) = metadata.as_object_mut() {
            m.remove("deletionTimestamp");
            m.remove("selfLink");
        }
        resources::on_create(def, &mut obj, rv, &now);
        inner.objects.insert(key, obj.clone());
        self.emit(
            &mut inner,
            StoreEvent {
                rv,
                kind: EventType::Added,
                def,
                object: obj.clone(),
                previous: None,
            },
        );
        Ok(obj)
    }

    /// Reads one object.
    pub fn get(
        &self,
        def: &'static ResourceDef,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Value, ApiError> {
        self.lock()
            .objects
            .get(&Key::new(def, namespace, name))
            .cloned()
            .ok_or_else(|| ApiError::not_found(&def.group_resource(), name))
    }

    /// Lists objects (all namespaces when `namespace` is `None`) and the list resourceVersion.
    pub fn list(
        &self,
        def: &'static ResourceDef,
        namespace: Option<&str>,
        filter: &ListFilter,
    ) -> (Vec<Value>, u64) {
        let inner = self.lock();
        let items = inner
            .objects
            .iter()
            .filter(|(k, _)| k.group == def.group && k.plural == def.plural)
            .filter(|(k, _)| !def.namespaced || namespace.is_none_or(|ns| k.namespace == ns))
            .filter(|(_, v)| filter.matches(v))
            .map(|(_, v)| v.clone())
            .collect();
        (items, inner.rv)
    }

    /// Replaces an object (PUT). With `subresource == Some("status")` only the status
    /// changes; otherwise the status is kept. A stale `metadata.resourceVersion` is a Conflict.
    pub fn update(
        &self,
        def: &'static ResourceDef,
        namespace: Option<&str>,
        name: &str,
        mut obj: Value,
        subresource: Option<&str>,
    ) -> Result<Value, ApiError> {
        if !obj.is_object() || !obj.get("metadata").is_some_and(Value::is_object) {
            return Err(ApiError::bad_request(
                "the request body must be an object with metadata",
            ));
        }
        check_type(def, &mut obj)?;
        if let Some(body_name) = name_of(&obj) {
            if body_name != name {
                return Err(ApiError::bad_request(format!("the name of the object ({body_name}) does not match the name on the URL ({name})")));
            }
        }
        let mut inner = self.lock();
        let key = Key::new(def, namespace, name);
        let old = inner
            .objects
            .get(&key)
            .cloned()
            .ok_or_else(|| ApiError::not_found(&def.group_resource(), name))?;
        if let Some(rv) = obj
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
        {
            if !rv.is_empty()
                && Some(rv)
                    != old
                        .pointer("/metadata/resourceVersion")
                        .and_then(Value::as_str)
            {
                return Err(ApiError::conflict(&def.group_resource(), name));
            }
        }
        let mut new = if subresource == Some("status") {
            let mut merged = old.clone();
            merged["status"] = obj.get("status").cloned().unwrap_or(Value::Null);
            merged
        } else {
            if let Some(status) = old.get("status") {
                obj["status"] = status.clone();
            }
            obj
        };
        for field in [
            "uid",
            "creationTimestamp",
            "namespace",
            "name",
            "generation",
        ] {
            match old["metadata"].get(field) {
                Some(value) => new["metadata"][field] = value.clone(),
                None => {
                    if let Some(m) = new["metadata"].as_object_mut() {
                        m.remove(field);
                    }
                }
            }
        }
        if new == old {
            return Ok(old);
        }
        if def.has_spec && new.get("spec") != old.get("spec") {
            let generation = old
                .pointer("/metadata/generation")
                .and_then(Value::as_i64)
                .unwrap_or(0)
                + 1;
            new["metadata"]["generation"] = json!(generation);
        }
        inner.rv += 1;
        let rv = inner.rv;
        new["metadata"]["resourceVersion"] = json!(rv.to_string());
        resources::on_update(def, &mut new, &now_rfc3339());
        inner.objects.insert(key, new.clone());
        self.emit(
            &mut inner,
            StoreEvent {
                rv,
                kind: EventType::Modified,
                def,
                object: new.clone(),
                previous: Some(old),
            },
        );
        Ok(new)
    }

    /// Deletes an object and returns it. Deleting a namespace deletes what it holds.
    pub fn delete(
        &self,
        def: &'static ResourceDef,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Value, ApiError> {
        let mut inner = self.lock();
        let key = Key::new(def, namespace, name);
        let mut obj = inner
            .objects
            .remove(&key)
            .ok_or_else(|| ApiError::not_found(&def.group_resource(), name))?;
        if def == resources::namespaces() {
            let contained: Vec<Key> = inner
                .objects
                .keys()
                .filter(|k| k.namespace == name)
                .cloned()
                .collect();
            for k in contained {
                if let Some(mut child) = inner.objects.remove(&k) {
                    if let Some(child_def) = resources::RESOURCES
                        .iter()
                        .find(|d| d.group == k.group && d.plural == k.plural)
                    {
                        inner.rv += 1;
                        let rv = inner.rv;
                        child["metadata"]["resourceVersion"] = json!(rv.to_string());
                        self.emit(
                            &mut inner,
                            StoreEvent {
                                rv,
                                kind: EventType::Deleted,
                                def: child_def,
                                object: child,
                                previous: None,
                            },
                        );
                    }
                }
            }
        }
        inner.rv += 1;
        let rv = inner.rv;
        obj["metadata"]["resourceVersion"] = json!(rv.to_string());
        self.emit(
            &mut inner,
            StoreEvent {
                rv,
                kind: EventType::Deleted,
                def,
                object: obj.clone(),
                previous: None,
            },
        );
        Ok(obj)
    }

    /// Lists matching objects and subscribes to later changes, atomically.
    pub fn list_and_watch(
        &self,
        def: &'static ResourceDef,
        namespace: Option<&str>,
        filter: &ListFilter,
    ) -> (Vec<Value>, broadcast::Receiver<StoreEvent>, u64) {
        let inner = self.lock();
        let receiver = self.events.subscribe();
        let items = inner
            .objects
            .iter()
            .filter(|(k, _)| k.group == def.group && k.plural == def.plural)
            .filter(|(k, _)| !def.namespaced || namespace.is_none_or(|ns| k.namespace == ns))
            .filter(|(_, v)| filter.matches(v))
            .map(|(_, v)| v.clone())
            .collect();
        (items, receiver, inner.rv)
    }

    /// Subscribes to changes; returns the receiver and the events after `since`
    /// (None when `since` is older than the retained history).
    pub fn watch_from(
        &self,
        since: u64,
    ) -> (
        broadcast::Receiver<StoreEvent>,
        Option<Vec<StoreEvent>>,
        u64,
    ) {
        let inner = self.lock();
        let receiver = self.events.subscribe();
        let oldest = inner.history.front().map_or(inner.rv + 1, |e| e.rv);
        let replay = if since + 1 < oldest && since < inner.rv && inner.history.len() == HISTORY {
            None
        } else {
            Some(
                inner
                    .history
                    .iter()
                    .filter(|e| e.rv > since)
                    .cloned()
                    .collect(),
            )
        };
        (receiver, replay, inner.rv)
    }
}

/// Fills in `kind`/`apiVersion` when absent, and rejects objects of another type.
fn check_type(def: &ResourceDef, obj: &mut Value) -> Result<(), ApiError> {
    let api_version = def.api_version();
    let kind = obj
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or(def.kind)
        .to_string();
    let version = obj
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or(&api_version)
        .to_string();
    if kind != def.kind || version != api_version {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({version}) and kind ({kind}) do not match the resource {} ({api_version}, {})",
            def.plural, def.kind
        )));
    }
    obj["kind"] = json!(def.kind);
    obj["apiVersion"] = json!(api_version);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store_with_default() -> Store {
        let store = Store::new();
        store
            .create(
                resources::namespaces(),
                None,
                json!({"metadata": {"name": "default"}}),
            )
            .unwrap();
        store
    }

    #[test]
    fn create_get_update_delete() {
        let store = store_with_default();
        let cm = resources::find("", "v1", "configmaps").unwrap();
        let created = store
            .create(
                cm,
                Some("default"),
                json!({"metadata": {"name": "a"}, "data": {"k": "v"}}),
            )
            .unwrap();
        assert_eq!(created["metadata"]["resourceVersion"], "2");
        assert_eq!(
            store
                .create(cm, Some("default"), json!({"metadata": {"name": "a"}}))
                .unwrap_err()
                .code,
            409
        );
        let mut changed = created.clone();
        changed["data"]["k"] = json!("w");
        let updated = store
            .update(cm, Some("default"), "a", changed.clone(), None)
            .unwrap();
        assert_eq!(updated["metadata"]["resourceVersion"], "3");
        assert_eq!(
            store
                .update(cm, Some("default"), "a", changed, None)
                .unwrap_err()
                .code,
            409,
            "stale rv"
        );
        assert_eq!(
            store.delete(cm, Some("default"), "a").unwrap()["data"]["k"],
            "w"
        );
        assert_eq!(store.get(cm, Some("default"), "a").unwrap_err().code, 404);
    }

    #[test]
    fn create_in_missing_namespace_is_not_found() {
        let store = store_with_default();
        let cm = resources::find("", "v1", "configmaps").unwrap();
        let err = store
            .create(cm, Some("nope"), json!({"metadata": {"name": "a"}}))
            .unwrap_err();
        assert_eq!(err.message, "namespaces \"nope\" not found");
    }

    #[test]
    fn watch_replays_history_after_a_version() {
        let store = store_with_default();
        let cm = resources::find("", "v1", "configmaps").unwrap();
        store
            .create(cm, Some("default"), json!({"metadata": {"name": "a"}}))
            .unwrap();
        let (_rx, replay, rv) = store.watch_from(1);
        let replay = replay.unwrap();
        assert_eq!(rv, 2);
        assert_eq!(replay.len(), 1);
        assert_eq!(replay[0].kind, EventType::Added);
    }
}
