//! The Recorder controller: a watch-driven `kube::runtime::Controller` over Recorders that owns
//! their StatefulSets, Deployments, Services and ServiceAccounts. Each reconcile checks the spec and
//! the Secrets it names, applies the children (server-side, one field manager, forced), removes the
//! workload of the other storage type, and writes the status (Ready, observedGeneration, URL).

use std::sync::Arc;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{Service, ServiceAccount};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Api, ResourceExt};

use crate::context::{
    apply, delete_if_present, drive, missing_secret, patch_status, retry_later, settle, Blocked,
    Context, Outcome,
};
use crate::error::ReconcileError;
use crate::meta::{managed_selector, Owner};
use crate::recorder_children::{
    recorder_child_name, recorder_children, recorder_secrets, recorder_url, validate_recorder,
    RecorderWorkload,
};
use crate::resources::{Recorder, RecorderStatus};

/// The kind, as metrics and logs name it.
const KIND: &str = "Recorder";

/// What stands between `recorder` and Ready, if anything (spec errors, missing Secrets).
async fn blocked(recorder: &Recorder, ctx: &Context) -> Result<Option<Blocked>, ReconcileError> {
    if let Err(err) = validate_recorder(&recorder.spec) {
        return Ok(Some(Blocked {
            reason: err.reason().to_owned(),
            message: err.to_string(),
            waiting: false,
        }));
    }
    let namespace = recorder.namespace().unwrap_or_default();
    if let Some(blocked) =
        missing_secret(&ctx.client, &namespace, recorder_secrets(&recorder.spec)).await?
    {
        return Ok(Some(blocked));
    }
    Ok(None)
}

/// One reconcile of one Recorder.
async fn reconcile(recorder: Arc<Recorder>, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    if recorder.metadata.deletion_timestamp.is_some() {
        // Its children go with it (clean-up sweep).
        return Ok(Action::await_change());
    }
    let owner = Owner::of(recorder.as_ref(), "recorder").ok_or(ReconcileError::Incomplete)?;
    let api: Api<Recorder> = Api::namespaced(ctx.client.clone(), &owner.namespace);
    let previous = recorder.status.as_ref();
    let conditions = previous.map(|s| s.conditions.as_slice()).unwrap_or(&[]);
    let url = recorder_url(&owner.name, &owner.namespace);

    let outcome = match blocked(&recorder, &ctx).await? {
        Some(blocked) => Outcome::Blocked(blocked),
        None => apply_children(&recorder, &owner, &ctx).await?,
    };
    let status = RecorderStatus {
        conditions: settle(
            &ctx,
            KIND,
            recorder.as_ref(),
            conditions,
            &outcome,
            recorder.spec.replicas,
        )
        .await,
        observed_generation: recorder.metadata.generation,
        ready_replicas: outcome.ready_replicas(),
        url: Some(url),
    };
    patch_status(&api, recorder.as_ref(), previous, &status).await?;
    Ok(outcome.action())
}

/// Applies every child of `recorder` and removes the workload of the other storage type; returns
/// what was applied and how many of its pods the workload reports ready.
async fn apply_children(
    recorder: &Recorder,
    owner: &Owner,
    ctx: &Context,
) -> Result<Outcome, ReconcileError> {
    let children = recorder_children(&recorder.spec, owner);
    let ns = owner.namespace.as_str();
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
    let child = recorder_child_name(&owner.name);
    let statefulsets = Api::<StatefulSet>::namespaced(client.clone(), ns);
    let deployments = Api::<Deployment>::namespaced(client.clone(), ns);
    let (workload, ready) = match &children.workload {
        RecorderWorkload::StatefulSet(set) => {
            let applied = apply(&statefulsets, set.as_ref()).await?;
            delete_if_present(&deployments, &child).await?;
            ("StatefulSet", applied.status.and_then(|s| s.ready_replicas))
        }
        RecorderWorkload::Deployment(deployment) => {
            let applied = apply(&deployments, deployment.as_ref()).await?;
            delete_if_present(&statefulsets, &child).await?;
            ("Deployment", applied.status.and_then(|s| s.ready_replicas))
        }
    };
    Ok(Outcome::Applied {
        message: format!("ServiceAccount, Service and {workload} {child} applied"),
        ready_replicas: ready.unwrap_or(0),
    })
}

/// A failed reconcile is retried with exponential back-off.
fn error_policy(recorder: Arc<Recorder>, err: &ReconcileError, ctx: Arc<Context>) -> Action {
    retry_later(KIND, recorder.as_ref(), err, &ctx)
}

/// Runs the Recorder controller until the process stops or the task is aborted. Recorders of every
/// namespace.
pub(crate) async fn run(ctx: Arc<Context>) {
    let client = ctx.client.clone();
    let recorders: Api<Recorder> = Api::all(client.clone());
    let children = watcher::Config::default().labels(&managed_selector());
    let results = Controller::new(recorders, watcher::Config::default())
        .owns(Api::<StatefulSet>::all(client.clone()), children.clone())
        .owns(Api::<Deployment>::all(client.clone()), children.clone())
        .owns(Api::<Service>::all(client.clone()), children.clone())
        .owns(Api::<ServiceAccount>::all(client.clone()), children)
        .run(reconcile, error_policy, ctx);
    drive(KIND, results).await;
}
