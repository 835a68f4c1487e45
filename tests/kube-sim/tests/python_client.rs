//! The official Python `kubernetes` client (from the peers venv) lists pods and execs.
#![allow(clippy::unwrap_used)]

mod common;

use common::Harness;

const SCRIPT: &str = r#"
import json, sys
from kubernetes import client, config
from kubernetes.stream import stream

config.load_kube_config(config_file=sys.argv[1])
core = client.CoreV1Api()
pods = [p.metadata.name for p in core.list_namespaced_pod("default").items]
phase = core.read_namespaced_pod("demo", "default").status.phase
resp = stream(core.connect_get_namespaced_pod_exec, "demo", "default",
              command=["sh", "-c", "echo py-$((20+22)); echo warn >&2"],
              stderr=True, stdin=False, stdout=True, tty=False, _preload_content=False)
resp.run_forever(timeout=30)
out = resp.read_stdout()
err = resp.read_stderr()
code = resp.returncode
print(json.dumps({"pods": pods, "phase": phase, "stdout": out, "stderr": err, "code": code}))
"#;

#[tokio::test(flavor = "multi_thread")]
async fn python_client_lists_and_execs() {
    let h = Harness::start().await;
    let script = h.dir.path().join("client.py");
    std::fs::write(&script, SCRIPT).unwrap();
    let output = tokio::process::Command::new(common::python())
        .arg(&script)
        .arg(&h.kubeconfig)
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let result: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(result["pods"], serde_json::json!(["demo"]));
    assert_eq!(result["phase"], "Running");
    assert_eq!(result["stdout"], "py-42\n");
    assert_eq!(result["stderr"], "warn\n");
    assert_eq!(result["code"], 0);
    let exec = h
        .sim
        .requests()
        .into_iter()
        .find(|r| r.uri.contains("/exec?"))
        .unwrap();
    assert!(exec
        .header("sec-websocket-protocol")
        .unwrap()
        .contains("v5.channel.k8s.io"));
    h.sim.shutdown().await;
}
