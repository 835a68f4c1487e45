//! Clean-up of children whose Recorder or APIServerProxy is gone. A cluster's garbage collector
//! would delete namespaced children by their owner references, but not every API server has one
//! running, and cluster-scoped children (the impersonation ClusterRole and binding) carry only
//! labels; so the operator deletes them itself. No finalizer: nothing outside the API needs
//! cleaning. The sweep runs when an owner is deleted, at every (re)list of the owners (start-up
//! included), and on leadership.
//!
//! A sweep lists the children first and the owners second: a child listed is then either of an
//! owner the second list has, or of one already gone, never of one created between the lists.
//! Each delete carries the child's UID as a precondition, so a re-created child is never deleted.

use std::collections::HashSet;
use std::fmt::Debug;

use futures_util::{stream, StreamExt};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use kube::api::{DeleteParams, ListParams, Preconditions};
use kube::runtime::watcher;
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;

use crate::meta::{Scope, OWNER_UID};
use crate::metrics::Metrics;
use crate::resources::{APIServerProxy, Recorder};

/// One child, as listed.
#[derive(Debug, Clone)]
struct Listed {
    kind: ChildKind,
    namespace: Option<String>,
    name: String,
    uid: String,
    owner_uid: String,
}

/// The kinds of children the operator makes.
#[derive(Debug, Clone, Copy)]
enum ChildKind {
    ServiceAccount,
    ConfigMap,
    Service,
    StatefulSet,
    Deployment,
    ClusterRole,
    ClusterRoleBinding,
}

/// The children of `api` in `scope` (by its children selector).
async fn list<K>(api: Api<K>, scope: &Scope, kind: ChildKind) -> Result<Vec<Listed>, kube::Error>
where
    K: Resource + DeserializeOwned + Clone + Debug,
{
    let list = api
        .list_metadata(&ListParams::default().labels(&scope.children_selector()))
        .await?;
    Ok(list
        .items
        .into_iter()
        .filter_map(|item| {
            let meta = item.metadata;
            Some(Listed {
                kind,
                namespace: meta.namespace,
                name: meta.name?,
                uid: meta.uid?,
                owner_uid: meta.labels?.get(OWNER_UID)?.clone(),
            })
        })
        .collect())
}

async fn delete<K>(api: Api<K>, child: &Listed) -> Result<(), kube::Error>
where
    K: Resource + DeserializeOwned + Clone + Debug,
{
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: Some(child.uid.clone()),
            resource_version: None,
        }),
        ..DeleteParams::background()
    };
    match api.delete(&child.name, &params).await {
        Ok(_) => Ok(()),
        // Gone already, or re-created (another UID): nothing to do.
        Err(kube::Error::Api(status)) if status.is_not_found() || status.is_conflict() => Ok(()),
        Err(err) => Err(err),
    }
}

async fn owner_uids<K>(api: Api<K>) -> Result<HashSet<String>, kube::Error>
where
    K: Resource + DeserializeOwned + Clone + Debug,
{
    let list = api.list_metadata(&ListParams::default()).await?;
    Ok(list
        .items
        .into_iter()
        .filter_map(|item| item.metadata.uid)
        .collect())
}

/// Deletes every child in `scope` whose owner is gone; returns how many. A scoped operator looks
/// only at children whose owner lives in its namespace: it cannot see the owners elsewhere.
pub(crate) async fn sweep(
    client: &Client,
    scope: &Scope,
    metrics: &Metrics,
) -> Result<usize, kube::Error> {
    let (s, c) = (scope, client);
    let children = [
        list(s.api::<ServiceAccount>(c), s, ChildKind::ServiceAccount).await?,
        list(s.api::<Service>(c), s, ChildKind::Service).await?,
        list(s.api::<ConfigMap>(c), s, ChildKind::ConfigMap).await?,
        list(s.api::<StatefulSet>(c), s, ChildKind::StatefulSet).await?,
        list(s.api::<Deployment>(c), s, ChildKind::Deployment).await?,
        list(
            Api::<ClusterRole>::all(c.clone()),
            s,
            ChildKind::ClusterRole,
        )
        .await?,
        list(
            Api::<ClusterRoleBinding>::all(c.clone()),
            s,
            ChildKind::ClusterRoleBinding,
        )
        .await?,
    ]
    .concat();
    let mut owners = owner_uids(scope.api::<Recorder>(client)).await?;
    owners.extend(owner_uids(scope.api::<APIServerProxy>(client)).await?);
    let mut deleted = 0;
    for child in children.iter().filter(|c| !owners.contains(&c.owner_uid)) {
        let ns = child.namespace.as_deref().unwrap_or_default();
        let c = client.clone();
        match child.kind {
            ChildKind::ServiceAccount => {
                delete(Api::<ServiceAccount>::namespaced(c, ns), child).await?
            }
            ChildKind::Service => delete(Api::<Service>::namespaced(c, ns), child).await?,
            ChildKind::ConfigMap => delete(Api::<ConfigMap>::namespaced(c, ns), child).await?,
            ChildKind::StatefulSet => delete(Api::<StatefulSet>::namespaced(c, ns), child).await?,
            ChildKind::Deployment => delete(Api::<Deployment>::namespaced(c, ns), child).await?,
            ChildKind::ClusterRole => delete(Api::<ClusterRole>::all(c), child).await?,
            ChildKind::ClusterRoleBinding => {
                delete(Api::<ClusterRoleBinding>::all(c), child).await?
            }
        }
        tracing::info!(
            kind = ?child.kind,
            namespace = child.namespace.as_deref().unwrap_or(""),
            name = %child.name,
            owner_uid = %child.owner_uid,
            "deleted a child whose owner is gone"
        );
        metrics.orphans_deleted.inc();
        deleted += 1;
    }
    Ok(deleted)
}

/// Whether a watcher event calls for a sweep: an owner deleted, or a (re)list completed (deletes
/// during a watch outage are not reported one by one).
fn calls_for_sweep<K>(event: &watcher::Event<K>) -> bool {
    matches!(event, watcher::Event::Delete(_) | watcher::Event::InitDone)
}

/// Sweeps at start and whenever a Recorder or APIServerProxy (in `scope`) is deleted, until the
/// task is aborted. A failed sweep is retried on the next trigger, and after a short wait.
pub(crate) async fn run(client: Client, scope: Scope, metrics: Metrics) {
    let recorders = watcher(scope.api::<Recorder>(&client), watcher::Config::default())
        .map(|e| e.map(|e| calls_for_sweep(&e)))
        .boxed();
    let proxies = watcher(
        scope.api::<APIServerProxy>(&client),
        watcher::Config::default(),
    )
    .map(|e| e.map(|e| calls_for_sweep(&e)))
    .boxed();
    let mut triggers = stream::select(recorders, proxies);
    let mut retry = false;
    loop {
        let trigger = if retry {
            tokio::time::timeout(std::time::Duration::from_secs(5), triggers.next())
                .await
                .unwrap_or(Some(Ok(true)))
        } else {
            triggers.next().await
        };
        match trigger {
            None => return,
            Some(Err(err)) => {
                tracing::warn!(error = %err, "watching owners for clean-up");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
            Some(Ok(false)) => {}
            Some(Ok(true)) => match sweep(&client, &scope, &metrics).await {
                Ok(n) => {
                    retry = false;
                    tracing::debug!(deleted = n, "clean-up sweep done");
                }
                Err(err) => {
                    retry = true;
                    tracing::warn!(error = %err, "clean-up sweep failed; retrying");
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deletes_and_relists_call_for_a_sweep() {
        let recorder = Recorder::new(
            "audit",
            serde_yaml_ng::from_str("image: r\nstorage: {type: disk}\n")
                .unwrap_or_else(|e| panic!("{e}")),
        );
        assert!(calls_for_sweep(&watcher::Event::Delete(recorder.clone())));
        assert!(calls_for_sweep(&watcher::Event::<Recorder>::InitDone));
        assert!(!calls_for_sweep(&watcher::Event::Apply(recorder.clone())));
        assert!(!calls_for_sweep(&watcher::Event::InitApply(recorder)));
        assert!(!calls_for_sweep(&watcher::Event::<Recorder>::Init));
    }
}
