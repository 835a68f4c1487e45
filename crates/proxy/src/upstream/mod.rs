//! The upstream Kubernetes API server: where it is (kubeconfig or in-cluster),
//! how we trust it (its CA; verification on unless the kubeconfig says
//! otherwise), how we authenticate to it (client certificate, bearer token,
//! rotating token file; nothing in noauth mode), and the pooled HTTP/1.1 client.
//!
//! Inside, bottom to top: [`error`], [`token`] and [`spec`] (what a source
//! yields), then the sources [`kubeconfig`] and [`in_cluster`], then
//! [`client`] (the connector); this file builds the ready [`Upstream`].

mod client;
mod error;
mod in_cluster;
mod kubeconfig;
mod spec;
mod token;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderValue, Request, Response, Uri};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls_pki_types::ServerName;

use crate::body::ProxyBody;
use crate::mode::Mode;
pub use error::{KubeconfigError, UpstreamError, UpstreamTlsError};
pub(crate) use in_cluster::available as in_cluster_available;
use service::tls::{crypto_provider, parse_certs, parse_key};
pub use spec::{Credential, UpstreamSpec};
pub use token::TokenError;
use token::TokenFile;

/// Where the upstream API server configuration comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamSource {
    /// A kubeconfig file and optional context.
    Kubeconfig {
        /// The file.
        path: PathBuf,
        /// The context (None: current-context).
        context: Option<String>,
    },
    /// The pod's service account and `KUBERNETES_SERVICE_HOST`/`PORT`.
    InCluster,
}

impl UpstreamSpec {
    /// Load from the configured source.
    pub fn load(source: &UpstreamSource) -> Result<Self, UpstreamError> {
        match source {
            UpstreamSource::Kubeconfig { path, context } => {
                Self::from_kubeconfig(path, context.as_deref())
            }
            UpstreamSource::InCluster => in_cluster::load(),
        }
    }

    /// Load from a kubeconfig file and an optional context name (default:
    /// the file's `current-context`).
    pub fn from_kubeconfig(path: &Path, context: Option<&str>) -> Result<Self, UpstreamError> {
        kubeconfig::load(path, context)
    }

    /// Load from kubeconfig YAML; relative file paths in it are resolved
    /// against `base`. Never panics, for any input.
    pub fn from_kubeconfig_yaml(
        yaml: &[u8],
        base: &Path,
        context: Option<&str>,
    ) -> Result<Self, UpstreamError> {
        kubeconfig::from_yaml(yaml, base, context)
    }
}

#[derive(Debug)]
enum Auth {
    None,
    Static(HeaderValue),
    File(TokenFile),
}

/// A ready upstream: client, base URL and credentials.
pub(crate) struct Upstream {
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
    pub(crate) fn build(spec: UpstreamSpec, mode: Mode) -> Result<Self, UpstreamError> {
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
            Some(name) => Some(ServerName::try_from(name.clone()).map_err(|source| {
                UpstreamTlsError::ServerName {
                    name: name.clone(),
                    source,
                }
            })?),
            None => None,
        };
        let auth = match &credential {
            Credential::None => Auth::None,
            Credential::Bearer(t) => {
                Auth::Static(token::bearer(t).ok_or(KubeconfigError::BadToken)?)
            }
            Credential::Basic { username, password } => {
                Auth::Static(token::basic(username, password).ok_or(KubeconfigError::BadBasicAuth)?)
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
            .ok_or_else(|| KubeconfigError::ServerHost(spec.server.clone()))?;
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
    pub(crate) fn description(&self) -> &str {
        &self.description
    }

    /// The absolute upstream URI for a request-target received from a caller.
    pub(crate) fn uri_for(&self, path_and_query: &str) -> Result<Uri, http::Error> {
        Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(path_and_query)
            .build()
    }

    /// The upstream's `host[:port]`, used as `Host` when a caller sent none.
    pub(crate) fn authority(&self) -> &http::uri::Authority {
        &self.authority
    }

    /// The proxy's own `Authorization` value, if it has one.
    pub(crate) fn authorization(&self) -> Option<HeaderValue> {
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
    pub(crate) async fn send(
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
) -> Result<Arc<rustls::ClientConfig>, UpstreamTlsError> {
    let provider = crypto_provider();
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let builder = if spec.insecure_skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(client::SkipVerification(provider)))
    } else {
        let mut roots = rustls::RootCertStore::empty();
        match &spec.ca_pem {
            Some(pem) => {
                for cert in parse_certs("certificate-authority", Path::new("(CA)"), pem)? {
                    roots.add(cert).map_err(UpstreamTlsError::CaCertificate)?;
                }
            }
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        }
        builder.with_root_certificates(roots)
    };
    let mut cfg = match client_identity {
        Some((cert, key)) => {
            let certs = parse_certs(
                "client-certificate",
                Path::new("(client certificate)"),
                cert,
            )?;
            let key = parse_key("client-key", Path::new("(client key)"), key)?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(UpstreamTlsError::ClientCertificate)?
        }
        None => builder.with_no_client_auth(),
    };
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}
