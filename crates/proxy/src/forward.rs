//! Forwarding to the API server: the caller's request with its headers made
//! fit for the upstream ([`crate::headers`]), the response streamed back, and
//! HTTP upgrades (exec, attach, port-forward) handed to the [`SessionHook`]
//! before the request leaves the proxy.

use std::sync::Arc;

use http::header::HeaderValue;
use http::{Request, Response, StatusCode};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use identity::Impersonation;
use recorder_client::Refusal;

use crate::body::{self, error_chain, ProxyBody};
use crate::headers::{downstream_response_headers, upgrade_type, upstream_request_headers};
use crate::mode::Mode;
use crate::session_hook::{SessionContext, SessionHook, SessionRelay};
use crate::session_tracker::SessionTracker;
use crate::upstream::{CredentialError, Upstream};

/// Why a request was not forwarded, or no answer came back. The proxy
/// answers the first two with 502 and this text (see `pipeline/error.rs`).
#[derive(Debug, thiserror::Error)]
pub(crate) enum ForwardError {
    /// No connection to the API server could be made: refused, unreachable,
    /// the TLS handshake failed, or connecting took longer than the connect
    /// timeout. Nothing reached the API server.
    #[error("error forwarding to the API server: cannot connect to {upstream}: {}", cause(.source))]
    Connect {
        /// The API server's `host:port`.
        upstream: String,
        /// hyper's error, with the connector's below it.
        #[source]
        source: hyper_util::client::legacy::Error,
    },
    /// The connection ended (closed or reset) before the API server's
    /// response head arrived: it went away, or closed the connection
    /// without answering (kube-apiserver does so when a request times out
    /// while its handler is writing). The API server may have acted on it.
    #[error("error forwarding to the API server: the connection to {upstream} ended before it answered: {}", cause(.source))]
    NoResponse {
        /// The API server's `host:port`.
        upstream: String,
        /// hyper's error, with the connection's below it.
        #[source]
        source: hyper_util::client::legacy::Error,
    },
    /// The proxy has no credential for the API server (an exec plugin failed).
    #[error("no credentials for the API server: {0}")]
    Credentials(#[source] CredentialError),
    /// The request-target cannot be turned into an upstream URL.
    #[error("invalid request target: {0}")]
    Target(#[source] http::Error),
    /// The session hook refused the upgrade; the API server never saw it.
    #[error("session refused by the session hook: {0}")]
    SessionRefused(Refusal),
}

/// Sends requests upstream and relays responses and upgrades.
pub(crate) struct Forwarder {
    upstream: Arc<Upstream>,
    mode: Mode,
    hook: Arc<dyn SessionHook>,
    sessions: SessionTracker,
}

impl std::fmt::Debug for Forwarder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forwarder")
            .field("mode", &self.mode)
            .finish()
    }
}

/// What the forwarder needs for an upgrade besides the request.
pub(crate) struct UpgradeParts {
    /// The caller side of the upgrade.
    pub(crate) client: OnUpgrade,
    /// The session context; the 101's headers are added before the relay runs.
    pub(crate) context: SessionContext,
}

impl Forwarder {
    /// A forwarder to `upstream` in `mode`, handing upgrades to `hook` and
    /// counting their sessions in `sessions`.
    pub(crate) fn new(
        upstream: Arc<Upstream>,
        mode: Mode,
        hook: Arc<dyn SessionHook>,
        sessions: SessionTracker,
    ) -> Self {
        Forwarder {
            upstream,
            mode,
            hook,
            sessions,
        }
    }

    /// Forward one request. Returns the response to relay (body streaming).
    pub(crate) async fn forward(
        &self,
        mut parts: http::request::Parts,
        body: ProxyBody,
        target: &str,
        impersonation: Option<&Impersonation>,
        upgrade: Option<UpgradeParts>,
    ) -> Result<Response<ProxyBody>, ForwardError> {
        let upgrade_value = if upgrade.is_some() {
            upgrade_type(&parts.headers)
        } else {
            None
        };
        // The proxy's own credential (none in noauth mode), before anything
        // else: a failing exec plugin is answered 502 here.
        let auth = self
            .upstream
            .authenticate()
            .await
            .map_err(ForwardError::Credentials)?;
        upstream_request_headers(
            &mut parts.headers,
            upgrade_value.as_ref(),
            self.mode,
            impersonation,
            auth.authorization(),
        );
        parts.uri = self
            .upstream
            .uri_for(target)
            .map_err(ForwardError::Target)?;
        parts.version = http::Version::HTTP_11;
        if !parts.headers.contains_key(http::header::HOST) {
            // HTTP/1.0 callers may omit Host; HTTP/1.1 upstreams require one.
            if let Ok(v) = HeaderValue::from_str(self.upstream.authority().as_str()) {
                parts.headers.insert(http::header::HOST, v);
            }
        }
        // The session hook decides before anything reaches the API server: a
        // session that must be recorded but cannot be is refused here, so the
        // command never starts in the pod unrecorded.
        let upgrade = match upgrade {
            Some(up) => match self.hook.start(&up.context).await {
                Ok(relay) => Some((up, relay)),
                Err(refusal) => return Err(ForwardError::SessionRefused(refusal)),
            },
            None => None,
        };
        let req = Request::from_parts(parts, body);
        let mut resp = self.upstream.send(req, &auth).await.map_err(|source| {
            let upstream = self.upstream.authority().to_string();
            if source.is_connect() {
                ForwardError::Connect { upstream, source }
            } else {
                ForwardError::NoResponse { upstream, source }
            }
        })?;

        if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
            if let Some((up, relay)) = upgrade {
                return Ok(self.switch(resp, up, relay));
            }
        }
        // Not upgraded (e.g. RBAC refused the exec): any prepared recording is
        // dropped unused.
        downstream_response_headers(resp.headers_mut());
        Ok(resp)
    }

    fn switch(
        &self,
        mut resp: Response<ProxyBody>,
        up: UpgradeParts,
        relay: Box<dyn SessionRelay>,
    ) -> Response<ProxyBody> {
        let upstream_upgrade = hyper::upgrade::on(&mut resp);
        let mut ctx = up.context;
        ctx.response_headers = resp.headers().clone();
        let client_upgrade = up.client;
        let session = self.sessions.track();
        tokio::spawn(async move {
            let _session = session;
            match tokio::try_join!(client_upgrade, upstream_upgrade) {
                Ok((client, upstream)) => {
                    relay
                        .relay(ctx, TokioIo::new(client), TokioIo::new(upstream))
                        .await;
                }
                Err(e) => {
                    tracing::warn!(request_id = %ctx.request.id, error = %e, "upgrade failed")
                }
            }
        });
        // Relay the 101 with its headers as sent (Connection/Upgrade included).
        let (parts, _) = resp.into_parts();
        Response::from_parts(parts, body::empty())
    }
}

/// What went wrong below hyper's client error, whose own text only names
/// its kind ("client error (Connect)"): the cause, e.g. "Connection refused
/// (os error 111)", a certificate the CA does not vouch for, or "connection
/// closed before message completed", with its sources.
fn cause(e: &hyper_util::client::legacy::Error) -> String {
    match std::error::Error::source(e) {
        Some(source) => error_chain(source),
        None => e.to_string(),
    }
}
