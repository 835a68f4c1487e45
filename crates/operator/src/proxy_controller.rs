//! The APIServerProxy controller: a watch-driven `kube::runtime::Controller` over APIServerProxies
//! that owns their Deployments, Services and ServiceAccounts, and watches the cluster-scoped
//! ClusterRoles and ClusterRoleBindings it made (found by their owner labels: a cluster-scoped
//! object cannot carry an owner reference to a namespaced one). Each reconcile checks the Secrets,
//! ConfigMap and Recorders the spec names, applies the children, removes the impersonation RBAC in
//! noauth mode, and writes the status (Ready, observedGeneration, endpoint, the grant).

use std::sync::Arc;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use kube::api::{ListParams, PartialObjectMeta};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, Resource, ResourceExt};

use crate::context::{
    apply, apply_or_delete, config_map_exists, delete_if_present, drive, missing_secret,
    patch_status, referrers, retry_later, settle, Blocked, Context, Outcome,
};
use crate::error::ReconcileError;
use crate::meta::{Owner, OWNER_KIND, OWNER_NAME, OWNER_NAMESPACE};
use crate::proxy_children::{
    endpoint_of, proxy_child_name, proxy_children, proxy_grant, proxy_rbac_name, proxy_secrets,
    validate_proxy, AUDIT_POLICY_KEY,
};
use crate::recorder_children::recorder_addr;
use crate::resources::{APIServerProxy, APIServerProxyStatus, Recorder};
use crate::tailnet::tailnet_config_map_name;

/// The kind, as metrics and logs name it.
const KIND: &str = "APIServerProxy";

/// What stands between `proxy` and Ready, if anything: a missing Secret, ConfigMap or Recorder,
/// or a selector (its `chosen` recorders empty) that chooses none.
async fn blocked(
    proxy: &APIServerProxy,
    chosen: &[String],
    ctx: &Context,
) -> Result<Option<Blocked>, ReconcileError> {
    if let Err(err) = validate_proxy(&proxy.spec) {
        return Ok(Some(Blocked {
            reason: err.reason().to_owned(),
            message: err.to_string(),
            waiting: false,
        }));
    }
    let namespace = proxy.namespace().unwrap_or_default();
    if let Some(blocked) =
        missing_secret(&ctx.client, &namespace, proxy_secrets(&proxy.spec)).await?
    {
        return Ok(Some(blocked));
    }
    if let Some(name) = &proxy.spec.audit_policy_config_map {
        if !config_map_exists(&ctx.client, &namespace, name).await? {
            return Ok(Some(Blocked {
                reason: "ConfigMapNotFound".to_owned(),
                message: format!(
                    "auditPolicyConfigMap: ConfigMap {namespace}/{name} (key {AUDIT_POLICY_KEY}) does not exist; create it"
                ),
                waiting: true,
            }));
        }
    }
    let recorders: Api<Recorder> = Api::namespaced(ctx.client.clone(), &namespace);
    for name in &proxy.spec.recorders {
        let found = recorders
            .get_metadata_opt(name)
            .await
            .map_err(ReconcileError::kube(format!(
                "reading Recorder {namespace}/{name}"
            )))?;
        if found.is_none() {
            return Ok(Some(Blocked {
                reason: "RecorderNotFound".to_owned(),
                message: format!(
                    "recorders: Recorder {namespace}/{name} does not exist; create it or remove it from the list"
                ),
                waiting: true,
            }));
        }
    }
    if let (Some(selector), true) = (&proxy.spec.recorder_selector, chosen.is_empty()) {
        return Ok(Some(Blocked {
            reason: "NoRecorderSelected".to_owned(),
            message: format!(
                "recorderSelector: no Recorder in {namespace} has one of the tailnet tags {}; tag one (spec.tailnet.tags) or name one in recorders",
                selector.tags.join(", ")
            ),
            waiting: true,
        }));
    }
    Ok(None)
}

/// The Recorders `proxy` records to, by name: `recorders`, then those its `recorderSelector`
/// chooses by tailnet tags, in name order, each once.
async fn chosen_recorders(
    proxy: &APIServerProxy,
    ctx: &Context,
) -> Result<Vec<String>, ReconcileError> {
    let mut names = proxy.spec.recorders.clone();
    if let Some(selector) = &proxy.spec.recorder_selector {
        let namespace = proxy.namespace().unwrap_or_default();
        let list = Api::<Recorder>::namespaced(ctx.client.clone(), &namespace)
            .list(&ListParams::default())
            .await
            .map_err(ReconcileError::kube(format!(
                "listing the Recorders of {namespace}"
            )))?;
        let mut selected: Vec<String> = list
            .items
            .iter()
            .filter(|r| selector.selects(&r.spec))
            .map(ResourceExt::name_any)
            .collect();
        selected.sort();
        for name in selected {
            if !names.contains(&name) {
                names.push(name);
            }
        }
    }
    Ok(names)
}

/// One reconcile of one APIServerProxy.
async fn reconcile(
    proxy: Arc<APIServerProxy>,
    ctx: Arc<Context>,
) -> Result<Action, ReconcileError> {
    if proxy.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let owner = Owner::of(proxy.as_ref(), "proxy").ok_or(ReconcileError::Incomplete)?;
    let ns = owner.namespace.clone();
    let api: Api<APIServerProxy> = Api::namespaced(ctx.client.clone(), &ns);
    let previous = proxy.status.as_ref();
    let conditions = previous.map(|s| s.conditions.as_slice()).unwrap_or(&[]);
    let endpoint = endpoint_of(&proxy.spec, &owner.name, &ns);
    let chosen = chosen_recorders(&proxy, &ctx).await?;
    let addrs: Vec<String> = chosen.iter().map(|r| recorder_addr(r, &ns)).collect();
    let grant = proxy_grant(&proxy.spec, &addrs);

    let outcome = match blocked(&proxy, &chosen, &ctx).await? {
        Some(blocked) => Outcome::Blocked(blocked),
        None => apply_children(&proxy, &owner, &ctx).await?,
    };
    let status = APIServerProxyStatus {
        conditions: settle(
            &ctx,
            KIND,
            proxy.as_ref(),
            conditions,
            &outcome,
            proxy.spec.replicas,
        )
        .await,
        observed_generation: proxy.metadata.generation,
        ready_replicas: outcome.ready_replicas(),
        endpoint: Some(endpoint),
        grant: Some(grant),
    };
    patch_status(&api, proxy.as_ref(), previous, &status).await?;
    Ok(outcome.action())
}

/// Applies every child of `proxy`, and removes the impersonation RBAC in noauth mode; returns what
/// was applied and how many of its pods the Deployment reports ready.
async fn apply_children(
    proxy: &APIServerProxy,
    owner: &Owner,
    ctx: &Context,
) -> Result<Outcome, ReconcileError> {
    let ns = owner.namespace.as_str();
    let children = proxy_children(&proxy.spec, owner);
    let client = &ctx.client;
    apply(
        &Api::<ServiceAccount>::namespaced(client.clone(), ns),
        &children.service_account,
    )
    .await?;
    apply(
        &Api::<Service>::namespaced(client.clone(), ns),
        &children.service,
    )
    .await?;
    apply_or_delete(
        &Api::<ConfigMap>::namespaced(client.clone(), ns),
        children.serve_config.as_ref(),
        &tailnet_config_map_name(&proxy_child_name(&owner.name)),
    )
    .await?;
    let deployment = apply(
        &Api::<Deployment>::namespaced(client.clone(), ns),
        &children.deployment,
    )
    .await?;
    let roles: Api<ClusterRole> = Api::all(client.clone());
    let bindings: Api<ClusterRoleBinding> = Api::all(client.clone());
    let rbac = match &children.rbac {
        Some((role, binding)) => {
            apply(&roles, role).await?;
            apply(&bindings, binding).await?;
            ", ClusterRole and ClusterRoleBinding (impersonation only)"
        }
        None => {
            // noauth: no impersonation rights at all, also when switched from auth.
            let name = proxy_rbac_name(&owner.name, ns);
            delete_if_present(&bindings, &name).await?;
            delete_if_present(&roles, &name).await?;
            ""
        }
    };
    Ok(Outcome::Applied {
        message: format!(
            "ServiceAccount, Service, Deployment {}{rbac} applied",
            proxy_child_name(&owner.name)
        ),
        ready_replicas: deployment
            .status
            .and_then(|s| s.ready_replicas)
            .unwrap_or(0),
    })
}

/// A failed reconcile is retried with exponential back-off.
fn error_policy(proxy: Arc<APIServerProxy>, err: &ReconcileError, ctx: Arc<Context>) -> Action {
    retry_later(KIND, proxy.as_ref(), err, &ctx)
}

/// The APIServerProxy a cluster-scoped child belongs to, from its owner labels.
fn labelled_owner<K: Resource>(child: K) -> Option<ObjectRef<APIServerProxy>> {
    let labels = child.meta().labels.as_ref()?;
    if labels.get(OWNER_KIND).map(String::as_str) != Some(KIND) {
        return None;
    }
    let name = labels.get(OWNER_NAME)?;
    let namespace = labels.get(OWNER_NAMESPACE)?;
    Some(ObjectRef::new(name).within(namespace))
}

/// Runs the APIServerProxy controller until the task is aborted: APIServerProxies of every
/// namespace, or of `--namespace`. Besides them and their children, it watches the metadata of
/// Secrets and ConfigMaps, and the Recorders, so that a proxy waiting for one it names is
/// reconciled as soon as it appears (or changes).
pub(crate) async fn run(ctx: Arc<Context>) {
    let client = &ctx.client;
    let scope = &ctx.scope;
    let children = watcher::Config::default().labels(&scope.children_selector());
    let controller = Controller::new(
        scope.api::<APIServerProxy>(client),
        watcher::Config::default(),
    );
    let (by_secret, by_config_map, by_recorder) =
        (controller.store(), controller.store(), controller.store());
    let results = controller
        .owns(scope.api::<Deployment>(client), children.clone())
        .owns(scope.api::<Service>(client), children.clone())
        .owns(scope.api::<ServiceAccount>(client), children.clone())
        .owns(scope.api::<ConfigMap>(client), children.clone())
        .watches(
            Api::<ClusterRole>::all(client.clone()),
            children.clone(),
            labelled_owner,
        )
        .watches(
            Api::<ClusterRoleBinding>::all(client.clone()),
            children,
            labelled_owner,
        )
        .watches(
            scope.api::<PartialObjectMeta<Secret>>(client),
            watcher::Config::default(),
            move |secret| {
                referrers(&by_secret, &secret, |p: &APIServerProxy, name| {
                    proxy_secrets(&p.spec).iter().any(|(_, s)| s == name)
                })
            },
        )
        .watches(
            scope.api::<PartialObjectMeta<ConfigMap>>(client),
            watcher::Config::default(),
            move |config_map| {
                referrers(&by_config_map, &config_map, |p: &APIServerProxy, name| {
                    p.spec.audit_policy_config_map.as_deref() == Some(name)
                })
            },
        )
        .watches(
            scope.api::<Recorder>(client),
            watcher::Config::default(),
            move |recorder| {
                // A selector may gain or lose this Recorder by its tags: every proxy with one.
                referrers(&by_recorder, &recorder, |p: &APIServerProxy, name| {
                    p.spec.recorder_selector.is_some() || p.spec.recorders.iter().any(|r| r == name)
                })
            },
        )
        .run(reconcile, error_policy, ctx.clone());
    drive(KIND, results).await;
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::meta::Owner;
    use crate::resources::APIServerProxySpec;

    #[test]
    fn cluster_scoped_children_map_to_their_proxy_by_labels() {
        let spec: APIServerProxySpec =
            serde_yaml_ng::from_str("image: p:1\ntlsSecret: tls\nidentitySecret: {name: ids}\n")
                .unwrap();
        let owner = Owner::example("APIServerProxy", "edge", "proxy");
        let (role, binding) = crate::proxy_children::proxy_children(&spec, &owner)
            .rbac
            .unwrap();
        let expected = ObjectRef::<APIServerProxy>::new("edge").within("ops");
        assert_eq!(labelled_owner(role.clone()), Some(expected.clone()));
        assert_eq!(labelled_owner(binding), Some(expected));
        // A Recorder's (or anyone else's) object maps to no proxy.
        let mut other = role;
        if let Some(labels) = other.metadata.labels.as_mut() {
            labels.insert(OWNER_KIND.to_owned(), "Recorder".to_owned());
        }
        assert_eq!(labelled_owner(other), None);
        assert_eq!(labelled_owner(ClusterRole::default()), None);
    }
}
