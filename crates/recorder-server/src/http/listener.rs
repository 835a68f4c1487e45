//! Serving the routes on a `service::conn` listener (connection limits, set-up and idle timeouts,
//! PROXY protocol, TLS): HTTP/1.1 and HTTP/2 (h2c prior knowledge, or TLS with ALPN) on one port.

use std::convert::Infallible;
use std::sync::Arc;

use hyper::service::service_fn;
use hyper_util::rt::TokioExecutor;
use hyper_util::server::conn::auto::Builder;
use service::conn::Listener;

use super::admin::Admin;
use super::router::Routes;
use crate::access::Peer;

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
        // A peer that stops answering pings is gone: its connection (and uploads) end.
        .keep_alive_interval(Some(std::time::Duration::from_secs(20)))
        .keep_alive_timeout(std::time::Duration::from_secs(20))
        .timer(hyper_util::rt::TokioTimer::new());
    builder
}

/// Serves connections on `listener` with `routes` until the process ends. Each request is routed
/// with the connection's peer: the PROXY header's source behind a forwarder, else the TCP peer.
pub(crate) async fn serve(listener: Listener, routes: Arc<Routes>) {
    let builder = Arc::new(builder());
    loop {
        let incoming = listener.accept().await;
        let routes = routes.clone();
        let builder = builder.clone();
        tokio::spawn(async move {
            let Ok(conn) = incoming.handshake().await else {
                return;
            };
            let peer = conn.info().peer;
            // One per connection: its WhoIs identity is looked up once, not per request.
            let remote = Peer::new(peer);
            let service = service_fn(move |req| {
                let routes = routes.clone();
                let remote = remote.clone();
                async move { Ok::<_, Infallible>(routes.route(&remote, req).await) }
            });
            if let Err(e) = conn.serve(builder, service, false, None).await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
}

/// Serves the admin endpoints on `listener` until the process ends.
pub(crate) async fn serve_admin(listener: Listener, admin: Arc<Admin>) {
    let builder = Arc::new(Builder::new(TokioExecutor::new()));
    loop {
        let incoming = listener.accept().await;
        let admin = admin.clone();
        let builder = builder.clone();
        tokio::spawn(async move {
            let Ok(conn) = incoming.handshake().await else {
                return;
            };
            let service = service_fn(move |req| {
                let admin = admin.clone();
                async move { Ok::<_, Infallible>(admin.route(&req)) }
            });
            let _ = conn.serve(builder, service, false, None).await;
        });
    }
}
