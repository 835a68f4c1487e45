//! Why the proxy answered a request itself instead of relaying the API
//! server's answer: [`RequestError`], whose one impl decides each failure's
//! status, body and log line.

use event_model::Decision;
use http::{Response, StatusCode};
use identity::GrantError;
use k8s_request_parse::RequestInfoError;
use recorder_client::Refusal;

use crate::body::{refusal_response, BoxError, ProxyBody};
use crate::caller::CallerError;
use crate::forward::ForwardError;

/// A request the proxy answers itself. The body is the `Display` text,
/// except for a refusal, which is the refusal's own.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RequestError {
    /// WhoIs could not say who is calling: 500, in Tailscale's wording.
    #[error("failed to authenticate caller")]
    Authenticate(#[source] CallerError),
    /// The caller's grant does not parse: 403 with the reason (Tailscale
    /// answers an empty 200 and may forward without impersonation).
    #[error("forbidden: the caller's tailscale.com/cap/kubernetes grant is invalid: {0}")]
    InvalidGrant(#[source] GrantError),
    /// The request-target is one kube-apiserver refuses before auditing
    /// it: answered with kube-apiserver's own status (400 for a target Go's
    /// server rejects, 500 for a path verb with nothing after it).
    #[error("invalid request: {0}")]
    InvalidTarget(#[source] RequestInfoError),
    /// A `CONNECT` request: 405, not forwarded. kube-apiserver serves no `CONNECT`, and the
    /// upstream client would send it in authority form (`CONNECT host:port`, a tunnel to the API
    /// server's address), which is not the request the event would describe.
    #[error("method CONNECT is not forwarded to the API server")]
    ConnectNotForwarded,
    /// The request body could not be read for the event: 400.
    #[error("error reading request body: {0}")]
    ReadBody(#[source] BoxError),
    /// Fail closed: the request's event could not be stored, so it is
    /// refused (docs/tailscale-protocol.md#event-transport).
    #[error("{0}")]
    Refused(Refusal),
    /// Fail closed and the caller's grant names no recorder: every request
    /// is refused before anything is recorded.
    #[error("{0}")]
    RefusedByGrant(Refusal),
    /// Forwarding failed (502), or the session hook refused the upgrade.
    #[error(transparent)]
    Forward(#[from] ForwardError),
}

impl From<CallerError> for RequestError {
    fn from(e: CallerError) -> Self {
        match e {
            CallerError::Grant(grant) => RequestError::InvalidGrant(grant),
            whois => RequestError::Authenticate(whois),
        }
    }
}

impl RequestError {
    /// Whether this is a fail-closed refusal of an API request (counted in
    /// `kubescribe_proxy_requests_refused_total`).
    pub(crate) fn is_recording_refusal(&self) -> bool {
        matches!(
            self,
            RequestError::Refused(_) | RequestError::RefusedByGrant(_)
        )
    }

    /// What the proxy did with the request, for its records; `None` for a
    /// request turned away before any decision about forwarding it (who is
    /// calling, what the request is).
    pub(crate) fn decision(&self) -> Option<Decision> {
        match self {
            RequestError::Refused(_) | RequestError::Forward(ForwardError::SessionRefused(_)) => {
                Some(Decision::RefusedFailClosed)
            }
            RequestError::RefusedByGrant(_) | RequestError::InvalidGrant(_) => {
                Some(Decision::RefusedByGrant)
            }
            RequestError::Forward(_) => Some(Decision::UpstreamError),
            RequestError::Authenticate(_)
            | RequestError::InvalidTarget(_)
            | RequestError::ConnectNotForwarded
            | RequestError::ReadBody(_) => None,
        }
    }

    /// Writes the log line for this failure.
    pub(crate) fn log(&self) {
        match self {
            RequestError::Authenticate(e) => tracing::warn!(error = %e, "{self}"),
            RequestError::InvalidGrant(e) => {
                tracing::warn!(reason = %e, "refusing request: the caller's grant is invalid")
            }
            RequestError::InvalidTarget(e) => tracing::info!(error = %e, "invalid request target"),
            RequestError::ReadBody(e) => tracing::info!(error = %e, "error reading request body"),
            RequestError::ConnectNotForwarded => tracing::info!("refusing a CONNECT request"),
            RequestError::Refused(r) | RequestError::RefusedByGrant(r) => tracing::warn!(
                status = %r.status,
                "failure mode is 'fail closed'; refusing request: {r}"
            ),
            RequestError::Forward(ForwardError::SessionRefused(r)) => {
                tracing::warn!(status = %r.status, "session refused by the session hook: {r}")
            }
            RequestError::Forward(e) => tracing::warn!(error = %e, "upstream request failed"),
        }
    }

    /// The status and body the caller gets.
    fn into_refusal(self) -> Refusal {
        let status = match self {
            RequestError::Refused(refusal)
            | RequestError::RefusedByGrant(refusal)
            | RequestError::Forward(ForwardError::SessionRefused(refusal)) => return refusal,
            RequestError::Authenticate(_) => StatusCode::INTERNAL_SERVER_ERROR,
            RequestError::InvalidGrant(_) => StatusCode::FORBIDDEN,
            RequestError::InvalidTarget(ref e) => {
                StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::BAD_REQUEST)
            }
            RequestError::ReadBody(_) => StatusCode::BAD_REQUEST,
            RequestError::ConnectNotForwarded => StatusCode::METHOD_NOT_ALLOWED,
            RequestError::Forward(_) => StatusCode::BAD_GATEWAY,
        };
        Refusal::new(status, self.to_string())
    }

    /// The response the caller gets, carrying the [`Decision`] (an
    /// extension, never sent) for the response record and the metrics.
    pub(crate) fn into_response(self) -> Response<ProxyBody> {
        let decision = self.decision();
        let mut response = refusal_response(self.into_refusal());
        if let Some(decision) = decision {
            response.extensions_mut().insert(decision);
        }
        response
    }
}
