//! The same `audit.k8s.io/v1` Policy file given to kube-apiserver (`--audit-policy-file`) and to
//! kubescribe's proxy (`--audit-policy`) decides the same for the same requests. A corpus of
//! requests, sent through the proxy in auth mode, covers every rule kind: `users`, `userGroups`,
//! `verbs`, `resources` (group `*`, `res/*`, `*/sub`, `resourceNames`), `namespaces`,
//! `nonResourceURLs` (exact and `*` suffix), and every level. For each request, joined by its
//! Audit-ID (the `Audit-Id` response header = the audit event's `auditID` =
//! `kubescribe.auditID`): recorded or not, and at which level.
//!
//! One difference is by design and asserted as such: kube-apiserver evaluates its Policy before
//! impersonation, against the user that authenticated (the proxy's own credential), while
//! kubescribe matches `users` and `userGroups` against the user and groups it impersonates (the
//! caller), plus `system:authenticated`. A rule naming the caller matches in kubescribe only; a
//! rule naming the proxy's user matches in kube-apiserver only. Rules that mean the same on both
//! sides (`system:authenticated`, a user nobody is) must agree.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use kubescribe_system_tests::stack::{Stack, StackOptions, Storage, CALLER_TOKEN};
use kubescribe_system_tests::upstream::UpstreamKind;
use serde_json::{json, Value};
use test_support::apiserver::PROXY;
use test_support::http;

/// The caller's impersonated user (alice's login name; her grant adds `system:masters`).
const CALLER: &str = "alice@example.com";

fn policy() -> String {
    format!(
        r#"apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
  - level: None
    nonResourceURLs: ["/healthz*", "/readyz"]
  - level: Metadata
    nonResourceURLs: ["/version"]
  - level: RequestResponse
    nonResourceURLs: ["/apis*"]
  - level: None
    resources: [{{group: "", resources: ["configmaps"], resourceNames: ["quiet"]}}]
  - level: Metadata
    resources: [{{group: "*", resources: ["*/status"]}}]
  - level: RequestResponse
    resources: [{{group: "", resources: ["pods/*"]}}]
  - level: None
    namespaces: ["policy-quiet"]
  - level: Metadata
    verbs: ["delete", "deletecollection"]
  - level: Request
    userGroups: ["system:authenticated"]
    resources: [{{group: "apps", resources: ["deployments"]}}]
  - level: RequestResponse
    users: ["nobody@example.com"]
  - level: RequestResponse
    users: ["{CALLER}"]
    resources: [{{group: "", resources: ["services"]}}]
  - level: RequestResponse
    users: ["{proxy}"]
    resources: [{{group: "", resources: ["endpoints"]}}]
  - level: Request
    resources: [{{group: "", resources: ["configmaps", "secrets"]}}]
  - level: Metadata
"#,
        proxy = PROXY.name
    )
}

/// Whether a request's two decisions should agree.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Expect {
    Agree,
    /// A `users` rule naming the caller: kubescribe matches it, kube-apiserver does not.
    CallerRuleKubescribeOnly,
    /// A `users` rule naming the proxy's user: kube-apiserver matches it, kubescribe does not.
    ProxyRuleApiServerOnly,
}

struct Case {
    method: &'static str,
    path: &'static str,
    body: Option<Value>,
    rule: &'static str,
    expect: Expect,
}

const fn case(method: &'static str, path: &'static str, rule: &'static str) -> Case {
    Case {
        method,
        path,
        body: None,
        rule,
        expect: Expect::Agree,
    }
}

fn corpus() -> Vec<Case> {
    let cm = |name: &str| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"a": "b"}});
    vec![
        case("GET", "/healthz", "nonResourceURLs /healthz* (None)"),
        case("GET", "/healthz/etcd", "nonResourceURLs /healthz* (None)"),
        case("GET", "/readyz", "nonResourceURLs exact (None)"),
        case("GET", "/version", "nonResourceURLs exact (Metadata)"),
        case(
            "GET",
            "/version/",
            "non-resource, no exact match: catch-all",
        ),
        case("GET", "/apis", "nonResourceURLs /apis* (RequestResponse)"),
        case(
            "GET",
            "/apis/apps/v1",
            "nonResourceURLs /apis* (RequestResponse)",
        ),
        case("GET", "/api", "non-resource: catch-all (Metadata)"),
        case(
            "GET",
            "/api/v1/namespaces/default/configmaps/quiet",
            "resourceNames (None)",
        ),
        Case {
            body: Some(cm("loud")),
            ..case(
                "POST",
                "/api/v1/namespaces/default/configmaps",
                "resourceNames: a create has no name (Request)",
            )
        },
        case(
            "GET",
            "/api/v1/namespaces/default/configmaps/loud",
            "resources (Request)",
        ),
        Case {
            body: Some(json!({"data": {"c": "d"}})),
            ..case(
                "PATCH",
                "/api/v1/namespaces/default/configmaps/loud",
                "resources (Request)",
            )
        },
        case(
            "GET",
            "/api/v1/namespaces/default/configmaps",
            "resources, list (Request)",
        ),
        case(
            "GET",
            "/api/v1/namespaces/default/pods/p/status",
            "*/status, group * (Metadata)",
        ),
        case(
            "GET",
            "/api/v1/nodes/n1/status",
            "*/status, cluster-scoped (Metadata)",
        ),
        case(
            "GET",
            "/apis/apps/v1/namespaces/default/deployments/web/status",
            "*/status in apps (Metadata)",
        ),
        case(
            "GET",
            "/api/v1/namespaces/default/pods/p/log",
            "pods/* (RequestResponse)",
        ),
        case(
            "GET",
            "/api/v1/namespaces/default/pods/p",
            "pods/* matches pods itself too (RequestResponse)",
        ),
        case(
            "GET",
            "/api/v1/namespaces/policy-quiet/configmaps",
            "namespaces (None)",
        ),
        case(
            "GET",
            "/api/v1/namespaces/policy-quiet/secrets/s",
            "namespaces (None)",
        ),
        case(
            "DELETE",
            "/api/v1/namespaces/default/configmaps/loud",
            "verbs delete (Metadata)",
        ),
        case(
            "DELETE",
            "/api/v1/namespaces/default/configmaps?labelSelector=x%3Dy",
            "verbs deletecollection (Metadata)",
        ),
        case(
            "GET",
            "/apis/apps/v1/namespaces/default/deployments",
            "userGroups system:authenticated (Request)",
        ),
        case(
            "GET",
            "/apis/apps/v1/namespaces/default/deployments/web/scale",
            "deployments/scale is not deployments: catch-all",
        ),
        case(
            "GET",
            "/api/v1/namespaces/default/secrets",
            "resources secrets (Request)",
        ),
        Case {
            body: Some(
                json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "agree"}, "stringData": {"p": "x"}}),
            ),
            ..case(
                "POST",
                "/api/v1/namespaces/default/secrets",
                "resources secrets, create (Request)",
            )
        },
        case("GET", "/api/v1/namespaces", "catch-all (Metadata)"),
        Case {
            expect: Expect::CallerRuleKubescribeOnly,
            ..case(
                "GET",
                "/api/v1/namespaces/default/services",
                "users: the caller",
            )
        },
        Case {
            expect: Expect::ProxyRuleApiServerOnly,
            ..case(
                "GET",
                "/api/v1/namespaces/default/endpoints",
                "users: the proxy's user",
            )
        },
    ]
}

/// A level as both sides spell it; `None` when not recorded.
fn level_name(level: Option<&str>) -> String {
    level.unwrap_or("None").to_owned()
}

#[test]
fn kubescribe_and_kube_apiserver_agree_on_the_same_policy() {
    let options = StackOptions::new(UpstreamKind::ApiServer, Storage::Disk)
        .unwrap()
        .audit_policy(&policy());
    let stack = Stack::start_with_options(options).unwrap_or_else(|e| panic!("starting: {e}"));
    let plane = stack.upstream.control_plane().expect("the real API server");
    let bearer = format!("Bearer {CALLER_TOKEN}");

    // Send the corpus; remember each request's Audit-ID.
    let corpus = corpus();
    let mut sent = Vec::new();
    for c in &corpus {
        let body = c.body.as_ref().map(|b| b.to_string()).unwrap_or_default();
        let mut headers = vec![("authorization", bearer.as_str())];
        if c.body.is_some() {
            let content_type = if c.method == "PATCH" {
                "application/merge-patch+json"
            } else {
                "application/json"
            };
            headers.push(("content-type", content_type));
        }
        let reply = http::request(
            stack.alice.addr(),
            None,
            c.method,
            c.path,
            &headers,
            body.as_bytes(),
        )
        .unwrap();
        let audit_id = reply
            .header("audit-id")
            .unwrap_or_else(|| panic!("{} {}: no Audit-Id ({})", c.method, c.path, reply.status))
            .to_owned();
        sent.push((audit_id, reply.status));
    }

    // Both sides' records, by Audit-ID. kubescribe stores its events before forwarding;
    // kube-apiserver's log is written in blocking mode; a moment for both anyway.
    std::thread::sleep(Duration::from_secs(1));
    let ours: BTreeMap<String, String> = stack
        .all_events("")
        .unwrap()
        .into_iter()
        .filter_map(|e| {
            let ext = &e["event"]["kubescribe"];
            Some((
                ext["auditID"].as_str()?.to_owned(),
                ext["auditLevel"].as_str().unwrap_or("(absent)").to_owned(),
            ))
        })
        .collect();
    let theirs: BTreeMap<String, String> = plane
        .audit_events()
        .unwrap()
        .into_iter()
        .filter_map(|e| {
            Some((
                e["auditID"].as_str()?.to_owned(),
                e["level"].as_str()?.to_owned(),
            ))
        })
        .collect();

    // The table.
    let mut per_level: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let mut problems = Vec::new();
    eprintln!("| request | status | rule | kubescribe | kube-apiserver | agree |");
    eprintln!("| --- | --- | --- | --- | --- | --- |");
    for (c, (id, status)) in corpus.iter().zip(&sent) {
        let k = level_name(ours.get(id).map(String::as_str));
        let a = level_name(theirs.get(id).map(String::as_str));
        let agree = k == a;
        let entry = per_level.entry(a.clone()).or_default();
        entry.0 += 1;
        entry.1 += usize::from(agree);
        eprintln!(
            "| {} {} | {status} | {} | {k} | {a} | {} |",
            c.method,
            c.path,
            c.rule,
            if agree { "yes" } else { "no" }
        );
        let expected = match c.expect {
            Expect::Agree => agree,
            Expect::CallerRuleKubescribeOnly => k == "RequestResponse" && a == "Metadata",
            Expect::ProxyRuleApiServerOnly => k == "Metadata" && a == "RequestResponse",
        };
        if !expected {
            problems.push(format!(
                "{} {} ({}; expected {:?}): kubescribe {k}, kube-apiserver {a}",
                c.method, c.path, c.rule, c.expect
            ));
        }
    }
    eprintln!("per kube-apiserver level (requests, agreements): {per_level:?}");
    for level in ["None", "Metadata", "Request", "RequestResponse"] {
        assert!(
            per_level.get(level).is_some_and(|(n, _)| *n > 0),
            "the corpus has no request at level {level}"
        );
    }
    assert!(
        problems.is_empty(),
        "disagreements:\n{}",
        problems.join("\n")
    );
}
