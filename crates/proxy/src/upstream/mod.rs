//! The upstream Kubernetes API server: where it is (kubeconfig or in-cluster,
//! both loaded by kube-rs), how we trust it (its CA; verification on unless
//! the kubeconfig says otherwise), how we authenticate to it (client
//! certificate, bearer token, rotating token file, exec credential plugin;
//! nothing in noauth mode), and the pooled HTTP/1.1 client.
//!
//! Inside, bottom to top: [`error`], [`token`], [`spec`] (what a source
//! yields) and [`exec`] (credential plugins), then [`credentials`] (the
//! `Authorization` of each request), the sources [`kubeconfig`] and
//! [`in_cluster`], then [`client`] (the connector); this file builds the
//! ready [`Upstream`].

mod error;
mod exec;
mod spec;
mod token;

mod credentials;
mod in_cluster;
mod kubeconfig;

mod client;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, Uri};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use kube::client::ConfigExt as _;
use kube::config::AuthInfo;
use rustls_pki_types::ServerName;

use crate::body::{self, BoxError, ProxyBody};
use crate::mode::Mode;
use credentials::{Credentials, Current};
pub use error::{KubeconfigError, UpstreamError, UpstreamTlsError};
pub(crate) use exec::ExecError;
use exec::Identity;
pub(crate) use in_cluster::available as in_cluster_available;
pub use spec::{Credential, UpstreamSpec, DEFAULT_EXEC_TIMEOUT};
pub use token::TokenError;

/// Where the upstream API server configuration comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamSource {
    /// A kubeconfig file and optional context.
    Kubeconfig {
        /// The file.
        path: PathBuf,
        /// The context (None: current-context).
        context: Option<String>,
        /// Bound on one run of the user's exec credential plugin.
        exec_timeout: Duration,
    },
    /// The pod's service account and `KUBERNETES_SERVICE_HOST`/`PORT`.
    InCluster,
}

impl UpstreamSpec {
    /// Load from the configured source.
    pub fn load(source: &UpstreamSource) -> Result<Self, UpstreamError> {
        match source {
            UpstreamSource::Kubeconfig {
                path,
                context,
                exec_timeout,
            } => {
                let mut spec = Self::from_kubeconfig(path, context.as_deref())?;
                spec.exec_timeout = *exec_timeout;
                Ok(spec)
            }
            UpstreamSource::InCluster => Self::in_cluster(),
        }
    }

    /// Load from a kubeconfig file and an optional context name (default:
    /// the file's `current-context`); relative paths in it are relative to
    /// the file.
    pub fn from_kubeconfig(path: &Path, context: Option<&str>) -> Result<Self, UpstreamError> {
        kubeconfig::load(path, context)
    }

    /// Load from kubeconfig YAML; relative file paths in it are relative to
    /// the working directory. Never panics, for any input.
    pub fn from_kubeconfig_yaml(yaml: &[u8], context: Option<&str>) -> Result<Self, UpstreamError> {
        kubeconfig::from_yaml(yaml, context)
    }

    /// Load from the pod's environment: `KUBERNETES_SERVICE_HOST`/`PORT` and
    /// the service account under `/var/run/secrets/kubernetes.io/serviceaccount`.
    pub fn in_cluster() -> Result<Self, UpstreamError> {
        in_cluster::load()
    }
}

/// The proxy cannot authenticate a request to the API server.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CredentialError {
    /// The exec credential plugin gave no credential.
    #[error(transparent)]
    Exec(#[from] ExecError),
    /// The client certificate an exec plugin gave cannot be used.
    #[error("the exec credential plugin's client certificate cannot be used: {0}")]
    Certificate(#[source] UpstreamTlsError),
}

/// How one request is authenticated upstream: its credential and the
/// client to send it with (one presenting an exec plugin's certificate, or
/// the usual one).
#[derive(Debug)]
pub(crate) struct Authenticated {
    current: Current,
    client: HttpClient,
}

impl Authenticated {
    /// The proxy's own `Authorization` value, if it has one.
    pub(crate) fn authorization(&self) -> Option<HeaderValue> {
        self.current.authorization.clone()
    }
}

type HttpClient = Client<client::Connector, ProxyBody>;

/// The largest 403 body read to see whether the API server refused the
/// proxy's impersonation (a `Status` is a few hundred bytes).
const MAX_STATUS_BYTES: u64 = 64 * 1024;

/// A ready upstream: client, base URL and credentials.
pub(crate) struct Upstream {
    client: HttpClient,
    /// kube-rs's configuration, to build the TLS configuration for a client
    /// certificate an exec plugin gives.
    config: kube::Config,
    server_name: Option<ServerName<'static>>,
    scheme: http::uri::Scheme,
    authority: http::uri::Authority,
    credentials: Credentials,
    /// The client presenting an exec plugin's certificate, and which run gave it.
    exec_client: Mutex<Option<(u64, HttpClient)>>,
    /// Auth mode: the `Impersonate-*` headers are the proxy's own.
    impersonates: bool,
    /// The API server refused to let the proxy impersonate; logged once,
    /// until an impersonated request succeeds.
    impersonation_refused: AtomicBool,
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
    /// Build the client. In noauth mode the proxy's own credentials (token,
    /// exec plugin and client certificate) are dropped, as client-go's
    /// `AnonymousClientConfig` does.
    pub(crate) fn build(spec: UpstreamSpec, mode: Mode) -> Result<Self, UpstreamError> {
        let mut config = spec.config;
        if mode == Mode::Noauth {
            config.auth_info = AuthInfo::default();
        }
        // Checked again: `spec.config` is public and may have changed since.
        spec::check_auth_info(&config.auth_info)?;
        let credentials = Credentials::new(&config.auth_info, spec.exec_timeout)?;
        let server = config.cluster_url.clone();
        let https = server.scheme_str() == Some("https");
        let server_name = match &config.tls_server_name {
            Some(name) => Some(ServerName::try_from(name.clone()).map_err(|source| {
                UpstreamTlsError::ServerName {
                    name: name.clone(),
                    source,
                }
            })?),
            None => None,
        };
        let tls = if https {
            Some(tls_config(&config, None)?)
        } else {
            None
        };
        let client = http_client(tls, server_name.clone());
        let scheme = server.scheme().cloned().unwrap_or(http::uri::Scheme::HTTPS);
        let authority = server
            .authority()
            .cloned()
            .ok_or_else(|| KubeconfigError::ServerHost(server.clone()))?;
        let auth = &config.auth_info;
        let client_cert =
            auth.client_certificate.is_some() || auth.client_certificate_data.is_some();
        let description = format!(
            "{scheme}://{authority} ({}; TLS verify: {}; client certificate: {}; credentials: {})",
            spec.origin,
            if !https {
                "n/a (plain HTTP)"
            } else if config.accept_invalid_certs {
                "OFF (insecure-skip-tls-verify)"
            } else if config.root_cert_file.is_some() {
                "on (CA file re-read as it rotates)"
            } else if config.root_cert.is_some() {
                "on"
            } else {
                "on (system roots)"
            },
            if client_cert { "yes" } else { "no" },
            credentials.describe(),
        );
        if https && config.accept_invalid_certs {
            tracing::warn!(upstream = %authority, "insecure-skip-tls-verify is set in the kubeconfig: the API server's certificate is NOT verified");
        }
        Ok(Upstream {
            client,
            config,
            server_name,
            scheme,
            authority,
            credentials,
            exec_client: Mutex::new(None),
            impersonates: mode == Mode::Auth,
            impersonation_refused: AtomicBool::new(false),
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

    /// The proxy's credential for the next request (an exec plugin may run,
    /// bounded by its timeout). Nothing in noauth mode.
    pub(crate) async fn authenticate(&self) -> Result<Authenticated, CredentialError> {
        let current = self.credentials.current().await?;
        let identity = current
            .issued
            .as_ref()
            .and_then(|i| i.identity.as_ref().map(|id| (i.serial, id)));
        let client = match identity {
            None => self.client.clone(),
            Some((serial, identity)) => self
                .exec_identity_client(serial, identity)
                .map_err(CredentialError::Certificate)?,
        };
        Ok(Authenticated { current, client })
    }

    /// A client presenting the certificate of the exec plugin's run `serial`
    /// (a new one, with its own connections, when the certificate changes).
    fn exec_identity_client(
        &self,
        serial: u64,
        identity: &Identity,
    ) -> Result<HttpClient, UpstreamTlsError> {
        let mut cached = self
            .exec_client
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((s, client)) = cached.as_ref() {
            if *s == serial {
                return Ok(client.clone());
            }
        }
        let tls = tls_config(&self.config, Some(identity))?;
        let client = http_client(Some(tls), self.server_name.clone());
        *cached = Some((serial, client.clone()));
        Ok(client)
    }

    /// Send a request (absolute URI) upstream, authenticated by `auth`. A
    /// 401 makes the next request re-read the token file or run the exec
    /// plugin again; a 403 refusing the proxy's impersonation is logged once.
    pub(crate) async fn send(
        &self,
        req: Request<ProxyBody>,
        auth: &Authenticated,
    ) -> Result<Response<ProxyBody>, hyper_util::client::legacy::Error> {
        let impersonating = self.impersonates && req.headers().contains_key("impersonate-user");
        let resp = auth.client.request(req).await?;
        let status = resp.status();
        if status == StatusCode::UNAUTHORIZED {
            self.credentials.rejected(&auth.current);
        }
        let resp = resp.map(|b| b.map_err(BoxError::from).boxed());
        if impersonating && status == StatusCode::FORBIDDEN {
            return Ok(self.watch_impersonation_refusal(resp).await);
        }
        if impersonating && status.is_success() {
            self.impersonation_refused.store(false, Ordering::Relaxed);
        }
        Ok(resp)
    }

    /// Reads a small 403 answer to an impersonated request and logs, once,
    /// when it says the proxy itself may not impersonate; the answer is
    /// relayed unchanged.
    async fn watch_impersonation_refusal(&self, resp: Response<ProxyBody>) -> Response<ProxyBody> {
        let small = resp
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|n| n <= MAX_STATUS_BYTES);
        if !small {
            return resp;
        }
        let (parts, body) = resp.into_parts();
        let bytes = match body.collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(e) => {
                let failed = futures_util::stream::iter([Err::<Frame<Bytes>, BoxError>(e)]);
                return Response::from_parts(parts, StreamBody::new(failed).boxed());
            }
        };
        if let Some(message) = impersonation_refusal(&bytes) {
            if !self.impersonation_refused.swap(true, Ordering::Relaxed) {
                tracing::error!(
                    "the API server does not let the proxy's own identity impersonate callers ({message}); in auth mode every request is refused (403) until the proxy's identity is allowed to impersonate users and groups (see the ClusterRole in the kubescribe-proxy README); logged once"
                );
            }
        }
        Response::from_parts(parts, body::full(bytes))
    }
}

/// The message of a kube-apiserver `Status` refusing impersonation, if `body` is one.
fn impersonation_refusal(body: &[u8]) -> Option<String> {
    let status: serde_json::Value = serde_json::from_slice(body).ok()?;
    let message = status.get("message")?.as_str()?;
    message
        .contains("cannot impersonate")
        .then(|| message.to_owned())
}

/// The pooled HTTP/1.1 client over our connector.
fn http_client(
    tls: Option<Arc<rustls::ClientConfig>>,
    server_name: Option<ServerName<'static>>,
) -> HttpClient {
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(256)
        .pool_timer(TokioTimer::new())
        .set_host(false)
        .build(client::Connector::new(tls, server_name))
}

/// The rustls configuration kube-rs makes from `config` (CA, CA file,
/// `insecure-skip-tls-verify`, client certificate and key; `identity`
/// instead when an exec plugin gave one), with ALPN `http/1.1` only.
fn tls_config(
    config: &kube::Config,
    identity: Option<&Identity>,
) -> Result<Arc<rustls::ClientConfig>, UpstreamTlsError> {
    // kube-rs builds with the process-wide crypto provider: the one every
    // kubescribe TLS configuration uses, unless a program chose another.
    let _ = Arc::unwrap_or_clone(service::tls::crypto_provider()).install_default();
    let b64 = |pem: &str| base64::engine::general_purpose::STANDARD.encode(pem);
    let auth = &config.auth_info;
    // Only the certificate and key: kube-rs would run an exec plugin here.
    let tls_auth = match identity {
        Some(id) => AuthInfo {
            client_certificate_data: Some(b64(&id.cert_pem)),
            client_key_data: Some(b64(&id.key_pem).into()),
            ..AuthInfo::default()
        },
        None => AuthInfo {
            client_certificate: auth.client_certificate.clone(),
            client_certificate_data: auth.client_certificate_data.clone(),
            client_key: auth.client_key.clone(),
            client_key_data: auth.client_key_data.clone(),
            ..AuthInfo::default()
        },
    };
    let mut view = config.clone();
    view.auth_info = tls_auth;
    let mut tls = view
        .rustls_client_config()
        .map_err(UpstreamTlsError::Kube)?;
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(tls))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_refused_impersonation_is_recognised() {
        let refused = br#"{"kind":"Status","apiVersion":"v1","status":"Failure","message":"users \"alice@example.com\" is forbidden: User \"system:serviceaccount:kubescribe:proxy\" cannot impersonate resource \"users\" in API group \"\" at the cluster scope","reason":"Forbidden","code":403}"#;
        assert!(impersonation_refusal(refused).is_some_and(|m| m.contains("system:serviceaccount")));
        // kube-apiserver 1.37 (constrained impersonation) names the verb it checked first.
        let constrained = br#"{"kind":"Status","message":"configmaps is forbidden: User \"system:serviceaccount:kubescribe:proxy\" cannot impersonate-on:user-info:list resource \"configmaps\" in API group \"\" in the namespace \"default\"","reason":"Forbidden","code":403}"#;
        assert!(impersonation_refusal(constrained).is_some());
        let rbac = br#"{"kind":"Status","message":"pods is forbidden: User \"alice@example.com\" cannot list resource \"pods\""}"#;
        assert_eq!(impersonation_refusal(rbac), None);
        assert_eq!(impersonation_refusal(b"forbidden\n"), None);
    }
}
