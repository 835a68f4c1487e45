//! What the proxy records of a request: Secret bodies (and --redact-resource ones) never, any
//! other body naming a Secret never, and otherwise what the audit Policy's level says; the
//! Policy reloads when its file changes, and keeps the old one when the new one is invalid.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use audit_policy::Policy;
use common::*;
use event_model::{AuditLevel, Event};
use http::StatusCode;
use kubescribe_proxy::{Mode, Outcome};
use sha2::Digest;

const EVENTS_GRANT: &str =
    r#"{recorderAddrs: ["127.0.0.1:9"], enableEvents: true, impersonate: {groups: ["eng"]}}"#;
/// Fail closed with no recorders: every request is refused, unless the Policy says None.
const CLOSED_GRANT: &str = r#"{enforceRecorder: true, impersonate: {groups: ["eng"]}}"#;

async fn proxy_with(
    dir: &Path,
    grant: &str,
    edit: impl FnOnce(&mut kubescribe_proxy::Config),
) -> (FakeUpstream, MemorySink, kubescribe_proxy::RunningProxy) {
    let up = FakeUpstream::start().await;
    let sink = MemorySink::new(Outcome::Forward);
    let mut cfg = config(identity_file(dir, grant), Mode::Auth);
    edit(&mut cfg);
    let proxy = start_proxy(&cfg, Arc::new(sink.clone()), up.addr).await;
    (up, sink, proxy)
}

/// Sends `method path` with `body`; the event it got.
async fn sent_event(
    proxy: &kubescribe_proxy::RunningProxy,
    sink: &MemorySink,
    method: &str,
    path: &str,
    body: &[u8],
) -> Event {
    send(proxy.addr, b"", with_body(method, path, body.to_vec())).await;
    sink.events().pop().unwrap()
}

fn redaction(ev: &Event) -> Option<(String, u64)> {
    let r = ev.kubescribe.as_ref()?.redaction.as_ref()?;
    Some((r.reason.clone(), r.dropped_bytes))
}

fn level(ev: &Event) -> Option<AuditLevel> {
    ev.kubescribe.as_ref()?.audit_level.clone()
}

#[tokio::test]
async fn secret_bodies_are_forwarded_whole_and_never_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let (up, sink, proxy) = proxy_with(dir.path(), EVENTS_GRANT, |c| {
        c.max_body_capture = 1000;
        c.redactor = audit_policy::Redactor::new(["example.com/credentials".parse().unwrap()]);
    })
    .await;
    let small = br#"{"apiVersion":"v1","kind":"Secret","data":{"p":"aHVudGVyMg=="}}"#.to_vec();
    let big: Vec<u8> = [
        br#"{"apiVersion":"v1","kind":"Secret","stringData":{"p":""#.to_vec(),
        vec![b's'; 300_000],
        br#""}}"#.to_vec(),
    ]
    .concat();
    let cases: Vec<(&str, &str, Vec<u8>, &str)> = vec![
        (
            "POST",
            "/api/v1/namespaces/default/secrets",
            small.clone(),
            "secret",
        ),
        (
            "PATCH",
            "/api/v1/namespaces/default/secrets/s",
            br#"{"stringData":{"p":"x"}}"#.to_vec(),
            "secret",
        ),
        (
            "PUT",
            "/api/v1/namespaces/default/secrets/s",
            big.clone(),
            "secret",
        ),
        // Defence in depth: a Secret sent to another resource.
        (
            "POST",
            "/api/v1/namespaces/default/configmaps",
            small.clone(),
            "secret",
        ),
        (
            "PUT",
            "/apis/example.com/v1/namespaces/default/credentials/c",
            b"{}".to_vec(),
            "resource",
        ),
    ];
    for (method, path, body, reason) in &cases {
        let got = send(proxy.addr, b"", with_body(method, path, body.clone())).await;
        assert_eq!(got.status, StatusCode::OK, "{method} {path}");
        assert_eq!(
            &up.seen().pop().unwrap().body.to_vec(),
            body,
            "forwarded whole"
        );
        let ev = sink.events().pop().unwrap();
        assert!(ev.request.body.is_empty(), "{method} {path}: body recorded");
        assert_eq!(
            redaction(&ev),
            Some((reason.to_string(), body.len() as u64)),
            "{method} {path}"
        );
        assert_eq!(level(&ev), Some(AuditLevel::Request));
        let rec = sink.wait_responses(1).await.pop().unwrap();
        assert_eq!(rec.request_body_bytes, Some(body.len() as u64));
        assert_eq!(
            rec.request_body_sha256,
            Some(hex::encode(sha2::Sha256::digest(body)))
        );
        sink.clear();
    }
    // A read of a Secret has no body to withhold.
    send(proxy.addr, b"", get("/api/v1/namespaces/default/secrets/s")).await;
    let ev = sink.events().pop().unwrap();
    assert_eq!(redaction(&ev), None);
    // Other bodies are recorded as before.
    let cm = br#"{"apiVersion":"v1","kind":"ConfigMap","data":{"kind":"Secret"}}"#;
    let ev = sent_event(
        &proxy,
        &sink,
        "POST",
        "/api/v1/namespaces/default/configmaps",
        &cm[..],
    )
    .await;
    assert_eq!(ev.request.body, cm.to_vec());
    assert_eq!(redaction(&ev), None);
    let metrics = reqwest_metrics(proxy.admin_addr).await;
    assert!(
        metrics.contains("kubescribe_proxy_redacted_events_total{reason=\"secret\"} 4"),
        "{metrics}"
    );
    proxy.shutdown().await;
}

async fn reqwest_metrics(admin: std::net::SocketAddr) -> String {
    let got = send(admin, b"", get("/metrics")).await;
    String::from_utf8_lossy(&got.body).into_owned()
}

const POLICY: &str = r#"apiVersion: audit.k8s.io/v1
kind: Policy
rules:
  - level: None
    resources: [{group: "", resources: ["events"]}]
  - level: Metadata
    verbs: ["create"]
    resources: [{group: "", resources: ["configmaps"]}]
  - level: Request
    userGroups: ["eng"]
    resources: [{group: "apps", resources: ["deployments"]}]
    omitManagedFields: true
    omitStages: [ResponseComplete]
  - level: RequestResponse
    users: ["alice@example.com"]
"#;

fn policy_file(dir: &Path, text: &str) -> std::path::PathBuf {
    let path = dir.join("policy.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

/// A proxy with `--audit-policy` a file holding `text` (returned, to be changed).
async fn proxy_with_policy(
    dir: &Path,
    grant: &str,
    text: &str,
) -> (
    std::path::PathBuf,
    FakeUpstream,
    MemorySink,
    kubescribe_proxy::RunningProxy,
) {
    let path = policy_file(dir, text);
    let policy = Policy::load(&path).unwrap();
    let (up, sink, proxy) = proxy_with(dir, grant, |c| {
        c.audit_policy = Some((path.clone(), policy));
    })
    .await;
    (path, up, sink, proxy)
}

#[tokio::test]
async fn the_policy_decides_what_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let (_path, up, sink, proxy) = proxy_with_policy(dir.path(), EVENTS_GRANT, POLICY).await;

    // None: forwarded, nothing recorded.
    let got = send(proxy.addr, b"", get("/api/v1/namespaces/default/events")).await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(up.seen().len(), 1);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(sink.events().is_empty() && sink.responses().is_empty());

    // Metadata: the event, without the body, saying why.
    let body = br#"{"kind":"ConfigMap","data":{"a":"b"}}"#;
    let ev = sent_event(
        &proxy,
        &sink,
        "POST",
        "/api/v1/namespaces/default/configmaps",
        &body[..],
    )
    .await;
    assert!(ev.request.body.is_empty());
    assert_eq!(redaction(&ev), Some(("policy".into(), body.len() as u64)));
    assert_eq!(level(&ev), Some(AuditLevel::Metadata));
    assert_eq!(sink.wait_responses(1).await.len(), 1);
    sink.clear();

    // Request, managed fields stripped, no response record (omitStages: ResponseComplete).
    let body = br#"{"kind":"Deployment","metadata":{"name":"web","managedFields":[{"manager":"kubectl"}]}}"#;
    send(
        proxy.addr,
        b"",
        with_body(
            "PUT",
            "/apis/apps/v1/namespaces/default/deployments/web",
            &body[..],
        ),
    )
    .await;
    let ev = sink.events().pop().unwrap();
    assert_eq!(
        ev.request.body,
        br#"{"kind":"Deployment","metadata":{"name":"web"}}"#.to_vec()
    );
    assert_eq!(level(&ev), Some(AuditLevel::Request));
    assert_eq!(
        &up.seen().pop().unwrap().body[..],
        &body[..],
        "forwarded unchanged"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(sink.responses().is_empty());

    // RequestResponse: the user matched; Secrets stay redacted whatever the level.
    let secret = br#"{"kind":"Secret","data":{"p":"eA=="}}"#;
    let ev = sent_event(
        &proxy,
        &sink,
        "POST",
        "/api/v1/namespaces/default/secrets",
        &secret[..],
    )
    .await;
    assert_eq!(level(&ev), Some(AuditLevel::RequestResponse));
    assert!(ev.request.body.is_empty());
    assert_eq!(redaction(&ev).map(|r| r.0), Some("secret".into()));

    let metrics = reqwest_metrics(proxy.admin_addr).await;
    for level in ["None", "Metadata", "Request", "RequestResponse"] {
        assert!(
            metrics.contains(&format!(
                "kubescribe_proxy_audit_level_requests_total{{level=\"{level}\"}} 1"
            )),
            "{level}: {metrics}"
        );
    }
    proxy.shutdown().await;
}

#[tokio::test]
async fn level_none_is_forwarded_even_when_the_grant_says_fail_closed() {
    let dir = tempfile::tempdir().unwrap();
    let (_path, up, sink, proxy) = proxy_with_policy(dir.path(), CLOSED_GRANT, POLICY).await;
    let got = send(proxy.addr, b"", get("/api/v1/namespaces/default/events")).await;
    assert_eq!(
        got.status,
        StatusCode::OK,
        "the Policy says None: not recorded, forwarded"
    );
    // Any other level: the grant's fail closed applies (no recorders: refused).
    let got = send(proxy.addr, b"", get("/api/v1/namespaces/default/pods")).await;
    assert_eq!(got.status, StatusCode::FORBIDDEN);
    assert_eq!(up.seen().len(), 1);
    assert!(sink.events().is_empty());
    proxy.shutdown().await;
}

#[tokio::test]
async fn the_policy_reloads_when_its_file_changes_and_keeps_the_old_one_when_invalid() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _up, sink, proxy) = proxy_with_policy(dir.path(), EVENTS_GRANT, POLICY).await;
    let pods = "/api/v1/namespaces/default/pods";
    let level_now = |sink: &MemorySink| sink.events().pop().and_then(|e| level(&e));

    send(proxy.addr, b"", get(pods)).await;
    assert_eq!(level_now(&sink), Some(AuditLevel::RequestResponse));

    // A valid change: Metadata for everyone.
    let metadata = "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n  - level: Metadata\n";
    std::fs::write(&path, metadata).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        sink.clear();
        send(proxy.addr, b"", get(pods)).await;
        if level_now(&sink) == Some(AuditLevel::Metadata) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "not reloaded");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // An invalid change: the Metadata policy stays.
    std::fs::write(
        &path,
        "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n  - level: Loud\n",
    )
    .unwrap();
    // (At least: another test's SIGHUP, in this process, reloads every watcher.)
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let metrics = reqwest_metrics(proxy.admin_addr).await;
        let reloads = |result: &str| {
            let sample =
                format!("kubescribe_proxy_audit_policy_reloads_total{{result=\"{result}\"}} ");
            metrics
                .lines()
                .find_map(|l| l.strip_prefix(&sample))
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(0)
        };
        if reloads("invalid") >= 1 {
            assert!(reloads("ok") >= 1, "{metrics}");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{metrics}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    sink.clear();
    send(proxy.addr, b"", get(pods)).await;
    assert_eq!(level_now(&sink), Some(AuditLevel::Metadata));
    proxy.shutdown().await;
}

#[tokio::test]
async fn the_policy_reloads_on_sighup() {
    let dir = tempfile::tempdir().unwrap();
    let metadata = "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n  - level: Metadata\n";
    let (path, _up, sink, proxy) = proxy_with_policy(dir.path(), EVENTS_GRANT, metadata).await;
    // The watcher installs its SIGHUP handler as it starts.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pods = "/api/v1/namespaces/default/pods";
    send(proxy.addr, b"", get(pods)).await;
    assert_eq!(
        sink.events().pop().and_then(|e| level(&e)),
        Some(AuditLevel::Metadata)
    );

    // Same size, same modification time: only SIGHUP tells the proxy.
    let modified = std::fs::metadata(&path).unwrap().modified().unwrap();
    let request = metadata.replace("level: Metadata", "level: Request ");
    assert_eq!(request.len(), metadata.len());
    std::fs::write(&path, &request).unwrap();
    let file = std::fs::File::options().write(true).open(&path).unwrap();
    file.set_modified(modified).unwrap();
    drop(file);
    tokio::time::sleep(Duration::from_secs(3)).await;
    sink.clear();
    send(proxy.addr, b"", get(pods)).await;
    assert_eq!(
        sink.events().pop().and_then(|e| level(&e)),
        Some(AuditLevel::Metadata),
        "not reloaded without SIGHUP"
    );

    let status = std::process::Command::new("kill")
        .args(["-HUP", &std::process::id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        sink.clear();
        send(proxy.addr, b"", get(pods)).await;
        if sink.events().pop().and_then(|e| level(&e)) == Some(AuditLevel::Request) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not reloaded on SIGHUP"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    proxy.shutdown().await;
}
