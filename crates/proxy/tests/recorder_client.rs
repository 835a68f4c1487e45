//! The proxy with the real recorder client against a wire-compatible recorder
//! (`HEAD`/`POST /v2/event`, `/v2/events` batches, `X-Kubescribe-Recorder: 1`):
//! fail closed and fail open with the recorder down, and spooled events
//! arriving once it is back.
#![allow(clippy::unwrap_used, clippy::type_complexity)]

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use event_model::Record;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use kubescribe_proxy::Mode;
use tokio::net::TcpListener;

/// A minimal kubescribe-compatible recorder that keeps what it is sent.
#[derive(Clone, Default)]
struct TestRecorder {
    records: Arc<Mutex<Vec<Record>>>,
}

impl TestRecorder {
    async fn start_on(listener: TcpListener) -> Self {
        let rec = TestRecorder::default();
        let me = rec.clone();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let me = me.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let me = me.clone();
                        async move { Ok::<_, Infallible>(me.handle(req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), svc)
                        .await;
                });
            }
        });
        rec
    }

    async fn handle(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let path = req.uri().path().to_string();
        let method = req.method().clone();
        let body = req
            .into_body()
            .collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        let mut r = Response::new(Full::new(Bytes::new()));
        r.headers_mut()
            .insert("x-kubescribe-recorder", "1".parse().unwrap());
        match (method.as_str(), path.as_str()) {
            ("HEAD", "/v2/event") => {}
            ("POST", "/v2/event") | ("POST", "/v2/events") => {
                for line in body.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                    match Record::from_slice(line) {
                        Ok(rec) => self.records.lock().unwrap().push(rec),
                        Err(_) => *r.status_mut() = StatusCode::BAD_REQUEST,
                    }
                }
            }
            _ => *r.status_mut() = StatusCode::NOT_FOUND,
        }
        r
    }

    fn split(&self) -> (Vec<event_model::Event>, Vec<event_model::ResponseRecord>) {
        let mut ev = Vec::new();
        let mut rr = Vec::new();
        for r in self.records.lock().unwrap().iter() {
            match r {
                Record::Event(e) => ev.push(e.clone()),
                Record::Response(x) => rr.push(x.clone()),
            }
        }
        (ev, rr)
    }
}

/// A loopback port with nothing listening on it (bound, then released).
async fn free_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap()
}

async fn proxy_with_client(
    grant: String,
    spool: Option<std::path::PathBuf>,
    dir: &std::path::Path,
    upstream: SocketAddr,
) -> kubescribe_proxy::RunningProxy {
    let cfg = config(identity_file(dir, &grant), Mode::Auth);
    let mut registry = prometheus_client::registry::Registry::default();
    let mut cc = recorder_client::ClientConfig::default();
    if let Some(dir) = spool {
        let mut s = recorder_client::SpoolConfig::new(dir);
        s.retry_min = Duration::from_millis(50);
        s.retry_max = Duration::from_millis(200);
        cc.spool = Some(s);
    }
    cc.breaker.probe_interval = Duration::from_millis(50);
    cc.breaker.probe_interval_max = Duration::from_millis(200);
    let client = recorder_client::RecorderClient::start(cc, &mut registry).unwrap();
    let components = kubescribe_proxy::Components {
        whois: cfg.identity.open().unwrap(),
        sink: Arc::new(client),
        hook: Arc::new(kubescribe_proxy::PassThrough),
        upstream: upstream_spec(upstream),
    };
    kubescribe_proxy::start(&cfg, components, registry)
        .await
        .unwrap()
}

#[tokio::test]
async fn fail_closed_with_the_recorder_down_is_502_and_the_api_server_sees_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let up = FakeUpstream::start().await;
    let dead = free_port().await;
    let grant =
        format!(r#"{{recorderAddrs: ["{dead}"], enforceRecorder: true, enableEvents: true}}"#);
    let proxy = proxy_with_client(grant, None, dir.path(), up.addr).await;
    for req in [
        get("/api/v1/pods"),
        with_body("POST", "/api/v1/namespaces/default/pods", "{}"),
    ] {
        let got = send(proxy.addr, b"", req).await;
        assert_eq!(got.status, StatusCode::BAD_GATEWAY);
        let body = String::from_utf8(got.body.to_vec()).unwrap();
        assert!(
            body.starts_with("error recording Kubernetes API request:"),
            "{body}"
        );
    }
    assert!(
        up.seen().is_empty(),
        "no request may reach the API server unrecorded"
    );
    proxy.shutdown().await;
}

#[tokio::test]
async fn fail_open_with_the_recorder_down_serves_requests_and_delivers_events_once_it_is_back() {
    let dir = tempfile::tempdir().unwrap();
    let up = FakeUpstream::start().await;
    let addr = free_port().await;
    let grant = format!(r#"{{recorderAddrs: ["{addr}"], enableEvents: true}}"#);
    let proxy = proxy_with_client(grant, Some(dir.path().join("spool")), dir.path(), up.addr).await;
    let targets = [
        "/api/v1/pods",
        "/api/v1/namespaces/default/pods/a",
        "/api/v1/namespaces/kube-system/pods?limit=5",
    ];
    for t in targets {
        let got = send(proxy.addr, b"", get(t)).await;
        assert_eq!(got.status, StatusCode::OK, "{t}");
    }
    assert_eq!(up.seen().len(), 3);

    // The recorder comes back on the same address.
    let rec = TestRecorder::start_on(TcpListener::bind(addr).await.unwrap()).await;
    let mut done = false;
    for _ in 0..600 {
        let (ev, rr) = rec.split();
        if ev.len() >= 3 && rr.len() >= 3 {
            done = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (events, responses) = rec.split();
    assert!(
        done,
        "events {} / responses {} after 30 s",
        events.len(),
        responses.len()
    );
    let mut paths: Vec<_> = events.iter().map(|e| e.request.path.clone()).collect();
    paths.sort();
    paths.dedup();
    let mut want: Vec<_> = targets.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(paths, want, "every event arrived");
    for e in &events {
        let key = e.key().unwrap();
        assert!(
            responses.iter().any(|r| r.key == key && r.status == 200),
            "response record for {key}"
        );
    }
    proxy.shutdown().await;
}

#[tokio::test]
async fn with_the_recorder_up_the_event_is_stored_before_the_request_is_forwarded() {
    let dir = tempfile::tempdir().unwrap();
    let up = FakeUpstream::start().await;
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let rec = TestRecorder::start_on(l).await;
    let grant =
        format!(r#"{{recorderAddrs: ["{addr}"], enforceRecorder: true, enableEvents: true}}"#);
    let proxy = proxy_with_client(grant, None, dir.path(), up.addr).await;
    let got = send(
        proxy.addr,
        b"",
        with_body(
            "POST",
            "/api/v1/namespaces/default/configmaps?dryRun=All",
            r#"{"kind":"ConfigMap"}"#,
        ),
    )
    .await;
    assert_eq!(got.status, StatusCode::OK);
    let (events, _) = rec.split();
    assert_eq!(events.len(), 1, "stored before the response was sent");
    let e = &events[0];
    assert_eq!(e.request.body, br#"{"kind":"ConfigMap"}"#.to_vec());
    assert_eq!(
        e.request.query_parameters.get("dryRun").cloned(),
        Some(vec!["All".to_string()])
    );
    assert_eq!(e.kubernetes.verb, "create");
    assert_eq!(e.source.node_user, "alice@example.com");
    proxy.shutdown().await;
}

#[tokio::test]
async fn fail_closed_refusals_reach_the_recorder_once_it_is_back_saying_they_were_refused() {
    let dir = tempfile::tempdir().unwrap();
    let up = FakeUpstream::start().await;
    let addr = free_port().await;
    let grant =
        format!(r#"{{recorderAddrs: ["{addr}"], enforceRecorder: true, enableEvents: true}}"#);
    let proxy = proxy_with_client(grant, Some(dir.path().join("spool")), dir.path(), up.addr).await;
    let got = send(
        proxy.addr,
        b"",
        with_body("DELETE", "/api/v1/namespaces/default/pods/web-0", ""),
    )
    .await;
    assert_eq!(got.status, StatusCode::BAD_GATEWAY);
    assert!(up.seen().is_empty());

    let rec = TestRecorder::start_on(TcpListener::bind(addr).await.unwrap()).await;
    let mut arrived = (Vec::new(), Vec::new());
    for _ in 0..600 {
        arrived = rec.split();
        if !arrived.0.is_empty() && !arrived.1.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (events, responses) = arrived;
    assert_eq!(events.len(), 1, "{events:?}");
    let ext = events[0].kubescribe.clone().unwrap();
    assert_eq!(events[0].request.method, "DELETE");
    assert_eq!(ext.decision, Some(event_model::Decision::RefusedFailClosed));
    assert_eq!(responses.len(), 1, "{responses:?}");
    assert_eq!(responses[0].key, ext.key);
    assert_eq!(responses[0].status, 502);
    assert_eq!(
        responses[0].decision,
        Some(event_model::Decision::RefusedFailClosed)
    );
    proxy.shutdown().await;
}

/// The proxy binary serving `upstream` with `grant` for loopback callers, its
/// state in `state`; returns the process and its API address.
async fn proxy_process(
    dir: &std::path::Path,
    grant: &str,
    upstream: SocketAddr,
    state: &std::path::Path,
) -> (std::process::Child, SocketAddr) {
    let ident = identity_file(dir, grant);
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!("current-context: c\nclusters: [{{name: a, cluster: {{server: \"http://{upstream}\"}}}}]\ncontexts: [{{name: c, context: {{cluster: a, user: u}}}}]\nusers: [{{name: u, user: {{token: proxy-sa-token}}}}]\n"),
    )
    .unwrap();
    let listen = free_port().await;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_kubescribe-proxy"))
        .args([
            "--listen",
            &listen.to_string(),
            "--admin-listen",
            "127.0.0.1:0",
        ])
        .args(["--identity-file", ident.to_str().unwrap()])
        .args(["--kubeconfig", kubeconfig.to_str().unwrap()])
        .args(["--state-dir", state.to_str().unwrap()])
        .env_remove("KUBESCRIBE_SPOOL_DIR")
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    for _ in 0..400 {
        if tokio::net::TcpStream::connect(listen).await.is_ok() {
            return (child, listen);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("kubescribe-proxy did not listen on {listen}");
}

fn terminate(mut child: std::process::Child) {
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().unwrap();
    assert!(status.success(), "kubescribe-proxy exited with {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_spool_keeps_fail_open_events_across_a_proxy_restart() {
    let dir = tempfile::tempdir().unwrap();
    let up = FakeUpstream::start().await;
    let addr = free_port().await;
    let grant = format!(r#"{{recorderAddrs: ["{addr}"], enableEvents: true}}"#);
    let state = dir.path().join("state");

    // The recorder is down: fail open forwards and spools (in the state dir, by default).
    let (proxy, listen) = proxy_process(dir.path(), &grant, up.addr, &state).await;
    let targets = ["/api/v1/pods", "/api/v1/namespaces/default/pods/a"];
    for t in targets {
        assert_eq!(
            send(listen, b"", get(t)).await.status,
            StatusCode::OK,
            "{t}"
        );
    }
    terminate(proxy);
    assert!(
        std::fs::read_dir(state.join("spool")).unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .ends_with(".ksp")),
        "the spool is in the state directory"
    );

    // Recorder back, a new proxy process on the same state: the backlog arrives.
    let rec = TestRecorder::start_on(TcpListener::bind(addr).await.unwrap()).await;
    let (proxy, _) = proxy_process(dir.path(), &grant, up.addr, &state).await;
    let mut arrived = (Vec::new(), Vec::new());
    for _ in 0..600 {
        arrived = rec.split();
        if arrived.0.len() >= 2 && arrived.1.len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    terminate(proxy);
    let (events, responses) = arrived;
    let mut paths: Vec<_> = events.iter().map(|e| e.request.path.clone()).collect();
    paths.sort();
    paths.dedup();
    let mut want = targets.map(String::from).to_vec();
    want.sort();
    assert_eq!(paths, want);
    for e in &events {
        let key = e.key().unwrap();
        assert!(
            responses
                .iter()
                .any(|r| r.key == key && r.decision == Some(event_model::Decision::Forwarded)),
            "response record for {key}: {responses:?}"
        );
    }
    assert_eq!(up.seen().len(), 2);
}
