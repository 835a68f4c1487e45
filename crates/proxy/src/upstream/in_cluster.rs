//! The upstream API server from inside a pod, loaded by kube-rs
//! ([`kube::Config::incluster_env`]): `https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT`,
//! the service account's CA (re-read as it rotates) and its projected token
//! file (re-read as kubelet rotates it), under [`SERVICE_ACCOUNT_DIR`].

use super::error::UpstreamError;
use super::spec::UpstreamSpec;

/// Where Kubernetes mounts the service account (`token`, `ca.crt`, `namespace`).
pub(crate) const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// Whether the process looks like it runs in a pod.
pub(crate) fn available() -> bool {
    std::env::var_os("KUBERNETES_SERVICE_HOST").is_some()
}

/// Load the in-cluster upstream from the process environment and [`SERVICE_ACCOUNT_DIR`].
pub(crate) fn load() -> Result<UpstreamSpec, UpstreamError> {
    let set = |name| std::env::var_os(name).is_some_and(|v| !v.is_empty());
    if !set("KUBERNETES_SERVICE_HOST") || !set("KUBERNETES_SERVICE_PORT") {
        return Err(UpstreamError::InClusterUnset);
    }
    let config = kube::Config::incluster_env().map_err(UpstreamError::InCluster)?;
    UpstreamSpec::from_config(
        config,
        format!("in-cluster service account, {SERVICE_ACCOUNT_DIR}"),
    )
}
