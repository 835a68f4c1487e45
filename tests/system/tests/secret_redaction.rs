//! Secret bodies are never recorded. Through the proxy to the real kube-apiserver, as a caller
//! allowed to write Secrets: `kubectl create secret generic`, `kubectl apply -f` a Secret
//! (client-side and `--server-side`), `kubectl patch secret`, a Secret sent as protobuf
//! (`Content-Type: application/vnd.kubernetes.protobuf`), `kubectl apply -f` a List holding a
//! Secret, and, as defence in depth, a JSON List holding a Secret and a protobuf Secret sent to
//! the configmaps endpoint. Each writes a value of its own; afterwards none of the values (nor
//! their base64) appears anywhere in the recorder's storage, the proxy's spool or either's logs,
//! and every event of a request that carried one says `kubescribe.redaction`. An event sent
//! straight to the recorder with a Secret body (as Tailscale's proxy sends it) is stored
//! redacted too.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use base64::Engine;
use kubescribe_system_tests::stack::{Stack, Storage, CALLER_TOKEN};
use kubescribe_system_tests::upstream::UpstreamKind;
use serde_json::{json, Value};
use test_support::http;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// The values written, one per way of sending a Secret; none may be recorded.
const VALUES: &[&str] = &[
    "kubescribe-create-literal-7f3a",
    "kubescribe-apply-client-91c2",
    "kubescribe-apply-server-5d8e",
    "kubescribe-patch-strategic-33b1",
    "kubescribe-patch-merge-c0de",
    "kubescribe-protobuf-secret-e4f0",
    "kubescribe-list-item-a11b",
    "kubescribe-list-to-configmaps-b77c",
    "kubescribe-protobuf-to-configmaps-9a9a",
    "kubescribe-tailscale-event-d00d",
];

fn value(prefix: &str) -> &'static str {
    VALUES.iter().find(|v| v.contains(prefix)).unwrap()
}

fn secret_yaml(name: &str, value: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\n  namespace: default\ntype: Opaque\nstringData:\n  password: {value}\n"
    )
}

/// A length-delimited protobuf field.
fn field(number: u8, bytes: &[u8]) -> Vec<u8> {
    assert!(bytes.len() < 128, "one-byte lengths only");
    let mut out = vec![(number << 3) | 2, bytes.len() as u8];
    out.extend_from_slice(bytes);
    out
}

/// A v1 Secret in kube-apiserver's protobuf envelope (`k8s\0`, `runtime.Unknown{typeMeta, raw}`),
/// built from k8s.io/api's `generated.proto` field numbers: `Secret{metadata=1, data=2 (map
/// entries key=1, value=2), type=3}`, `ObjectMeta{name=1, namespace=3}`, `TypeMeta{apiVersion=1,
/// kind=2}`.
fn protobuf_secret(name: &str, value: &str) -> Vec<u8> {
    let meta = [field(1, name.as_bytes()), field(3, b"default")].concat();
    let entry = [field(1, b"password"), field(2, value.as_bytes())].concat();
    let secret = [field(1, &meta), field(2, &entry), field(3, b"Opaque")].concat();
    let type_meta = [field(1, b"v1"), field(2, b"Secret")].concat();
    let unknown = [field(1, &type_meta), field(2, &secret)].concat();
    [b"k8s\x00".to_vec(), unknown].concat()
}

fn kubectl(stack: &Stack, args: &[&str]) {
    let kubectl = Stack::kubectl_path().unwrap();
    let out = stack.kubectl(&kubectl, &stack.alice, args).unwrap();
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn post(stack: &Stack, path: &str, content_type: &str, body: &[u8]) -> u16 {
    let bearer = format!("Bearer {CALLER_TOKEN}");
    let reply = http::request(
        stack.alice.addr(),
        None,
        "POST",
        path,
        &[
            ("authorization", bearer.as_str()),
            ("content-type", content_type),
            ("accept", "application/json"),
        ],
        body,
    )
    .unwrap();
    reply.status
}

/// Every file under `dir` (recursively).
fn files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            files(&path, out);
        } else {
            out.push(path);
        }
    }
}

/// Where a value (or its base64) turns up: raw in a file, or in a decoded `request.body`.
fn leaks(stack: &Stack) -> Vec<String> {
    let root = stack.dir.path();
    let mut paths = Vec::new();
    for dir in ["recordings", "spool", "logs"] {
        files(&root.join(dir), &mut paths);
    }
    // Only kubescribe's own logs: the API server's are not ours to judge.
    paths.retain(|p| {
        !p.starts_with(root.join("logs"))
            || p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("kubescribe"))
    });
    assert!(
        paths.iter().any(|p| p.starts_with(root.join("recordings"))),
        "the recorder stored nothing"
    );
    let needles: Vec<(String, Vec<u8>)> = VALUES
        .iter()
        .flat_map(|v| {
            [
                (v.to_string(), v.as_bytes().to_vec()),
                (format!("base64 of {v}"), B64.encode(v).into_bytes()),
            ]
        })
        .collect();
    let found = |hay: &[u8]| -> Vec<&str> {
        needles
            .iter()
            .filter(|(_, n)| hay.windows(n.len()).any(|w| w == n.as_slice()))
            .map(|(what, _)| what.as_str())
            .collect()
    };
    let mut leaks = Vec::new();
    for path in &paths {
        let bytes = std::fs::read(path).unwrap_or_default();
        for what in found(&bytes) {
            leaks.push(format!("{what} in {}", path.display()));
        }
        for line in bytes.split(|b| *b == b'\n') {
            let Ok(record) = serde_json::from_slice::<Value>(line) else {
                continue;
            };
            let Some(body) = record["request"]["body"].as_str() else {
                continue;
            };
            let decoded = B64.decode(body).unwrap_or_default();
            for what in found(&decoded) {
                leaks.push(format!("{what} in a request.body in {}", path.display()));
            }
        }
    }
    leaks
}

#[test]
fn secret_bodies_are_never_recorded() {
    let stack = Stack::start_with(UpstreamKind::ApiServer, Storage::Disk)
        .unwrap_or_else(|e| panic!("starting the stack: {e}"));
    let manifests = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = manifests.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_string_lossy().into_owned()
    };

    // kubectl, every way it writes a Secret.
    let literal = format!("--from-literal=password={}", value("create-literal"));
    kubectl(
        &stack,
        &[
            "create",
            "secret",
            "generic",
            "s-literal",
            "-n",
            "default",
            &literal,
        ],
    );
    let client = write(
        "client.yaml",
        &secret_yaml("s-client", value("apply-client")),
    );
    kubectl(&stack, &["apply", "-f", &client]);
    let server = write(
        "server.yaml",
        &secret_yaml("s-server", value("apply-server")),
    );
    kubectl(&stack, &["apply", "--server-side", "-f", &server]);
    let patch = json!({"stringData": {"password": value("patch-strategic")}}).to_string();
    kubectl(
        &stack,
        &[
            "patch",
            "secret",
            "s-literal",
            "-n",
            "default",
            "-p",
            &patch,
        ],
    );
    let patch = json!({"stringData": {"other": value("patch-merge")}}).to_string();
    kubectl(
        &stack,
        &[
            "patch", "secret", "s-client", "-n", "default", "--type", "merge", "-p", &patch,
        ],
    );
    let list = format!(
        "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: ConfigMap\n  metadata: {{name: c-list, namespace: default}}\n  data: {{a: b}}\n- {}",
        secret_yaml("s-list", value("list-item")).replace('\n', "\n  ")
    );
    let list = write("list.yaml", &list);
    kubectl(&stack, &["apply", "-f", &list]);

    // A Secret as protobuf.
    let secrets = "/api/v1/namespaces/default/secrets";
    let proto = "application/vnd.kubernetes.protobuf";
    let status = post(
        &stack,
        secrets,
        proto,
        &protobuf_secret("s-proto", value("protobuf-secret")),
    );
    assert_eq!(status, 201, "protobuf Secret create");

    // Defence in depth: Secrets sent where they do not belong (the API server refuses them).
    let configmaps = "/api/v1/namespaces/default/configmaps";
    let list = json!({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c2"}},
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s2"},
         "stringData": {"password": value("list-to-configmaps")}},
    ]});
    let status = post(
        &stack,
        configmaps,
        "application/json",
        list.to_string().as_bytes(),
    );
    assert!(status >= 400, "a List to configmaps: {status}");
    let body = protobuf_secret("s-misplaced", value("protobuf-to-configmaps"));
    let status = post(&stack, configmaps, proto, &body);
    assert!(status >= 400, "a protobuf Secret to configmaps: {status}");

    // As Tailscale's proxy would send it: an event with the Secret body, straight to the recorder.
    let body = secret_yaml("s-ts", value("tailscale-event"));
    let event = json!({
        "type": "kubernetes-api-request", "id": "", "timestamp": 1,
        "request": {"method": "POST", "path": secrets, "body": B64.encode(&body)},
        "kubernetes": {"IsResourceRequest": true, "Path": secrets, "Verb": "create",
            "APIPrefix": "api", "APIGroup": "", "APIVersion": "v1", "Namespace": "default",
            "Resource": "secrets", "Subresource": "", "Name": "", "Parts": ["secrets"]},
    });
    let reply = http::request(
        stack.recorder_addr,
        None,
        "POST",
        "/v2/event",
        &[("content-type", "application/json")],
        event.to_string().as_bytes(),
    )
    .unwrap();
    assert_eq!(reply.status, 200, "direct event: {}", reply.text());

    // Every write to secrets (and the misplaced ones) was recorded, without its body.
    let writes = |e: &Value| {
        matches!(
            e["kubernetes"]["Verb"].as_str(),
            Some("create" | "update" | "patch")
        ) && matches!(
            e["kubernetes"]["Resource"].as_str(),
            Some("secrets" | "configmaps")
        )
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let events = loop {
        let events: Vec<Value> = stack
            .all_events("")
            .unwrap()
            .into_iter()
            .map(|e| e["event"].clone())
            .filter(writes)
            .collect();
        let secrets = events
            .iter()
            .filter(|e| e["kubernetes"]["Resource"] == "secrets")
            .count();
        if secrets >= 8 || std::time::Instant::now() > deadline {
            break events;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let mut redacted = 0;
    for event in &events {
        let body = event["request"]["body"].as_str().unwrap_or("");
        let redaction = &event["kubescribe"]["redaction"];
        let name = event["kubernetes"]["Name"].as_str().unwrap_or("");
        if event["kubernetes"]["Resource"] == "secrets" || redaction.is_object() {
            assert!(body.is_empty(), "a Secret write with a body: {event}");
            assert_eq!(redaction["reason"], "secret", "{event}");
            redacted += 1;
        } else {
            assert!(
                !body.is_empty() || name == "c-list",
                "a configmap write without its body: {event}"
            );
        }
    }
    // create literal, apply client, apply server, two patches, protobuf, the list's Secret, the
    // direct event; and the two misplaced ones.
    assert!(
        redacted >= 10,
        "{redacted} redacted events of {}: {events:#?}",
        events.len()
    );
    let sent = events
        .iter()
        .filter(|e| e["kubernetes"]["Resource"] == "configmaps");
    let misplaced = sent
        .filter(|e| e["kubescribe"]["redaction"].is_object())
        .count();
    assert_eq!(
        misplaced, 2,
        "the two Secrets sent to configmaps are redacted"
    );

    // The proxy's metric says so too.
    let metrics = stack.proxy_metrics().unwrap();
    assert!(
        metrics.contains("kubescribe_proxy_redacted_events_total{reason=\"secret\"}"),
        "{metrics}"
    );

    let leaks = leaks(&stack);
    assert!(
        leaks.is_empty(),
        "Secret values recorded:\n{}",
        leaks.join("\n")
    );
}
