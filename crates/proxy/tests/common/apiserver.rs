//! Helpers for tests against the real kube-apiserver (`test_support`'s
//! `ControlPlane`): admin requests, ServiceAccounts and their tokens
//! (TokenRequest), the README's RBAC for the proxy, and the
//! `kubescribe-proxy` binary as a process.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use test_support::apiserver::{ControlPlane, ADMIN};
use test_support::http::Reply;
use test_support::net::free_port;
use test_support::Spawned;

/// The namespace of the proxy's ServiceAccount, as in the README's RBAC.
pub const NAMESPACE: &str = "kubescribe";
/// The proxy's ServiceAccount, as in the README's RBAC.
pub const SERVICE_ACCOUNT: &str = "kubescribe-proxy";

/// Sends a request as the admin and returns the JSON answer; panics unless
/// the status is `expect`.
pub fn admin(plane: &ControlPlane, method: &str, path: &str, body: &Value, expect: u16) -> Value {
    let bytes = if body.is_null() {
        Vec::new()
    } else {
        body.to_string().into_bytes()
    };
    let reply = plane
        .request(&ADMIN, method, path, &bytes)
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    assert_eq!(reply.status, expect, "{method} {path}: {}", reply.text());
    reply.json().unwrap_or(Value::Null)
}

/// Creates a namespace (once).
pub fn namespace(plane: &ControlPlane, name: &str) {
    let reply = plane
        .request(
            &ADMIN,
            "POST",
            "/api/v1/namespaces",
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
                .to_string()
                .as_bytes(),
        )
        .unwrap_or_else(|e| panic!("creating namespace {name}: {e}"));
    assert!(
        reply.status == 201 || reply.status == 409,
        "creating namespace {name}: {}",
        reply.text()
    );
}

/// Creates a ServiceAccount in [`NAMESPACE`].
pub fn service_account(plane: &ControlPlane, name: &str) {
    namespace(plane, NAMESPACE);
    admin(
        plane,
        "POST",
        &format!("/api/v1/namespaces/{NAMESPACE}/serviceaccounts"),
        &json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name}}),
        201,
    );
}

/// Creates a Secret in [`NAMESPACE`] (for tokens bound to it) and returns its UID.
pub fn secret(plane: &ControlPlane, name: &str) -> String {
    let created = admin(
        plane,
        "POST",
        &format!("/api/v1/namespaces/{NAMESPACE}/secrets"),
        &json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}}),
        201,
    );
    created["metadata"]["uid"]
        .as_str()
        .unwrap_or_else(|| panic!("secret {name} has no uid: {created}"))
        .to_owned()
}

/// Deletes a Secret in [`NAMESPACE`]: tokens bound to it stop working.
pub fn delete_secret(plane: &ControlPlane, name: &str) {
    admin(
        plane,
        "DELETE",
        &format!("/api/v1/namespaces/{NAMESPACE}/secrets/{name}"),
        &Value::Null,
        200,
    );
}

/// A token for ServiceAccount `sa` in [`NAMESPACE`] from the TokenRequest
/// API, valid for an hour, bound to Secret `bound` (name, UID) if given.
pub fn token_request(plane: &ControlPlane, sa: &str, bound: Option<(&str, &str)>) -> String {
    let mut spec = json!({"expirationSeconds": 3600});
    if let Some((name, uid)) = bound {
        spec["boundObjectRef"] =
            json!({"kind": "Secret", "apiVersion": "v1", "name": name, "uid": uid});
    }
    let answer = admin(
        plane,
        "POST",
        &format!("/api/v1/namespaces/{NAMESPACE}/serviceaccounts/{sa}/token"),
        &json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec}),
        201,
    );
    answer["status"]["token"]
        .as_str()
        .unwrap_or_else(|| panic!("TokenRequest gave no token: {answer}"))
        .to_owned()
}

/// The YAML documents of the proxy README's RBAC block (the one fenced
/// with `yaml` that defines the `kubescribe-proxy-impersonator` ClusterRole).
pub fn readme_rbac() -> Vec<Value> {
    let readme = include_str!("../../README.md");
    let block = readme
        .split("```yaml\n")
        .skip(1)
        .filter_map(|rest| rest.split("```").next())
        .find(|block| block.contains("kind: ClusterRole\n"))
        .unwrap_or_else(|| panic!("the proxy README has no yaml block with the ClusterRole"));
    block
        .split("\n---\n")
        .map(|doc| {
            serde_yaml_ng::from_str::<Value>(doc)
                .unwrap_or_else(|e| panic!("README RBAC YAML: {e}\n{doc}"))
        })
        .collect()
}

/// Applies the README's RBAC (its ClusterRole and ClusterRoleBinding), with
/// the binding's subjects replaced by `subjects` when given.
pub fn apply_readme_rbac(plane: &ControlPlane, subjects: Option<Value>) {
    for mut doc in readme_rbac() {
        let kind = doc["kind"].as_str().unwrap_or_default().to_owned();
        let collection = match kind.as_str() {
            "ClusterRole" => "clusterroles",
            "ClusterRoleBinding" => "clusterrolebindings",
            other => panic!("unexpected kind {other:?} in the README's RBAC"),
        };
        let path = format!("/apis/rbac.authorization.k8s.io/v1/{collection}");
        if kind == "ClusterRoleBinding" {
            if let Some(subjects) = &subjects {
                doc["subjects"] = subjects.clone();
                let name = format!(
                    "{}-{}",
                    doc["metadata"]["name"].as_str().unwrap_or_default(),
                    subjects[0]["name"].as_str().unwrap_or_default()
                );
                doc["metadata"]["name"] = json!(name);
            }
        }
        let reply = plane
            .request(&ADMIN, "POST", &path, doc.to_string().as_bytes())
            .unwrap_or_else(|e| panic!("POST {path}: {e}"));
        assert!(
            reply.status == 201 || (kind == "ClusterRole" && reply.status == 409),
            "POST {path}: {}",
            reply.text()
        );
    }
}

/// The `kubescribe-proxy` binary, running as a process.
pub struct ProxyProcess {
    /// The process (killed on drop).
    pub process: Spawned,
    /// Where its API listener listens (plain HTTP).
    pub addr: SocketAddr,
}

/// Arguments for a proxy on free loopback ports, `identity` as its identity
/// file, plus `extra`; auth mode unless `extra` has a `--mode`.
fn proxy_args(addr: SocketAddr, identity: &Path, extra: &[String]) -> Vec<String> {
    let admin = SocketAddr::from((
        [127, 0, 0, 1],
        free_port().unwrap_or_else(|e| panic!("{e}")),
    ));
    let mut args = vec![
        "--listen".to_owned(),
        addr.to_string(),
        "--admin-listen".to_owned(),
        admin.to_string(),
        "--identity-file".to_owned(),
        identity.display().to_string(),
    ];
    if !extra.iter().any(|a| a == "--mode") {
        args.extend(["--mode".to_owned(), "auth".to_owned()]);
    }
    args.extend_from_slice(extra);
    args
}

/// The variables a test's own environment must not pass to the proxy.
const UNSET: [&str; 4] = [
    "KUBECONFIG",
    "APISERVER_PROXY",
    "KUBESCRIBE_CONTEXT",
    "TS_EXPERIMENTAL_KUBE_API_EVENTS",
];

/// `-u NAME` for `env`, for each of `names`.
fn unset(names: &[&str]) -> Vec<String> {
    names
        .iter()
        .flat_map(|v| ["-u".to_owned(), (*v).to_owned()])
        .collect()
}

impl ProxyProcess {
    /// Starts the binary with `extra` arguments (a `--kubeconfig`, …) and
    /// waits until it listens, or fails with its log.
    pub fn start(name: &str, dir: &Path, identity: &Path, extra: &[String]) -> Self {
        let addr = SocketAddr::from((
            [127, 0, 0, 1],
            free_port().unwrap_or_else(|e| panic!("{e}")),
        ));
        let mut args = unset(&UNSET);
        args.extend(unset(&[
            "KUBERNETES_SERVICE_HOST",
            "KUBERNETES_SERVICE_PORT",
        ]));
        args.push(env!("CARGO_BIN_EXE_kubescribe-proxy").to_owned());
        args.extend(proxy_args(addr, identity, extra));
        Self::spawn(name, Path::new("/usr/bin/env"), &args, &[], dir, addr)
    }

    /// Starts the binary as in a pod: in a private mount namespace
    /// (`unshare -m`, as root) where `sa_dir` (token, ca.crt, namespace) is
    /// bind-mounted at `/var/run/secrets/kubernetes.io/serviceaccount`, with
    /// `KUBERNETES_SERVICE_HOST`/`PORT` naming `apiserver`, no kubeconfig.
    pub fn start_in_cluster(
        name: &str,
        dir: &Path,
        identity: &Path,
        sa_dir: &Path,
        apiserver: SocketAddr,
    ) -> Self {
        let addr = SocketAddr::from((
            [127, 0, 0, 1],
            free_port().unwrap_or_else(|e| panic!("{e}")),
        ));
        let unset = unset(&UNSET).join(" ");
        let script = format!(
            "set -e; mount -t tmpfs tmpfs /var/run; \
             mkdir -p /var/run/secrets/kubernetes.io/serviceaccount; \
             mount --bind \"$SA_SOURCE\" /var/run/secrets/kubernetes.io/serviceaccount; \
             exec env {unset} \"$@\""
        );
        let mut args = vec![
            "-m".to_owned(),
            "sh".to_owned(),
            "-c".to_owned(),
            script,
            "sh".to_owned(),
        ];
        args.push(env!("CARGO_BIN_EXE_kubescribe-proxy").to_owned());
        args.extend(proxy_args(addr, identity, &[]));
        let host = apiserver.ip().to_string();
        let port = apiserver.port().to_string();
        let source = sa_dir.display().to_string();
        let unshare = ["/usr/bin/unshare", "/bin/unshare"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
            .unwrap_or_else(|| {
                panic!("unshare (util-linux) is needed to run the proxy as in a pod")
            });
        Self::spawn(
            name,
            &unshare,
            &args,
            &[
                ("KUBERNETES_SERVICE_HOST", host.as_str()),
                ("KUBERNETES_SERVICE_PORT", port.as_str()),
                ("SA_SOURCE", source.as_str()),
            ],
            dir,
            addr,
        )
    }

    fn spawn(
        name: &str,
        program: &Path,
        args: &[String],
        envs: &[(&str, &str)],
        dir: &Path,
        addr: SocketAddr,
    ) -> Self {
        let mut envs = envs.to_vec();
        envs.extend([("RUST_LOG", "info"), ("NO_COLOR", "1")]);
        let mut process = Spawned::start(name, program, args, &envs, dir)
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        process
            .wait_for_tcp(addr, Duration::from_secs(60))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        ProxyProcess { process, addr }
    }

    /// `GET path` through the proxy (as the identity file's loopback caller).
    pub fn get(&self, path: &str) -> Reply {
        self.get_with(path, &[])
    }

    /// `GET path` with `headers` through the proxy.
    pub fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> Reply {
        test_support::http::request(self.addr, None, "GET", path, headers, b"")
            .unwrap_or_else(|e| panic!("GET {path} through the proxy: {e}"))
    }

    /// How many lines of the proxy's log contain `text`.
    pub fn log_count(&self, text: &str) -> usize {
        self.process
            .log()
            .lines()
            .filter(|l| l.contains(text))
            .count()
    }
}

/// Waits (up to `timeout`) until `check` is true, polling every 100 ms.
pub fn eventually(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if check() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
