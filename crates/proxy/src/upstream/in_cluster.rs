//! The upstream API server from inside a pod: `KUBERNETES_SERVICE_HOST`/`PORT`,
//! the service-account CA and the (rotating, projected) token file.

use std::path::{Path, PathBuf};

use super::error::UpstreamError;
use super::spec::{Credential, UpstreamSpec};

/// Where Kubernetes mounts the service account.
pub(crate) const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// Whether the process looks like it runs in a pod.
pub(crate) fn available() -> bool {
    std::env::var_os("KUBERNETES_SERVICE_HOST").is_some()
}

/// Load the in-cluster upstream from the process environment and [`SERVICE_ACCOUNT_DIR`].
pub(crate) fn load() -> Result<UpstreamSpec, UpstreamError> {
    let host = std::env::var("KUBERNETES_SERVICE_HOST").unwrap_or_default();
    let port = std::env::var("KUBERNETES_SERVICE_PORT").unwrap_or_default();
    from_parts(&host, &port, Path::new(SERVICE_ACCOUNT_DIR))
}

/// Load the in-cluster upstream from explicit parts (testable without a pod).
pub(crate) fn from_parts(
    host: &str,
    port: &str,
    sa_dir: &Path,
) -> Result<UpstreamSpec, UpstreamError> {
    if host.is_empty() || port.is_empty() {
        return Err(UpstreamError::InClusterUnset);
    }
    let authority = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let server: http::Uri = format!("https://{authority}").parse().map_err(|source| {
        UpstreamError::InClusterAddress {
            authority: authority.clone(),
            source,
        }
    })?;
    let ca_path = sa_dir.join("ca.crt");
    let ca = std::fs::read(&ca_path).map_err(|source| UpstreamError::ReadFile {
        what: "service-account CA",
        path: ca_path.display().to_string(),
        source,
    })?;
    let token: PathBuf = sa_dir.join("token");
    UpstreamSpec::new(
        server,
        Some(ca),
        false,
        None,
        None,
        Credential::BearerFile(token),
        "in-cluster service account".into(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn needs_host_port_and_ca() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        assert!(from_parts("", "443", dir.path()).is_err());
        let e = from_parts("10.0.0.1", "443", dir.path()).err();
        assert!(e
            .map(|e| e.to_string())
            .unwrap_or_default()
            .contains("ca.crt"));
    }
}
