//! The upstream Kubernetes API server: where it is (kubeconfig or in-cluster),
//! how we trust it (its CA; verification on unless the kubeconfig says
//! otherwise), how we authenticate to it (client certificate, bearer token,
//! rotating token file; nothing in noauth mode), and the pooled HTTP/1.1 client.

pub mod client;
pub mod in_cluster;
pub mod kubeconfig;
pub mod token;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderValue, Request, Response, Uri};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls_pki_types::ServerName;

use crate::config::{Mode, UpstreamSource};
use crate::forward::ProxyBody;
use crate::listener::tls::{crypto_provider, parse_certs, parse_key};
use token::TokenFile;

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
    Kubeconfig(String),
    /// The in-cluster environment is incomplete.
    #[error("in-cluster config: {0}")]
    InCluster(String),
    /// TLS material is invalid.
    #[error("upstream TLS: {0}")]
    Tls(String),
    /// The token is unusable.
    #[error("upstream token: {0}")]
    Token(#[from] token::TokenError),
}

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
            _ => {
                return Err(UpstreamError::Kubeconfig(format!(
                    "server {server} must be an http:// or https:// URL"
                )))
            }
        }
        if server.authority().is_none() {
            return Err(UpstreamError::Kubeconfig(format!(
                "server {server} has no host"
            )));
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

    /// Load from the configured source.
    pub fn load(source: &UpstreamSource) -> Result<Self, UpstreamError> {
        match source {
            UpstreamSource::Kubeconfig { path, context } => {
                kubeconfig::load(path, context.as_deref())
            }
            UpstreamSource::InCluster => in_cluster::load(),
        }
    }
}

#[derive(Debug)]
enum Auth {
    None,
    Static(HeaderValue),
    File(TokenFile),
}

/// A ready upstream: client, base URL and credentials.
pub struct Upstream {
    client: Client<client::Connector, ProxyBody>,
    scheme: http::uri::Scheme,
    authority: http::uri::Authority,
    auth: Auth,
    description: String,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("description", &self.description)
            .finish()
    }
}

impl Upstream {
    /// Build the client. In noauth mode the proxy's own credentials (token and
    /// client certificate) are dropped, as client-go's `AnonymousClientConfig` does.
    pub fn build(spec: UpstreamSpec, mode: Mode) -> Result<Self, UpstreamError> {
        let (client_identity, credential) = match mode {
            Mode::Auth => (spec.client_identity.clone(), spec.credential.clone()),
            Mode::Noauth => (None, Credential::None),
        };
        let https = spec.server.scheme_str() == Some("https");
        let tls = if https {
            Some(tls_config(&spec, client_identity.as_ref())?)
        } else {
            None
        };
        let server_name = match &spec.tls_server_name {
            Some(n) => Some(ServerName::try_from(n.clone()).map_err(|_| {
                UpstreamError::Tls(format!("tls-server-name {n:?} is not a valid name"))
            })?),
            None => None,
        };
        let auth = match &credential {
            Credential::None => Auth::None,
            Credential::Bearer(t) => Auth::Static(token::bearer(t).ok_or_else(|| {
                UpstreamError::Kubeconfig("token is not a valid header value".into())
            })?),
            Credential::Basic { username, password } => {
                Auth::Static(token::basic(username, password).ok_or_else(|| {
                    UpstreamError::Kubeconfig("username/password not valid".into())
                })?)
            }
            Credential::BearerFile(p) => {
                let f = TokenFile::new(p.clone(), token::TOKEN_REFRESH);
                f.load()?;
                Auth::File(f)
            }
        };
        let connector = client::Connector::new(tls, server_name);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(256)
            .pool_timer(TokioTimer::new())
            .set_host(false)
            .build(connector);
        let scheme = spec
            .server
            .scheme()
            .cloned()
            .unwrap_or(http::uri::Scheme::HTTPS);
        let authority = spec
            .server
            .authority()
            .cloned()
            .ok_or_else(|| UpstreamError::Kubeconfig("server has no host".into()))?;
        let cred = match &auth {
            Auth::None if client_identity.is_some() => "client certificate",
            Auth::None => "none",
            Auth::Static(_) => "static token",
            Auth::File(_) => "token file (re-read every 60 s and on 401)",
        };
        let description = format!(
            "{scheme}://{authority} ({}; TLS verify: {}; credentials: {cred})",
            spec.origin,
            if !https {
                "n/a (plain HTTP)"
            } else if spec.insecure_skip_verify {
                "OFF (insecure-skip-tls-verify)"
            } else {
                "on"
            },
        );
        if https && spec.insecure_skip_verify {
            tracing::warn!(upstream = %authority, "insecure-skip-tls-verify is set in the kubeconfig: the API server's certificate is NOT verified");
        }
        Ok(Upstream {
            client,
            scheme,
            authority,
            auth,
            description,
        })
    }

    /// One line for the start-up log.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// The absolute upstream URI for a request-target received from a caller.
    pub fn uri_for(&self, path_and_query: &str) -> Result<Uri, http::Error> {
        Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(path_and_query)
            .build()
    }

    /// The upstream's `host[:port]`, used as `Host` when a caller sent none.
    pub fn authority(&self) -> &http::uri::Authority {
        &self.authority
    }

    /// The proxy's own `Authorization` value, if it has one.
    pub fn authorization(&self) -> Option<HeaderValue> {
        match &self.auth {
            Auth::None => None,
            Auth::Static(v) => Some(v.clone()),
            Auth::File(f) => match f.authorization() {
                Ok(v) => Some(v),
                Err(e) => {
                    tracing::error!(error = %e, "no upstream token available");
                    None
                }
            },
        }
    }

    /// Send a request (absolute URI) upstream. A 401 makes the token file re-read.
    pub async fn send(
        &self,
        req: Request<ProxyBody>,
    ) -> Result<Response<Incoming>, hyper_util::client::legacy::Error> {
        let resp = self.client.request(req).await?;
        if resp.status() == http::StatusCode::UNAUTHORIZED {
            if let Auth::File(f) = &self.auth {
                f.invalidate();
            }
        }
        Ok(resp)
    }
}

fn tls_config(
    spec: &UpstreamSpec,
    client_identity: Option<&(Vec<u8>, Vec<u8>)>,
) -> Result<Arc<rustls::ClientConfig>, UpstreamError> {
    let provider = crypto_provider();
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| UpstreamError::Tls(e.to_string()))?;
    let builder = if spec.insecure_skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(client::SkipVerification(provider)))
    } else {
        let mut roots = rustls::RootCertStore::empty();
        match &spec.ca_pem {
            Some(pem) => {
                let certs = parse_certs(pem, "certificate-authority", std::path::Path::new("(CA)"))
                    .map_err(|e| UpstreamError::Tls(e.to_string()))?;
                for c in certs {
                    roots
                        .add(c)
                        .map_err(|e| UpstreamError::Tls(format!("bad CA certificate: {e}")))?;
                }
            }
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        }
        builder.with_root_certificates(roots)
    };
    let mut cfg = match client_identity {
        Some((cert, key)) => {
            let certs = parse_certs(
                cert,
                "client certificate",
                std::path::Path::new("(client cert)"),
            )
            .map_err(|e| UpstreamError::Tls(e.to_string()))?;
            let key = parse_key(key, std::path::Path::new("(client key)"))
                .map_err(|e| UpstreamError::Tls(e.to_string()))?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| UpstreamError::Tls(format!("client certificate rejected: {e}")))?
        }
        None => builder.with_no_client_auth(),
    };
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}
