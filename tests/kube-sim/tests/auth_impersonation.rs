//! Bearer tokens, client certificates, impersonation as kube-apiserver does it, and the
//! request log (library API and the `/_sim/requests` debug endpoint).
#![allow(clippy::unwrap_used)]

mod common;

use common::{ok, stderr, Harness};
use kube_sim::{Credentials, SimConfig, TokenEntry};

fn token(token: &str, user: &str, groups: &[&str]) -> TokenEntry {
    TokenEntry {
        token: token.into(),
        user: user.into(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
    }
}

async fn harness() -> Harness {
    let config = SimConfig {
        tokens: Some(vec![
            token("proxy-token", "kubescribe-proxy", &["proxies"]),
            token("alice-token", "alice", &["devs"]),
        ]),
        impersonators: vec!["kubescribe-proxy".into()],
        ..SimConfig::default()
    };
    Harness::start_with(config, Credentials::Token("proxy-token".into())).await
}

#[tokio::test(flavor = "multi_thread")]
async fn impersonation_by_an_allowed_user_is_honoured_and_logged() {
    let h = harness().await;
    h.sim.clear_requests();
    let whoami = ok(&h
        .kubectl(&[
            "auth",
            "whoami",
            "-o",
            "json",
            "--as",
            "bob@example.com",
            "--as-group",
            "team-a",
            "--as-group",
            "team-b",
            "--as-uid",
            "u-42",
        ])
        .await);
    let review: serde_json::Value = serde_json::from_str(&whoami).unwrap();
    assert_eq!(review["status"]["userInfo"]["username"], "bob@example.com");
    assert_eq!(
        review["status"]["userInfo"]["groups"],
        serde_json::json!(["team-a", "team-b", "system:authenticated"])
    );
    assert_eq!(review["status"]["userInfo"]["uid"], "u-42");
    ok(&h.kubectl(&["get", "pods", "--as", "bob@example.com"]).await);
    let list = h
        .sim
        .requests()
        .into_iter()
        .find(|r| r.method == "GET" && r.uri.starts_with("/api/v1/namespaces/default/pods"))
        .unwrap();
    assert_eq!(list.header("authorization"), Some("Bearer proxy-token"));
    assert_eq!(list.header("impersonate-user"), Some("bob@example.com"));
    assert_eq!(
        list.authenticated_user.as_ref().unwrap().username,
        "kubescribe-proxy"
    );
    assert_eq!(list.user.as_ref().unwrap().username, "bob@example.com");
    assert_eq!(list.status, Some(200));

    // The same log through the debug endpoint, as an out-of-process test would read it.
    let raw = ok(&h.kubectl(&["get", "--raw", "/_sim/requests"]).await);
    let logged: Vec<kube_sim::RecordedRequest> = serde_json::from_str(&raw).unwrap();
    assert!(logged.iter().any(|r| r
        .user
        .as_ref()
        .is_some_and(|u| u.username == "bob@example.com")
        && r.uri.starts_with("/api/v1/namespaces/default/pods")));
    h.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn forbidden_impersonation_and_unknown_tokens() {
    let h = harness().await;
    let alice = h.kubeconfig_for("alice", &Credentials::Token("alice-token".into()));
    // (`kubectl get` fails already in discovery and prints "Forbidden: unknown" there;
    // `--raw` shows the Status message.)
    let denied = h
        .run(
            &common::kubectl(),
            &alice,
            &[
                "get",
                "--raw",
                "/api/v1/namespaces/default/pods",
                "--as",
                "root",
            ],
            None,
        )
        .await;
    assert!(!denied.status.success());
    assert!(stderr(&denied).contains("Error from server (Forbidden): users \"root\" is forbidden: User \"alice\" cannot impersonate resource \"users\""), "{}", stderr(&denied));
    let refused = h
        .sim
        .requests()
        .into_iter()
        .find(|r| r.status == Some(403))
        .unwrap();
    assert_eq!(
        refused.authenticated_user.as_ref().unwrap().username,
        "alice"
    );
    assert!(refused.user.is_none());
    let own = ok(&h
        .run(
            &common::kubectl(),
            &alice,
            &[
                "auth",
                "whoami",
                "-o",
                "jsonpath={.status.userInfo.username}",
            ],
            None,
        )
        .await);
    assert_eq!(own, "alice");

    let stranger = h.kubeconfig_for("stranger", &Credentials::Token("made-up".into()));
    let rejected = h
        .run(&common::kubectl(), &stranger, &["get", "pods"], None)
        .await;
    assert!(!rejected.status.success());
    assert!(
        stderr(&rejected).contains("You must be logged in to the server"),
        "{}",
        stderr(&rejected)
    );
    let unauthorized: Vec<_> = h
        .sim
        .requests()
        .into_iter()
        .filter(|r| r.status == Some(401))
        .collect();
    assert!(!unauthorized.is_empty() && unauthorized.iter().all(|r| r.user.is_none()));
    h.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn client_certificates_authenticate() {
    let h = harness().await;
    let cert = h
        .sim
        .client_certificate("carol", &["ops".to_string()])
        .unwrap();
    let kubeconfig = h.kubeconfig_for("carol", &cert);
    let who = ok(&h
        .run(
            &common::kubectl(),
            &kubeconfig,
            &["auth", "whoami", "-o", "json"],
            None,
        )
        .await);
    let review: serde_json::Value = serde_json::from_str(&who).unwrap();
    assert_eq!(review["status"]["userInfo"]["username"], "carol");
    assert_eq!(
        review["status"]["userInfo"]["groups"],
        serde_json::json!(["ops", "system:authenticated"])
    );
    h.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn plain_http_mode_works_too() {
    let config = SimConfig {
        tls: false,
        ..SimConfig::default()
    };
    let h = Harness::start_with(config, Credentials::None).await;
    assert!(h.sim.url().starts_with("http://"));
    assert!(h.sim.ca_pem().is_none());
    let out = ok(&h.kubectl(&["create", "namespace", "plain"]).await);
    assert!(out.contains("namespace/plain created"), "{out}");
    let out = ok(&h
        .kubectl(&[
            "create",
            "deployment",
            "d",
            "--image=nginx:1.27",
            "--replicas=2",
            "-n",
            "plain",
        ])
        .await);
    assert!(out.contains("deployment.apps/d created"), "{out}");
    let replicas = ok(&h
        .kubectl(&[
            "get",
            "deploy",
            "d",
            "-n",
            "plain",
            "-o",
            "jsonpath={.spec.replicas} {.spec.template.spec.containers[0].image}",
        ])
        .await);
    assert_eq!(replicas, "2 nginx:1.27");
    h.sim.shutdown().await;
}
