//! Real kubectl 1.37 against the simulator: discovery, get, apply (twice), patch, delete, watch.
#![allow(clippy::unwrap_used)]

mod common;

use common::{ok, stderr, stdout, Harness};

const MANIFEST_V1: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: nginx:1.27
        env: [{name: MODE, value: one}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings, labels: {tier: backend}}
data: {colour: blue}
---
apiVersion: example.kubescribe.dev/v1
kind: Widget
metadata: {name: gadget}
spec: {size: 3}
"#;

#[tokio::test(flavor = "multi_thread")]
async fn get_shows_the_seeded_demo_pod_as_a_table() {
    let h = Harness::start().await;
    let out = ok(&h.kubectl(&["get", "pods"]).await);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    );
    assert!(
        lines[1].starts_with("demo") && lines[1].contains("1/1") && lines[1].contains("Running"),
        "{out}"
    );
    let ns = ok(&h.kubectl(&["get", "namespaces", "-o", "name"]).await);
    assert!(
        ns.contains("namespace/default") && ns.contains("namespace/kube-system"),
        "{ns}"
    );
    let json = ok(&h.kubectl(&["get", "pod", "demo", "-o", "json"]).await);
    let pod: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(pod["status"]["phase"], "Running");
    assert_eq!(pod["status"]["containerStatuses"][0]["name"], "main");
    // kubectl asked for tables and for aggregated discovery.
    let requests = h.sim.requests();
    assert!(requests
        .iter()
        .any(|r| r.uri.starts_with("/api/v1/namespaces/default/pods?")
            && r.header("accept").unwrap_or_default().contains("as=Table")));
    assert!(requests
        .iter()
        .any(|r| r.uri.starts_with("/apis?") || r.uri == "/apis"));
    h.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn apply_twice_creates_then_patches() {
    let h = Harness::start().await;
    let manifest = h.dir.path().join("app.yaml");
    std::fs::write(&manifest, MANIFEST_V1).unwrap();
    let first = ok(&h
        .kubectl(&["apply", "-f", manifest.to_str().unwrap()])
        .await);
    assert!(
        first.contains("deployment.apps/web created")
            && first.contains("configmap/settings created")
            && first.contains("widget.example.kubescribe.dev/gadget created"),
        "{first}"
    );
    let changed = MANIFEST_V1
        .replace("replicas: 2", "replicas: 3")
        .replace("value: one", "value: two")
        .replace("size: 3", "size: 4");
    std::fs::write(&manifest, changed).unwrap();
    let second = ok(&h
        .kubectl(&["apply", "-f", manifest.to_str().unwrap()])
        .await);
    assert!(
        second.contains("deployment.apps/web configured")
            && second.contains("configmap/settings unchanged")
            && second.contains("widget.example.kubescribe.dev/gadget configured"),
        "{second}"
    );
    let deploy: serde_json::Value = serde_json::from_str(&ok(&h
        .kubectl(&["get", "deploy", "web", "-o", "json"])
        .await))
    .unwrap();
    assert_eq!(deploy["spec"]["replicas"], 3);
    assert_eq!(
        deploy["spec"]["template"]["spec"]["containers"][0]["env"][0]["value"],
        "two"
    );
    assert_eq!(deploy["metadata"]["generation"], 2);
    assert_eq!(deploy["status"]["readyReplicas"], 3);
    let widget = ok(&h
        .kubectl(&["get", "widget", "gadget", "-o", "jsonpath={.spec.size}"])
        .await);
    assert_eq!(widget, "4");
    let patch_types: Vec<String> = h
        .sim
        .requests()
        .iter()
        .filter(|r| r.method == "PATCH")
        .map(|r| {
            format!(
                "{} {}",
                r.uri.split('?').next().unwrap(),
                r.header("content-type").unwrap_or_default()
            )
        })
        .collect();
    assert!(patch_types.contains(&"/apis/apps/v1/namespaces/default/deployments/web application/strategic-merge-patch+json".to_string()), "{patch_types:?}");
    assert!(patch_types.contains(&"/apis/example.kubescribe.dev/v1/namespaces/default/widgets/gadget application/merge-patch+json".to_string()), "{patch_types:?}");
    h.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn patch_label_select_and_delete() {
    let h = Harness::start().await;
    ok(&h
        .kubectl(&["create", "configmap", "a", "--from-literal=k=v"])
        .await);
    ok(&h
        .kubectl(&["create", "configmap", "b", "--from-literal=k=v"])
        .await);
    // An edit-style strategic merge patch, a JSON patch and a merge patch.
    ok(&h
        .kubectl(&[
            "patch",
            "configmap",
            "a",
            "-p",
            r#"{"data":{"k":"edited","n":"1"},"metadata":{"labels":{"team":"red"}}}"#,
        ])
        .await);
    ok(&h
        .kubectl(&[
            "patch",
            "configmap",
            "b",
            "--type=json",
            "-p",
            r#"[{"op":"add","path":"/metadata/labels","value":{"team":"blue"}}]"#,
        ])
        .await);
    ok(&h
        .kubectl(&[
            "patch",
            "configmap",
            "b",
            "--type=merge",
            "-p",
            r#"{"data":{"k":null}}"#,
        ])
        .await);
    assert_eq!(
        ok(&h
            .kubectl(&["get", "cm", "a", "-o", "jsonpath={.data.k},{.data.n}"])
            .await),
        "edited,1"
    );
    assert_eq!(
        ok(&h
            .kubectl(&["get", "cm", "b", "-o", "jsonpath={.data.k}"])
            .await),
        ""
    );
    assert_eq!(
        ok(&h
            .kubectl(&["get", "cm", "-l", "team in (red)", "-o", "name"])
            .await)
        .trim(),
        "configmap/a"
    );
    assert_eq!(
        ok(&h
            .kubectl(&["get", "cm", "-l", "team!=red,team", "-o", "name"])
            .await)
        .trim(),
        "configmap/b"
    );
    assert_eq!(
        ok(&h
            .kubectl(&[
                "get",
                "cm",
                "--field-selector",
                "metadata.name=b",
                "-o",
                "name"
            ])
            .await)
        .trim(),
        "configmap/b"
    );
    let deleted = ok(&h.kubectl(&["delete", "configmap", "a"]).await);
    assert!(deleted.contains("configmap \"a\" deleted"), "{deleted}");
    let missing = h.kubectl(&["get", "configmap", "a"]).await;
    assert!(!missing.status.success());
    assert!(
        stderr(&missing).contains("Error from server (NotFound): configmaps \"a\" not found"),
        "{}",
        stderr(&missing)
    );
    let exists = h.kubectl(&["create", "configmap", "b"]).await;
    assert!(
        stderr(&exists).contains("configmaps \"b\" already exists"),
        "{}",
        stderr(&exists)
    );
    ok(&h.kubectl(&["delete", "configmaps", "--all"]).await);
    assert_eq!(stdout(&h.kubectl(&["get", "cm", "-o", "name"]).await), "");
    h.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn watch_streams_changes_to_kubectl() {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let h = Harness::start().await;
    let mut watcher = h
        .command(
            &common::kubectl(),
            &h.kubeconfig,
            &["get", "configmaps", "--watch", "--output-watch-events"],
        )
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(watcher.stdout.take().unwrap()).lines();
    // Change things only once kubectl's watch is open (it lists first, then watches).
    tokio::time::timeout(std::time::Duration::from_secs(60), async {
        while !h
            .sim
            .requests()
            .iter()
            .any(|r| r.uri.contains("watch=") && r.status == Some(200))
        {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("kubectl never opened its watch");
    ok(&h.kubectl(&["create", "configmap", "watched"]).await);
    ok(&h.kubectl(&["delete", "configmap", "watched"]).await);
    let mut seen = Vec::new();
    tokio::time::timeout(std::time::Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            seen.push(line);
            if seen.iter().any(|l| l.contains("DELETED")) {
                break;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("watch never delivered the deletion: {seen:?}"));
    assert!(
        seen.iter()
            .any(|l| l.split_whitespace().take(2).eq(["ADDED", "watched"])),
        "{seen:?}"
    );
    assert!(
        seen.iter()
            .any(|l| l.split_whitespace().take(2).eq(["DELETED", "watched"])),
        "{seen:?}"
    );
    watcher.kill().await.unwrap();
    h.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn selector_watch_sees_objects_enter_and_leave() {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let h = Harness::start().await;
    ok(&h.kubectl(&["create", "configmap", "mover"]).await);
    let mut watcher = h
        .command(
            &common::kubectl(),
            &h.kubeconfig,
            &[
                "get",
                "configmaps",
                "-l",
                "team=red",
                "--watch",
                "--output-watch-events",
            ],
        )
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(watcher.stdout.take().unwrap()).lines();
    tokio::time::timeout(std::time::Duration::from_secs(60), async {
        while !h
            .sim
            .requests()
            .iter()
            .any(|r| r.uri.contains("watch=") && r.status == Some(200))
        {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("kubectl never opened its watch");
    ok(&h
        .kubectl(&["label", "configmap", "mover", "team=red"])
        .await);
    ok(&h
        .kubectl(&["label", "configmap", "mover", "team=blue", "--overwrite"])
        .await);
    let mut seen = Vec::new();
    tokio::time::timeout(std::time::Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            let words: Vec<String> = line
                .split_whitespace()
                .take(2)
                .map(str::to_string)
                .collect();
            if words.get(1).map(String::as_str) == Some("mover") {
                seen.push(words[0].clone());
            }
            if seen.len() == 2 {
                break;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("watch stalled: {seen:?}"));
    assert_eq!(
        seen,
        ["ADDED", "DELETED"],
        "labelling in and out of the selector"
    );
    watcher.kill().await.unwrap();
    h.sim.shutdown().await;
}
