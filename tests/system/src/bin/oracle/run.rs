//! Sending the corpus through the proxy: phases in order, the groups of a phase in parallel, the
//! entries of a group in order.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::client::{self, RawRequest, RawResponse};
use crate::corpus::{Agent, Body, Entry, Expect, Phase, Who};

/// How many groups run at once.
const WORKERS: usize = 4;

/// One corpus request as sent, and what came back.
#[derive(Debug, Clone)]
pub(crate) struct Sent {
    pub(crate) id: usize,
    pub(crate) entry: Entry,
    pub(crate) body: Vec<u8>,
    pub(crate) response: Result<RawResponse, String>,
}

impl Sent {
    /// The `Audit-Id` the response carried (kube-apiserver echoes the one it used).
    pub(crate) fn audit_id(&self) -> Option<&str> {
        self.response
            .as_ref()
            .ok()
            .and_then(|r| r.header("audit-id"))
    }

    /// What kube-apiserver did with the request: as expected, or for a generated one, as the
    /// response shows (an `Audit-Id` on it means it reached kube-apiserver's handlers).
    pub(crate) fn outcome(&self) -> Expect {
        match self.entry.expect {
            Expect::Observed if self.audit_id().is_some() => Expect::Audited,
            Expect::Observed => Expect::RefusedBeforeAudit,
            expect => expect,
        }
    }

    /// The response status, or 0 when there was none.
    pub(crate) fn status(&self) -> u16 {
        self.response.as_ref().map(|r| r.status).unwrap_or(0)
    }
}

/// Where each caller reaches the proxy.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Callers {
    pub(crate) alice: SocketAddr,
    pub(crate) ci: SocketAddr,
}

/// Numbers every entry (from `first`), in phase order.
pub(crate) fn number(phases: Vec<Phase>, first: usize) -> Vec<Vec<Vec<(usize, Entry)>>> {
    let mut id = first;
    phases
        .into_iter()
        .map(|phase| {
            phase
                .into_iter()
                .map(|group| {
                    group
                        .into_iter()
                        .map(|entry| {
                            let numbered = (id, entry);
                            id += 1;
                            numbered
                        })
                        .collect()
                })
                .collect()
        })
        .collect()
}

/// Sends one phase: its groups in parallel on a few workers.
pub(crate) fn run_phase(callers: Callers, phase: Vec<Vec<(usize, Entry)>>) -> Vec<Sent> {
    let queue = Mutex::new(VecDeque::from(phase));
    let results = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..WORKERS {
            scope.spawn(|| loop {
                let next = queue.lock().map(|mut q| q.pop_front()).unwrap_or(None);
                let Some(group) = next else { break };
                let sent = run_group(callers, group);
                if let Ok(mut all) = results.lock() {
                    all.extend(sent);
                }
            });
        }
    });
    let mut sent = results.into_inner().unwrap_or_default();
    sent.sort_by_key(|s| s.id);
    sent
}

fn run_group(callers: Callers, group: Vec<(usize, Entry)>) -> Vec<Sent> {
    let mut last_object: Option<Value> = None;
    let mut out = Vec::new();
    for (id, entry) in group {
        let user_agent = match &entry.agent {
            Agent::Marker => Some(marker(id).into_bytes()),
            Agent::Exactly(bytes) => Some(bytes.clone()),
            Agent::Absent => None,
        };
        let body = match &entry.body {
            Body::Bytes(bytes) => bytes.clone(),
            Body::LastObject => replacement(last_object.as_ref()),
        };
        let mut headers = entry.headers.clone();
        if let Some(ua) = user_agent {
            headers.push(("User-Agent".into(), ua));
        }
        let request = RawRequest {
            method: entry.method.clone(),
            target: entry.target.clone(),
            headers,
            body: body.clone(),
        };
        let addr = match entry.who {
            Who::Alice => callers.alice,
            Who::Ci => callers.ci,
        };
        let response = client::send(addr, &request).map_err(|e| e.to_string());
        if let Ok(reply) = &response {
            if entry.method == "GET" && reply.status == 200 {
                if let Some(object) = reply.json().filter(is_single_object) {
                    last_object = Some(object);
                }
            }
        }
        out.push(Sent {
            id,
            entry,
            body,
            response,
        });
    }
    out
}

/// The `User-Agent` that marks corpus request `id`.
pub(crate) fn marker(id: usize) -> String {
    format!("kubescribe-oracle/1 (#{id})")
}

fn is_single_object(value: &Value) -> bool {
    value.get("metadata").is_some()
        && !value["kind"]
            .as_str()
            .is_some_and(|kind| kind.ends_with("List"))
}

/// The body of a replace: the object last read, with a label added.
fn replacement(object: Option<&Value>) -> Vec<u8> {
    let mut object = object.cloned().unwrap_or_else(|| json!({}));
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        let labels = meta.entry("labels").or_insert_with(|| json!({}));
        if let Some(labels) = labels.as_object_mut() {
            labels.insert("oracle-put".into(), json!("1"));
        }
    }
    object.to_string().into_bytes()
}

/// One kubectl invocation and how it ended.
#[derive(Debug, Clone)]
pub(crate) struct KubectlRun {
    pub(crate) args: Vec<String>,
    pub(crate) code: Option<i32>,
    pub(crate) stderr: String,
    pub(crate) took: Duration,
}

/// Runs real kubectl through the proxy as `kubeconfig`'s user with an empty discovery cache, so
/// that its discovery requests go through the proxy too.
pub(crate) fn kubectl(kubectl: &Path, kubeconfig: &Path, scratch: &Path) -> Vec<KubectlRun> {
    let ns = crate::corpus::NS;
    let write = |name: &str, text: &str| {
        let path = scratch.join(name);
        std::fs::write(&path, text).map(|()| path.to_string_lossy().into_owned())
    };
    let cm = |data: &str| {
        format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: kubectl-cm\n  namespace: {ns}\n  labels:\n    oracle: kubectl\ndata:\n  greeting: {data}\n")
    };
    let files = (
        write("kubectl-cm-1.yaml", &cm("hello")),
        write("kubectl-cm-2.yaml", &cm("changed")),
        write(
            "kubectl-ssa.yaml",
            &format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: kubectl-ssa\n  namespace: {ns}\n  labels:\n    oracle: kubectl\ndata:\n  a: b\n"),
        ),
    );
    let (Ok(first), Ok(second), Ok(ssa)) = files else {
        return vec![KubectlRun {
            args: vec!["(writing manifests)".into()],
            code: None,
            stderr: "could not write the kubectl manifests".into(),
            took: Duration::ZERO,
        }];
    };
    let commands: Vec<Vec<String>> = [
        vec!["version"],
        vec!["api-resources"],
        vec!["api-versions"],
        vec!["get", "pods", "-n", ns],
        vec!["get", "deployments", "-A"],
        vec!["get", "configmap", "o-a", "-n", ns, "-o", "yaml"],
        vec!["get", "widgets", "-n", ns],
        vec!["get", "gadgets"],
        vec!["get", "nodes", "-o", "wide"],
        vec!["apply", "-f", &first],
        vec!["apply", "-f", &second],
        vec!["diff", "-f", &first],
        vec!["apply", "--server-side", "-f", &ssa],
        vec!["apply", "--server-side", "--dry-run=server", "-f", &ssa],
        vec![
            "patch",
            "configmap",
            "kubectl-cm",
            "-n",
            ns,
            "--type",
            "merge",
            "-p",
            r#"{"data":{"m":"1"}}"#,
        ],
        vec![
            "patch",
            "configmap",
            "kubectl-cm",
            "-n",
            ns,
            "--type",
            "json",
            "-p",
            r#"[{"op":"add","path":"/data/j","value":"1"}]"#,
        ],
        vec![
            "patch",
            "configmap",
            "kubectl-cm",
            "-n",
            ns,
            "--type",
            "strategic",
            "-p",
            r#"{"data":{"s":"1"}}"#,
        ],
        vec!["label", "configmap", "kubectl-cm", "-n", ns, "extra=1"],
        vec!["annotate", "configmap", "kubectl-cm", "-n", ns, "note=x"],
        vec!["replace", "-f", &second],
        vec!["scale", "deployment", "o-a", "-n", ns, "--replicas=2"],
        vec![
            "create",
            "configmap",
            "kubectl-dry",
            "-n",
            ns,
            "--dry-run=server",
            "--from-literal=a=b",
        ],
        vec!["auth", "can-i", "list", "pods", "-n", ns],
        vec!["auth", "can-i", "--list", "-n", ns],
        vec!["auth", "whoami"],
        vec!["explain", "pods.spec.containers"],
        vec!["get", "--raw", "/healthz"],
        vec![
            "get",
            "--raw",
            "/api/v1/namespaces/oracle/configmaps?fieldSelector=metadata.name%3Do-a",
        ],
        vec![
            "get",
            "configmaps",
            "-n",
            ns,
            "-l",
            "oracle=keep",
            "--field-selector",
            "metadata.name=o-a",
        ],
        vec![
            "get",
            "configmaps",
            "-n",
            ns,
            "--watch",
            "--request-timeout=3s",
        ],
        vec!["logs", "o-ssa", "-n", ns],
        vec!["exec", "o-ssa", "-n", ns, "--", "ls"],
        vec!["create", "token", "o-a", "-n", ns],
        vec!["cordon", "o-a"],
        vec!["uncordon", "o-a"],
        vec!["delete", "configmap", "kubectl-cm", "-n", ns],
        vec!["delete", "configmap", "-n", ns, "-l", "oracle=kubectl"],
    ]
    .into_iter()
    .map(|args| args.into_iter().map(str::to_owned).collect())
    .collect();
    let cache = scratch.join("kubectl-cache");
    commands
        .into_iter()
        .map(|args| {
            let started = Instant::now();
            let mut command = Command::new(kubectl);
            command
                .arg("--kubeconfig")
                .arg(kubeconfig)
                .arg("--cache-dir")
                .arg(&cache)
                .args(&args);
            if !args.iter().any(|a| a.starts_with("--request-timeout")) {
                command.arg("--request-timeout=20s");
            }
            let (code, stderr) = match command.output() {
                Ok(out) => (
                    out.status.code(),
                    String::from_utf8_lossy(&out.stderr).into_owned(),
                ),
                Err(e) => (None, format!("could not run kubectl: {e}")),
            };
            KubectlRun {
                args,
                code,
                stderr,
                took: started.elapsed(),
            }
        })
        .collect()
}
