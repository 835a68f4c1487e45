//! Why the upstream API server could not be configured.

use super::token::TokenError;

/// The upstream could not be configured.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// The kubeconfig is invalid or unsupported.
    #[error("kubeconfig: {0}")]
    Kubeconfig(#[from] KubeconfigError),
    /// `KUBERNETES_SERVICE_HOST` or `KUBERNETES_SERVICE_PORT` is not set.
    #[error(
        "in-cluster config: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT must both be set"
    )]
    InClusterUnset,
    /// kube-rs could not load the in-cluster configuration (the service
    /// account's files under `/var/run/secrets/kubernetes.io/serviceaccount`).
    #[error("in-cluster config: {0}")]
    InCluster(#[source] kube::config::InClusterError),
    /// TLS material is invalid.
    #[error("upstream TLS: {0}")]
    Tls(#[from] UpstreamTlsError),
    /// The token is unusable.
    #[error("upstream token: {0}")]
    Token(#[from] TokenError),
}

/// A kubeconfig the proxy cannot use.
#[derive(Debug, thiserror::Error)]
pub enum KubeconfigError {
    /// kube-rs could not read or load it (YAML, files it names, base64 data).
    #[error("{0}")]
    Load(#[source] kube::config::KubeconfigError),
    /// Kubeconfig YAML given as bytes is not UTF-8.
    #[error("not UTF-8: {0}")]
    NotUtf8(#[source] std::str::Utf8Error),
    /// No context was named and the file has no `current-context`.
    #[error("no current-context set; pass --context NAME")]
    NoCurrentContext,
    /// The named context is not in the file.
    #[error("context {0:?} not found")]
    ContextNotFound(String),
    /// The context's cluster is not in the file.
    #[error("cluster {cluster:?} (of context {context:?}) not found")]
    ClusterNotFound {
        /// The cluster's name.
        cluster: String,
        /// The context naming it.
        context: String,
    },
    /// The context's user is not in the file.
    #[error("user {user:?} (of context {context:?}) not found")]
    UserNotFound {
        /// The user's name.
        user: String,
        /// The context naming it.
        context: String,
    },
    /// The cluster has a `proxy-url`.
    #[error("cluster proxy-url is not supported")]
    ProxyUrl,
    /// The user authenticates with an `auth-provider` plugin (removed from
    /// client-go in Kubernetes 1.26).
    #[error("user auth-provider {name:?} is not supported (client-go dropped auth-provider plugins in Kubernetes 1.26): use the exec credential plugin {instead} instead")]
    AuthProvider {
        /// The provider's name (`gcp`, `azure`, `oidc`, …).
        name: String,
        /// What to use instead.
        instead: &'static str,
    },
    /// An exec plugin without a `command`.
    #[error("user exec plugin has no command")]
    ExecCommand,
    /// An exec plugin whose `apiVersion` is not one the proxy speaks.
    #[error("user exec plugin {command}: apiVersion {api_version:?} is not supported; use client.authentication.k8s.io/v1 or client.authentication.k8s.io/v1beta1")]
    ExecApiVersion {
        /// The plugin.
        command: String,
        /// Its `apiVersion` as written (empty when missing).
        api_version: String,
    },
    /// An exec plugin that needs a terminal (`interactiveMode: Always`).
    #[error("user exec plugin {0}: interactiveMode Always needs a terminal, and the proxy has none; use a plugin that runs without one (interactiveMode: Never)")]
    ExecInteractive(String),
    /// The server URL is not `http://` or `https://`.
    #[error("server {0} must be an http:// or https:// URL")]
    ServerScheme(http::Uri),
    /// The server URL names no host.
    #[error("server {0} has no host")]
    ServerHost(http::Uri),
    /// The token cannot be sent as a header.
    #[error("token is not a valid header value")]
    BadToken,
    /// The user name or password cannot be sent as a header.
    #[error("username/password not valid")]
    BadBasicAuth,
}

/// The upstream's TLS material cannot make a client configuration.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamTlsError {
    /// The CA bundle given to [`crate::UpstreamSpec::new`] is not PEM.
    #[error("CA bundle: {0}")]
    CaPem(#[source] std::io::Error),
    /// kube-rs could not make a rustls configuration (CA, client
    /// certificate and key).
    #[error("{0}")]
    Kube(#[source] kube::Error),
    /// `tls-server-name` is not a DNS name or IP address.
    #[error("tls-server-name {name:?} is not a valid name")]
    ServerName {
        /// The name as written.
        name: String,
        /// Why it is not valid.
        source: rustls_pki_types::InvalidDnsNameError,
    },
}
