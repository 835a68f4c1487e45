//! `kubescribe-operator`: Recorder and APIServerProxy custom resources (`kubescribe.dev/v1alpha1`)
//! kept true by kube-rs controllers.
//!
//! - A [`Recorder`] becomes a ServiceAccount, a Service and a StatefulSet with a volumeClaimTemplate
//!   (disk storage) or a Deployment with S3 credentials from a Secret, and, unless the spec names
//!   one or says `unsigned`, a signing key Secret the operator creates once and keeps; its status
//!   says whether it is Ready (children applied) and Available (pods ready), its URL (`kubectl get
//!   recorders`) and the signing key's public key.
//! - An [`APIServerProxy`] becomes a ServiceAccount, a Service, a Deployment and, in auth mode only,
//!   a ClusterRole allowing nothing but impersonation with its binding; its status gives the
//!   endpoint and the grant that sends callers' records to its recorders.
//!
//! Reconciles are watch-driven (the resources, their children, and the metadata of the Secrets
//! and ConfigMaps and the Recorders a spec names: nothing is polled), idempotent server-side applies with one field manager
//! (`kubescribe-operator`, forced, so drift is corrected), children carry owner references and
//! labels, failures back off exponentially, what a user must fix is a `Ready=False` condition and
//! a Kubernetes Event, and children of deleted resources are deleted by the operator (no finalizer).
//! Only the replica holding a coordination.k8s.io Lease acts; `--namespace` confines it to one
//! namespace.
//!
//! # Layers
//!
//! Bottom to top, as the `mod` lines are grouped; a module imports only modules listed above it.
//! - `error`: [`Error`], [`ReconcileError`].
//! - `resources`: the custom resources' types (the CRDs are generated from them).
//! - `meta`: names, labels and owner references of children; the scope (every namespace, or
//!   `--namespace`).
//! - `pod`: security contexts, probes, ports and volumes of every pod.
//! - `tailnet`: the tailscaled sidecar and its serve configuration.
//! - `recorder_children`, `proxy_children`: children built from a spec (pure functions).
//! - `crds`: the CRDs as YAML.
//! - `metrics`: Prometheus metrics and the `--metrics-addr` listener.
//! - `context`: what the controllers share (apply, delete, status, back-off, Events).
//! - `recorder_controller`, `proxy_controller`: the controllers; `cleanup`: the orphan sweeps.
//! - `cli`: the command line; `app`: the operator with leader election.
#![warn(unreachable_pub)]

// 1. Errors and the resources.
mod error;
mod resources;

// 2. Children, built from specs.
mod meta;
mod pod;

mod tailnet;

mod proxy_children;
mod recorder_children;

// 3. Output and observability.
mod crds;
mod metrics;

// 4. Reconciling.
mod context;

mod cleanup;
mod proxy_controller;
mod recorder_controller;

// 5. The command line and the process.
mod cli;

mod app;

pub use app::run;
pub use cli::{Cli, Command, CrdsArgs, RunArgs};
pub use crds::{crd_files, crds, crds_yaml, write_crds};
pub use error::{Error, ReconcileError};
pub use meta::{
    managed_selector, MANAGED_BY, MANAGER, OWNER_KIND, OWNER_NAME, OWNER_NAMESPACE, OWNER_UID,
};
pub use proxy_children::{
    proxy_args, proxy_child_name, proxy_endpoint, proxy_grant, proxy_mode_env, proxy_rbac_name,
    validate_proxy, ProxySpecError, AUDIT_POLICY_KEY, PROXY_ADMIN_PORT, PROXY_CONTAINER_PORT,
};
pub use recorder_children::{
    recorder_addr, recorder_args, recorder_child_name, recorder_env, recorder_url,
    signing_key_secret_name, validate_recorder, RecorderSpecError, RECORDER_ADMIN_PORT,
    RECORDER_CONTAINER_PORT, RECORDER_SERVICE_PORT, SIGNING_KEY_KEY,
};
pub use resources::{
    APIServerProxy, APIServerProxySpec, APIServerProxyStatus, Condition, DiskStorage,
    FailurePolicy, ProxyListener, ProxyMode, Readers, Recorder, RecorderSelector, RecorderSpec,
    RecorderStatus, RecorderStorage, Retention, S3Storage, SecretKeyRef, StorageKind, Tailnet,
    Uploaders, GROUP,
};
pub use tailnet::{tailnet_config_map_name, tailnet_extra_args};
