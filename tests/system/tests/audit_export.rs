//! The recorder's audit export against the real kube-apiserver: requests go
//! through kubescribe in auth mode; the recorder exports their events as
//! `audit.k8s.io/v1` Events to an audit webhook (`audit-sink`, which decodes
//! every batch strictly with `k8s.io/apiserver/pkg/apis/audit/v1`) and to
//! JSON lines files (decoded strictly by `audit-sink check`); each exported
//! event agrees with kube-apiserver's own audit event for the same request
//! (joined by auditID): verb, requestURI, objectRef, responseStatus.code and
//! impersonatedUser. `user` differs by design: kube-apiserver names the
//! proxy's own credentials, the export names the tailnet caller
//! (docs/export.md).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use kubescribe_system_tests::stack::{Stack, StackOptions, Storage, CALLER_TOKEN};
use kubescribe_system_tests::upstream::UpstreamKind;
use serde_json::{json, Value};
use test_support::audit_sink::jsonl_events;
use test_support::{http, AuditSink};

/// The requests: (caller, method, path, body).
const REQUESTS: &[(&str, &str, &str, &str)] = &[
    ("alice", "GET", "/api/v1/namespaces?limit=1", ""),
    (
        "alice",
        "POST",
        "/api/v1/namespaces/default/configmaps?fieldManager=export-test",
        r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"export-cm"},"data":{"a":"b"}}"#,
    ),
    (
        "alice",
        "GET",
        "/api/v1/namespaces/default/configmaps/export-cm",
        "",
    ),
    (
        "alice",
        "GET",
        "/api/v1/namespaces/default/configmaps/not-there",
        "",
    ),
    (
        "alice",
        "GET",
        "/apis/apps/v1/namespaces/default/deployments",
        "",
    ),
    (
        "alice",
        "GET",
        "/api/v1/namespaces/default/pods/nope/log",
        "",
    ),
    (
        "alice",
        "DELETE",
        "/api/v1/namespaces/default/configmaps/export-cm",
        "",
    ),
    ("alice", "GET", "/version", ""),
    ("ci", "GET", "/api/v1/namespaces/kube-system/secrets", ""),
];

fn sorted_groups(user: &Value) -> BTreeSet<String> {
    user["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|g| g.as_str().map(str::to_owned))
        .collect()
}

#[test]
fn exported_events_decode_with_the_go_types_and_agree_with_kube_apiservers_audit_log() {
    let scratch = tempfile::tempdir().unwrap();
    let receiver = AuditSink::start(&scratch.path().join("received.jsonl")).unwrap();
    let webhook = scratch.path().join("webhook.kubeconfig");
    receiver.webhook_config(&webhook).unwrap();
    let jsonl = scratch.path().join("jsonl");
    let options = StackOptions::new(UpstreamKind::ApiServer, Storage::Disk)
        .unwrap()
        .recorder_args(&[
            "--export-webhook-config",
            webhook.to_str().unwrap(),
            "--export-jsonl",
            jsonl.to_str().unwrap(),
            "--export-batch-max-wait",
            "200ms",
            "--export-response-wait",
            "20s",
        ]);
    let stack =
        Stack::start_with_options(options).unwrap_or_else(|e| panic!("starting the system: {e}"));
    let bearer = format!("Bearer {CALLER_TOKEN}");
    let mut statuses = Vec::new();
    for (caller, method, path, body) in REQUESTS {
        let mut headers = vec![("authorization", bearer.as_str())];
        if !body.is_empty() {
            headers.push(("content-type", "application/json"));
        }
        let reply = http::request(
            stack.caller(caller).unwrap().addr(),
            None,
            method,
            path,
            &headers,
            body.as_bytes(),
        )
        .unwrap();
        statuses.push(reply.status);
    }
    println!("statuses: {statuses:?}");
    let ours = |events: &[Value]| -> BTreeMap<String, Value> {
        events
            .iter()
            .filter(|e| {
                REQUESTS
                    .iter()
                    .any(|(_, _, path, _)| e["requestURI"] == *path)
            })
            .map(|e| (e["auditID"].as_str().unwrap().to_owned(), e.clone()))
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while ours(&receiver.events().unwrap()).len() < REQUESTS.len()
        || ours(&jsonl_events(&jsonl).unwrap()).len() < REQUESTS.len()
    {
        assert!(
            Instant::now() < deadline,
            "exported: webhook {}, jsonl {}, want {}",
            ours(&receiver.events().unwrap()).len(),
            ours(&jsonl_events(&jsonl).unwrap()).len(),
            REQUESTS.len()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(
        receiver.rejected().unwrap(),
        0,
        "every batch decoded strictly"
    );

    let plane = stack.upstream.control_plane().expect("the real API server");
    let theirs: BTreeMap<String, Value> = plane
        .audit_events()
        .unwrap()
        .into_iter()
        .filter(|e| e["stage"] == "ResponseComplete")
        .map(|e| (e["auditID"].as_str().unwrap_or_default().to_owned(), e))
        .collect();
    let mut problems = Vec::new();
    let webhook_events = ours(&receiver.events().unwrap());
    let jsonl = ours(&jsonl_events(&jsonl).unwrap());
    assert_eq!(
        webhook_events.keys().collect::<Vec<_>>(),
        jsonl.keys().collect::<Vec<_>>(),
        "both sinks export the same events"
    );
    println!("\nexported vs kube-apiserver's audit event (by auditID):");
    for (id, e) in &webhook_events {
        assert_eq!(e, &jsonl[id], "both sinks export the same event");
        let Some(k) = theirs.get(id) else {
            problems.push(format!("{id}: kube-apiserver has no audit event"));
            continue;
        };
        println!(
            "  {} {} -> {} (kube-apiserver: {} {} -> {})",
            e["verb"],
            e["requestURI"],
            e["responseStatus"]["code"],
            k["verb"],
            k["requestURI"],
            k["responseStatus"]["code"]
        );
        for field in ["verb", "requestURI"] {
            if e[field] != k[field] {
                problems.push(format!("{id}: {field} {} vs {}", e[field], k[field]));
            }
        }
        if e["responseStatus"]["code"] != k["responseStatus"]["code"] {
            problems.push(format!(
                "{id}: responseStatus.code {} vs {}",
                e["responseStatus"]["code"], k["responseStatus"]["code"]
            ));
        }
        for field in [
            "resource",
            "namespace",
            "apiGroup",
            "apiVersion",
            "subresource",
        ] {
            if e["objectRef"][field] != k["objectRef"][field] {
                problems.push(format!(
                    "{id}: objectRef.{field} {} vs {}",
                    e["objectRef"][field], k["objectRef"][field]
                ));
            }
        }
        // kube-apiserver fills a create's name from the object it decoded;
        // the request path has none, and so has the export.
        if !e["objectRef"]["name"].is_null() && e["objectRef"]["name"] != k["objectRef"]["name"] {
            problems.push(format!(
                "{id}: objectRef.name {} vs {}",
                e["objectRef"]["name"], k["objectRef"]["name"]
            ));
        }
        if e["impersonatedUser"]["username"] != k["impersonatedUser"]["username"]
            || sorted_groups(&e["impersonatedUser"]) != sorted_groups(&k["impersonatedUser"])
        {
            problems.push(format!(
                "{id}: impersonatedUser {} vs {}",
                e["impersonatedUser"], k["impersonatedUser"]
            ));
        }
        // The user mapping: kube-apiserver authenticated the proxy; the
        // export names who the proxy authenticated on the tailnet.
        if k["user"]["username"] != stack.upstream.proxy_user() {
            problems.push(format!("{id}: kube-apiserver's user {}", k["user"]));
        }
        let caller = if e["user"]["groups"] == json!(["tag:ci"]) {
            "ci-runner.tail1234.ts.net"
        } else {
            "alice@example.com"
        };
        if e["user"]["username"] != caller {
            problems.push(format!("{id}: exported user {}", e["user"]));
        }
    }
    assert!(
        problems.is_empty(),
        "disagreements:\n{}",
        problems.join("\n")
    );
}
