//! Real RBAC through impersonation: callers whose grants map to groups (or, for a tagged node, to
//! its tags; or to no group at all) that real Roles, ClusterRoles and their bindings name are
//! allowed and refused by the real kube-apiserver exactly as `kubectl auth can-i --as <user>
//! --as-group <group>…` (run as the administrator, directly) says, over every verb × resource ×
//! namespace of the matrix below. Every request the API server received for a caller names the
//! user and groups its grants give, and has its event.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use kubescribe_system_tests::identities::TestIdentity;
use kubescribe_system_tests::run::with_deadline;
use kubescribe_system_tests::stack::{Stack, StackOptions, Storage, CALLER_TOKEN};
use kubescribe_system_tests::upstream::UpstreamKind;
use kubescribe_system_tests::{rbac, received};
use serde_json::{json, Value};
use test_support::apiserver::ControlPlane;
use test_support::{http, peers};

/// A caller of the matrix: its name (a DNS label: objects are named after it), identity, and the
/// groups its grants give it (what the API server must see besides `system:authenticated`).
struct MatrixCaller {
    name: &'static str,
    identity: TestIdentity,
    groups: Vec<&'static str>,
}

/// A resource of the matrix.
struct Resource {
    group: &'static str,
    plural: &'static str,
    namespaced: bool,
}

const RESOURCES: &[Resource] = &[
    Resource {
        group: "",
        plural: "configmaps",
        namespaced: true,
    },
    Resource {
        group: "",
        plural: "secrets",
        namespaced: true,
    },
    Resource {
        group: "",
        plural: "pods",
        namespaced: true,
    },
    Resource {
        group: "apps",
        plural: "deployments",
        namespaced: true,
    },
    Resource {
        group: "",
        plural: "namespaces",
        namespaced: false,
    },
];

const NAMESPACES: &[&str] = &["team-a", "team-b", "default"];
const VERBS: &[&str] = &[
    "get",
    "list",
    "watch",
    "create",
    "update",
    "patch",
    "delete",
    "deletecollection",
];

#[derive(Clone, Copy)]
enum Scope {
    Namespace(&'static str),
    /// A namespaced resource across all namespaces (list and watch only).
    AllNamespaces,
    /// A cluster-scoped resource.
    Cluster,
}

struct Cell {
    caller: usize,
    verb: &'static str,
    resource: &'static Resource,
    scope: Scope,
}

impl Cell {
    fn collection(&self) -> String {
        let base = if self.resource.group.is_empty() {
            "/api/v1".to_owned()
        } else {
            format!("/apis/{}/v1", self.resource.group)
        };
        match self.scope {
            Scope::Namespace(ns) => format!("{base}/namespaces/{ns}/{}", self.resource.plural),
            Scope::AllNamespaces | Scope::Cluster => format!("{base}/{}", self.resource.plural),
        }
    }

    /// The object a named verb acts on (created beforehand by the administrator), or a create's.
    fn object_name(&self, caller: &MatrixCaller) -> String {
        match self.verb {
            "create" => format!("c-{}", caller.name),
            _ => format!("t-{}", caller.name),
        }
    }

    fn named(&self) -> bool {
        matches!(self.verb, "get" | "update" | "patch" | "delete")
    }

    fn scope_text(&self) -> String {
        match self.scope {
            Scope::Namespace(ns) => ns.to_owned(),
            Scope::AllNamespaces => "all namespaces".into(),
            Scope::Cluster => "cluster".into(),
        }
    }

    fn resource_text(&self) -> String {
        if self.resource.group.is_empty() {
            self.resource.plural.to_owned()
        } else {
            format!("{}.{}", self.resource.plural, self.resource.group)
        }
    }

    /// The request through the proxy: method, path, content type, body.
    fn request(&self, caller: &MatrixCaller) -> (&'static str, String, &'static str, Vec<u8>) {
        let collection = self.collection();
        let name = self.object_name(caller);
        let object = object(self.resource, &name).to_string().into_bytes();
        match self.verb {
            "get" => ("GET", format!("{collection}/{name}"), "", Vec::new()),
            "list" => ("GET", collection, "", Vec::new()),
            "watch" => (
                "GET",
                format!("{collection}?watch=true&timeoutSeconds=1"),
                "",
                Vec::new(),
            ),
            "create" => ("POST", collection, "application/json", object),
            "update" => (
                "PUT",
                format!("{collection}/{name}"),
                "application/json",
                object,
            ),
            "patch" => (
                "PATCH",
                format!("{collection}/{name}"),
                "application/merge-patch+json",
                br#"{"metadata":{"labels":{"patched":"yes"}}}"#.to_vec(),
            ),
            "delete" => ("DELETE", format!("{collection}/{name}"), "", Vec::new()),
            "deletecollection" => (
                "DELETE",
                format!("{collection}?labelSelector=matrix%3Dnone"),
                "",
                Vec::new(),
            ),
            other => panic!("no request for verb {other}"),
        }
    }

    /// `kubectl auth can-i` arguments for this cell as `caller`.
    fn can_i_args(&self, caller: &MatrixCaller) -> Vec<String> {
        let mut args = vec!["auth".into(), "can-i".into(), self.verb.into()];
        if self.named() {
            args.push(format!(
                "{}/{}",
                self.resource_text(),
                self.object_name(caller)
            ));
        } else {
            args.push(self.resource_text());
        }
        match self.scope {
            Scope::Namespace(ns) => args.extend(["-n".into(), ns.into()]),
            Scope::AllNamespaces | Scope::Cluster => args.push("--all-namespaces".into()),
        }
        args.push("--as".into());
        args.push(caller.identity.impersonated_user());
        for group in &caller.groups {
            args.push("--as-group".into());
            args.push((*group).into());
        }
        args
    }
}

/// A minimal valid object of `resource` named `name`.
fn object(resource: &Resource, name: &str) -> Value {
    let meta = json!({"name": name, "labels": {"matrix": "target"}});
    match resource.plural {
        "configmaps" => json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta}),
        "secrets" => json!({"apiVersion": "v1", "kind": "Secret", "metadata": meta}),
        "pods" => json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta,
                         "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]}}),
        "deployments" => json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta,
            "spec": {"selector": {"matchLabels": {"run": name}},
                     "template": {"metadata": {"labels": {"run": name}},
                                  "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]}}}}),
        "namespaces" => json!({"apiVersion": "v1", "kind": "Namespace", "metadata": meta}),
        other => panic!("no object for {other}"),
    }
}

fn cells(callers: &[MatrixCaller]) -> Vec<Cell> {
    let mut cells = Vec::new();
    for caller in 0..callers.len() {
        for resource in RESOURCES {
            for verb in VERBS {
                if resource.namespaced {
                    for ns in NAMESPACES {
                        cells.push(Cell {
                            caller,
                            verb,
                            resource,
                            scope: Scope::Namespace(ns),
                        });
                    }
                    if matches!(*verb, "list" | "watch") {
                        cells.push(Cell {
                            caller,
                            verb,
                            resource,
                            scope: Scope::AllNamespaces,
                        });
                    }
                } else {
                    cells.push(Cell {
                        caller,
                        verb,
                        resource,
                        scope: Scope::Cluster,
                    });
                }
            }
        }
    }
    cells
}

/// The callers: a team-A developer, a cluster-wide viewer, one with two grants (groups merged),
/// a tagged node whose tag is its group, a user with no group (bound by name), a team-B admin.
fn matrix_callers(recorder: &Value) -> Vec<MatrixCaller> {
    let events = json!({"recorderAddrs": recorder, "enforceRecorder": true, "enableEvents": true});
    let with_groups = |groups: &[&str]| {
        let mut grant = events.clone();
        grant["impersonate"] = json!({"groups": groups});
        grant
    };
    let address = |n: u8| IpAddr::V4(Ipv4Addr::new(100, 64, 3, n));
    vec![
        MatrixCaller {
            name: "dev",
            identity: TestIdentity::user(
                "dev-laptop",
                "dev@example.com",
                7001,
                address(1),
                vec![with_groups(&["team-a-devs"])],
            ),
            groups: vec!["team-a-devs"],
        },
        MatrixCaller {
            name: "viewer",
            identity: TestIdentity::user(
                "viewer-laptop",
                "viewer@example.com",
                7002,
                address(2),
                vec![with_groups(&["cluster-viewers"])],
            ),
            groups: vec!["cluster-viewers"],
        },
        MatrixCaller {
            name: "multi",
            identity: TestIdentity::user(
                "multi-laptop",
                "multi@example.com",
                7003,
                address(3),
                vec![
                    with_groups(&["team-a-devs"]),
                    with_groups(&["secret-readers", "team-a-devs"]),
                ],
            ),
            groups: vec!["team-a-devs", "secret-readers"],
        },
        MatrixCaller {
            name: "deployer",
            identity: TestIdentity::tagged(
                "deployer",
                &["tag:deployer"],
                address(4),
                vec![events.clone()],
            ),
            groups: vec!["tag:deployer"],
        },
        MatrixCaller {
            name: "nobody",
            identity: TestIdentity::user(
                "nobody-laptop",
                "nobody@example.com",
                7005,
                address(5),
                vec![events.clone()],
            ),
            groups: vec![],
        },
        MatrixCaller {
            name: "nsadmin",
            identity: TestIdentity::user(
                "nsadmin-laptop",
                "nsadmin@example.com",
                7006,
                address(6),
                vec![with_groups(&["team-b-admins"])],
            ),
            groups: vec!["team-b-admins"],
        },
    ]
}

/// The roles and bindings the callers' groups meet, and the objects the matrix acts on.
fn set_up(plane: &ControlPlane, callers: &[MatrixCaller]) {
    let all = &[
        "get",
        "list",
        "watch",
        "create",
        "update",
        "patch",
        "delete",
        "deletecollection",
    ];
    let read = &["get", "list", "watch"];
    for ns in ["team-a", "team-b"] {
        rbac::namespace(plane, ns).unwrap();
    }
    // team-a-devs edit configmaps, pods and deployments in team-a (a ClusterRole bound by a
    // RoleBinding).
    rbac::cluster_role(
        plane,
        "matrix-edit",
        &[
            rbac::rule("", &["configmaps", "pods"], all),
            rbac::rule("apps", &["deployments"], all),
        ],
    )
    .unwrap();
    rbac::role_binding(
        plane,
        "team-a",
        "team-a-devs-edit",
        ("ClusterRole", "matrix-edit"),
        &[rbac::group("team-a-devs")],
    )
    .unwrap();
    // cluster-viewers read configmaps, pods, deployments and namespaces everywhere.
    rbac::cluster_role(
        plane,
        "matrix-view",
        &[
            rbac::rule("", &["configmaps", "pods", "namespaces"], read),
            rbac::rule("apps", &["deployments"], read),
        ],
    )
    .unwrap();
    rbac::cluster_role_binding(
        plane,
        "cluster-viewers-view",
        "matrix-view",
        &[rbac::group("cluster-viewers")],
    )
    .unwrap();
    // secret-readers get and list secrets in team-b only.
    rbac::cluster_role(
        plane,
        "matrix-secrets",
        &[rbac::rule("", &["secrets"], &["get", "list"])],
    )
    .unwrap();
    rbac::role_binding(
        plane,
        "team-b",
        "secret-readers",
        ("ClusterRole", "matrix-secrets"),
        &[rbac::group("secret-readers")],
    )
    .unwrap();
    // tag:deployer manages deployments everywhere and may create and read namespaces.
    rbac::cluster_role(
        plane,
        "matrix-deployer",
        &[
            rbac::rule(
                "apps",
                &["deployments"],
                &["get", "list", "create", "update", "patch", "delete"],
            ),
            rbac::rule("", &["namespaces"], &["get", "create"]),
        ],
    )
    .unwrap();
    rbac::cluster_role_binding(
        plane,
        "deployers",
        "matrix-deployer",
        &[rbac::group("tag:deployer")],
    )
    .unwrap();
    // nobody@example.com, with no group, may get configmaps in team-b (a Role bound to the user).
    rbac::role(
        plane,
        "team-b",
        "configmap-getter",
        &[rbac::rule("", &["configmaps"], &["get"])],
    )
    .unwrap();
    rbac::role_binding(
        plane,
        "team-b",
        "nobody-gets-configmaps",
        ("Role", "configmap-getter"),
        &[rbac::user("nobody@example.com")],
    )
    .unwrap();
    // team-b-admins may do anything to anything namespaced in team-b.
    rbac::role(
        plane,
        "team-b",
        "everything",
        &[rbac::rule("*", &["*"], &["*"])],
    )
    .unwrap();
    rbac::role_binding(
        plane,
        "team-b",
        "team-b-admins",
        ("Role", "everything"),
        &[rbac::group("team-b-admins")],
    )
    .unwrap();

    // The objects the named verbs act on: t-<caller> of every resource, in every namespace.
    for caller in callers {
        let name = format!("t-{}", caller.name);
        for resource in RESOURCES {
            let body = object(resource, &name);
            let base = if resource.group.is_empty() {
                "/api/v1".to_owned()
            } else {
                format!("/apis/{}/v1", resource.group)
            };
            if resource.namespaced {
                for ns in NAMESPACES {
                    plane
                        .create(
                            &format!("{base}/namespaces/{ns}/{}", resource.plural),
                            &body,
                        )
                        .unwrap();
                }
            } else {
                plane
                    .create(&format!("{base}/{}", resource.plural), &body)
                    .unwrap();
            }
        }
    }
}

/// Runs `work` on every item with `workers` threads; returns the results in item order.
fn parallel<T: Sync, R: Send>(
    items: &[T],
    workers: usize,
    work: impl Fn(&T) -> R + Sync,
) -> Vec<R> {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<R>>> = Mutex::new((0..items.len()).map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(item) = items.get(i) else { break };
                let result = work(item);
                results.lock().unwrap()[i] = Some(result);
            });
        }
    });
    results
        .into_inner()
        .unwrap()
        .into_iter()
        .map(|r| r.expect("every item was worked on"))
        .collect()
}

#[test]
fn callers_are_allowed_and_refused_exactly_as_kubectl_auth_can_i_says() {
    let kubectl = peers::kubectl().unwrap_or_else(|e| panic!("{e}"));
    let mut options = StackOptions::new(UpstreamKind::ApiServer, Storage::Disk).unwrap();
    let callers = matrix_callers(&options.recorder_addrs());
    for caller in &callers {
        options = options.caller(caller.name, caller.identity.clone());
    }
    let stack =
        Stack::start_with_options(options).unwrap_or_else(|e| panic!("starting the system: {e}"));
    let plane = stack.upstream.control_plane().expect("the real API server");
    set_up(plane, &callers);
    let cells = cells(&callers);

    // The oracle: kubectl auth can-i as the administrator, directly.
    let admin = stack.upstream.admin_kubeconfig();
    let cache = stack.dir.path().join("kube-cache-can-i");
    let oracle: Vec<Result<bool, String>> = parallel(&cells, 3, |cell| {
        let args = cell.can_i_args(&callers[cell.caller]);
        let output = with_deadline(
            Command::new(&kubectl)
                .arg("--kubeconfig")
                .arg(&admin)
                .arg("--cache-dir")
                .arg(&cache)
                .args(&args),
            Duration::from_secs(60),
        )
        .map_err(|e| e.to_string())?;
        match String::from_utf8_lossy(&output.stdout).trim() {
            "yes" => Ok(true),
            "no" => Ok(false),
            other => Err(format!(
                "kubectl {} answered {other:?}: {}",
                args.join(" "),
                String::from_utf8_lossy(&output.stderr)
            )),
        }
    });

    // The real requests, through the proxy, each caller from its own tailnet address.
    let bearer = format!("Bearer {CALLER_TOKEN}");
    let answers: Vec<Result<(u16, String), String>> = parallel(&cells, 6, |cell| {
        let caller = &callers[cell.caller];
        let (method, path, content_type, body) = cell.request(caller);
        let addr = stack.caller(caller.name).unwrap().addr();
        let mut headers = vec![("authorization", bearer.as_str())];
        if !content_type.is_empty() {
            headers.push(("content-type", content_type));
        }
        let reply = http::request(addr, None, method, &path, &headers, &body)
            .map_err(|e| format!("{method} {path}: {e}"))?;
        Ok((reply.status, reply.text().chars().take(300).collect()))
    });

    let mut failures = Vec::new();
    let mut allowed = 0;
    println!(
        "\nRBAC through the proxy against kubectl auth can-i ({} cells):",
        cells.len()
    );
    for ((cell, can), answer) in cells.iter().zip(&oracle).zip(&answers) {
        let caller = &callers[cell.caller];
        let what = format!(
            "{:8} {:16} {:18} {}",
            caller.name,
            cell.verb,
            cell.resource_text(),
            cell.scope_text()
        );
        let problem = match (can, answer) {
            (Err(e), _) => Some(format!("the oracle failed: {e}")),
            (_, Err(e)) => Some(format!("the request failed: {e}")),
            (Ok(can), Ok((status, body))) => {
                let refused = *status == 403;
                if *status >= 500 || *status == 401 {
                    Some(format!("answered {status}: {body}"))
                } else if *can == refused {
                    Some(format!(
                        "can-i says {}, the API server answered {status}: {body}",
                        if *can { "yes" } else { "no" }
                    ))
                } else {
                    if *can {
                        allowed += 1;
                    }
                    None
                }
            }
        };
        let status = answer.as_ref().map_or("-".into(), |(s, _)| s.to_string());
        let can = can.as_ref().map_or("?", |c| if *c { "yes" } else { "no" });
        println!(
            "  {what} can-i {can:3} {status:>3} {}",
            if problem.is_some() { "FAIL" } else { "ok" }
        );
        if let Some(problem) = problem {
            failures.push(format!("{what}: {problem}"));
        }
    }
    println!(
        "  {} cells, {allowed} allowed, {} refused, {} failed",
        cells.len(),
        cells.len() - allowed - failures.len(),
        failures.len()
    );
    // Both answers must vary, or the matrix tests nothing.
    assert!(
        allowed > 0 && allowed < cells.len(),
        "every cell had the same answer"
    );

    // Each caller's requests reached the API server as the user and groups its grants give, and
    // each has its event.
    let proxy_user = stack.upstream.proxy_user();
    let audit = plane.audit_events().unwrap();
    for caller in &callers {
        let user = caller.identity.impersonated_user();
        let mut want: Vec<String> = caller.groups.iter().map(|g| (*g).to_owned()).collect();
        want.push("system:authenticated".into());
        want.sort();
        let mut seen = 0;
        for event in audit.iter().filter(|e| {
            e["user"]["username"] == proxy_user
                && e["impersonatedUser"]["username"] == user.as_str()
        }) {
            seen += 1;
            let mut groups: Vec<String> = event["impersonatedUser"]["groups"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|g| g.as_str().map(str::to_owned))
                .collect();
            groups.sort();
            if groups != want {
                failures.push(format!(
                    "{}: the API server saw groups {groups:?}, the grants give {want:?} ({})",
                    caller.name, event["requestURI"]
                ));
                break;
            }
        }
        if seen == 0 {
            failures.push(format!(
                "{}: no request of {user} in the audit log",
                caller.name
            ));
        }
        let got = received::for_caller(&stack, &caller.identity, Duration::from_secs(20)).unwrap();
        println!("  {}: {got}", caller.name);
        if !got.matches() {
            failures.push(format!(
                "{}: requests and events differ: {got}",
                caller.name
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} checks failed (logs in {}):\n{}",
        failures.len(),
        stack.dir.path().display(),
        failures.join("\n")
    );
}
