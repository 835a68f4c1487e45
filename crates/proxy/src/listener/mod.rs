//! The API listener: accept TCP, read the PROXY header when required, terminate
//! TLS when configured, serve HTTP/1.1 with upgrades, and shut down gracefully.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};

use crate::body::ProxyBody;
use crate::conn::{accept, ConnInfo};
use crate::session_tracker::SessionTracker;
use service::conn::{read_header, MaybeTls, ProxiedPeer, HEADER_TIMEOUT};

/// Bound on the TLS handshake of one connection.
pub(crate) const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on reading one request head. hyper also applies it to an idle
/// keep-alive connection waiting for its next request, so it is longer than
/// Go clients' 90 s idle timeout: clients close idle connections first, and a
/// request never races a server-side close.
pub(crate) const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(120);

/// How connections are accepted.
#[derive(Clone)]
pub(crate) struct ListenerOptions {
    /// TLS configuration (None: plain HTTP).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Require a PROXY protocol header first.
    pub proxy_protocol: bool,
    /// Largest request head.
    pub max_header_bytes: usize,
}

impl std::fmt::Debug for ListenerOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListenerOptions")
            .field("tls", &self.tls.is_some())
            .field("proxy_protocol", &self.proxy_protocol)
            .field("max_header_bytes", &self.max_header_bytes)
            .finish()
    }
}

/// Serve `handler` on `listener` until `shutdown` resolves, then stop accepting
/// and give in-flight requests up to `grace` to finish.
pub(crate) async fn serve<H, F>(
    listener: TcpListener,
    opts: ListenerOptions,
    handler: H,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
    sessions: SessionTracker,
) where
    H: Fn(ConnInfo, Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<ProxyBody>> + Send + 'static,
{
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let tls = opts.tls.clone().map(tokio_rustls::TlsAcceptor::from);
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            _ = &mut shutdown => break,
            accepted = accept(&listener, "API") => accepted,
        };
        let Some((tcp, tcp_peer)) = accepted else {
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let watcher = graceful.watcher();
        let opts = opts.clone();
        let tls = tls.clone();
        let handler = handler.clone();
        tokio::spawn(async move {
            if let Some(conn) = prepare(tcp, tcp_peer, &opts, tls).await {
                let (io, info) = conn;
                let svc = hyper::service::service_fn(move |req| {
                    let fut = handler(info, req);
                    async move { Ok::<_, Infallible>(fut.await) }
                });
                let mut builder = auto::Builder::new(TokioExecutor::new());
                builder
                    .http1()
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEADER_READ_TIMEOUT)
                    .max_buf_size(opts.max_header_bytes);
                let builder = builder.http1_only();
                let conn = builder.serve_connection_with_upgrades(io, svc);
                if let Err(e) = watcher.watch(conn.into_owned()).await {
                    tracing::debug!(caller = %info.caller, error = %e, "connection ended with an error");
                }
            }
        });
    }
    drop(listener);
    tracing::info!(
        grace = ?grace,
        sessions = sessions.active(),
        "shutting down: no new connections; waiting for in-flight requests and exec/attach sessions"
    );
    let drained = async {
        graceful.shutdown().await;
        sessions.wait_idle().await;
    };
    match tokio::time::timeout(grace, drained).await {
        Ok(()) => tracing::info!("all connections and sessions finished"),
        Err(_) => {
            tracing::warn!(grace = ?grace, sessions = sessions.active(), "grace period over; closing remaining connections and sessions")
        }
    }
}

/// A caller's byte stream after PROXY header and TLS handling.
type AcceptedIo = TokioIo<MaybeTls<tokio_rustls::server::TlsStream<TcpStream>>>;

async fn prepare(
    mut tcp: TcpStream,
    tcp_peer: SocketAddr,
    opts: &ListenerOptions,
    tls: Option<tokio_rustls::TlsAcceptor>,
) -> Option<(AcceptedIo, ConnInfo)> {
    let mut info = ConnInfo {
        caller: tcp_peer,
        tcp_peer,
        tls: tls.is_some(),
        via_proxy_protocol: false,
    };
    if opts.proxy_protocol {
        match read_header(&mut tcp, HEADER_TIMEOUT).await {
            Ok(ProxiedPeer::Address(a)) => {
                info.caller = a;
                info.via_proxy_protocol = true;
            }
            Ok(ProxiedPeer::Local) => {}
            Err(e) => {
                tracing::warn!(tcp_peer = %tcp_peer, error = %e, "closing connection: bad PROXY protocol header");
                return None;
            }
        }
    }
    let io = match tls {
        None => MaybeTls::Plain(tcp),
        Some(acceptor) => {
            match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => MaybeTls::Tls(Box::new(s)),
                Ok(Err(e)) => {
                    tracing::debug!(caller = %info.caller, error = %e, "TLS handshake failed");
                    return None;
                }
                Err(_) => {
                    tracing::debug!(caller = %info.caller, "TLS handshake timed out");
                    return None;
                }
            }
        }
    };
    Some((TokioIo::new(io), info))
}
