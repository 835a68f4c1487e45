//! The seam for exec/attach session recording ([`RecordingHook`](crate::RecordingHook)
//! plugs in here).
//!
//! For an upgrade request (exec, attach, port-forward, any other upgrade), the
//! proxy calls [`SessionHook::start`] with the request's [`SessionContext`]
//! **before the request is sent to the API server**. The hook may refuse (fail
//! closed: the caller gets a proper HTTP/1.1 error and the API server never
//! sees the request, so no command starts unrecorded), or return a
//! [`SessionRelay`]. If the API server answers `101 Switching Protocols`, the
//! relay then owns both upgraded byte streams for the rest of the session
//! (its context now carrying the 101's headers); otherwise it is dropped unused.
//!
//! [`PassThrough`] relays bytes both ways untouched; the binary uses
//! [`RecordingHook`](crate::RecordingHook).

use std::sync::Arc;

use async_trait::async_trait;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use recorder_client::Refusal;

use crate::caller::CallerInfo;
use crate::metrics::PlainCounter;
use crate::request::context::RequestContext;

/// An upgraded connection as a tokio byte stream.
pub type UpgradedStream = TokioIo<Upgraded>;

/// Everything known about the request that was upgraded.
#[derive(Debug, Clone)]
pub struct SessionContext {
    /// The request (id, caller address, method, target, user agent, timing).
    pub request: RequestContext,
    /// The caller: identity, event source and merged recording rules.
    pub caller: Arc<CallerInfo>,
    /// kube-apiserver's view of the request (verb, namespace, resource `pods`, subresource `exec`/`attach`/`portforward`, name).
    pub request_info: k8s_request_parse::RequestInfo,
    /// The request's `Upgrade` header value as sent (e.g. `SPDY/3.1`, `websocket`).
    pub upgrade: String,
    /// The upstream 101 response's headers (e.g. the negotiated `X-Stream-Protocol-Version`
    /// or `Sec-WebSocket-Protocol`); empty when [`SessionHook::start`] runs, filled in
    /// for [`SessionRelay::relay`].
    pub response_headers: http::HeaderMap,
    /// The event key of the request event, when one was recorded.
    pub event_key: Option<String>,
    /// Tailscale's session counters, for the hook to count attempts and uploads.
    pub metrics: SessionMetrics,
}

/// Tailscale-named session counters (`k8s_auth_proxy_session_recordings_*`).
#[derive(Debug, Clone, Default)]
pub struct SessionMetrics {
    /// `k8s_auth_proxy_session_recordings_attempted`.
    pub(crate) attempted: PlainCounter,
    /// `k8s_auth_proxy_session_recordings_uploaded`.
    pub(crate) uploaded: PlainCounter,
}

impl SessionMetrics {
    /// Counts a session whose recording was attempted.
    pub fn recording_attempted(&self) {
        self.attempted.inc();
    }

    /// Counts a session recording uploaded in full.
    pub fn recording_uploaded(&self) {
        self.uploaded.inc();
    }
}

/// Decides, per upgraded request, how the session's bytes flow.
#[async_trait]
pub trait SessionHook: Send + Sync + 'static {
    /// Called before the upgrade request is sent upstream. A refusal is
    /// answered to the caller instead (see [`Refusal::into_response`]) and
    /// the API server never sees the request.
    async fn start(&self, ctx: &SessionContext) -> Result<Box<dyn SessionRelay>, Refusal>;
}

/// Owns an upgraded session's two streams until it ends.
#[async_trait]
pub trait SessionRelay: Send + 'static {
    /// Relay (and, for a recorder, observe) bytes between caller and upstream until either side closes.
    async fn relay(
        self: Box<Self>,
        ctx: SessionContext,
        client: UpgradedStream,
        upstream: UpgradedStream,
    );
}

/// The default hook: no recording, bytes copied both ways.
#[derive(Debug, Default, Clone, Copy)]
pub struct PassThrough;

#[async_trait]
impl SessionHook for PassThrough {
    async fn start(&self, _ctx: &SessionContext) -> Result<Box<dyn SessionRelay>, Refusal> {
        Ok(Box::new(CopyRelay))
    }
}

/// Copies bytes both ways until both directions are done.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct CopyRelay;

#[async_trait]
impl SessionRelay for CopyRelay {
    async fn relay(
        self: Box<Self>,
        ctx: SessionContext,
        mut client: UpgradedStream,
        mut upstream: UpgradedStream,
    ) {
        match tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
            Ok((up, down)) => tracing::debug!(
                request_id = %ctx.request.id,
                bytes_to_upstream = up,
                bytes_to_client = down,
                "upgraded session ended"
            ),
            Err(e) => {
                tracing::debug!(request_id = %ctx.request.id, error = %e, "upgraded session ended with an error")
            }
        }
    }
}
