//! kubectl 1.27 (the SPDY era), 1.33 (WebSocket first) and 1.37 through the proxy to the real
//! kube-apiserver. Every command runs twice: directly against the API server as the same
//! effective user and groups (the administrator's kubeconfig with `--as` and `--as-group`), and
//! through the proxy as a caller whose grants impersonate that user and group. No command may
//! fail through the proxy and succeed without it: the exit status must be the same, and so must
//! stdout where it is deterministic. Each run has a namespace of its own (`k127-d` directly,
//! `k127-p` through the proxy), written as `{ns}` in commands and outputs. Every request kubectl
//! sent through the proxy must have its event, as the audit log counts them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use kubescribe_system_tests::identities::TestIdentity;
use kubescribe_system_tests::run::{with_deadline, with_lines};
use kubescribe_system_tests::stack::{Stack, StackOptions, Storage};
use kubescribe_system_tests::upstream::UpstreamKind;
use kubescribe_system_tests::{rbac, received};
use serde_json::json;
use test_support::apiserver::{ControlPlane, ADMIN};
use test_support::http::{self, Tls};
use test_support::peers::{self, KUBECTL_VERSIONS};

/// The group every kubectl caller is impersonated into; bound to [`ROLE`].
const GROUP: &str = "kubectl-testers";
/// What the group may do: edit configmaps, services, pods, service accounts (and ask for their
/// tokens) and deployments (and their scale); read namespaces.
/// Not secrets, not nodes (so some commands are refused, both ways).
const ROLE: &str = "kubectl-tester";
/// How long one kubectl command may take before the test calls it hung.
const DEADLINE: Duration = Duration::from_secs(60);
/// The watch's `--request-timeout`: the API server ends the watch after this.
const WATCH_SECONDS: u64 = 4;

const CONFIGMAP: &str = "apiVersion: v1
kind: ConfigMap
metadata:
  name: app-config
  labels: {app: kubescribe}
data:
  greeting: hello
";
const CONFIGMAP_CHANGED: &str = "apiVersion: v1
kind: ConfigMap
metadata:
  name: app-config
  labels: {app: kubescribe}
data:
  greeting: changed
";
const DEPLOYMENT: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: kubescribe}
spec:
  replicas: 1
  selector: {matchLabels: {run: web}}
  template:
    metadata: {labels: {run: web}}
    spec:
      containers: [{name: web, image: 'nginx:1.27'}]
";
const DEPLOYMENT_SCALED: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: kubescribe}
spec:
  replicas: 3
  selector: {matchLabels: {run: web}}
  template:
    metadata: {labels: {run: web}}
    spec:
      containers: [{name: web, image: 'nginx:1.27'}]
";
const SERVICE: &str = "apiVersion: v1
kind: Service
metadata:
  name: web
  labels: {app: kubescribe}
spec:
  selector: {run: web}
  ports: [{port: 80}]
";

/// How two runs' outputs are compared (the exit status always is).
#[derive(Clone, Copy)]
enum Compare {
    /// Only the exit status (stdout holds times, random names or server-assigned values).
    Status,
    /// stdout, with the namespace written as `{ns}`.
    Stdout,
    /// A `kubectl diff`'s changed lines (`+`/`-`, without the file headers naming temp files).
    DiffLines,
}

/// How a command should end (both ways): a check that it did what it says.
#[derive(Clone, Copy)]
enum Expect {
    Success,
    Failure,
    /// Success from this kubectl minor version on, failure before (an API older clients use is no
    /// longer served by kube-apiserver 1.37).
    SuccessSince(u32),
}

impl Expect {
    fn success(self, minor: &str) -> bool {
        match self {
            Expect::Success => true,
            Expect::Failure => false,
            Expect::SuccessSince(since) => minor
                .split('.')
                .nth(1)
                .and_then(|m| m.parse::<u32>().ok())
                .is_some_and(|m| m >= since),
        }
    }
}

/// One kubectl command, `{ns}` and `{dir}` (the manifests' directory) substituted per run.
struct Step {
    args: &'static str,
    compare: Compare,
    expect: Expect,
}

const fn step(args: &'static str, compare: Compare, expect: Expect) -> Step {
    Step {
        args,
        compare,
        expect,
    }
}

/// Stands for the watch in [`STEPS`]: see [`Runs::watch`].
const WATCH: &str = "get configmaps -l app=kubescribe --watch (changed during it)";

/// Every command, in order (later ones see what earlier ones did).
const STEPS: &[Step] = &[
    step("version -o json", Compare::Stdout, Expect::Success),
    step("api-resources -o wide", Compare::Stdout, Expect::Success),
    step("api-resources --api-group=apps --namespaced=true -o name", Compare::Stdout, Expect::Success),
    step("explain deployment.spec.replicas", Compare::Stdout, Expect::Success),
    step("explain configmap", Compare::Stdout, Expect::Success),
    step("auth can-i create deployments.apps", Compare::Stdout, Expect::Success),
    step("auth can-i delete nodes", Compare::Stdout, Expect::Failure),
    step("auth can-i list secrets", Compare::Stdout, Expect::Failure),
    step("auth can-i patch configmaps/app-config", Compare::Stdout, Expect::Success),
    step("auth can-i --list", Compare::Stdout, Expect::Success),
    step("apply -f {dir}/configmap.yaml", Compare::Stdout, Expect::Success),
    step("apply -f {dir}/configmap.yaml", Compare::Stdout, Expect::Success),
    step("apply --dry-run=server -f {dir}/configmap-changed.yaml", Compare::Stdout, Expect::Success),
    step("diff -f {dir}/configmap-changed.yaml", Compare::DiffLines, Expect::Failure),
    step("apply -f {dir}/configmap-changed.yaml", Compare::Stdout, Expect::Success),
    step("diff -f {dir}/configmap-changed.yaml", Compare::DiffLines, Expect::Success),
    // Server-side apply takes over the fields client-side apply set; another field manager
    // changing one of them is a conflict, both ways.
    step("apply --server-side -f {dir}/configmap.yaml", Compare::Stdout, Expect::Success),
    step(
        "apply --server-side --field-manager=another -f {dir}/configmap-changed.yaml",
        Compare::Stdout,
        Expect::Failure,
    ),
    step("apply --server-side -f {dir}/deployment.yaml", Compare::Stdout, Expect::Success),
    step("apply --server-side -f {dir}/deployment-scaled.yaml", Compare::Stdout, Expect::Success),
    step("diff --server-side -f {dir}/deployment-scaled.yaml", Compare::DiffLines, Expect::Success),
    step("apply -f {dir}/service.yaml", Compare::Stdout, Expect::Success),
    step("get configmap app-config -o jsonpath={.data}", Compare::Stdout, Expect::Success),
    step(
        "get configmaps,services,deployments.apps -l app=kubescribe -o name",
        Compare::Stdout,
        Expect::Success,
    ),
    step(
        "get configmaps -A -l fixture=kubectl -o custom-columns=NS:.metadata.namespace,NAME:.metadata.name",
        Compare::Stdout,
        Expect::Success,
    ),
    // Pagination: one object a page, continue tokens in the query.
    step(
        "get configmaps -A -l fixture=kubectl --chunk-size=1 -o custom-columns=NS:.metadata.namespace,NAME:.metadata.name",
        Compare::Stdout,
        Expect::Success,
    ),
    step("get namespace {ns} -o name", Compare::Stdout, Expect::Success),
    step("get pods -o name", Compare::Stdout, Expect::Success),
    step("get deployments.apps", Compare::Status, Expect::Success),
    step("get configmap no-such-thing", Compare::Stdout, Expect::Failure),
    step("get nodes", Compare::Stdout, Expect::Failure),
    step("get secrets", Compare::Stdout, Expect::Failure),
    // SelfSubjectReview v1 (kubectl 1.28 on); 1.27 asks for v1beta1, which 1.37 no longer serves.
    step("auth whoami -o json", Compare::Stdout, Expect::SuccessSince(28)),
    step(WATCH, Compare::Stdout, Expect::Success),
    step(
        "patch configmap app-config --type merge -p {\"data\":{\"merge\":\"yes\"}}",
        Compare::Stdout,
        Expect::Success,
    ),
    step(
        "patch configmap app-config --type json -p [{\"op\":\"add\",\"path\":\"/data/json\",\"value\":\"yes\"}]",
        Compare::Stdout,
        Expect::Success,
    ),
    step(
        "patch configmap app-config --type json -p [{\"op\":\"test\",\"path\":\"/data/greeting\",\"value\":\"nope\"}]",
        Compare::Status,
        Expect::Failure,
    ),
    step(
        "patch deployment web --type strategic -p {\"spec\":{\"template\":{\"spec\":{\"containers\":[{\"name\":\"web\",\"image\":\"nginx:1.28\"}]}}}}",
        Compare::Stdout,
        Expect::Success,
    ),
    step(
        "patch service web -p {\"metadata\":{\"labels\":{\"patched\":\"yes\"}}}",
        Compare::Stdout,
        Expect::Success,
    ),
    step("get configmap app-config -o jsonpath={.data}", Compare::Stdout, Expect::Success),
    step(
        "get deployment web -o jsonpath={.spec.replicas}/{.spec.template.spec.containers[0].image}",
        Compare::Stdout,
        Expect::Success,
    ),
    // Subresources: scale (patched, then read), a service account's token (TokenRequest).
    step("scale deployment web --replicas=2", Compare::Stdout, Expect::Success),
    step(
        "get deployment web --subresource=scale -o jsonpath={.spec.replicas}",
        Compare::Stdout,
        Expect::Success,
    ),
    step("create serviceaccount robot", Compare::Stdout, Expect::Success),
    step("create token robot --duration=10m", Compare::Status, Expect::Success),
    step("label configmap app-config tier=backend", Compare::Stdout, Expect::Success),
    step("annotate configmap app-config note=kubescribe", Compare::Stdout, Expect::Success),
    step(
        "get configmap app-config -o jsonpath={.metadata.labels.tier}/{.metadata.annotations.note}",
        Compare::Stdout,
        Expect::Success,
    ),
    step("delete configmap app-config", Compare::Stdout, Expect::Success),
    step("delete -f {dir}/deployment.yaml", Compare::Stdout, Expect::Success),
    step("delete service web", Compare::Stdout, Expect::Success),
    step("delete configmap app-config", Compare::Stdout, Expect::Failure),
    step(
        "get configmaps,services,deployments.apps -l app=kubescribe -o name",
        Compare::Stdout,
        Expect::Success,
    ),
];

/// One kubectl version's two ways of running.
struct Runs<'a> {
    kubectl: PathBuf,
    minor: &'static str,
    /// The caller's identity as the API server sees it (what `--as` names).
    user: String,
    stack: &'a Stack,
    caller_kubeconfig: PathBuf,
    manifests: PathBuf,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Way {
    Direct,
    Proxy,
}

impl Way {
    fn suffix(self) -> &'static str {
        match self {
            Way::Direct => "d",
            Way::Proxy => "p",
        }
    }
}

impl Runs<'_> {
    fn namespace(&self, way: Way) -> String {
        format!("k{}-{}", self.minor.replace('.', ""), way.suffix())
    }

    fn command(&self, way: Way) -> Command {
        let mut command = Command::new(&self.kubectl);
        let cache =
            self.stack
                .dir
                .path()
                .join(format!("kube-cache-{}-{}", self.minor, way.suffix()));
        command.arg("--cache-dir").arg(cache);
        match way {
            Way::Direct => {
                command
                    .arg("--kubeconfig")
                    .arg(self.stack.upstream.admin_kubeconfig())
                    .arg("--as")
                    .arg(&self.user)
                    .arg("--as-group")
                    .arg(GROUP);
            }
            Way::Proxy => {
                command.arg("--kubeconfig").arg(&self.caller_kubeconfig);
            }
        }
        command.arg("--namespace").arg(self.namespace(way));
        command
    }

    fn args(&self, step: &str, way: Way) -> Vec<String> {
        let dir = self.manifests.to_string_lossy();
        split_args(step)
            .into_iter()
            .map(|a| {
                a.replace("{ns}", &self.namespace(way))
                    .replace("{dir}", &dir)
            })
            .collect()
    }

    fn run(&self, args: &[String], way: Way) -> Output {
        with_deadline(self.command(way).args(args), DEADLINE)
            .unwrap_or_else(|e| panic!("kubectl {}: {e}", args.join(" ")))
    }

    /// `get --watch` with a `--request-timeout`: once kubectl has shown the object as listed and
    /// its watch has begun, the administrator changes the object; kubectl shows it as changed, then
    /// exits when the API server ends the watch.
    fn watch(&self, way: Way) -> Output {
        let ns = self.namespace(way);
        let args: Vec<String> = [
            "get",
            "configmaps",
            "-l",
            "app=kubescribe",
            "--watch",
            &format!("--request-timeout={WATCH_SECONDS}s"),
            "-o",
            "custom-columns=NAME:.metadata.name,GREETING:.data.greeting",
        ]
        .map(str::to_owned)
        .into();
        let plane = self
            .stack
            .upstream
            .control_plane()
            .expect("a control plane");
        let mut lines = 0;
        let mut patched = None;
        let output = with_lines(self.command(way).args(&args), DEADLINE, |_| {
            lines += 1;
            // Once the header and the object as listed are shown and the API server has begun
            // the watch, the object changes.
            if lines == 2 {
                patched = Some(
                    plane
                        .wait_for_audit_event(Duration::from_secs(20), |e| {
                            e["verb"] == "watch"
                                && e["objectRef"]["namespace"] == ns.as_str()
                                && e["stage"] == "ResponseStarted"
                        })
                        .map_err(|e| format!("the watch never began: {e}"))
                        .and_then(|_| change_app_config(plane, &ns)),
                );
            }
        })
        .unwrap_or_else(|e| panic!("kubectl {} {}: {e}", self.minor, args.join(" ")));
        match patched {
            Some(Ok(())) => output,
            Some(Err(e)) => panic!("changing app-config during the watch in {ns}: {e}"),
            None => panic!(
                "kubectl {} showed {lines} lines of its watch in {ns}, never the object: {}",
                self.minor,
                String::from_utf8_lossy(&output.stderr)
            ),
        }
    }
}

/// The administrator changes app-config in `ns`, directly.
fn change_app_config(plane: &ControlPlane, ns: &str) -> Result<(), String> {
    let bearer = format!("Bearer {}", ADMIN.token);
    let tls = Tls::trusting(plane.ca_pem()).map_err(|e| e.to_string())?;
    let reply = http::request(
        plane.addr(),
        Some(&tls),
        "PATCH",
        &format!("/api/v1/namespaces/{ns}/configmaps/app-config"),
        &[
            ("authorization", bearer.as_str()),
            ("content-type", "application/merge-patch+json"),
        ],
        br#"{"data":{"greeting":"watched"}}"#,
    )
    .map_err(|e| e.to_string())?;
    if reply.status == 200 {
        Ok(())
    } else {
        Err(format!("{} {}", reply.status, reply.text()))
    }
}

/// Splits a step into arguments at spaces (no step's argument holds one).
fn split_args(step: &str) -> Vec<String> {
    step.split(' ').map(str::to_owned).collect()
}

/// What a run's output is compared as.
fn normalised(output: &Output, compare: Compare, ns: &str) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).replace(ns, "{ns}");
    // A time the server stamps as it answers (a SelfSubjectReview's creation) can fall on either
    // side of a second boundary between the two runs: compare everything else.
    let stdout = stdout
        .lines()
        .map(|line| match line.split_once("\"creationTimestamp\": \"") {
            Some((head, _)) => format!("{head}\"creationTimestamp\": \"{{time}}\","),
            None => line.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    match compare {
        Compare::Status => String::new(),
        Compare::Stdout => stdout,
        Compare::DiffLines => stdout
            .lines()
            .filter(|l| {
                (l.starts_with('+') || l.starts_with('-'))
                    && !l.starts_with("+++")
                    && !l.starts_with("---")
            })
            .collect::<Vec<_>>()
            .join("\n"),
    }
}

/// One command's outcome both ways.
struct Row {
    minor: &'static str,
    command: String,
    direct: Option<i32>,
    proxy: Option<i32>,
    problem: Option<String>,
}

fn compare_runs(
    runs: &Runs,
    label: &str,
    compare: Compare,
    expect: Expect,
    direct: &Output,
    proxy: &Output,
) -> Row {
    let mut problems = Vec::new();
    if direct.status.success() != proxy.status.success()
        || direct.status.code() != proxy.status.code()
    {
        problems.push(format!(
            "exit status {:?} directly, {:?} through the proxy",
            direct.status.code(),
            proxy.status.code()
        ));
    }
    let expect_success = expect.success(runs.minor);
    if direct.status.success() != expect_success {
        problems.push(format!(
            "expected {} directly, got exit status {:?}",
            if expect_success { "success" } else { "failure" },
            direct.status.code()
        ));
    }
    let d = normalised(direct, compare, &runs.namespace(Way::Direct));
    let p = normalised(proxy, compare, &runs.namespace(Way::Proxy));
    if d != p {
        problems.push(format!(
            "stdout differs:\n--- directly\n{d}\n--- through the proxy\n{p}"
        ));
    }
    let problem = (!problems.is_empty()).then(|| {
        format!(
            "{}\n--- stderr directly\n{}--- stderr through the proxy\n{}",
            problems.join("\n"),
            String::from_utf8_lossy(&direct.stderr),
            String::from_utf8_lossy(&proxy.stderr)
        )
    });
    Row {
        minor: runs.minor,
        command: label.to_owned(),
        direct: direct.status.code(),
        proxy: proxy.status.code(),
        problem,
    }
}

fn caller_name(minor: &str) -> String {
    format!("kubectl-{}", minor.replace('.', "-"))
}

fn login(minor: &str) -> String {
    format!("{}@example.com", caller_name(minor))
}

/// The role, its binding to [`GROUP`], a namespace per run and fixture configmaps in three.
fn set_up(plane: &ControlPlane, namespaces: &[String]) {
    rbac::cluster_role(
        plane,
        ROLE,
        &[
            rbac::rule(
                "",
                &[
                    "configmaps",
                    "services",
                    "pods",
                    "events",
                    "serviceaccounts",
                ],
                &["*"],
            ),
            rbac::rule("", &["serviceaccounts/token"], &["create"]),
            rbac::rule("apps", &["deployments", "deployments/scale"], &["*"]),
            rbac::rule("", &["namespaces"], &["get", "list", "watch"]),
        ],
    )
    .unwrap();
    rbac::cluster_role_binding(plane, ROLE, ROLE, &[rbac::group(GROUP)]).unwrap();
    for ns in namespaces {
        rbac::namespace(plane, ns).unwrap();
    }
    for ns in ["default", "kube-public", "kube-system"] {
        plane
            .create(
                &format!("/api/v1/namespaces/{ns}/configmaps"),
                &json!({"apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": {"name": "fixture", "labels": {"fixture": "kubectl"}},
                        "data": {"k": "v"}}),
            )
            .unwrap();
    }
}

fn write_manifests(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    for (name, text) in [
        ("configmap.yaml", CONFIGMAP),
        ("configmap-changed.yaml", CONFIGMAP_CHANGED),
        ("deployment.yaml", DEPLOYMENT),
        ("deployment-scaled.yaml", DEPLOYMENT_SCALED),
        ("service.yaml", SERVICE),
    ] {
        std::fs::write(dir.join(name), text).unwrap();
    }
}

#[test]
fn every_kubectl_command_works_through_the_proxy_as_it_does_directly() {
    let kubectls: Vec<(&'static str, PathBuf)> = KUBECTL_VERSIONS
        .iter()
        .map(|minor| {
            let path = peers::kubectl_version(minor).unwrap_or_else(|e| panic!("{e}"));
            (*minor, path)
        })
        .collect();

    let mut options = StackOptions::new(UpstreamKind::ApiServer, Storage::Disk).unwrap();
    let recorder = options.recorder_addrs();
    for (i, (minor, _)) in kubectls.iter().enumerate() {
        let address = IpAddr::V4(Ipv4Addr::new(100, 64, 1, 1 + i as u8));
        let grants = vec![json!({
            "recorderAddrs": recorder,
            "enforceRecorder": true,
            "enableEvents": true,
            "impersonate": {"groups": [GROUP]}
        })];
        options = options.caller(
            &caller_name(minor),
            TestIdentity::user(
                &caller_name(minor),
                &login(minor),
                5000 + i as i64,
                address,
                grants,
            ),
        );
    }
    let stack =
        Stack::start_with_options(options).unwrap_or_else(|e| panic!("starting the system: {e}"));
    let plane = stack.upstream.control_plane().expect("the real API server");
    let manifests = stack.dir.path().join("manifests");
    write_manifests(&manifests);

    let all_runs: Vec<Runs> = kubectls
        .iter()
        .map(|(minor, kubectl)| Runs {
            kubectl: kubectl.clone(),
            minor,
            user: login(minor),
            stack: &stack,
            caller_kubeconfig: stack
                .caller(&caller_name(minor))
                .unwrap()
                .kubeconfig
                .clone(),
            manifests: manifests.clone(),
        })
        .collect();
    let namespaces: Vec<String> = all_runs
        .iter()
        .flat_map(|r| [r.namespace(Way::Direct), r.namespace(Way::Proxy)])
        .collect();
    set_up(plane, &namespaces);

    let mut rows = Vec::new();
    for runs in &all_runs {
        for step in STEPS {
            if step.args == WATCH {
                let direct = runs.watch(Way::Direct);
                let proxy = runs.watch(Way::Proxy);
                let mut row = compare_runs(runs, WATCH, step.compare, step.expect, &direct, &proxy);
                // A header, the object as listed, the object as changed.
                let lines = String::from_utf8_lossy(&proxy.stdout).lines().count();
                if row.problem.is_none() && lines != 3 {
                    row.problem = Some(format!(
                        "{lines} lines, want 3 (header, listed, changed):\n{}",
                        String::from_utf8_lossy(&proxy.stdout)
                    ));
                }
                rows.push(row);
                continue;
            }
            let direct = runs.run(&runs.args(step.args, Way::Direct), Way::Direct);
            let proxy = runs.run(&runs.args(step.args, Way::Proxy), Way::Proxy);
            rows.push(compare_runs(
                runs,
                step.args,
                step.compare,
                step.expect,
                &direct,
                &proxy,
            ));
        }
    }

    // Every request each kubectl sent through the proxy has its event.
    let mut accounting = Vec::new();
    for runs in &all_runs {
        let got = received::through_proxy(
            &stack,
            &runs.user,
            &format!("user={}", runs.user.replace('@', "%40")),
            Duration::from_secs(20),
        )
        .unwrap();
        accounting.push((runs.minor, got));
    }

    println!("\nkubectl through the proxy against directly (exit status direct/proxy):");
    for row in &rows {
        println!(
            "  {:5} {:>4}/{:<4} {:4} {}",
            row.minor,
            row.direct.map_or("-".into(), |c| c.to_string()),
            row.proxy.map_or("-".into(), |c| c.to_string()),
            if row.problem.is_some() { "FAIL" } else { "ok" },
            row.command
        );
    }
    for (minor, got) in &accounting {
        println!("  kubectl {minor}: {got}");
    }
    let failures: Vec<String> = rows
        .iter()
        .filter_map(|row| {
            row.problem
                .as_ref()
                .map(|p| format!("kubectl {} {}: {p}", row.minor, row.command))
        })
        .chain(
            accounting
                .iter()
                .filter(|(_, got)| !got.matches() || got.audited == 0)
                .map(|(minor, got)| format!("kubectl {minor}: requests and events differ: {got}")),
        )
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} checks failed (logs in {}):\n\n{}",
        failures.len(),
        rows.len() + accounting.len(),
        stack.dir.path().display(),
        failures.join("\n\n")
    );
}
