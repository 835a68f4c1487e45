//! Accepting connections: HTTP/1.1 and HTTP/2 (h2c prior knowledge, or
//! TLS+ALPN) on one port, through hyper-util's auto builder.

use std::net::SocketAddr;
use std::sync::Arc;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use rustls::ServerConfig;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use super::router::Routes;

/// A bound listener.
pub(crate) struct Listener {
    tcp: TcpListener,
    local: SocketAddr,
    tls: Option<TlsAcceptor>,
}

impl Listener {
    /// Binds `addr` (`:PORT`, i.e. `[::]:PORT`, falls back to `0.0.0.0:PORT`
    /// where IPv6 is off); serves TLS with `tls` when given.
    pub(crate) async fn bind(
        addr: SocketAddr,
        tls: Option<Arc<ServerConfig>>,
    ) -> std::io::Result<Self> {
        let tcp = match TcpListener::bind(addr).await {
            Ok(l) => l,
            Err(e) if addr.ip().is_unspecified() && addr.is_ipv6() => {
                TcpListener::bind(SocketAddr::from(([0, 0, 0, 0], addr.port())))
                    .await
                    .map_err(|_| e)?
            }
            Err(e) => return Err(e),
        };
        let local = tcp.local_addr()?;
        Ok(Self {
            tcp,
            local,
            tls: tls.map(TlsAcceptor::from),
        })
    }

    /// The bound address.
    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Whether TLS is on.
    pub(crate) fn is_tls(&self) -> bool {
        self.tls.is_some()
    }
}

/// HTTP/2 flow-control window per stream (bytes a sender may have unread here).
const UPLOAD_STREAM_WINDOW: u32 = 4 << 20;
/// HTTP/2 flow-control window per connection.
const UPLOAD_CONNECTION_WINDOW: u32 = 8 << 20;
/// Largest HTTP/2 frame a sender may use.
const UPLOAD_MAX_FRAME: u32 = 256 << 10;

fn builder() -> Builder<TokioExecutor> {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .keep_alive(true)
        .header_read_timeout(std::time::Duration::from_secs(30))
        .timer(hyper_util::rt::TokioTimer::new());
    builder
        .http2()
        .max_concurrent_streams(1024)
        // Session uploads stream megabytes per second: windows large enough
        // that a sync in progress does not stop the sender at once, frames
        // large enough that framing costs little. Bounded per connection.
        .initial_stream_window_size(UPLOAD_STREAM_WINDOW)
        .initial_connection_window_size(UPLOAD_CONNECTION_WINDOW)
        .max_frame_size(UPLOAD_MAX_FRAME)
        .keep_alive_interval(Some(std::time::Duration::from_secs(20)))
        .timer(hyper_util::rt::TokioTimer::new());
    builder
}

/// Serves connections on `listener` with `routes` until the process ends.
pub(crate) async fn serve(listener: Listener, routes: Arc<Routes>) {
    let builder = Arc::new(builder());
    loop {
        let (stream, peer) = match listener.tcp.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let routes = routes.clone();
        let builder = builder.clone();
        let tls = listener.tls.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let routes = routes.clone();
                async move { Ok::<_, std::convert::Infallible>(routes.route(peer, req).await) }
            });
            let result = match tls {
                None => {
                    builder
                        .serve_connection(TokioIo::new(stream), service)
                        .await
                }
                Some(acceptor) => match acceptor.accept(stream).await {
                    Ok(tls_stream) => {
                        builder
                            .serve_connection(TokioIo::new(tls_stream), service)
                            .await
                    }
                    Err(e) => {
                        tracing::debug!(%peer, error = %e, "TLS handshake failed");
                        return;
                    }
                },
            };
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
}
