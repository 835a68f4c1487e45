//! Connection facts: what is known about the connection a request arrived on
//! ([`ConnInfo`]), and accepting connections. The byte stream, plain or TLS,
//! is `service::conn::MaybeTls`.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

/// What is known about the connection a request arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnInfo {
    /// The caller's address: the PROXY header's source, else the TCP peer.
    pub caller: SocketAddr,
    /// The TCP peer (the forwarder, behind `tailscale serve`).
    pub tcp_peer: SocketAddr,
    /// Whether TLS was terminated here.
    pub tls: bool,
    /// Whether the caller address came from a PROXY header.
    pub via_proxy_protocol: bool,
}

/// The next connection on `listener` (named `what` in logs). A failed
/// accept (EMFILE and friends) is logged and answered `None` after a short
/// pause, so an accept loop backs off instead of spinning.
pub(crate) async fn accept(listener: &TcpListener, what: &str) -> Option<(TcpStream, SocketAddr)> {
    match listener.accept().await {
        Ok(accepted) => Some(accepted),
        Err(e) => {
            tracing::warn!(error = %e, "{what} accept failed");
            tokio::time::sleep(Duration::from_millis(50)).await;
            None
        }
    }
}
