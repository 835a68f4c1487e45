//! The two minimal HTTP/1.1 servers `cargo xtask bench-proxy` runs as processes of their own
//! (see `bench_proxy_system`):
//!
//! * `noop-api`: a no-op Kubernetes API server that answers every request at once with the same
//!   ~1 KiB `PodList` (the harshest upstream: the proxy's hop is most of the work);
//! * `bare-proxy`: a bare hyper reverse proxy (hyper server, pooled hyper client, no identity, no
//!   events, no header rewriting): the floor any HTTP/1.1 proxy hop costs on this machine.
//!
//! ```text
//! bench_hop noop-api --listen 127.0.0.1:PORT
//! bench_hop bare-proxy --listen 127.0.0.1:PORT --upstream 127.0.0.1:PORT
//! ```
//! Both use the binaries' allocator (mimalloc) and tokio's multi-threaded runtime, as
//! `kubescribe-proxy` does.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use kubescribe_system_tests::Error;
use tokio::net::TcpListener;

/// The same allocator as the binaries.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// What the no-op API server answers: one running pod, as kube-apiserver lists it (1 KiB).
const POD_LIST: &str = r#"{"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":"48213"},"items":[{"metadata":{"name":"web-7d4b9c6f5d-x2k8p","generateName":"web-7d4b9c6f5d-","namespace":"default","uid":"5f0c7a2e-3b1d-4e8a-9c6f-2d7e1a0b4c93","resourceVersion":"48190","creationTimestamp":"2026-12-01T09:14:22Z","labels":{"app":"web","pod-template-hash":"7d4b9c6f5d"},"ownerReferences":[{"apiVersion":"apps/v1","kind":"ReplicaSet","name":"web-7d4b9c6f5d","uid":"a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d","controller":true,"blockOwnerDeletion":true}]},"spec":{"containers":[{"name":"web","image":"nginx:1.27","ports":[{"containerPort":80,"protocol":"TCP"}],"resources":{"requests":{"cpu":"100m","memory":"128Mi"}},"imagePullPolicy":"IfNotPresent"}],"restartPolicy":"Always","nodeName":"node-1","serviceAccountName":"default"},"status":{"phase":"Running","conditions":[{"type":"Ready","status":"True","lastTransitionTime":"2026-12-01T09:14:31Z"}],"hostIP":"10.0.0.11","podIP":"10.244.1.17","startTime":"2026-12-01T09:14:22Z","containerStatuses":[{"name":"web","ready":true,"restartCount":0,"image":"nginx:1.27","started":true}]}}]}"#;

type Body = BoxBody<Bytes, hyper::Error>;

fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |name: &str| -> Result<SocketAddr, Error> {
        let value = args
            .iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .ok_or_else(|| format!("{name} ADDR is required"))?;
        Ok(value.parse().map_err(|e| format!("{name} {value}: {e}"))?)
    };
    let runtime = tokio::runtime::Runtime::new()?;
    match args.first().map(String::as_str) {
        Some("noop-api") => runtime.block_on(noop_api(flag("--listen")?)),
        Some("bare-proxy") => runtime.block_on(bare_proxy(flag("--listen")?, flag("--upstream")?)),
        _ => Err(
            "usage: bench_hop noop-api --listen ADDR | bare-proxy --listen ADDR --upstream ADDR"
                .into(),
        ),
    }
}

/// Serves HTTP/1.1 on `listen`, each request answered by `handle`, until killed.
async fn serve<F, Fut>(listen: SocketAddr, handle: F) -> Result<(), Error>
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    let listener = TcpListener::bind(listen).await?;
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let handle = handle.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let handle = handle.clone();
                async move { Ok::<_, Infallible>(handle(req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), service)
                .await;
        });
    }
}

async fn noop_api(listen: SocketAddr) -> Result<(), Error> {
    serve(listen, |req: Request<Incoming>| async move {
        let _ = req.into_body().collect().await;
        let mut response = Response::new(
            Full::new(Bytes::from_static(POD_LIST.as_bytes()))
                .map_err(|never| match never {})
                .boxed(),
        );
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        response
    })
    .await
}

async fn bare_proxy(listen: SocketAddr, upstream: SocketAddr) -> Result<(), Error> {
    let client: Client<_, Incoming> = Client::builder(TokioExecutor::new()).build_http();
    serve(listen, move |req: Request<Incoming>| {
        let client = client.clone();
        async move {
            let (mut parts, body) = req.into_parts();
            let path = parts
                .uri
                .path_and_query()
                .map_or("/", |p| p.as_str())
                .to_owned();
            let forwarded = match format!("http://{upstream}{path}").parse() {
                Ok(uri) => {
                    parts.uri = uri;
                    client.request(Request::from_parts(parts, body)).await
                }
                Err(e) => return bad_gateway(e.to_string()),
            };
            match forwarded {
                Ok(response) => response.map(BodyExt::boxed),
                Err(e) => bad_gateway(e.to_string()),
            }
        }
    })
    .await
}

fn bad_gateway(why: String) -> Response<Body> {
    let mut response = Response::new(
        Full::new(Bytes::from(why))
            .map_err(|never| match never {})
            .boxed(),
    );
    *response.status_mut() = StatusCode::BAD_GATEWAY;
    response
}
