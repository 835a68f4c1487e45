//! What the proxy needs to reach the API server, before a client is built:
//! [`UpstreamSpec`], a kube-rs [`kube::Config`] (server, CA, TLS options, and
//! in its `auth_info` how the proxy authenticates), and [`Credential`], the
//! simple credentials a program can give [`UpstreamSpec::new`].

use std::path::PathBuf;
use std::time::Duration;

use base64::Engine as _;
use http::Uri;
use kube::config::{AuthInfo, ExecInteractiveMode};

use super::error::{KubeconfigError, UpstreamError, UpstreamTlsError};

/// The exec credential plugin API versions the proxy speaks.
pub(crate) const EXEC_API_VERSIONS: [&str; 2] = [
    "client.authentication.k8s.io/v1",
    "client.authentication.k8s.io/v1beta1",
];

/// How long one run of an exec credential plugin may take, unless configured.
pub const DEFAULT_EXEC_TIMEOUT: Duration = Duration::from_secs(30);

/// How the proxy authenticates itself upstream (besides a client certificate),
/// for [`UpstreamSpec::new`]. Kubeconfigs give more (exec plugins): they are
/// loaded by [`UpstreamSpec::from_kubeconfig`].
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
    /// The API server as kube-rs loaded it: `cluster_url` (`https://host:port`;
    /// any path is ignored, paths are forwarded as received), `root_cert`
    /// (None: the system's roots), `root_cert_file` (re-read as it rotates),
    /// `accept_invalid_certs`, `tls_server_name`, and `auth_info`: client
    /// certificate, token, token file, basic auth or exec plugin.
    /// `proxy_url` and `headers` are not used.
    pub config: kube::Config,
    /// Bound on one run of an exec credential plugin.
    pub exec_timeout: Duration,
    /// Where this came from, for logs.
    pub origin: String,
}

impl UpstreamSpec {
    /// A spec from its parts: `server`, a PEM CA bundle (None: the system's
    /// roots), whether to skip certificate verification, a TLS server name
    /// override, a PEM client certificate and key, and a credential.
    pub fn new(
        server: Uri,
        ca_pem: Option<Vec<u8>>,
        insecure_skip_verify: bool,
        tls_server_name: Option<String>,
        client_identity: Option<(Vec<u8>, Vec<u8>)>,
        credential: Credential,
        origin: String,
    ) -> Result<Self, UpstreamError> {
        let mut config = kube::Config::new(server);
        if let Some(pem) = ca_pem {
            let certs = rustls_pemfile::certs(&mut pem.as_slice())
                .map(|c| c.map(|c| c.to_vec()))
                .collect::<Result<Vec<_>, _>>()
                .map_err(UpstreamTlsError::CaPem)?;
            config.root_cert = Some(certs);
        }
        config.accept_invalid_certs = insecure_skip_verify;
        config.tls_server_name = tls_server_name;
        let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
        let mut auth = AuthInfo::default();
        if let Some((cert, key)) = client_identity {
            auth.client_certificate_data = Some(b64(&cert));
            auth.client_key_data = Some(b64(&key).into());
        }
        match credential {
            Credential::None => {}
            Credential::Bearer(token) => auth.token = Some(token.into()),
            Credential::BearerFile(path) => {
                auth.token_file = Some(path.to_string_lossy().into_owned())
            }
            Credential::Basic { username, password } => {
                auth.username = Some(username);
                auth.password = Some(password.into());
            }
        }
        config.auth_info = auth;
        Self::from_config(config, origin)
    }

    /// A spec from a kube-rs configuration, checked: an `http://` or
    /// `https://` server with a host.
    pub fn from_config(config: kube::Config, origin: String) -> Result<Self, UpstreamError> {
        let server = &config.cluster_url;
        match server.scheme_str() {
            Some("https") | Some("http") => {}
            _ => return Err(KubeconfigError::ServerScheme(server.clone()).into()),
        }
        if server.host().is_none_or(str::is_empty) {
            return Err(KubeconfigError::ServerHost(server.clone()).into());
        }
        check_auth_info(&config.auth_info)?;
        Ok(UpstreamSpec {
            config,
            exec_timeout: DEFAULT_EXEC_TIMEOUT,
            origin,
        })
    }
}

/// Refuse credentials the proxy cannot use: `auth-provider` plugins, exec
/// plugins without a command, of an unknown API version, or needing a terminal.
pub(crate) fn check_auth_info(auth: &AuthInfo) -> Result<(), KubeconfigError> {
    if let Some(provider) = &auth.auth_provider {
        let instead = match provider.name.as_str() {
            "gcp" => "gke-gcloud-auth-plugin",
            "azure" => "kubelogin (github.com/Azure/kubelogin)",
            "oidc" => "kubectl oidc-login (github.com/int128/kubelogin)",
            _ => "your provider offers",
        };
        return Err(KubeconfigError::AuthProvider {
            name: provider.name.clone(),
            instead,
        });
    }
    if let Some(exec) = &auth.exec {
        let command = exec
            .command
            .clone()
            .filter(|c| !c.is_empty())
            .ok_or(KubeconfigError::ExecCommand)?;
        let api_version = exec.api_version.clone().unwrap_or_default();
        if !EXEC_API_VERSIONS.contains(&api_version.as_str()) {
            return Err(KubeconfigError::ExecApiVersion {
                command,
                api_version,
            });
        }
        if exec.interactive_mode == Some(ExecInteractiveMode::Always) {
            return Err(KubeconfigError::ExecInteractive(command));
        }
    }
    Ok(())
}
