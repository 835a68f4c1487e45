//! Loopback benchmark: throughput and added latency of kubescribe-proxy versus
//! talking to the upstream directly, with events off, fail open and fail closed.
//!
//! Everything runs in this process on 127.0.0.1: the upstream, an in-memory
//! recorder (HTTP/1.1 `/v2/event`, answers 200 at once: this measures the
//! proxy, not a recorder's storage), the real recorder client, and the proxy.
//!
//! Each table also has a bare hyper reverse proxy (no identity, no events):
//! the cost of any HTTP/1.1 proxy hop on the same machine.
//!
//! Two upstreams, one table each:
//! * a **no-op** API server that answers a fixed pod at once: the harshest
//!   baseline, where the proxy's own HTTP hop is most of the work;
//! * the **simulator** (`kube-sim`, plain HTTP, bearer tokens, impersonation
//!   checks, a real object store): closer to an API server's cost per
//!   request, though still far cheaper than kube-apiserver with etcd.
//!
//! ```text
//! cargo run --release -p kubescribe-proxy --example bench_proxy -- [--requests N] [--concurrency C]
//! ```
//! (`cargo xtask bench-proxy` runs this.) Output: Markdown tables.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use kubescribe_proxy::{Components, PassThrough};
use kubescribe_proxy::{Config, IdentitySource, LogFormat, Mode, UpstreamSource};
use kubescribe_proxy::{Credential, UpstreamSpec};
use tokio::net::{TcpListener, TcpStream};

/// The same allocator as the binaries.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

type Res = Response<Full<Bytes>>;

async fn serve(listener: TcpListener, f: fn(&Request<Incoming>) -> Res) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            return;
        };
        let _ = tcp.set_nodelay(true);
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| async move {
                let r = f(&req);
                let _ = req.into_body().collect().await;
                Ok::<_, Infallible>(r)
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), svc)
                .await;
        });
    }
}

fn api(_req: &Request<Incoming>) -> Res {
    let mut r = Response::new(Full::new(Bytes::from_static(
        br#"{"kind":"Pod","apiVersion":"v1","metadata":{"name":"demo","namespace":"default"},"status":{"phase":"Running"}}"#,
    )));
    r.headers_mut().insert(
        "content-type",
        http::HeaderValue::from_static("application/json"),
    );
    r
}

fn recorder(_req: &Request<Incoming>) -> Res {
    let mut r = Response::new(Full::new(Bytes::new()));
    r.headers_mut()
        .insert("x-kubescribe-recorder", http::HeaderValue::from_static("1"));
    r
}

async fn bind() -> (TcpListener, SocketAddr) {
    let l = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("bind: {e}"));
    let a = l.local_addr().unwrap_or_else(|e| panic!("addr: {e}"));
    (l, a)
}

/// Run `total` GETs over `concurrency` keep-alive connections; per-request
/// latencies. `token` is sent as a bearer token when given.
async fn load(
    addr: SocketAddr,
    total: usize,
    concurrency: usize,
    token: Option<&'static str>,
) -> (Vec<Duration>, Duration) {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..concurrency {
        let n = total / concurrency + usize::from(c < total % concurrency);
        tasks.push(tokio::spawn(async move {
            let tcp = TcpStream::connect(addr)
                .await
                .unwrap_or_else(|e| panic!("connect: {e}"));
            let _ = tcp.set_nodelay(true);
            let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
                .await
                .unwrap_or_else(|e| panic!("handshake: {e}"));
            tokio::spawn(conn);
            let mut lat = Vec::with_capacity(n);
            for _ in 0..n {
                let mut req = Request::get("/api/v1/namespaces/default/pods/demo")
                    .header("host", "kubernetes")
                    .header("user-agent", "bench");
                if let Some(token) = token {
                    req = req.header("authorization", format!("Bearer {token}"));
                }
                let req = req
                    .body(Full::new(Bytes::new()))
                    .unwrap_or_else(|e| panic!("request: {e}"));
                let t = Instant::now();
                let resp = send
                    .send_request(req)
                    .await
                    .unwrap_or_else(|e| panic!("send: {e}"));
                assert!(resp.status().is_success(), "status {}", resp.status());
                let _ = resp.into_body().collect().await;
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap_or_default());
    }
    let wall = start.elapsed();
    all.sort();
    (all, wall)
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn start_proxy(
    dir: &std::path::Path,
    name: &str,
    grant: &str,
    upstream: SocketAddr,
) -> kubescribe_proxy::RunningProxy {
    let ident = dir.join(format!("{name}.yaml"));
    std::fs::write(
        &ident,
        format!(
            "entries:\n  - sources: [\"127.0.0.0/8\"]\n    Node: {{ID: 7, StableID: nBench, Name: bench.ts.net., User: 42}}\n    UserProfile: {{ID: 42, LoginName: bench@example.com}}\n    CapMap:\n      tailscale.com/cap/kubernetes:\n        - {grant}\n"
        ),
    )
    .unwrap_or_else(|e| panic!("identity file: {e}"));
    let config = Config {
        listen: "127.0.0.1:0".parse().unwrap_or_else(|e| panic!("{e}")),
        tls: None,
        proxy_protocol: false,
        upstream: UpstreamSource::InCluster,
        mode: Mode::Auth,
        identity: IdentitySource::File(ident),
        recorder_dial: kubescribe_proxy::RecorderDial::Direct,
        admin_listen: "127.0.0.1:0".parse().unwrap_or_else(|e| panic!("{e}")),
        max_body_capture: 1 << 20,
        max_header_bytes: 256 * 1024,
        redactor: Default::default(),
        audit_policy: None,
        connections: service::conn::ConnectionLimits::default(),
        events_for_all_callers: false,
        trust_forwarded_for: false,
        whois_cache_ttl: Duration::from_secs(5),
        state_dir: None,
        spool: kubescribe_proxy::SpoolOptions::off(),
        // The client below is built here, with its default: fail open waits for the
        // in-memory recorder's answer, so these tables compare the proxy's own work.
        fail_open_delivery: recorder_client::FailOpenDelivery::Acknowledged,
        shutdown_grace: Duration::from_secs(2),
        log_format: LogFormat::Text,
    };
    let mut registry = prometheus_client::registry::Registry::default();
    let client = recorder_client::RecorderClient::start(
        recorder_client::ClientConfig::default(),
        &mut registry,
    )
    .unwrap_or_else(|e| panic!("recorder client: {e}"));
    let components = Components {
        whois: config.identity.open().unwrap_or_else(|e| panic!("{e}")),
        sink: Arc::new(client),
        hook: Arc::new(PassThrough),
        upstream: UpstreamSpec::new(
            format!("http://{upstream}")
                .parse()
                .unwrap_or_else(|e| panic!("{e}")),
            None,
            false,
            None,
            None,
            Credential::Bearer(PROXY_TOKEN.into()),
            "bench".into(),
        )
        .unwrap_or_else(|e| panic!("{e}")),
    };
    kubescribe_proxy::start(&config, components, registry)
        .await
        .unwrap_or_else(|e| panic!("proxy: {e}"))
}

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A bare HTTP/1.1 reverse proxy (hyper server + pooled hyper client, no
/// identity, no events, no header rewriting): the floor any proxy hop costs
/// on this machine, for comparison with kubescribe's.
async fn start_bare_proxy(upstream: SocketAddr) -> SocketAddr {
    let (listener, addr) = bind().await;
    let client: hyper_util::client::legacy::Client<_, Incoming> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let _ = tcp.set_nodelay(true);
            let client = client.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let client = client.clone();
                    async move {
                        let (mut parts, body) = req.into_parts();
                        let path = parts
                            .uri
                            .path_and_query()
                            .map(|p| p.as_str().to_owned())
                            .unwrap_or_else(|| "/".into());
                        parts.uri = format!("http://{upstream}{path}")
                            .parse()
                            .unwrap_or_else(|e| panic!("uri: {e}"));
                        let resp = client
                            .request(Request::from_parts(parts, body))
                            .await
                            .unwrap_or_else(|e| panic!("upstream: {e}"));
                        Ok::<_, Infallible>(resp)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    addr
}

/// The proxy's own credential upstream (allowed to impersonate in the simulator).
const PROXY_TOKEN: &str = "bench-token";
/// A direct caller's credential for the simulator.
const DIRECT_TOKEN: &str = "bench-direct-token";

async fn start_sim() -> kube_sim::RunningSim {
    let entry = |token: &str, user: &str| kube_sim::TokenEntry {
        token: token.into(),
        user: user.into(),
        groups: vec!["system:masters".into()],
    };
    kube_sim::KubeSim::start(kube_sim::SimConfig {
        tls: false,
        tokens: Some(vec![
            entry(PROXY_TOKEN, "system:serviceaccount:tailscale:kubescribe"),
            entry(DIRECT_TOKEN, "bench@example.com"),
        ]),
        impersonators: vec!["system:serviceaccount:tailscale:kubescribe".into()],
        ..kube_sim::SimConfig::default()
    })
    .await
    .unwrap_or_else(|e| panic!("simulator: {e}"))
}

/// Measures the direct path and the proxy in each configuration against the
/// upstream at `api_addr`; prints one table.
async fn table(
    title: &str,
    api_addr: SocketAddr,
    direct_token: Option<&'static str>,
    total: usize,
    concurrency: usize,
    dir: &std::path::Path,
    rec_addr: SocketAddr,
) {
    let seq = (total / 4).max(100);
    let configs = [
        ("events off", "{}".to_string()),
        (
            "fail open",
            format!(r#"{{recorderAddrs: ["{rec_addr}"], enableEvents: true}}"#),
        ),
        (
            "fail closed",
            format!(
                r#"{{recorderAddrs: ["{rec_addr}"], enableEvents: true, enforceRecorder: true}}"#
            ),
        ),
    ];
    // Warm up and measure the direct path.
    let _ = load(api_addr, 1000, concurrency, direct_token).await;
    let (direct_seq, _) = load(api_addr, seq, 1, direct_token).await;
    let (_, direct_wall) = load(api_addr, total, concurrency, direct_token).await;
    let direct_rps = total as f64 / direct_wall.as_secs_f64();
    println!("\n### {title}\n");
    println!("| path | req/s ({concurrency} conns) | % of direct | p50 latency | p99 latency | p50 added | p99 added |");
    println!("|---|---|---|---|---|---|---|");
    println!(
        "| direct | {direct_rps:.0} | 100% | {:.0} µs | {:.0} µs | – | – |",
        micros(pct(&direct_seq, 0.5)),
        micros(pct(&direct_seq, 0.99))
    );
    let bare = start_bare_proxy(api_addr).await;
    let _ = load(bare, 1000, concurrency, direct_token).await;
    let (lat, _) = load(bare, seq, 1, direct_token).await;
    let (_, wall) = load(bare, total, concurrency, direct_token).await;
    let rps = total as f64 / wall.as_secs_f64();
    println!(
        "| bare hyper proxy (floor) | {rps:.0} | {:.0}% | {:.0} µs | {:.0} µs | {:.0} µs | {:.0} µs |",
        100.0 * rps / direct_rps,
        micros(pct(&lat, 0.5)),
        micros(pct(&lat, 0.99)),
        micros(pct(&lat, 0.5)) - micros(pct(&direct_seq, 0.5)),
        micros(pct(&lat, 0.99)) - micros(pct(&direct_seq, 0.99)),
    );
    for (name, grant) in configs {
        let proxy = start_proxy(dir, &name.replace(' ', "-"), &grant, api_addr).await;
        let _ = load(proxy.addr, 1000, concurrency, None).await;
        let (lat, _) = load(proxy.addr, seq, 1, None).await;
        let (_, wall) = load(proxy.addr, total, concurrency, None).await;
        let rps = total as f64 / wall.as_secs_f64();
        println!(
            "| proxy, {name} | {rps:.0} | {:.0}% | {:.0} µs | {:.0} µs | {:.0} µs | {:.0} µs |",
            100.0 * rps / direct_rps,
            micros(pct(&lat, 0.5)),
            micros(pct(&lat, 0.99)),
            micros(pct(&lat, 0.5)) - micros(pct(&direct_seq, 0.5)),
            micros(pct(&lat, 0.99)) - micros(pct(&direct_seq, 0.99)),
        );
        proxy.shutdown().await;
    }
    println!("\n{seq} sequential requests for latency, {total} requests over {concurrency} connections for throughput; loopback; in-memory recorder.");
}

#[tokio::main]
async fn main() {
    let total = arg("--requests", 20_000);
    let concurrency = arg("--concurrency", 16).max(1);
    let dir = tempfile_dir();
    let (al, api_addr) = bind().await;
    tokio::spawn(serve(al, api));
    let (rl, rec_addr) = bind().await;
    tokio::spawn(serve(rl, recorder));
    table(
        "Upstream: a no-op API server",
        api_addr,
        None,
        total,
        concurrency,
        &dir,
        rec_addr,
    )
    .await;
    let sim = start_sim().await;
    table(
        "Upstream: the Kubernetes simulator (kube-sim)",
        sim.addr(),
        Some(DIRECT_TOKEN),
        total,
        concurrency,
        &dir,
        rec_addr,
    )
    .await;
    sim.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn tempfile_dir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("kubescribe-bench-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&d);
    d
}
