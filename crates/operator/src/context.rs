//! What both controllers share: the client, metrics and event recorder ([`Context`]), server-side
//! apply with the one field manager, deletes that tolerate absence, the `Ready` condition, the
//! exponential back-off of failed reconciles, and the outcome of a reconcile that found something
//! the user must fix.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::Mutex;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder as EventRecorder};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::ReconcileError;
use crate::meta::{Scope, MANAGER};
use crate::metrics::{KindLabels, Metrics};
use crate::resources::Condition;

/// The first retry after a failed reconcile; doubled each time up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_secs(2);
/// The longest wait between retries of a failing reconcile.
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// A resource is reconciled again after this long even without a change (a safety net): changes
/// to it, to its children, and to the Secrets, ConfigMaps and Recorders it names trigger
/// reconciles at once, also while it waits for one of them to be created.
pub(crate) const RESYNC: Duration = Duration::from_secs(600);

/// What a reconcile needs.
pub(crate) struct Context {
    /// The Kubernetes client.
    pub(crate) client: Client,
    /// Metrics.
    pub(crate) metrics: Metrics,
    /// Publishes Kubernetes Events on the resources.
    pub(crate) events: EventRecorder,
    /// Every namespace, or only `--namespace`.
    pub(crate) scope: Scope,
    /// Consecutive failures per resource (`namespace/name` of a kind), for back-off.
    failures: Mutex<HashMap<String, u32>>,
}

impl Context {
    /// A context for `client`.
    pub(crate) fn new(
        client: Client,
        metrics: Metrics,
        events: EventRecorder,
        scope: Scope,
    ) -> Self {
        Self {
            client,
            metrics,
            events,
            scope,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Forgets the failures of `key` (a reconcile succeeded).
    pub(crate) fn succeeded(&self, key: &str) {
        if let Ok(mut failures) = self.failures.lock() {
            failures.remove(key);
        }
    }

    /// Counts a failure of `key` and returns how long to wait before the next try.
    pub(crate) fn failed(&self, kind: &str, key: &str) -> Duration {
        self.metrics
            .errors
            .get_or_create(&KindLabels {
                kind: kind.to_owned(),
            })
            .inc();
        let n = match self.failures.lock() {
            Ok(mut failures) => {
                let n = failures.entry(key.to_owned()).or_insert(0);
                *n = n.saturating_add(1);
                *n
            }
            Err(_) => 1,
        };
        backoff(n)
    }

    /// Publishes an Event on `resource` (failures are logged: an Event is never worth a retry).
    pub(crate) async fn publish<K>(&self, resource: &K, type_: EventType, reason: &str, note: &str)
    where
        K: Resource<DynamicType = ()>,
    {
        let event = Event {
            type_,
            reason: reason.to_owned(),
            note: Some(note.to_owned()),
            action: "Reconcile".to_owned(),
            secondary: None,
        };
        if let Err(err) = self.events.publish(&event, &resource.object_ref(&())).await {
            tracing::warn!(error = %err, reason, "publishing an Event failed");
        }
    }
}

/// The wait after `failures` consecutive failures: 2 s doubled each time, at most 5 min.
pub(crate) fn backoff(failures: u32) -> Duration {
    let exp = failures.saturating_sub(1).min(16);
    MIN_BACKOFF.saturating_mul(1u32 << exp).min(MAX_BACKOFF)
}

/// The key of a resource for back-off bookkeeping.
pub(crate) fn key_of<K: Resource>(resource: &K) -> String {
    format!(
        "{}/{}",
        resource.meta().namespace.as_deref().unwrap_or(""),
        resource.meta().name.as_deref().unwrap_or("")
    )
}

/// Server-side applies `object` with field manager `kubescribe-operator`, forcing ownership of its
/// fields (so an edit by anyone else is reverted).
pub(crate) async fn apply<K>(api: &Api<K>, object: &K) -> Result<K, ReconcileError>
where
    K: Resource + Serialize + DeserializeOwned + Clone + Debug,
{
    let name = object.meta().name.clone().unwrap_or_default();
    api.patch(
        &name,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(object),
    )
    .await
    .map_err(ReconcileError::kube(format!(
        "applying {} {name}",
        std::any::type_name::<K>()
            .rsplit("::")
            .next()
            .unwrap_or("object")
    )))
}

/// Deletes `name`; an object that is not there is fine.
pub(crate) async fn delete_if_present<K>(api: &Api<K>, name: &str) -> Result<bool, ReconcileError>
where
    K: Resource + DeserializeOwned + Clone + Debug,
{
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(status)) if status.is_not_found() => Ok(false),
        Err(err) => Err(ReconcileError::Kube {
            action: format!("deleting {name}"),
            source: err,
        }),
    }
}

/// Applies `object` when there is one, else deletes `name` if present (a child that exists only
/// with some setting, such as a sidecar's serve configuration).
pub(crate) async fn apply_or_delete<K>(
    api: &Api<K>,
    object: Option<&K>,
    name: &str,
) -> Result<(), ReconcileError>
where
    K: Resource + Serialize + DeserializeOwned + Clone + Debug,
{
    match object {
        Some(object) => apply(api, object).await.map(|_| ()),
        None => delete_if_present(api, name).await.map(|_| ()),
    }
}

/// The first of `secrets` (the spec field naming each, and its name) missing from `namespace`, as
/// what blocks the resource (only their metadata is read).
pub(crate) async fn missing_secret(
    client: &Client,
    namespace: &str,
    secrets: Vec<(&'static str, String)>,
) -> Result<Option<Blocked>, ReconcileError> {
    let api = Api::<Secret>::namespaced(client.clone(), namespace);
    for (field, name) in secrets {
        let found = api
            .get_metadata_opt(&name)
            .await
            .map_err(ReconcileError::kube(format!(
                "reading Secret {namespace}/{name}"
            )))?;
        if found.is_none() {
            return Ok(Some(Blocked {
                reason: "SecretNotFound".to_owned(),
                message: format!(
                    "{field}: Secret {namespace}/{name} does not exist; create it (the pods' workload is not applied until it does)"
                ),
                waiting: true,
            }));
        }
    }
    Ok(None)
}

/// Whether ConfigMap `name` exists in `namespace` (its metadata only is read).
pub(crate) async fn config_map_exists(
    client: &Client,
    namespace: &str,
    name: &str,
) -> Result<bool, ReconcileError> {
    Api::<ConfigMap>::namespaced(client.clone(), namespace)
        .get_metadata_opt(name)
        .await
        .map(|found| found.is_some())
        .map_err(ReconcileError::kube(format!(
            "reading ConfigMap {namespace}/{name}"
        )))
}

/// Something the user must fix before the resource can be Ready: the condition's reason and
/// message, and whether it can resolve itself (something to create, looked at again soon) or
/// needs a spec change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Blocked {
    /// The `Ready=False` reason.
    pub(crate) reason: String,
    /// The message naming the field and what to do.
    pub(crate) message: String,
    /// Waiting for an object to appear (its watch triggers the next reconcile), rather than for a
    /// spec change.
    pub(crate) waiting: bool,
}

/// Condition `type_` with status `ok`, `reason` and `message` at `generation`, keeping the previous
/// transition time when its status did not change.
fn condition(
    previous: &[Condition],
    type_: &str,
    ok: bool,
    reason: &str,
    message: &str,
    generation: Option<i64>,
) -> Condition {
    let status = if ok { "True" } else { "False" };
    let last_transition_time = previous
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| k8s_openapi::jiff::Timestamp::now().to_string());
    Condition {
        type_: type_.to_owned(),
        status: status.to_owned(),
        reason: reason.to_owned(),
        message: message.to_owned(),
        last_transition_time,
        observed_generation: generation,
    }
}

/// The `Ready` condition: the spec is valid and every child is applied as it says (or not, and
/// why).
pub(crate) fn ready_condition(
    previous: &[Condition],
    ready: bool,
    reason: &str,
    message: &str,
    generation: Option<i64>,
) -> Condition {
    condition(previous, "Ready", ready, reason, message, generation)
}

/// The `Available` condition: the workload reports `ready` of the `wanted` pods ready (as the
/// cluster's controllers and kubelets report it in the workload's status).
pub(crate) fn available_condition(
    previous: &[Condition],
    ready: i32,
    wanted: i32,
    generation: Option<i64>,
) -> Condition {
    let (ok, reason) = if wanted == 0 {
        (false, "ScaledToZero")
    } else if ready >= wanted {
        (true, "PodsReady")
    } else {
        (false, "PodsNotReady")
    };
    let message = format!("{ready} of {wanted} pods ready");
    condition(previous, "Available", ok, reason, &message, generation)
}

/// Patches `status` of `resource` (a merge patch of the status subresource) when it differs from
/// `current`.
pub(crate) async fn patch_status<K, S>(
    api: &Api<K>,
    resource: &K,
    current: Option<&S>,
    status: &S,
) -> Result<(), ReconcileError>
where
    K: Resource + DeserializeOwned + Clone + Debug,
    S: Serialize + PartialEq,
{
    if current == Some(status) {
        return Ok(());
    }
    let name = resource.name_any();
    api.patch_status(
        &name,
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({ "status": status })),
    )
    .await
    .map(|_| ())
    .map_err(ReconcileError::kube(format!(
        "updating the status of {name}"
    )))
}

/// The action after a blocked reconcile: when waiting for an object, only the safety-net resync
/// (the object's watch triggers a reconcile when it appears); else wait for a change of the
/// resource.
pub(crate) fn blocked_action(blocked: &Blocked) -> Action {
    if blocked.waiting {
        Action::requeue(RESYNC)
    } else {
        Action::await_change()
    }
}

/// How a reconcile ended, for the `Ready` condition: applied, or blocked on something the user
/// must fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Every child applied; the message says which, and how many of the pods the workload
    /// reports ready.
    Applied {
        /// What was applied.
        message: String,
        /// Ready pods, from the workload's status.
        ready_replicas: i32,
    },
    /// Nothing applied until the user fixes this.
    Blocked(Blocked),
}

impl Outcome {
    /// Whether the resource is Ready.
    pub(crate) fn ready(&self) -> bool {
        matches!(self, Outcome::Applied { .. })
    }

    /// Ready pods, once applied.
    pub(crate) fn ready_replicas(&self) -> Option<i32> {
        match self {
            Outcome::Applied { ready_replicas, .. } => Some(*ready_replicas),
            Outcome::Blocked(_) => None,
        }
    }

    /// The condition's reason and message.
    fn reason_and_message(&self) -> (&str, &str) {
        match self {
            Outcome::Applied { message, .. } => ("Reconciled", message),
            Outcome::Blocked(b) => (&b.reason, &b.message),
        }
    }

    /// What the controller does next: a resync after a success, else [`blocked_action`].
    pub(crate) fn action(&self) -> Action {
        match self {
            Outcome::Applied { .. } => Action::requeue(RESYNC),
            Outcome::Blocked(b) => blocked_action(b),
        }
    }
}

/// The conditions after `outcome`, given the `previous` conditions of `resource`: `Ready`, and
/// once applied `Available` (of `wanted` pods). When `Ready` changes, logs it and publishes an
/// Event (Warning when blocked); counts the reconcile (`kind`, `ok` or `invalid`) and forgets past
/// failures of an applied one.
pub(crate) async fn settle<K>(
    ctx: &Context,
    kind: &str,
    resource: &K,
    previous: &[Condition],
    outcome: &Outcome,
    wanted: i32,
) -> Vec<Condition>
where
    K: Resource<DynamicType = ()>,
{
    let ready = outcome.ready();
    let (reason, message) = outcome.reason_and_message();
    let status = if ready { "True" } else { "False" };
    let unchanged = previous
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == status && c.reason == reason);
    let key = key_of(resource);
    if !unchanged {
        if ready {
            tracing::info!(kind, resource = %key, "{message}");
        } else {
            tracing::warn!(kind, resource = %key, reason, "{message}");
        }
        let type_ = if ready {
            EventType::Normal
        } else {
            EventType::Warning
        };
        ctx.publish(resource, type_, reason, message).await;
    }
    if ready {
        ctx.succeeded(&key);
    }
    ctx.metrics
        .reconciled(kind, if ready { "ok" } else { "invalid" });
    let generation = resource.meta().generation;
    let mut conditions = vec![ready_condition(
        previous, ready, reason, message, generation,
    )];
    if let Some(ready_pods) = outcome.ready_replicas() {
        conditions.push(available_condition(
            previous, ready_pods, wanted, generation,
        ));
    }
    conditions
}

/// The error policy of both controllers: count the failure and retry `resource` with exponential
/// back-off.
pub(crate) fn retry_later<K: Resource>(
    kind: &str,
    resource: &K,
    err: &ReconcileError,
    ctx: &Context,
) -> Action {
    let key = key_of(resource);
    let wait = ctx.failed(kind, &key);
    ctx.metrics.reconciled(kind, "error");
    tracing::warn!(kind, resource = %key, error = %err, retry_in = ?wait, "reconcile failed");
    Action::requeue(wait)
}

/// The resources in `store` that refer to `object` (a Secret, ConfigMap or Recorder named in
/// their spec): those in its namespace for which `refers` says so. A controller's `watches`
/// mapper: a change of the object (its creation above all) reconciles them at once.
pub(crate) fn referrers<K, O>(
    store: &Store<K>,
    object: &O,
    refers: impl Fn(&K, &str) -> bool,
) -> Vec<ObjectRef<K>>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
    O: Resource,
{
    let (Some(namespace), Some(name)) = (
        object.meta().namespace.as_deref(),
        object.meta().name.as_deref(),
    ) else {
        return Vec::new();
    };
    store
        .state()
        .iter()
        .filter(|k| k.meta().namespace.as_deref() == Some(namespace) && refers(k, name))
        .map(|k| ObjectRef::from_obj(k.as_ref()))
        .collect()
}

/// Drives a controller's stream of results to its end, logging each (failures are already logged
/// and retried by the error policy).
pub(crate) async fn drive<S, T, E>(kind: &'static str, results: S)
where
    S: futures_util::Stream<Item = Result<T, E>>,
    T: std::fmt::Debug,
    E: std::fmt::Display,
{
    use futures_util::StreamExt;
    results
        .for_each(|result| async move {
            match result {
                Ok(done) => tracing::debug!(kind, ?done, "reconciled"),
                Err(err) => tracing::debug!(kind, error = %err, "controller"),
            }
        })
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_five_minutes() {
        assert_eq!(backoff(1), Duration::from_secs(2));
        assert_eq!(backoff(2), Duration::from_secs(4));
        assert_eq!(backoff(3), Duration::from_secs(8));
        assert_eq!(backoff(8), Duration::from_secs(256));
        assert_eq!(backoff(9), MAX_BACKOFF);
        assert_eq!(backoff(u32::MAX), MAX_BACKOFF);
    }

    #[test]
    fn available_when_every_wanted_pod_is_ready() {
        let c = available_condition(&[], 0, 1, Some(3));
        assert_eq!(
            (c.type_.as_str(), c.status.as_str(), c.reason.as_str()),
            ("Available", "False", "PodsNotReady")
        );
        assert_eq!(c.message, "0 of 1 pods ready");
        assert_eq!(available_condition(&[], 2, 2, None).status, "True");
        assert_eq!(available_condition(&[], 3, 2, None).reason, "PodsReady");
        assert_eq!(available_condition(&[], 0, 0, None).reason, "ScaledToZero");
        // Its own transition time, not the Ready condition's.
        let mut ready = ready_condition(&[], false, "X", "x", None);
        ready.last_transition_time = "2020-01-01T00:00:00Z".to_owned();
        assert_ne!(
            available_condition(&[ready], 0, 1, None).last_transition_time,
            "2020-01-01T00:00:00Z"
        );
    }

    #[test]
    fn transition_time_kept_while_status_unchanged() {
        let first = ready_condition(&[], false, "SecretNotFound", "x", Some(1));
        let mut earlier = first.clone();
        earlier.last_transition_time = "2020-01-01T00:00:00Z".to_owned();
        let again = ready_condition(&[earlier.clone()], false, "Other", "y", Some(2));
        assert_eq!(again.last_transition_time, "2020-01-01T00:00:00Z");
        assert_eq!(again.reason, "Other");
        let flipped = ready_condition(&[earlier], true, "Reconciled", "z", Some(2));
        assert_ne!(flipped.last_transition_time, "2020-01-01T00:00:00Z");
    }
}
