//! The webhook sink, in kube-apiserver's audit-webhook wire format: each
//! batch is one `POST` of an `audit.k8s.io/v1` `EventList` (JSON) to the
//! server of a kubeconfig-style file, as kube-apiserver's
//! `--audit-webhook-config-file` names it (server URL with its path, CA,
//! client certificate and key, or token). The file is loaded by kube-rs, the
//! kubeconfig loader the proxy uses too; any 2xx answer acknowledges the batch.

use std::path::Path;
use std::time::Duration;

use http::{header, Method, Request, Uri};
use kube::config::Kubeconfig;

use super::{ExportError, SinkError};

/// How long one POST may take before it counts as failed.
const POST_TIMEOUT: Duration = Duration::from_secs(30);

/// A loaded webhook target.
pub(crate) struct WebhookSink {
    client: kube::Client,
    /// The path and query of the server URL (kube-rs joins it to the host).
    path: String,
    /// The server URL, for logs.
    server: String,
}

impl WebhookSink {
    /// Loads the kubeconfig-style file `path` (its current context).
    pub(crate) fn load(path: &Path) -> Result<Self, ExportError> {
        let bad = |why: String| ExportError::WebhookConfig {
            path: path.display().to_string(),
            why,
        };
        let kubeconfig = Kubeconfig::read_from(path).map_err(|e| bad(e.to_string()))?;
        let mut config = kube::Config::try_from(kubeconfig).map_err(|e| bad(e.to_string()))?;
        // Only the file decides where audit events go.
        config.proxy_url = None;
        config.read_timeout = Some(POST_TIMEOUT);
        config.write_timeout = Some(POST_TIMEOUT);
        let server = config.cluster_url.to_string();
        let parts = config.cluster_url.clone().into_parts();
        let path_and_query = parts
            .path_and_query
            .as_ref()
            .map_or("/", |p| p.as_str())
            .to_owned();
        let mut base = http::uri::Parts::default();
        base.scheme = parts.scheme;
        base.authority = parts.authority;
        base.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
        config.cluster_url = Uri::from_parts(base).map_err(|e| bad(e.to_string()))?;
        // kube-rs builds its TLS client from rustls' process-wide provider:
        // the workspace's (ring), as the proxy installs it.
        let _ = std::sync::Arc::unwrap_or_clone(service::tls::crypto_provider()).install_default();
        let client = kube::Client::try_from(config).map_err(|e| bad(e.to_string()))?;
        Ok(Self {
            client,
            path: path_and_query,
            server,
        })
    }

    /// The server URL, for logs.
    pub(crate) fn server(&self) -> &str {
        &self.server
    }

    /// POSTs one `EventList` body; `Ok` on any 2xx.
    pub(crate) async fn post(&self, body: Vec<u8>) -> Result<(), SinkError> {
        let request = Request::builder()
            .method(Method::POST)
            .uri(self.path.as_str())
            .header(header::CONTENT_TYPE, "application/json")
            .body(kube::client::Body::from(body))
            .map_err(|e| SinkError::Webhook(e.to_string()))?;
        let response = tokio::time::timeout(POST_TIMEOUT, self.client.send(request))
            .await
            .map_err(|_| SinkError::Webhook(format!("no answer within {POST_TIMEOUT:?}")))?
            .map_err(|e| SinkError::Webhook(e.to_string()))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let body = tokio::time::timeout(POST_TIMEOUT, response.into_body().collect_bytes())
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
        let text = String::from_utf8_lossy(&body[..body.len().min(512)]).into_owned();
        Err(SinkError::Webhook(format!(
            "answered {status}: {}",
            text.trim()
        )))
    }
}
