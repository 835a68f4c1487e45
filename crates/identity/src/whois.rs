//! The [`WhoIs`] seam: peer address → [`Caller`], and the errors a lookup can end in.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::caller::Caller;

/// Resolves the tailnet identity (and grants) of a connection's peer.
///
/// Implementations: [`crate::LocalApiWhoIs`] (tailscaled's LocalAPI) and
/// [`crate::IdentityFileWhoIs`] (a static identity file). Tests can implement it directly.
///
/// When only an IP is known (e.g. the `X-Forwarded-For` fallback, see [`peer_from_forwarded_for`]),
/// pass port 0: tailscaled then matches the node by IP alone.
#[async_trait]
pub trait WhoIs: Send + Sync {
    /// Looks up who is behind `peer` (the connection's remote `IP:port`).
    async fn whois(&self, peer: SocketAddr) -> Result<Caller, WhoIsError>;
}

#[async_trait]
impl<T: WhoIs + ?Sized> WhoIs for Arc<T> {
    async fn whois(&self, peer: SocketAddr) -> Result<Caller, WhoIsError> {
        (**self).whois(peer).await
    }
}

#[async_trait]
impl<T: WhoIs + ?Sized> WhoIs for Box<T> {
    async fn whois(&self, peer: SocketAddr) -> Result<Caller, WhoIsError> {
        (**self).whois(peer).await
    }
}

/// The peer named by an `X-Forwarded-For` value, for the WhoIs fallback on a plain-HTTP listener
/// (`docs/tailscale-protocol.md#whois`): a single `IP`, `IP:port`, `[IPv6]:port` or bare IPv6
/// (port 0 when absent). Like upstream, a comma-separated list is not supported (`None`).
pub fn peer_from_forwarded_for(value: &str) -> Option<SocketAddr> {
    let value = value.trim();
    if value.contains(',') {
        return None;
    }
    value.parse::<SocketAddr>().ok().or_else(|| {
        value
            .parse::<std::net::IpAddr>()
            .ok()
            .map(|ip| SocketAddr::new(ip, 0))
    })
}

/// Why a WhoIs lookup failed. The proxy answers every variant with
/// `500 failed to authenticate caller` (`docs/tailscale-protocol.md#ordinary-requests`); the
/// variants exist so that logs and `kubescribe-proxy whois` tell the operator what to fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WhoIsError {
    /// The address belongs to no known node (tailscaled: 404 `no match for IP:port`; identity
    /// file: no entry matches).
    #[error("no tailnet node is known at {peer}: {detail}")]
    NoMatch {
        /// The address looked up.
        peer: SocketAddr,
        /// The source's own words (e.g. tailscaled's `no match for IP:port`).
        detail: String,
    },
    /// tailscaled's LocalAPI socket does not exist.
    #[error(
        "tailscaled's LocalAPI socket {path} does not exist: is tailscaled running, and is \
         --localapi-socket (tailscaled --socket) the same path?"
    )]
    SocketMissing {
        /// The socket path.
        path: PathBuf,
    },
    /// tailscaled refused us: the socket is not accessible to this process, or tailscaled
    /// answered 403.
    #[error(
        "permission denied talking to tailscaled at {path}: {detail}; run kubescribe as root or \
         as tailscaled's operator user (tailscale up --operator=USER), or fix the socket's mode"
    )]
    PermissionDenied {
        /// The socket path.
        path: PathBuf,
        /// What was denied.
        detail: String,
    },
    /// The socket exists but nothing usable answers on it (e.g. a stale socket after tailscaled
    /// died: connection refused).
    #[error("cannot reach tailscaled at {path}: {source}; is tailscaled running?")]
    Unreachable {
        /// The socket path.
        path: PathBuf,
        /// The connection error.
        #[source]
        source: std::io::Error,
    },
    /// No complete answer within the configured timeout.
    #[error("WhoIs of {peer} timed out after {after:?}; tailscaled at {path} is not answering")]
    Timeout {
        /// The address looked up.
        peer: SocketAddr,
        /// The socket path.
        path: PathBuf,
        /// The timeout that expired.
        after: Duration,
    },
    /// tailscaled answered, but not with a usable WhoIs response (unexpected status, body too
    /// large, JSON that does not parse, broken HTTP).
    #[error("bad WhoIs answer from tailscaled for {peer}: {detail}")]
    BadResponse {
        /// The address looked up.
        peer: SocketAddr,
        /// HTTP status, when one was received.
        status: Option<u16>,
        /// What was wrong.
        detail: String,
        /// The HTTP or JSON error behind it, when there is one.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
}

impl WhoIsError {
    /// Whether the peer is simply unknown (as opposed to the identity source being broken).
    pub fn is_no_match(&self) -> bool {
        matches!(self, WhoIsError::NoMatch { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::peer_from_forwarded_for;

    #[test]
    fn forwarded_for_values() {
        let p = |s: &str| peer_from_forwarded_for(s).map(|a| a.to_string());
        assert_eq!(p("100.64.0.1").as_deref(), Some("100.64.0.1:0"));
        assert_eq!(p(" 100.64.0.1:443 ").as_deref(), Some("100.64.0.1:443"));
        assert_eq!(p("fd7a::1").as_deref(), Some("[fd7a::1]:0"));
        assert_eq!(p("[fd7a::1]:80").as_deref(), Some("[fd7a::1]:80"));
        assert_eq!(p("100.64.0.1, 10.0.0.1"), None);
        assert_eq!(p("example.com"), None);
        assert_eq!(p(""), None);
    }
}
