//! The API server behind the proxy: the project's simulator (`kube-sim`, which also plays the kubelet,
//! so exec, attach and logs work) or the real kube-apiserver (with etcd, from `test_support`), and what
//! each one says it received.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};
use test_support::apiserver::{ControlPlane, ADMIN, PROXY};
use test_support::net::free_port;
use test_support::peers;
use test_support::process::{workspace_bin, Spawned};

use crate::Error;

/// The token the proxy uses towards the simulator (the simulator lets it impersonate).
pub const SIM_PROXY_TOKEN: &str = "proxy-token-e2e";

/// Which API server the proxy forwards to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamKind {
    /// `tests/kube-sim`: discovery, CRUD, watch, and a kubelet for exec, attach and logs.
    Sim,
    /// The real kube-apiserver v1.37 with etcd: real RBAC, validation and audit log; no kubelet.
    ApiServer,
}

impl std::str::FromStr for UpstreamKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "sim" => Ok(UpstreamKind::Sim),
            "apiserver" => Ok(UpstreamKind::ApiServer),
            other => Err(format!("unknown upstream {other:?}: sim or apiserver")),
        }
    }
}

impl std::fmt::Display for UpstreamKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            UpstreamKind::Sim => "sim",
            UpstreamKind::ApiServer => "apiserver",
        })
    }
}

/// One request as the upstream API server saw it: from the simulator's request log, or from
/// kube-apiserver's audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenRequest {
    /// The HTTP method (the simulator) or the audit verb (kube-apiserver).
    pub method: String,
    /// Path and query as received.
    pub uri: String,
    /// The user the API server authenticated (the proxy's own credential, in auth mode).
    pub user: String,
    /// The user it acted as, from `Impersonate-User`.
    pub impersonated_user: Option<String>,
    /// The groups it acted as, from `Impersonate-Group` (kube-apiserver adds `system:authenticated`).
    pub impersonated_groups: Vec<String>,
    /// The response status the API server gave.
    pub status: u16,
    /// The `User-Agent` it received.
    pub user_agent: String,
    /// The `Audit-ID` it received (kube-apiserver: the audit event's `auditID`; through the
    /// auth-mode proxy, the event's idempotency key).
    pub audit_id: Option<String>,
}

/// A running upstream. Dropping it stops it.
pub enum Upstream {
    /// The simulator process and the kubeconfig it wrote for the proxy.
    Sim {
        /// The process.
        process: Spawned,
        /// Where it listens.
        addr: SocketAddr,
        /// Its kubeconfig for the proxy (token [`SIM_PROXY_TOKEN`]).
        kubeconfig: PathBuf,
    },
    /// The real control plane, with the proxy's user allowed to impersonate.
    ApiServer(Box<ControlPlane>),
}

impl Upstream {
    /// Starts an upstream of `kind`, with scratch files in `dir` and logs in `logs`.
    pub fn start(kind: UpstreamKind, dir: &Path, logs: &Path) -> Result<Self, Error> {
        Self::start_with_audit_policy(kind, dir, logs, None)
    }

    /// [`Upstream::start`]; the real API server with `audit_policy` (YAML) as its audit Policy
    /// when given (the simulator has none).
    pub fn start_with_audit_policy(
        kind: UpstreamKind,
        dir: &Path,
        logs: &Path,
        audit_policy: Option<&str>,
    ) -> Result<Self, Error> {
        match kind {
            UpstreamKind::Sim => start_sim(dir, logs, false, &[]),
            UpstreamKind::ApiServer => {
                let plane = match audit_policy {
                    Some(policy) => ControlPlane::start_with_audit_policy(policy)?,
                    None => ControlPlane::start()?,
                };
                plane.allow_impersonation(&PROXY)?;
                bind_e2e_roles(&plane)?;
                Ok(Upstream::ApiServer(Box::new(plane)))
            }
        }
    }

    /// The simulator over plain HTTP (a load generator can reach it straight, without TLS), with
    /// `callers` (lines `token,user,group1|group2`) besides the proxy's token.
    pub fn start_plain_sim(dir: &Path, logs: &Path, callers: &[&str]) -> Result<Self, Error> {
        start_sim(dir, logs, true, callers)
    }

    /// Which kind this is.
    pub fn kind(&self) -> UpstreamKind {
        match self {
            Upstream::Sim { .. } => UpstreamKind::Sim,
            Upstream::ApiServer(_) => UpstreamKind::ApiServer,
        }
    }

    /// Whether exec, attach, logs and port-forward work (only the simulator plays the kubelet).
    pub fn has_kubelet(&self) -> bool {
        self.kind() == UpstreamKind::Sim
    }

    /// The kubeconfig the proxy uses to reach this upstream with its own credential.
    pub fn proxy_kubeconfig(&self) -> PathBuf {
        match self {
            Upstream::Sim { kubeconfig, .. } => kubeconfig.clone(),
            Upstream::ApiServer(plane) => plane.kubeconfig(&PROXY),
        }
    }

    /// A kubeconfig that reaches the upstream directly, bypassing the proxy, as an administrator.
    pub fn admin_kubeconfig(&self) -> PathBuf {
        match self {
            Upstream::Sim { kubeconfig, .. } => kubeconfig.clone(),
            Upstream::ApiServer(plane) => plane.kubeconfig(&ADMIN),
        }
    }

    /// The user name the upstream authenticates the proxy's credential as.
    pub fn proxy_user(&self) -> &'static str {
        match self {
            Upstream::Sim { .. } => "kubescribe-proxy",
            Upstream::ApiServer(_) => PROXY.name,
        }
    }

    /// The upstream's main process (its PID and log).
    pub fn process(&self) -> &Spawned {
        match self {
            Upstream::Sim { process, .. } => process,
            Upstream::ApiServer(plane) => plane.apiserver(),
        }
    }

    /// The control plane, when the upstream is the real API server.
    pub fn control_plane(&self) -> Option<&ControlPlane> {
        match self {
            Upstream::Sim { .. } => None,
            Upstream::ApiServer(plane) => Some(plane),
        }
    }

    /// Every request the upstream received, oldest first. The simulator's log is read with real
    /// kubectl straight from the simulator; kube-apiserver's audit log from its file, one entry per
    /// audit ID (requests of the API server's own controllers, and of the test's administrator, are
    /// left out).
    pub fn seen(&self) -> Result<Vec<SeenRequest>, Error> {
        match self {
            Upstream::Sim { kubeconfig, .. } => {
                let output = Command::new(peers::kubectl()?)
                    .arg("--kubeconfig")
                    .arg(kubeconfig)
                    .args(["get", "--raw", "/_sim/requests"])
                    .output()?;
                if !output.status.success() {
                    return Err(format!(
                        "reading the simulator's request log: {}",
                        String::from_utf8_lossy(&output.stderr)
                    )
                    .into());
                }
                let log: Value = serde_json::from_slice(&output.stdout)?;
                Ok(log
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(sim_request)
                    .collect())
            }
            Upstream::ApiServer(plane) => {
                let events = plane.audit_events()?;
                // A long-running request (a watch) has two audit events, `ResponseStarted` and
                // `ResponseComplete`, with one audit ID: count it once, by its last stage.
                let last_stage: std::collections::HashMap<&str, usize> = events
                    .iter()
                    .enumerate()
                    .filter_map(|(i, e)| Some((e["auditID"].as_str()?, i)))
                    .collect();
                Ok(events
                    .iter()
                    .enumerate()
                    .filter(|(i, e)| {
                        e["auditID"]
                            .as_str()
                            .is_none_or(|id| last_stage.get(id) == Some(i))
                    })
                    .map(|(_, e)| e)
                    .filter(|e| {
                        let user = e["user"]["username"].as_str().unwrap_or("");
                        user != ADMIN.name && !user.starts_with("system:")
                    })
                    .map(audit_request)
                    .collect())
            }
        }
    }
}

/// The simulator (TLS unless `plain`); its token file holds the proxy's token first (the one its
/// kubeconfig gets), then `callers`.
fn start_sim(dir: &Path, logs: &Path, plain: bool, callers: &[&str]) -> Result<Upstream, Error> {
    let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), free_port()?);
    let tokens = dir.join("sim-tokens.csv");
    let mut lines = format!("{SIM_PROXY_TOKEN},kubescribe-proxy,system:authenticated\n");
    for caller in callers {
        lines.push_str(caller);
        lines.push('\n');
    }
    std::fs::write(&tokens, lines)?;
    let kubeconfig = dir.join("sim.kubeconfig");
    let path_arg = |p: &Path| p.to_string_lossy().into_owned();
    let mut process = Spawned::start(
        "kube-sim",
        &workspace_bin("kube-sim")?,
        &[
            if plain { "--plain" } else { "--tls" }.into(),
            "--listen".into(),
            addr.to_string(),
            "--tokens".into(),
            path_arg(&tokens),
            "--impersonator".into(),
            "kubescribe-proxy".into(),
            "--kubeconfig-out".into(),
            path_arg(&kubeconfig),
            "--sandbox".into(),
            path_arg(&dir.join("sandbox")),
            "--log-interval-ms".into(),
            "200".into(),
        ],
        &[],
        logs,
    )?;
    process.wait_for_tcp(addr, Duration::from_secs(20))?;
    process.wait_for_path(&kubeconfig, Duration::from_secs(5))?;
    Ok(Upstream::Sim {
        process,
        addr,
        kubeconfig,
    })
}

/// The rights the end-to-end callers need: the tagged CI node's group `ci-deployers` may edit the core
/// resources, the users without granted groups may read them. The built-in `edit` and `view` roles
/// cannot serve: they are aggregated, and without kube-controller-manager nothing fills them in.
fn bind_e2e_roles(plane: &ControlPlane) -> Result<(), Error> {
    let core = json!([
        "pods",
        "configmaps",
        "secrets",
        "services",
        "serviceaccounts",
        "events"
    ]);
    for (role, verbs) in [
        (
            "e2e-edit",
            json!([
                "get",
                "list",
                "watch",
                "create",
                "update",
                "patch",
                "delete",
                "deletecollection"
            ]),
        ),
        ("e2e-view", json!(["get", "list", "watch"])),
    ] {
        plane.create(
            "/apis/rbac.authorization.k8s.io/v1/clusterroles",
            &json!({
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRole",
                "metadata": {"name": role},
                "rules": [{"apiGroups": [""], "resources": core, "verbs": verbs}]
            }),
        )?;
    }
    cluster_role_binding(
        plane,
        "e2e-ci-deployers-edit",
        "e2e-edit",
        json!({"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": "ci-deployers"}),
    )?;
    for user in ["bob@example.com", "dave@example.com"] {
        cluster_role_binding(
            plane,
            &format!("e2e-{}-view", user.replace('@', "-at-")),
            "e2e-view",
            json!({"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": user}),
        )?;
    }
    Ok(())
}

fn cluster_role_binding(
    plane: &ControlPlane,
    name: &str,
    role: &str,
    subject: Value,
) -> Result<(), Error> {
    plane.create(
        "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
        &json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
            "subjects": [subject]
        }),
    )?;
    Ok(())
}

fn sim_request(entry: &Value) -> SeenRequest {
    let header = |name: &str| -> Vec<String> {
        entry["headers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|h| h[0].as_str().is_some_and(|n| n.eq_ignore_ascii_case(name)))
            .filter_map(|h| h[1].as_str().map(str::to_owned))
            .collect()
    };
    SeenRequest {
        method: entry["method"].as_str().unwrap_or("").to_owned(),
        uri: entry["uri"].as_str().unwrap_or("").to_owned(),
        user: entry["authenticated_user"]["username"]
            .as_str()
            .unwrap_or("")
            .to_owned(),
        impersonated_user: header("impersonate-user").into_iter().next(),
        impersonated_groups: header("impersonate-group"),
        status: entry["status"].as_u64().unwrap_or(0) as u16,
        user_agent: header("user-agent").into_iter().next().unwrap_or_default(),
        audit_id: header("audit-id").into_iter().next(),
    }
}

fn audit_request(event: &Value) -> SeenRequest {
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s.as_str().map(str::to_owned))
            .collect()
    };
    SeenRequest {
        method: event["verb"].as_str().unwrap_or("").to_owned(),
        uri: event["requestURI"].as_str().unwrap_or("").to_owned(),
        user: event["user"]["username"].as_str().unwrap_or("").to_owned(),
        impersonated_user: event["impersonatedUser"]["username"]
            .as_str()
            .map(str::to_owned),
        impersonated_groups: strings(&event["impersonatedUser"]["groups"]),
        status: event["responseStatus"]["code"].as_u64().unwrap_or(0) as u16,
        user_agent: event["userAgent"].as_str().unwrap_or("").to_owned(),
        audit_id: event["auditID"].as_str().map(str::to_owned),
    }
}
