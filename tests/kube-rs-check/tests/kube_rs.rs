//! The real Rust Kubernetes client, kube-rs, against the simulator: kubeconfig loading
//! through kube's own reader, TLS to the simulator's generated CA, a bearer token from
//! the allow-list, pod create/list/get/delete and exec over WebSocket.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Status;
use kube::api::{AttachParams, AttachedProcess, DeleteParams, ListParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};
use kube_sim::{Credentials, KubeSim, RecordedRequest, RunningSim, SimConfig, TokenEntry};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TOKEN: &str = "kube-rs-check-token";
const USER: &str = "kube-rs-tester";
const GROUP: &str = "kube-rs-testers";
/// Hang guard for every client call (never a timed assertion).
const GUARD: Duration = Duration::from_secs(60);

/// A TLS simulator with one allowed bearer token, plus its kubeconfig on disk.
struct Setup {
    sim: RunningSim,
    dir: tempfile::TempDir,
}

impl Setup {
    async fn start() -> Self {
        // kube-rs builds its rustls config with the process-default provider. In a
        // whole-workspace build rustls also has aws-lc-rs compiled in (object_store),
        // and then there is no unambiguous default: pick ring, as the workspace does.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let dir = tempfile::tempdir().unwrap();
        let sim = KubeSim::start(SimConfig {
            tokens: Some(vec![TokenEntry {
                token: TOKEN.into(),
                user: USER.into(),
                groups: vec![GROUP.into()],
            }]),
            sandbox: Some(dir.path().join("sandbox")),
            ..SimConfig::default()
        })
        .await
        .unwrap();
        assert!(sim.url().starts_with("https://127.0.0.1:"), "{}", sim.url());
        Self { sim, dir }
    }

    /// A kube client configured only from a kubeconfig file the simulator wrote, read
    /// by kube's own `Kubeconfig` reader (CA data, server URL, token, namespace).
    async fn client(&self, name: &str, token: &str) -> Client {
        let path = self.dir.path().join(name);
        self.sim
            .write_kubeconfig(&path, &Credentials::Token(token.into()))
            .unwrap();
        let kubeconfig = Kubeconfig::read_from(&path).unwrap();
        let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .unwrap();
        assert_eq!(
            config.cluster_url.to_string(),
            format!("{}/", self.sim.url())
        );
        assert_eq!(config.default_namespace, "default");
        assert!(
            config
                .root_cert
                .as_ref()
                .is_some_and(|certs| certs.len() == 1),
            "the kubeconfig's certificate-authority-data must reach kube as the one root"
        );
        Client::try_from(config).unwrap()
    }
}

async fn guarded<T>(what: &str, future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(GUARD, future)
        .await
        .unwrap_or_else(|_| panic!("{what} hung"))
}

fn test_pod(name: &str) -> Pod {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "kube-rs-check", "member": name}},
        "spec": {"containers": [{"name": "work", "image": "busybox:1.36", "command": ["sleep", "3600"]}]},
    }))
    .unwrap()
}

/// Reads an exec's stdout and stderr to the end and waits for its exit `Status`.
async fn finish(mut process: AttachedProcess) -> (String, String, Option<Status>) {
    let mut stdout_reader = process.stdout();
    let mut stderr_reader = process.stderr();
    let status = process.take_status().expect("status is taken once");
    let read_all = |reader: Option<tokio::io::ReadHalf<tokio::io::SimplexStream>>| async move {
        let mut text = String::new();
        if let Some(mut reader) = reader {
            reader.read_to_string(&mut text).await.unwrap();
        }
        text
    };
    let (stdout, stderr, status) = guarded("exec", async {
        tokio::join!(
            read_all(stdout_reader.take()),
            read_all(stderr_reader.take()),
            status
        )
    })
    .await;
    guarded("exec message loop", process.join()).await.unwrap();
    (stdout, stderr, status)
}

fn requests_matching<'a>(
    log: &'a [RecordedRequest],
    method: &str,
    uri_prefix: &str,
) -> Vec<&'a RecordedRequest> {
    log.iter()
        .filter(|r| r.method == method && r.uri.starts_with(uri_prefix))
        .collect()
}

/// The first value of a query parameter in a logged request URI, percent-decoded.
fn query_value(uri: &str, key: &str) -> Option<String> {
    let (_, query) = uri.split_once('?')?;
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == key).then(|| {
            percent_encoding::percent_decode_str(&v.replace('+', " "))
                .decode_utf8_lossy()
                .into_owned()
        })
    })
}

/// Every logged request carried the bearer token and ran as the token's user.
fn assert_authenticated(request: &RecordedRequest) {
    assert_eq!(
        request.header("authorization"),
        Some(format!("Bearer {TOKEN}").as_str()),
        "{request:?}"
    );
    let user = request.user.as_ref().expect("authenticated");
    assert_eq!(user.username, USER);
    assert!(user.groups.iter().any(|g| g == GROUP), "{user:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn kube_rs_creates_lists_gets_and_deletes_pods() {
    let setup = Setup::start().await;
    let client = setup.client("kubeconfig", TOKEN).await;
    let pods: Api<Pod> = Api::default_namespaced(client);

    for name in ["rs-one", "rs-two"] {
        let created = guarded(
            "create",
            pods.create(&PostParams::default(), &test_pod(name)),
        )
        .await
        .unwrap();
        assert_eq!(created.metadata.name.as_deref(), Some(name));
        assert_eq!(created.metadata.namespace.as_deref(), Some("default"));
        assert!(created.metadata.uid.is_some(), "the server assigns a uid");
        assert!(created.metadata.resource_version.is_some());
    }

    // The label selector picks the two new pods and not the seeded `demo`.
    let listed = guarded(
        "list",
        pods.list(&ListParams::default().labels("app=kube-rs-check")),
    )
    .await
    .unwrap();
    let mut names: Vec<String> = listed
        .items
        .iter()
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    names.sort();
    assert_eq!(names, ["rs-one", "rs-two"]);
    assert!(listed.metadata.resource_version.is_some());
    let one = guarded(
        "list one",
        pods.list(&ListParams::default().labels("app=kube-rs-check,member=rs-two")),
    )
    .await
    .unwrap();
    assert_eq!(one.items.len(), 1);
    assert_eq!(one.items[0].metadata.name.as_deref(), Some("rs-two"));

    let all = guarded("list all", pods.list(&ListParams::default()))
        .await
        .unwrap();
    assert_eq!(all.items.len(), 3, "demo plus the two new pods");

    let got = guarded("get", pods.get("rs-one")).await.unwrap();
    assert_eq!(got.metadata.name.as_deref(), Some("rs-one"));
    assert_eq!(
        got.spec.as_ref().unwrap().containers[0].name,
        "work",
        "the spec round-trips"
    );
    let demo = guarded("get demo", pods.get("demo")).await.unwrap();
    assert_eq!(
        demo.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Running")
    );

    guarded("delete", pods.delete("rs-one", &DeleteParams::default()))
        .await
        .unwrap();
    let missing = guarded("get deleted", pods.get_opt("rs-one"))
        .await
        .unwrap();
    assert!(missing.is_none(), "rs-one is gone: {missing:?}");
    match guarded("get deleted", pods.get("rs-one")).await {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 404, "{status:?}"),
        other => panic!("expected a 404 Status, got {other:?}"),
    }
    let left = guarded(
        "list after delete",
        pods.list(&ListParams::default().labels("app=kube-rs-check")),
    )
    .await
    .unwrap();
    assert_eq!(left.items.len(), 1);

    // The simulator saw exactly these requests, each with the token.
    let log = setup.sim.requests();
    let base = "/api/v1/namespaces/default/pods";
    let creates = requests_matching(&log, "POST", base);
    assert_eq!(creates.len(), 2, "{log:#?}");
    assert!(creates.iter().all(|r| r.status == Some(201)), "{creates:?}");
    let selectors: Vec<(String, Option<u16>)> = requests_matching(&log, "GET", &format!("{base}?"))
        .iter()
        .filter_map(|r| query_value(&r.uri, "labelSelector").map(|s| (s, r.status)))
        .collect();
    assert_eq!(
        selectors,
        [
            ("app=kube-rs-check".to_string(), Some(200)),
            ("app=kube-rs-check,member=rs-two".to_string(), Some(200)),
            ("app=kube-rs-check".to_string(), Some(200)),
        ],
        "the selector lists, in order: {log:#?}"
    );
    let deletes = requests_matching(&log, "DELETE", &format!("{base}/rs-one"));
    assert_eq!(deletes.len(), 1);
    assert_eq!(deletes[0].status, Some(200));
    let gets_of_deleted = requests_matching(&log, "GET", &format!("{base}/rs-one"));
    assert_eq!(
        gets_of_deleted.iter().map(|r| r.status).collect::<Vec<_>>(),
        [Some(200), Some(404), Some(404)]
    );
    for request in &log {
        assert_authenticated(request);
    }
    assert!(
        creates
            .iter()
            .all(|r| r.header("content-type") == Some("application/json")),
        "{creates:?}"
    );
    setup.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn kube_rs_with_an_unknown_token_is_refused() {
    let setup = Setup::start().await;
    let client = setup.client("bad-kubeconfig", "not-on-the-list").await;
    let pods: Api<Pod> = Api::default_namespaced(client);
    match guarded("list", pods.list(&ListParams::default())).await {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 401, "{status:?}"),
        other => panic!("expected 401 Unauthorized, got {other:?}"),
    }
    let log = setup.sim.requests();
    assert_eq!(log.len(), 1, "{log:#?}");
    assert_eq!(log[0].status, Some(401));
    assert!(log[0].user.is_none());
    setup.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn kube_rs_exec_runs_a_command_over_websocket() {
    let setup = Setup::start().await;
    let client = setup.client("kubeconfig", TOKEN).await;
    let pods: Api<Pod> = Api::default_namespaced(client);
    guarded(
        "create",
        pods.create(&PostParams::default(), &test_pod("rs-exec")),
    )
    .await
    .unwrap();

    // stdout and stderr apart, and a Success status.
    let process = guarded(
        "exec",
        pods.exec(
            "rs-exec",
            ["sh", "-c", "echo hello-from-kube-rs; echo err >&2"],
            &AttachParams::default().stdout(true).stderr(true),
        ),
    )
    .await
    .unwrap();
    let (stdout, stderr, status) = finish(process).await;
    assert_eq!(stdout, "hello-from-kube-rs\n");
    assert_eq!(stderr, "err\n");
    let status = status.expect("an exit Status on the error channel");
    assert_eq!(status.status.as_deref(), Some("Success"), "{status:?}");

    // A non-zero exit is a Failure status carrying the exit code, as the kubelet reports it.
    let process = guarded(
        "exec",
        pods.exec(
            "rs-exec",
            ["sh", "-c", "echo partial; exit 3"],
            &AttachParams::default(),
        ),
    )
    .await
    .unwrap();
    let (stdout, stderr, status) = finish(process).await;
    assert_eq!(stdout, "partial\n");
    assert_eq!(stderr, "");
    let status = status.expect("an exit Status");
    assert_eq!(status.status.as_deref(), Some("Failure"));
    assert_eq!(status.reason.as_deref(), Some("NonZeroExitCode"));
    let causes = status.details.and_then(|d| d.causes).unwrap_or_default();
    assert_eq!(causes.len(), 1);
    assert_eq!(causes[0].reason.as_deref(), Some("ExitCode"));
    assert_eq!(causes[0].message.as_deref(), Some("3"));

    // The simulator saw two exec upgrades over WebSocket, with kube-rs's offer.
    let log = setup.sim.requests();
    let execs = requests_matching(&log, "GET", "/api/v1/namespaces/default/pods/rs-exec/exec?");
    assert_eq!(execs.len(), 2, "{log:#?}");
    for exec in &execs {
        assert_authenticated(exec);
        assert_eq!(exec.status, Some(101), "{exec:?}");
        assert_eq!(
            exec.subprotocol.as_deref(),
            Some("v5.channel.k8s.io"),
            "the simulator chose v5 (the close signal) from kube-rs's offer"
        );
        assert!(
            exec.header("upgrade")
                .is_some_and(|u| u.eq_ignore_ascii_case("websocket")),
            "{exec:?}"
        );
        assert_eq!(
            exec.header("sec-websocket-protocol"),
            Some("v5.channel.k8s.io, v4.channel.k8s.io"),
            "kube-rs offers v5 then v4 in one header"
        );
        assert!(exec.uri.contains("command=sh"), "{}", exec.uri);
        assert!(exec.uri.contains("stdout=true"), "{}", exec.uri);
        assert!(!exec.uri.contains("stdin=true"), "{}", exec.uri);
    }
    assert!(execs[0].uri.contains("stderr=true"), "{}", execs[0].uri);
    assert!(
        execs[0]
            .uri
            .contains("command=echo%20hello-from-kube-rs%3B%20echo%20err%20%3E%262")
            || execs[0]
                .uri
                .contains("command=echo+hello-from-kube-rs%3B+echo+err+%3E%262"),
        "{}",
        execs[0].uri
    );
    setup.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn kube_rs_exec_pipes_stdin_to_the_command() {
    let setup = Setup::start().await;
    let client = setup.client("kubeconfig", TOKEN).await;
    let pods: Api<Pod> = Api::default_namespaced(client);

    // `cat` echoes what kube-rs writes to stdin; its exit (and the final Success status)
    // needs the end of stdin to reach it while the stream stays open for the output.
    // kube-rs signals that end with the v5 close signal ([255, 0]); over v4 it can only
    // close the whole WebSocket, and the status is lost. So the complete output plus a
    // status shows the v5 close signal works end to end.
    let mut process = guarded(
        "exec",
        pods.exec(
            "demo",
            ["sh", "-c", "cat; echo stdin-closed >&2"],
            &AttachParams::default()
                .stdin(true)
                .stdout(true)
                .stderr(true),
        ),
    )
    .await
    .unwrap();
    let mut stdin = process.stdin().expect("stdin was requested");
    let payload: String = (0..2000)
        .map(|i| format!("line {i} via kube-rs\n"))
        .collect();
    let writer = {
        let payload = payload.clone();
        tokio::spawn(async move {
            stdin.write_all(payload.as_bytes()).await.unwrap();
            stdin.write_all(b"last line without newline").await.unwrap();
            stdin.shutdown().await.unwrap();
            drop(stdin);
        })
    };
    let (stdout, stderr, status) = finish(process).await;
    writer.await.unwrap();
    assert_eq!(
        stdout.len(),
        payload.len() + "last line without newline".len()
    );
    assert_eq!(stdout, format!("{payload}last line without newline"));
    assert_eq!(stderr, "stdin-closed\n");
    let status = status.expect("an exit Status after stdin ended");
    assert_eq!(status.status.as_deref(), Some("Success"), "{status:?}");

    let log = setup.sim.requests();
    let execs = requests_matching(&log, "GET", "/api/v1/namespaces/default/pods/demo/exec?");
    assert_eq!(execs.len(), 1, "{log:#?}");
    assert!(execs[0].uri.contains("stdin=true"), "{}", execs[0].uri);
    assert_eq!(execs[0].status, Some(101));
    assert_eq!(execs[0].subprotocol.as_deref(), Some("v5.channel.k8s.io"));
    assert_authenticated(execs[0]);
    setup.sim.shutdown().await;
}
