//! The API listener: connections within limits (`service::conn`: set-up deadline, PROXY header,
//! TLS, per-source and total limits, idle timeout), HTTP/1.1 with upgrades, and graceful shutdown
//! that also waits for upgraded exec/attach sessions.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use service::conn::{ConnInfo, Listener};
use tokio::sync::watch;
use tokio_util::task::TaskTracker;

use crate::body::ProxyBody;
use crate::session_tracker::SessionTracker;

/// Bound on reading a request head after the first. hyper also applies it to an idle keep-alive
/// connection waiting for its next request, so it is longer than Go clients' 90 s idle timeout:
/// clients close idle connections first, and a request never races a server-side close.
pub(crate) const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(120);

fn builder(max_header_bytes: usize) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(max_header_bytes);
    // SPDY upgrades need HTTP/1.1; ALPN offers only http/1.1 too.
    builder.http1_only()
}

/// Serve `handler` on `listener` until `shutdown` resolves, then stop accepting and give in-flight
/// requests and exec/attach sessions up to `grace` to finish.
pub(crate) async fn serve<H, F>(
    listener: Listener,
    max_header_bytes: usize,
    handler: H,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
    sessions: SessionTracker,
) where
    H: Fn(ConnInfo, Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<ProxyBody>> + Send + 'static,
{
    let builder = Arc::new(builder(max_header_bytes));
    let connections = TaskTracker::new();
    let (stop, stopping) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let incoming = tokio::select! {
            _ = &mut shutdown => break,
            incoming = listener.accept() => incoming,
        };
        let handler = handler.clone();
        let builder = builder.clone();
        let stopping = stopping.clone();
        connections.spawn(async move {
            let Ok(conn) = incoming.handshake().await else {
                return;
            };
            let info = conn.info();
            let service = hyper::service::service_fn(move |req| {
                let fut = handler(info, req);
                async move { Ok::<_, Infallible>(fut.await) }
            });
            if let Err(e) = conn.serve(builder, service, true, Some(stopping)).await {
                tracing::debug!(caller = %info.peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tracing::info!(
        grace = ?grace,
        sessions = sessions.active(),
        "shutting down: no new connections; waiting for in-flight requests and exec/attach sessions"
    );
    let _ = stop.send(true);
    connections.close();
    let drained = async {
        connections.wait().await;
        sessions.wait_idle().await;
    };
    match tokio::time::timeout(grace, drained).await {
        Ok(()) => tracing::info!("all connections and sessions finished"),
        Err(_) => {
            tracing::warn!(grace = ?grace, sessions = sessions.active(), "grace period over; closing remaining connections and sessions")
        }
    }
}
