//! The operator's Prometheus metrics and the `--metrics-addr` listener (`/metrics`, `/healthz`).

use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::AtomicI64;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use service::admin;

/// Labels of the reconcile counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ReconcileLabels {
    /// `Recorder` or `APIServerProxy`.
    pub(crate) kind: String,
    /// `ok` (children applied), `invalid` (Ready=False for a reason the user must fix) or
    /// `error` (an API error; retried with back-off).
    pub(crate) result: String,
}

/// Labels of the error counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct KindLabels {
    /// `Recorder` or `APIServerProxy`.
    pub(crate) kind: String,
}

/// Every metric of the operator. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub(crate) struct Metrics {
    /// Reconciles, by kind and result.
    pub(crate) reconciles: Family<ReconcileLabels, Counter>,
    /// Reconcile errors (API failures retried with back-off), by kind.
    pub(crate) errors: Family<KindLabels, Counter>,
    /// Children deleted because their owner is gone.
    pub(crate) orphans_deleted: Counter,
    /// 1 while this replica holds the leader Lease.
    pub(crate) leader: Gauge<i64, AtomicI64>,
}

impl Metrics {
    /// Registers every metric under `kubescribe_operator_`.
    pub(crate) fn register(&self, registry: &mut Registry) {
        let sub = registry.sub_registry_with_prefix("kubescribe_operator");
        sub.register(
            "reconciles",
            "Reconciles, by kind and result (ok, invalid, error)",
            self.reconciles.clone(),
        );
        sub.register(
            "reconcile_errors",
            "Reconciles that failed with an API error (retried with back-off), by kind",
            self.errors.clone(),
        );
        sub.register(
            "orphans_deleted",
            "Children deleted because their Recorder or APIServerProxy is gone",
            self.orphans_deleted.clone(),
        );
        sub.register(
            "leader",
            "1 while this replica holds the leader Lease, else 0",
            self.leader.clone(),
        );
    }

    /// Counts one reconcile of `kind` with `result`.
    pub(crate) fn reconciled(&self, kind: &str, result: &str) {
        self.reconciles
            .get_or_create(&ReconcileLabels {
                kind: kind.to_owned(),
                result: result.to_owned(),
            })
            .inc();
    }
}

fn respond(registry: &Registry, method: &Method, path: &str) -> Response<Full<Bytes>> {
    let text = |status, body: &'static str| admin::answer(status, "text/plain", body);
    match (method, path) {
        (&Method::GET | &Method::HEAD, "/metrics") => admin::metrics(registry),
        (&Method::GET | &Method::HEAD, "/healthz") => text(StatusCode::OK, "ok\n"),
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: try /metrics or /healthz\n",
        ),
    }
}

/// Serves `/metrics` and `/healthz` on `listener` until `shutdown` completes.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    registry: Arc<Registry>,
    shutdown: impl Future<Output = ()>,
) {
    let builder = Arc::new(hyper_util::server::conn::auto::Builder::new(
        TokioExecutor::new(),
    ));
    tokio::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(err) => {
                    tracing::warn!(error = %err, "accepting a metrics connection");
                    continue;
                }
            },
        };
        let registry = registry.clone();
        let builder = builder.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let r = respond(&registry, req.method(), req.uri().path());
                async move { Ok::<_, Infallible>(r) }
            });
            let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
        });
    }
}
