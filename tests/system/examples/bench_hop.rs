//! The two minimal HTTP/1.1 servers `cargo xtask bench-proxy` runs as processes of their own
//! (see `bench_proxy_system`):
//!
//! * `noop-api`: a no-op Kubernetes API server that answers every request at once with the same
//!   ~1 KiB `PodList` (the harshest upstream: the proxy's hop is most of the work);
//! * `bare-proxy`: a bare hyper reverse proxy (hyper server, pooled hyper client, no identity, no
//!   events, no header rewriting): the floor any HTTP/1.1 proxy hop costs on this machine.
//! * `bare-proxy --log DIR [--wait]`: the same proxy keeping its own durable log, the floor of
//!   *recording*: per request, a JSON line describing the request (before it is forwarded) and
//!   one with the response's status (when its head arrives), appended to one file by one writer
//!   thread that makes each group of lines durable with one `fdatasync`. With `--wait` a request
//!   is forwarded only once its line is durable (fail closed); without, at once (fail open). No
//!   second process, no transport, no parsing, no index, no signing: what any design that
//!   stores a record per request before and after it on this machine cannot go below.
//!
//! ```text
//! bench_hop noop-api --listen 127.0.0.1:PORT
//! bench_hop bare-proxy --listen 127.0.0.1:PORT --upstream 127.0.0.1:PORT [--log DIR [--wait]]
//! ```
//! Both use the binaries' allocator (mimalloc) and tokio's multi-threaded runtime, as
//! `kubescribe-proxy` does.

use std::convert::Infallible;
use std::future::Future;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use kubescribe_system_tests::Error;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

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
        Some("bare-proxy") => {
            let log = match args.iter().position(|a| a == "--log") {
                Some(i) => {
                    let dir = args.get(i + 1).ok_or("--log DIR: the directory is missing")?;
                    let wait = args.iter().any(|a| a == "--wait");
                    Some(Arc::new(DurableLog::open(PathBuf::from(dir), wait)?))
                }
                None => None,
            };
            runtime.block_on(bare_proxy(flag("--listen")?, flag("--upstream")?, log))
        }
        _ => Err(
            "usage: bench_hop noop-api --listen ADDR | bare-proxy --listen ADDR --upstream ADDR [--log DIR [--wait]]"
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

async fn bare_proxy(
    listen: SocketAddr,
    upstream: SocketAddr,
    log: Option<Arc<DurableLog>>,
) -> Result<(), Error> {
    let client: Client<_, Incoming> = Client::builder(TokioExecutor::new()).build_http();
    serve(listen, move |req: Request<Incoming>| {
        let client = client.clone();
        let log = log.clone();
        async move {
            let (mut parts, body) = req.into_parts();
            let path = parts
                .uri
                .path_and_query()
                .map_or("/", |p| p.as_str())
                .to_owned();
            let id = match &log {
                Some(log) => match log.request(&parts).await {
                    Ok(id) => Some(id),
                    Err(why) => return unavailable(why),
                },
                None => None,
            };
            let forwarded = match format!("http://{upstream}{path}").parse() {
                Ok(uri) => {
                    parts.uri = uri;
                    client.request(Request::from_parts(parts, body)).await
                }
                Err(e) => return bad_gateway(e.to_string()),
            };
            let response = match forwarded {
                Ok(response) => response.map(BodyExt::boxed),
                Err(e) => bad_gateway(e.to_string()),
            };
            if let (Some(log), Some(id)) = (&log, id) {
                log.response(id, response.status());
            }
            response
        }
    })
    .await
}

/// The recording floor's log: JSON lines appended to `DIR/records.jsonl` by one writer thread,
/// each group of lines made durable by one `fdatasync` (group commit), as a recorder stores.
struct DurableLog {
    lines: mpsc::Sender<Line>,
    /// Forward a request only once its line is durable (fail closed).
    wait: bool,
    next_id: AtomicU64,
}

/// One line for the writer, and whom to tell when it is durable.
struct Line {
    bytes: Vec<u8>,
    durable: Option<oneshot::Sender<()>>,
}

impl DurableLog {
    fn open(dir: PathBuf, wait: bool) -> Result<Self, Error> {
        std::fs::create_dir_all(&dir)?;
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("records.jsonl"))?;
        let (lines, received) = mpsc::channel::<Line>();
        std::thread::spawn(move || {
            let mut group = Vec::new();
            let mut bytes = Vec::new();
            while let Ok(first) = received.recv() {
                group.push(first);
                group.extend(received.try_iter());
                bytes.clear();
                for line in &group {
                    bytes.extend_from_slice(&line.bytes);
                }
                // A failed write or sync tells nobody their line is durable: their requests
                // are refused (fail closed) or their lines lost (fail open), as in a recorder.
                if file
                    .write_all(&bytes)
                    .and_then(|()| file.sync_data())
                    .is_ok()
                {
                    for line in group.drain(..) {
                        if let Some(durable) = line.durable {
                            let _ = durable.send(());
                        }
                    }
                }
                group.clear();
            }
        });
        Ok(DurableLog {
            lines,
            wait,
            next_id: AtomicU64::new(0),
        })
    }

    /// Logs the request (and, with `wait`, waits until its line is durable); returns its id.
    async fn request(&self, parts: &http::request::Parts) -> Result<u64, String> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let headers: serde_json::Map<String, serde_json::Value> = parts
            .headers
            .iter()
            .filter(|(name, _)| *name != http::header::AUTHORIZATION)
            .map(|(name, value)| {
                (
                    name.as_str().to_owned(),
                    String::from_utf8_lossy(value.as_bytes()).into(),
                )
            })
            .collect();
        let record = json!({
            "kind": "request",
            "id": id,
            "time": unix_nanos(),
            "method": parts.method.as_str(),
            "uri": parts.uri.to_string(),
            "headers": headers,
        });
        let (durable, is_durable) = if self.wait {
            let (tx, rx) = oneshot::channel();
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        self.append(&record, durable)?;
        if let Some(is_durable) = is_durable {
            is_durable
                .await
                .map_err(|_| "the log's writer stopped".to_owned())?;
        }
        Ok(id)
    }

    /// Logs the response's status, waiting for nothing.
    fn response(&self, id: u64, status: StatusCode) {
        let record = json!({
            "kind": "response",
            "id": id,
            "time": unix_nanos(),
            "status": status.as_u16(),
        });
        let _ = self.append(&record, None);
    }

    fn append(
        &self,
        record: &serde_json::Value,
        durable: Option<oneshot::Sender<()>>,
    ) -> Result<(), String> {
        let mut bytes = serde_json::to_vec(record).map_err(|e| e.to_string())?;
        bytes.push(b'\n');
        self.lines
            .send(Line { bytes, durable })
            .map_err(|_| "the log's writer stopped".to_owned())
    }
}

fn unix_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

fn unavailable(why: String) -> Response<Body> {
    let mut response = bad_gateway(why);
    *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    response
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
