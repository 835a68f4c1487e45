//! Why the upstream API server could not be configured.

use super::token::TokenError;
use service::TlsError;

/// The upstream could not be configured.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// A referenced file could not be read.
    #[error("cannot read {what} {path}: {source}")]
    ReadFile {
        /// Which file.
        what: &'static str,
        /// Its path.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The kubeconfig is invalid or unsupported.
    #[error("kubeconfig: {0}")]
    Kubeconfig(#[from] KubeconfigError),
    /// `KUBERNETES_SERVICE_HOST` or `KUBERNETES_SERVICE_PORT` is not set.
    #[error(
        "in-cluster config: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT must both be set"
    )]
    InClusterUnset,
    /// `KUBERNETES_SERVICE_HOST`/`PORT` do not make a URL.
    #[error("in-cluster config: bad service address {authority}: {source}")]
    InClusterAddress {
        /// `host:port` as read from the environment.
        authority: String,
        /// Why it is not a URL.
        source: http::uri::InvalidUri,
    },
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
    /// The bytes are not a kubeconfig.
    #[error("not a valid kubeconfig: {0}")]
    Parse(#[source] serde_yaml_ng::Error),
    /// A `…-data` field is not base64.
    #[error("{what} is not valid base64: {source}")]
    Base64 {
        /// The field.
        what: &'static str,
        /// Why.
        source: base64::DecodeError,
    },
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
    /// The user authenticates with an `exec` or `auth-provider` plugin.
    #[error("exec and auth-provider credential plugins are not supported; use a token, tokenFile or client certificate")]
    CredentialPlugin,
    /// Only one of client certificate and key is given.
    #[error("a client certificate needs both certificate and key")]
    HalfClientCertificate,
    /// The `server` field is not a URL.
    #[error("server {server:?}: {source}")]
    BadServer {
        /// The field as written.
        server: String,
        /// Why it is not a URL.
        source: http::uri::InvalidUri,
    },
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
    /// A PEM certificate or key did not parse.
    #[error(transparent)]
    Pem(#[from] TlsError),
    /// rustls refused the configuration.
    #[error(transparent)]
    Rustls(#[from] rustls::Error),
    /// A CA certificate was refused.
    #[error("bad CA certificate: {0}")]
    CaCertificate(#[source] rustls::Error),
    /// The client certificate and key were refused.
    #[error("client certificate rejected: {0}")]
    ClientCertificate(#[source] rustls::Error),
    /// `tls-server-name` is not a DNS name or IP address.
    #[error("tls-server-name {name:?} is not a valid name")]
    ServerName {
        /// The name as written.
        name: String,
        /// Why it is not valid.
        source: rustls_pki_types::InvalidDnsNameError,
    },
}
