//! The admin listener: `/metrics` (Prometheus text), `/healthz` (the process
//! runs), `/readyz` (upstream configuration loaded and the API listener up).

use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper_util::rt::TokioExecutor;
use prometheus_client::registry::Registry;
use service::admin;
use service::conn::Listener;

/// Readiness, flipped on once the proxy can serve.
#[derive(Debug, Clone, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    /// Mark ready (or not).
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::SeqCst);
    }
    /// Whether ready.
    pub fn get(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// Answer one admin request.
pub(crate) fn respond(
    registry: &Registry,
    ready: &Readiness,
    method: &Method,
    path: &str,
) -> Response<Full<Bytes>> {
    let text = |status, body: &'static str| admin::answer(status, "text/plain", body);
    match (method, path) {
        (&Method::GET | &Method::HEAD, "/metrics") => admin::metrics(registry),
        (&Method::GET | &Method::HEAD, "/healthz") => text(StatusCode::OK, "ok\n"),
        (&Method::GET | &Method::HEAD, "/readyz") if ready.get() => text(StatusCode::OK, "ready\n"),
        (&Method::GET | &Method::HEAD, "/readyz") => text(
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: upstream or listener not up yet\n",
        ),
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: try /metrics, /healthz or /readyz\n",
        ),
    }
}

/// Serve the admin endpoints until `shutdown` resolves.
pub(crate) async fn serve(
    listener: Listener,
    registry: Arc<Registry>,
    ready: Readiness,
    shutdown: impl Future<Output = ()>,
) {
    let builder = Arc::new(hyper_util::server::conn::auto::Builder::new(
        TokioExecutor::new(),
    ));
    tokio::pin!(shutdown);
    loop {
        let incoming = tokio::select! {
            _ = &mut shutdown => return,
            incoming = listener.accept() => incoming,
        };
        let registry = registry.clone();
        let ready = ready.clone();
        let builder = builder.clone();
        tokio::spawn(async move {
            let Ok(conn) = incoming.handshake().await else {
                return;
            };
            let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let r = respond(&registry, &ready, req.method(), req.uri().path());
                async move { Ok::<_, Infallible>(r) }
            });
            let _ = conn.serve(builder, svc, false, None).await;
        });
    }
}
