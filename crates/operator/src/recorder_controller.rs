//! The Recorder controller: a watch-driven `kube::runtime::Controller` over Recorders that owns
//! their StatefulSets, Deployments, Services and ServiceAccounts. Each reconcile checks the spec and
//! the Secrets it names, applies the children (server-side, one field manager, forced), removes the
//! workload of the other storage type, and writes the status (Ready, observedGeneration, URL).

use std::collections::BTreeMap;
use std::sync::Arc;

use rand::RngCore;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service, ServiceAccount};
use kube::api::{PartialObjectMeta, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Api, ResourceExt};

use crate::context::{
    apply, apply_or_delete, delete_if_present, drive, missing_secret, patch_status, referrers,
    retry_later, settle, Blocked, Context, Outcome,
};
use crate::error::ReconcileError;
use crate::meta::{Owner, MANAGER};
use crate::recorder_children::{
    recorder_child_name, recorder_children, recorder_names_secret, recorder_secrets, recorder_url,
    signing_key, signing_key_secret_name, validate_recorder, RecorderWorkload,
};
use crate::resources::{Recorder, RecorderStatus};
use crate::tailnet::tailnet_config_map_name;

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

    let (outcome, public_key) = match blocked(&recorder, &ctx).await? {
        Some(blocked) => (Outcome::Blocked(blocked), None),
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
        signing_public_key: public_key,
    };
    patch_status(&api, recorder.as_ref(), previous, &status).await?;
    Ok(outcome.action())
}

/// Applies every child of `recorder` and removes the workload of the other storage type; returns
/// what was applied, how many of its pods the workload reports ready, and the signing key's public
/// key (the key created first when the operator provides it).
async fn apply_children(
    recorder: &Recorder,
    owner: &Owner,
    ctx: &Context,
) -> Result<(Outcome, Option<String>), ReconcileError> {
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
    apply_or_delete(
        &Api::<ConfigMap>::namespaced(client.clone(), ns),
        children.serve_config.as_ref(),
        &tailnet_config_map_name(&recorder_child_name(&owner.name)),
    )
    .await?;
    let signing_public_key = match signing_key(&recorder.spec, &owner.name) {
        Some((secret, key)) => Some(signing_public_key(ctx, owner, &secret, &key).await?),
        None => None,
    };
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
    Ok((
        Outcome::Applied {
            message: format!("ServiceAccount, Service and {workload} {child} applied"),
            ready_replicas: ready.unwrap_or(0),
        },
        signing_public_key.flatten(),
    ))
}

/// The public key of the signing key in Secret `secret` (key `key`), creating the Secret with a new
/// key first when it is the one the operator provides and does not exist yet (never replacing one:
/// what the key signed must stay verifiable). `None` when the Secret does not hold 64 hex digits
/// (the recorder then refuses to start, naming the file).
async fn signing_public_key(
    ctx: &Context,
    owner: &Owner,
    secret: &str,
    key: &str,
) -> Result<Option<String>, ReconcileError> {
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &owner.namespace);
    let read = ReconcileError::kube(format!("reading Secret {}/{secret}", owner.namespace));
    let found = match api.get_opt(secret).await.map_err(read)? {
        Some(found) => found,
        None if secret == signing_key_secret_name(&owner.name) => {
            let mut seed = [0u8; 32];
            rand::rngs::OsRng.fill_bytes(&mut seed);
            let mut meta = owner.cluster_child_meta(secret);
            meta.namespace = Some(owner.namespace.clone());
            let new = Secret {
                metadata: meta,
                string_data: Some(BTreeMap::from([(
                    key.to_owned(),
                    format!("{}\n", hex::encode(seed)),
                )])),
                type_: Some("Opaque".to_owned()),
                ..Secret::default()
            };
            let params = PostParams {
                field_manager: Some(MANAGER.to_owned()),
                ..PostParams::default()
            };
            match api.create(&params, &new).await {
                Ok(created) => {
                    tracing::info!(recorder = %owner.name, namespace = %owner.namespace, secret, "created a signing key");
                    created
                }
                // Another reconcile created it first: use that one.
                Err(kube::Error::Api(status)) if status.is_already_exists() => api
                    .get(secret)
                    .await
                    .map_err(ReconcileError::kube(format!("reading Secret {secret}")))?,
                Err(source) => {
                    return Err(ReconcileError::Kube {
                        action: format!("creating Secret {}/{secret}", owner.namespace),
                        source,
                    })
                }
            }
        }
        // A Secret the spec names and that is gone: the next reconcile reports it.
        None => return Ok(None),
    };
    Ok(found
        .data
        .as_ref()
        .and_then(|data| data.get(key))
        .and_then(|bytes| public_key_hex(&bytes.0)))
}

/// The Ed25519 public key, in hex, of a key file's contents (64 hex digits, surrounding
/// whitespace allowed), as `kubescribe-recorder keygen` writes it.
fn public_key_hex(file: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(file).ok()?.trim();
    let mut seed = [0u8; 32];
    hex::decode_to_slice(text, &mut seed).ok()?;
    let key = ed25519_dalek::SigningKey::from_bytes(&seed);
    Some(hex::encode(key.verifying_key().as_bytes()))
}

/// A failed reconcile is retried with exponential back-off.
fn error_policy(recorder: Arc<Recorder>, err: &ReconcileError, ctx: Arc<Context>) -> Action {
    retry_later(KIND, recorder.as_ref(), err, &ctx)
}

/// Runs the Recorder controller until the process stops or the task is aborted: Recorders of every
/// namespace, or of `--namespace`. Besides the Recorders and their children, it watches the
/// metadata of Secrets, so that a Recorder waiting for a Secret it names is reconciled as soon as
/// the Secret appears (or changes).
pub(crate) async fn run(ctx: Arc<Context>) {
    let client = &ctx.client;
    let scope = &ctx.scope;
    let children = watcher::Config::default().labels(&scope.children_selector());
    let controller = Controller::new(scope.api::<Recorder>(client), watcher::Config::default());
    let store = controller.store();
    let results = controller
        .owns(scope.api::<StatefulSet>(client), children.clone())
        .owns(scope.api::<Deployment>(client), children.clone())
        .owns(scope.api::<Service>(client), children.clone())
        .owns(scope.api::<ServiceAccount>(client), children.clone())
        .owns(scope.api::<ConfigMap>(client), children)
        .watches(
            scope.api::<PartialObjectMeta<Secret>>(client),
            watcher::Config::default(),
            move |secret| {
                referrers(&store, &secret, |r: &Recorder, name| {
                    recorder_names_secret(&r.spec, &r.name_any(), name)
                })
            },
        )
        .run(reconcile, error_policy, ctx.clone());
    drive(KIND, results).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_key_of_a_key_file() {
        // RFC 8032's first test vector.
        let seed = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60\n";
        assert_eq!(
            public_key_hex(seed.as_bytes()).as_deref(),
            Some("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
        );
        assert_eq!(public_key_hex(b"not hex"), None);
        assert_eq!(public_key_hex(b"9d61"), None);
    }
}
