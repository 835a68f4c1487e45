//! In-cluster start-up against the real kube-apiserver: the
//! `kubescribe-proxy` binary, without a kubeconfig, runs as it would in a
//! pod: `KUBERNETES_SERVICE_HOST`/`PORT` name the API server, and a
//! ServiceAccount token from the TokenRequest API, the cluster CA and the
//! namespace are bind-mounted at `/var/run/secrets/kubernetes.io/serviceaccount`
//! in a private mount namespace (`unshare -m`, as root).
//!
//! With the README's RBAC (a ClusterRole allowing `impersonate` on users and
//! groups, bound to the ServiceAccount) callers are impersonated; without it
//! every request gets the API server's own 403 naming the missing permission,
//! and the proxy logs once that its identity may not impersonate.
//!
//! Needs the peers (`cargo xtask peers`), root and `unshare` (util-linux).
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};

use common::apiserver::*;
use test_support::apiserver::ControlPlane;

const GRANT: &str = r#"{impersonate: {groups: ["system:masters"]}}"#;

/// The service-account directory a pod would have, for `sa`.
fn service_account_dir(plane: &ControlPlane, dir: &Path, sa: &str) -> PathBuf {
    let sa_dir = dir.join(format!("{sa}-serviceaccount"));
    std::fs::create_dir_all(&sa_dir).unwrap();
    let token = token_request(plane, sa, None);
    for (name, text) in [
        ("token", token.as_str()),
        ("ca.crt", plane.ca_pem()),
        ("namespace", NAMESPACE),
    ] {
        std::fs::write(sa_dir.join(name), text).unwrap();
    }
    sa_dir
}

#[test]
fn in_cluster_the_service_account_impersonates_callers_only_with_the_readme_rbac() {
    let plane = ControlPlane::start().unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let identity = common::identity_file(dir, GRANT);
    service_account(&plane, SERVICE_ACCOUNT);
    apply_readme_rbac(&plane, None);

    // With the ClusterRole: the caller is impersonated by the ServiceAccount.
    let sa_dir = service_account_dir(&plane, dir, SERVICE_ACCOUNT);
    let proxy =
        ProxyProcess::start_in_cluster("proxy-in-cluster", dir, &identity, &sa_dir, plane.addr());
    let path = "/api/v1/namespaces/default/configmaps";
    let reply = proxy.get(path);
    assert_eq!(
        reply.status,
        200,
        "{}\n{}",
        reply.text(),
        proxy.process.log_tail()
    );
    let event = plane
        .wait_for_audit_event(std::time::Duration::from_secs(10), |e| {
            e["requestURI"] == path && e["verb"] == "list"
        })
        .unwrap();
    assert_eq!(
        event["user"]["username"],
        format!("system:serviceaccount:{NAMESPACE}:{SERVICE_ACCOUNT}")
    );
    assert_eq!(event["impersonatedUser"]["username"], "alice@example.com");
    let groups = event["impersonatedUser"]["groups"].to_string();
    assert!(groups.contains("system:masters"), "{groups}");
    let log = proxy.process.log();
    assert!(
        log.contains("in-cluster service account") && log.contains(&plane.url()),
        "{log}"
    );
    drop(proxy);

    // Without it: every request is the API server's 403 naming what RBAC
    // refused; the proxy says so once.
    let unbound = "kubescribe-proxy-unbound";
    service_account(&plane, unbound);
    let sa_dir = service_account_dir(&plane, dir, unbound);
    let proxy =
        ProxyProcess::start_in_cluster("proxy-unbound", dir, &identity, &sa_dir, plane.addr());
    for _ in 0..4 {
        let reply = proxy.get(path);
        assert_eq!(reply.status, 403, "{}", reply.text());
        let status = reply.json().unwrap();
        assert_eq!(status["kind"], "Status");
        assert_eq!(status["reason"], "Forbidden");
        // kube-apiserver 1.37 names the constrained-impersonation verb it
        // checked first (`impersonate-on:user-info:list`); older ones say
        // `impersonate resource "users"`.
        let message = status["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(&format!(
                "User \"system:serviceaccount:{NAMESPACE}:{unbound}\" cannot impersonate"
            )),
            "{message}"
        );
    }
    assert_eq!(
        proxy.log_count("does not let the proxy's own identity impersonate"),
        1,
        "{}",
        proxy.process.log_tail()
    );
}
