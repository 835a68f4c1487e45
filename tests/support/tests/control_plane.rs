//! The real control plane answers real kubectl: discovery and a list as the
//! admin, a ConfigMap created by a user a RoleBinding allows and refused
//! (403) for one it does not, and every one of those requests in the audit
//! log at `RequestResponse` level.
//!
//! Needs the peers (`cargo xtask peers` builds etcd and kube-apiserver and
//! installs kubectl); without them it fails, naming that command.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;
use test_support::apiserver::{ControlPlane, TestUser, ADMIN, ALICE, BOB};
use test_support::peers;

fn kubectl(kubectl: &Path, plane: &ControlPlane, user: &TestUser, args: &[&str]) -> Output {
    Command::new(kubectl)
        .arg("--kubeconfig")
        .arg(plane.kubeconfig(user))
        .arg("--request-timeout=30s")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", kubectl.display()))
}

fn ok(output: Output, what: &str) -> String {
    assert!(
        output.status.success(),
        "{what} failed: {}\n{}",
        String::from_utf8_lossy(&output.stderr),
        String::from_utf8_lossy(&output.stdout)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn audited(plane: &ControlPlane, what: &str, matches: impl FnMut(&Value) -> bool) -> Value {
    plane
        .wait_for_audit_event(Duration::from_secs(10), matches)
        .unwrap_or_else(|e| panic!("no audit event for {what}: {e}"))
}

#[test]
fn kubectl_rbac_and_the_audit_log_against_the_real_kube_apiserver() {
    let kubectl_path: PathBuf = peers::kubectl().unwrap_or_else(|e| panic!("{e}"));
    let plane = ControlPlane::start().unwrap_or_else(|e| panic!("{e}"));
    let kubectl = |user: &TestUser, args: &[&str]| kubectl(&kubectl_path, &plane, user, args);
    eprintln!(
        "control plane: /readyz 200 {:.2?} after spawning etcd; resident: etcd {} KiB, kube-apiserver {} KiB",
        plane.started_in(),
        plane.etcd().rss_kib().unwrap_or(0),
        plane.apiserver().rss_kib().unwrap_or(0),
    );

    // The admin lists namespaces: the API server made its own at start.
    let namespaces = ok(
        kubectl(&ADMIN, &["get", "namespaces", "-o", "name"]),
        "kubectl get namespaces",
    );
    for namespace in ["namespace/default", "namespace/kube-system"] {
        assert!(namespaces.contains(namespace), "{namespaces}");
    }

    // alice's group may create ConfigMaps in `default`; bob's may not.
    ok(
        kubectl(
            &ADMIN,
            &[
                "create",
                "role",
                "configmap-writer",
                "--verb=create,get,list",
                "--resource=configmaps",
            ],
        ),
        "kubectl create role",
    );
    ok(
        kubectl(
            &ADMIN,
            &[
                "create",
                "rolebinding",
                "developers-write-configmaps",
                "--role=configmap-writer",
                "--group=developers",
            ],
        ),
        "kubectl create rolebinding",
    );
    ok(
        kubectl(
            &ALICE,
            &[
                "create",
                "configmap",
                "alice-settings",
                "--from-literal=colour=blue",
            ],
        ),
        "kubectl create configmap as alice",
    );
    let refused = kubectl(
        &BOB,
        &[
            "create",
            "configmap",
            "bob-settings",
            "--from-literal=colour=red",
        ],
    );
    assert!(!refused.status.success(), "bob was allowed");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("forbidden"), "{stderr}");
    assert!(stderr.contains("User \"bob\""), "{stderr}");

    // The API itself agrees: 200 for alice's read, 403 for bob's.
    let get = "/api/v1/namespaces/default/configmaps/alice-settings";
    let reply = plane
        .request(&ALICE, "GET", get, b"")
        .expect("GET as alice");
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json().expect("JSON")["data"]["colour"], "blue");
    let reply = plane.request(&BOB, "GET", get, b"").expect("GET as bob");
    assert_eq!(reply.status, 403, "{}", reply.text());

    // Each request is in the audit log, with who, what and the outcome.
    let list = audited(&plane, "the admin's namespace list", |e| {
        e["user"]["username"] == "admin"
            && e["verb"] == "list"
            && e["objectRef"]["resource"] == "namespaces"
    });
    assert_eq!(list["responseStatus"]["code"], 200, "{list:#}");
    assert_eq!(list["level"], "RequestResponse", "{list:#}");
    assert!(list["user"]["groups"]
        .as_array()
        .is_some_and(|groups| groups.iter().any(|g| g == "system:masters")));

    let created = audited(&plane, "alice's create", |e| {
        e["user"]["username"] == "alice"
            && e["verb"] == "create"
            && e["objectRef"]["resource"] == "configmaps"
    });
    assert_eq!(created["stage"], "ResponseComplete", "{created:#}");
    assert_eq!(created["responseStatus"]["code"], 201, "{created:#}");
    assert_eq!(created["objectRef"]["namespace"], "default", "{created:#}");
    assert_eq!(
        created["requestObject"]["metadata"]["name"], "alice-settings",
        "{created:#}"
    );
    assert_eq!(
        created["responseObject"]["data"]["colour"], "blue",
        "{created:#}"
    );
    assert!(created["userAgent"]
        .as_str()
        .is_some_and(|agent| agent.starts_with("kubectl")));

    let forbidden = audited(&plane, "bob's refused create", |e| {
        e["user"]["username"] == "bob"
            && e["verb"] == "create"
            && e["objectRef"]["resource"] == "configmaps"
    });
    assert_eq!(forbidden["responseStatus"]["code"], 403, "{forbidden:#}");
    assert_eq!(
        forbidden["annotations"]["authorization.k8s.io/decision"], "forbid",
        "{forbidden:#}"
    );

    let read = audited(&plane, "bob's refused get", |e| {
        e["user"]["username"] == "bob" && e["verb"] == "get"
    });
    assert_eq!(read["requestURI"], get, "{read:#}");
    assert_eq!(read["responseStatus"]["code"], 403, "{read:#}");
}

/// Stopped (SIGTERM) or killed (SIGKILL), kube-apiserver and etcd start
/// again on their ports with their files and data: the same URL, the same
/// token users, the objects stored before, one audit log.
#[test]
fn kube_apiserver_and_etcd_stop_and_start_again_with_their_ports_and_data() {
    let mut plane = ControlPlane::start().unwrap_or_else(|e| panic!("{e}"));
    let url = plane.url();
    let kept = "/api/v1/namespaces/default/configmaps/kept";
    plane
        .create(
            "/api/v1/namespaces/default/configmaps",
            &serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "kept"}}),
        )
        .expect("creating a ConfigMap");
    let get = |plane: &ControlPlane, path: &str| plane.request(&ADMIN, "GET", path, b"");

    for (how, kill) in [("killed", true), ("stopped", false)] {
        if kill {
            plane.kill_apiserver().expect("killing kube-apiserver");
        } else {
            plane.stop_apiserver().expect("stopping kube-apiserver");
        }
        assert!(!plane.apiserver_running(), "kube-apiserver {how}");
        assert!(
            get(&plane, kept).is_err(),
            "kube-apiserver {how} still answers"
        );
        let took = plane.start_apiserver().expect("restarting kube-apiserver");
        eprintln!("kube-apiserver {how}, then ready again in {took:.2?}");
        assert!(plane.apiserver_running());
        assert_eq!(plane.url(), url, "the same address");
        let reply = get(&plane, kept).expect("GET after the restart");
        assert_eq!(reply.status, 200, "{}", reply.text());
        // The token file is the same: bob is still bob, and still refused.
        let reply = plane.request(&BOB, "GET", kept, b"").expect("GET as bob");
        assert_eq!(reply.status, 403, "{}", reply.text());
    }

    for (how, kill) in [("killed", true), ("stopped", false)] {
        if kill {
            plane.kill_etcd().expect("killing etcd");
        } else {
            plane.stop_etcd().expect("stopping etcd");
        }
        assert!(!plane.etcd_running(), "etcd {how}");
        // kube-apiserver runs on and answers for itself: soon not ready,
        // and a write times out (or, when the timeout races its handler,
        // the connection closes without an answer).
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let ready = loop {
            let ready = get(&plane, "/readyz").expect("/readyz without etcd");
            if ready.status != 200 || std::time::Instant::now() > deadline {
                break ready;
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        assert_ne!(ready.status, 200, "ready without etcd: {}", ready.text());
        let write = plane.request(
            &ADMIN,
            "POST",
            "/api/v1/namespaces/default/configmaps?timeout=2s",
            br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"lost"}}"#,
        );
        if let Ok(reply) = &write {
            assert!(
                reply.status >= 500,
                "a write without etcd: {}",
                reply.text()
            );
        }
        plane.start_etcd().expect("restarting etcd");
        plane
            .wait_until_ready(Duration::from_secs(120))
            .expect("kube-apiserver ready again once etcd is back");
        let reply = get(&plane, kept).expect("GET once etcd is back");
        assert_eq!(reply.status, 200, "etcd {how}: {}", reply.text());
    }

    // One audit log across the restarts: the first request and the last are in it.
    let events = plane.audit_events().expect("reading the audit log");
    let gets_of_kept = events
        .iter()
        .filter(|e| e["user"]["username"] == "admin" && e["requestURI"] == kept)
        .count();
    assert!(gets_of_kept >= 4, "{gets_of_kept} audited GETs of {kept}");
}
