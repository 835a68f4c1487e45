//! What the proxy needs to reach the API server, before a client is built:
//! [`UpstreamSpec`] and its [`Credential`].

use std::path::PathBuf;

use http::Uri;

use super::error::{KubeconfigError, UpstreamError};

/// How the proxy authenticates itself upstream (besides a client certificate).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// Nothing.
    None,
    /// A fixed bearer token.
    Bearer(String),
    /// A bearer token file, re-read as it rotates.
    BearerFile(PathBuf),
    /// HTTP basic auth.
    Basic {
        /// User name.
        username: String,
        /// Password.
        password: String,
    },
}

/// Everything needed to reach the API server, before building a client.
#[derive(Debug, Clone)]
pub struct UpstreamSpec {
    /// `https://host:port` (any path is ignored: paths are forwarded as received).
    pub server: Uri,
    /// PEM CA bundle (None: the webpki roots).
    pub ca_pem: Option<Vec<u8>>,
    /// Skip certificate verification (kubeconfig `insecure-skip-tls-verify`).
    pub insecure_skip_verify: bool,
    /// Override of the TLS server name.
    pub tls_server_name: Option<String>,
    /// PEM client certificate and key.
    pub client_identity: Option<(Vec<u8>, Vec<u8>)>,
    /// Bearer/basic credential.
    pub credential: Credential,
    /// Where this came from, for logs.
    pub origin: String,
}

impl UpstreamSpec {
    /// Check the server URI and assemble a spec.
    pub fn new(
        server: Uri,
        ca_pem: Option<Vec<u8>>,
        insecure_skip_verify: bool,
        tls_server_name: Option<String>,
        client_identity: Option<(Vec<u8>, Vec<u8>)>,
        credential: Credential,
        origin: String,
    ) -> Result<Self, UpstreamError> {
        match server.scheme_str() {
            Some("https") | Some("http") => {}
            _ => return Err(KubeconfigError::ServerScheme(server).into()),
        }
        if server.authority().is_none() {
            return Err(KubeconfigError::ServerHost(server).into());
        }
        Ok(UpstreamSpec {
            server,
            ca_pem,
            insecure_skip_verify,
            tls_server_name,
            client_identity,
            credential,
            origin,
        })
    }
}
