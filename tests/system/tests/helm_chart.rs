//! The Helm chart `charts/kubescribe`, checked with the real Helm (v4.3.2, built from
//! `helm.sh/helm/v4`) and the real kube-apiserver:
//!
//! * `helm lint --strict` passes;
//! * `helm template` over a matrix of values (disk and S3 storage, auth and noauth mode, TLS and
//!   the tailscaled sidecar, 1 to 3 proxy replicas, the UI on and off, the ServiceMonitor on and
//!   off) renders what the values ask for, with the secure defaults on every container and only
//!   args and environment variables the binaries accept (each binary parses the rendered args
//!   before its `--help`); kube-apiserver accepts every rendering with server-side apply (its
//!   validation is the schema check); each is then deleted;
//! * RBAC, asked with `kubectl auth can-i --as=system:serviceaccount:…`: in auth mode the proxy's
//!   ServiceAccount may impersonate users, groups and serviceaccounts and may do nothing else (its
//!   `--list` is a ServiceAccount's baseline plus exactly that rule); in noauth mode it may not
//!   impersonate; the recorder's ServiceAccount can do nothing beyond the baseline;
//! * as a stand-in for a kubelet, the recorder of each disk rendering and the proxy of each TLS
//!   rendering start on this machine with the rendered args and environment (the proxy with its
//!   ServiceAccount's TokenRequest token in a kubeconfig) until their own readiness probe answers;
//! * the `helm install` walkthroughs of docs/deploy.md, command for command (the Secrets, then
//!   the install in auth mode, in noauth mode, and on a tailnet with S3), each release's objects
//!   and RBAC checked, then `helm uninstall`;
//! * bad values (a string replica count, an unknown key, a mode outside the enum, S3 without a
//!   bucket) make `helm template` fail with an error naming the field.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use kubescribe_system_tests::flags::assert_real_flags;
use kubescribe_system_tests::kubectl::Kubectl;
use kubescribe_system_tests::rbac;
use kubescribe_system_tests::run::{expect_success, output_text, wait_until, with_deadline};
use serde_json::{json, Value};
use test_support::apiserver::ControlPlane;
use test_support::peers;
use test_support::process::workspace_bin;

/// How long one helm or kubectl run may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

fn chart_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../charts/kubescribe")
}

fn helm(args: &[&str]) -> Output {
    let helm = peers::helm().unwrap_or_else(|e| panic!("{e}"));
    let scratch = tempfile::tempdir().expect("a scratch directory for helm's caches");
    with_deadline(
        Command::new(helm)
            .args(args)
            // No user configuration, cache or repositories of this machine.
            .env("HELM_CACHE_HOME", scratch.path().join("cache"))
            .env("HELM_CONFIG_HOME", scratch.path().join("config"))
            .env("HELM_DATA_HOME", scratch.path().join("data")),
        COMMAND_TIMEOUT,
    )
    .expect("helm runs")
}

/// Where docs/deploy.md installs: release `kubescribe` in namespace `kubescribe`.
const DOCUMENTED_NAMESPACE: &str = "kubescribe";

/// The Secrets docs/deploy.md creates, as it creates them (`kubectl -n kubescribe create secret
/// …`), in a directory holding its files (proxy.crt, proxy.key, identities.yaml, signing.key).
const DOCUMENTED_SECRETS: &[&[&str]] = &[
    &[
        "tls",
        "kubescribe-proxy-tls",
        "--cert=proxy.crt",
        "--key=proxy.key",
    ],
    &[
        "generic",
        "kubescribe-identities",
        "--from-file=identities.yaml",
    ],
    &[
        "generic",
        "kubescribe-signing-key",
        "--from-file=signing.key",
    ],
    &[
        "generic",
        "kubescribe-recorder-identities",
        "--from-file=identities.yaml",
    ],
    &[
        "generic",
        "kubescribe-tailscale-auth",
        "--from-literal=authkey=tskey-auth-test",
    ],
    &[
        "generic",
        "kubescribe-s3",
        "--from-literal=AWS_ACCESS_KEY_ID=test",
        "--from-literal=AWS_SECRET_ACCESS_KEY=test",
    ],
];

/// The installs of docs/deploy.md, as its `helm install` lines set them (after
/// `helm install kubescribe charts/kubescribe --namespace kubescribe`), and whether each is auth
/// mode.
const DOCUMENTED_INSTALLS: &[(&[&str], bool)] = &[
    (&[], true),
    (&["proxy.mode=noauth"], false),
    (
        &[
            "proxy.listener=tailscale",
            "proxy.tailscale.extraArgs=--advertise-tags=tag:k8s-proxy",
            "recorder.storage=s3",
            "recorder.s3.endpoint=s3.eu-west-1.amazonaws.com",
            "recorder.s3.region=eu-west-1",
            "recorder.s3.bucket=audit",
            "recorder.ui=true",
        ],
        true,
    ),
];

/// `helm template` of the chart as release `release` in `namespace` with `--set` values.
fn helm_template(release: &str, namespace: &str, sets: &[&str]) -> Output {
    let chart = chart_dir();
    let mut args = vec![
        "template",
        release,
        chart.to_str().expect("a UTF-8 path"),
        "--namespace",
        namespace,
    ];
    for set in sets {
        args.extend(["--set", set]);
    }
    helm(&args)
}

/// The RBAC questions this test asks kubectl.
trait RbacChecks {
    fn can_i(&self, account: &ServiceAccountName, verb: &str, resource: &str) -> bool;
    fn rules(&self, account: &ServiceAccountName, namespace: &str) -> Vec<String>;
}

impl RbacChecks for Kubectl {
    /// `kubectl auth can-i VERB RESOURCE --as=system:serviceaccount:NS:SA` (across all
    /// namespaces): `true` for yes, `false` for no, a panic for anything else.
    fn can_i(&self, account: &ServiceAccountName, verb: &str, resource: &str) -> bool {
        let output = self.run(&[
            "auth",
            "can-i",
            verb,
            resource,
            "--all-namespaces",
            &account.as_user(),
        ]);
        match String::from_utf8_lossy(&output.stdout).trim() {
            "yes" => true,
            "no" => false,
            _ => panic!(
                "kubectl auth can-i {verb} {resource} as {}: {}",
                account.as_user(),
                output_text(&output)
            ),
        }
    }

    /// `kubectl auth can-i --list` as the account in `namespace`: its rules, one per line,
    /// sorted, the header left out.
    fn rules(&self, account: &ServiceAccountName, namespace: &str) -> Vec<String> {
        let output = expect_success(
            self.run(&[
                "auth",
                "can-i",
                "--list",
                "--namespace",
                namespace,
                &account.as_user(),
            ]),
            "kubectl auth can-i --list",
        );
        let mut rules: Vec<String> = String::from_utf8_lossy(&output.stdout)
            .lines()
            .skip(1)
            .map(|line| line.split_whitespace().collect::<Vec<_>>().join(" "))
            .filter(|line| !line.is_empty())
            .collect();
        rules.sort();
        rules
    }
}

/// A ServiceAccount, as `--as` names it.
struct ServiceAccountName {
    namespace: String,
    name: String,
}

impl ServiceAccountName {
    fn as_user(&self) -> String {
        format!(
            "--as=system:serviceaccount:{}:{}",
            self.namespace, self.name
        )
    }
}

/// One rendering of the matrix: the values set and what they must produce.
struct Case {
    /// The release name (and, with a prefix, its namespace).
    release: &'static str,
    sets: &'static [&'static str],
    auth: bool,
    tailscale: bool,
    proxy_replicas: i64,
    s3: bool,
    /// Recorder pods (several only on S3, sharing the bucket).
    recorder_replicas: i64,
    ui: bool,
    service_monitor: bool,
    /// The proxy's spool on a PersistentVolumeClaim per replica (a StatefulSet), not an emptyDir.
    persistent_spool: bool,
}

impl Case {
    /// The kind of the proxy's workload.
    fn proxy_kind(&self) -> &'static str {
        if self.persistent_spool {
            "StatefulSet"
        } else {
            "Deployment"
        }
    }
}

/// Each value of the matrix appears at least once: storage disk/s3, mode auth/noauth, listener
/// tls/tailscale, replicas 1/2 (default)/3, UI on/off, ServiceMonitor on/off, an audit policy,
/// optional token Secrets, unsigned, the proxy's spool in an emptyDir or on a PVC per replica.
const CASES: &[Case] = &[
    Case {
        release: "defaults",
        sets: &[],
        auth: true,
        tailscale: false,
        proxy_replicas: 2,
        s3: false,
        recorder_replicas: 1,
        ui: false,
        service_monitor: false,
        persistent_spool: false,
    },
    Case {
        release: "s3-noauth-tailscale",
        sets: &[
            "recorder.storage=s3",
            "recorder.s3.endpoint=seaweed.storage.svc:8333",
            "recorder.s3.bucket=audit",
            "recorder.s3.allowHttp=true",
            "proxy.mode=noauth",
            "proxy.listener=tailscale",
            "proxy.tailscale.extraArgs=--advertise-tags=tag:k8s-proxy",
            "proxy.replicas=3",
            "recorder.ui=true",
            "recorder.serviceMonitor.enabled=true",
            "recorder.replicas=2",
        ],
        auth: false,
        tailscale: true,
        proxy_replicas: 3,
        s3: true,
        recorder_replicas: 2,
        ui: true,
        service_monitor: true,
        persistent_spool: false,
    },
    Case {
        release: "disk-auth-tailscale",
        sets: &[
            "proxy.listener=tailscale",
            "proxy.replicas=1",
            "recorder.ui=true",
            "imagePullSecrets[0].name=registry",
            "proxy.auditPolicy=apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Metadata",
        ],
        auth: true,
        tailscale: true,
        proxy_replicas: 1,
        s3: false,
        recorder_replicas: 1,
        ui: true,
        service_monitor: false,
        persistent_spool: false,
    },
    Case {
        release: "s3-auth-tls",
        sets: &[
            "recorder.storage=s3",
            "recorder.s3.bucket=audit",
            "recorder.s3.batch.enabled=true",
            "recorder.s3.batch.maxAge=10s",
            "recorder.unsigned=true",
            "recorder.insecureAllowAnyUploader=true",
            "recorder.readTokenSecret.name=reader-token",
            "recorder.uploadTokenSecret.name=uploader-token",
            "proxy.replicas=1",
            "proxy.podDisruptionBudget.enabled=false",
        ],
        auth: true,
        tailscale: false,
        proxy_replicas: 1,
        s3: true,
        recorder_replicas: 1,
        ui: false,
        service_monitor: false,
        persistent_spool: false,
    },
    Case {
        release: "disk-noauth-tls",
        sets: &[
            "proxy.mode=noauth",
            "proxy.replicas=3",
            "proxy.topologySpread.enabled=false",
            "proxy.tolerations[0].key=dedicated",
            "proxy.tolerations[0].operator=Exists",
            "recorder.nodeSelector.disktype=ssd",
            "recorder.serviceMonitor.enabled=true",
            "proxy.spool.persistent.enabled=true",
            "proxy.spool.persistent.size=2Gi",
            "proxy.spool.persistent.storageClassName=fast",
        ],
        auth: false,
        tailscale: false,
        proxy_replicas: 3,
        s3: false,
        recorder_replicas: 1,
        ui: false,
        service_monitor: true,
        persistent_spool: true,
    },
];

/// A minimal ServiceMonitor CRD (the Prometheus Operator's group, kind and version; any fields),
/// so that renderings with the ServiceMonitor on can be applied.
fn service_monitor_crd() -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "servicemonitors.monitoring.coreos.com"},
        "spec": {
            "group": "monitoring.coreos.com",
            "scope": "Namespaced",
            "names": {"plural": "servicemonitors", "singular": "servicemonitor", "kind": "ServiceMonitor", "listKind": "ServiceMonitorList"},
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}
            }]
        }
    })
}

/// The objects of `kind` in an applied list.
fn of_kind<'a>(objects: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objects.iter().filter(|o| o["kind"] == kind).collect()
}

/// The one object of `kind` whose name ends with `suffix`.
fn named<'a>(objects: &'a [Value], kind: &str, suffix: &str) -> &'a Value {
    let found: Vec<_> = of_kind(objects, kind)
        .into_iter()
        .filter(|o| {
            o["metadata"]["name"]
                .as_str()
                .is_some_and(|n| n.ends_with(suffix))
        })
        .collect();
    assert_eq!(found.len(), 1, "one {kind} named *{suffix}: {found:?}");
    found[0]
}

/// The secure defaults every container of `pod_spec` must have.
fn assert_secure(pod_spec: &Value, what: &str) {
    let pod = &pod_spec["securityContext"];
    assert_eq!(pod["runAsNonRoot"], true, "{what}: pod runAsNonRoot");
    assert_eq!(pod["runAsUser"], 65532, "{what}: pod runAsUser");
    assert_eq!(
        pod["seccompProfile"]["type"], "RuntimeDefault",
        "{what}: pod seccomp"
    );
    let containers = pod_spec["containers"].as_array().expect("containers");
    for container in containers {
        let name = &container["name"];
        let context = &container["securityContext"];
        assert_eq!(context["runAsNonRoot"], true, "{what}/{name}: runAsNonRoot");
        assert_eq!(context["runAsUser"], 65532, "{what}/{name}: runAsUser");
        assert_eq!(
            context["allowPrivilegeEscalation"], false,
            "{what}/{name}: escalation"
        );
        assert_eq!(
            context["readOnlyRootFilesystem"], true,
            "{what}/{name}: read-only root"
        );
        assert_eq!(
            context["capabilities"]["drop"],
            json!(["ALL"]),
            "{what}/{name}: capabilities"
        );
        assert_eq!(
            context["seccompProfile"]["type"], "RuntimeDefault",
            "{what}/{name}: seccomp"
        );
        for bound in ["requests", "limits"] {
            for resource in ["cpu", "memory"] {
                assert!(
                    container["resources"][bound][resource].is_string(),
                    "{what}/{name}: resources.{bound}.{resource}"
                );
            }
        }
    }
}

/// The strings of a JSON array (`args`), panicking naming `what` when it is none.
fn strings<'a>(array: &'a Value, what: &str) -> Vec<&'a str> {
    array
        .as_array()
        .unwrap_or_else(|| panic!("{what}: not an array: {array}"))
        .iter()
        .filter_map(Value::as_str)
        .collect()
}

/// The `name` of each object of a JSON array (containers, env), panicking naming `what` when it
/// is none.
fn names<'a>(array: &'a Value, what: &str) -> Vec<&'a str> {
    array
        .as_array()
        .unwrap_or_else(|| panic!("{what}: not an array: {array}"))
        .iter()
        .filter_map(|item| item["name"].as_str())
        .collect()
}

/// The object named `name` in a JSON array (a volume, an env variable); panics when there is none.
fn named_item<'a>(array: &'a Value, name: &str) -> &'a Value {
    array
        .as_array()
        .and_then(|items| items.iter().find(|item| item["name"] == name))
        .unwrap_or_else(|| panic!("no {name} in {array}"))
}

/// The pod's first container, the one running `binary`, and its args, after checking the pod's
/// secure defaults and that the container uses only `binary`'s real flags and env names.
fn product_container<'a>(
    pod_spec: &'a Value,
    binary: &str,
    what: &str,
) -> (&'a Value, Vec<&'a str>) {
    assert_secure(pod_spec, what);
    let container = &pod_spec["containers"][0];
    assert_eq!(
        container["image"].as_str().map(|i| i.contains(binary)),
        Some(true),
        "{what}: {binary}'s image"
    );
    assert_real_flags(container, binary, what);
    (container, strings(&container["args"], "args"))
}

/// What the applied objects of `case` must be, as kube-apiserver stored them.
fn check_rendering(case: &Case, objects: &[Value]) {
    let what = case.release;
    let proxy = named(objects, case.proxy_kind(), "-proxy");
    assert_eq!(
        proxy["spec"]["replicas"], case.proxy_replicas,
        "{what}: proxy replicas"
    );
    let proxy_pod = &proxy["spec"]["template"]["spec"];
    let (proxy_container, args) = product_container(proxy_pod, "kubescribe-proxy", what);
    let containers = names(&proxy_pod["containers"], "proxy containers");
    let expected: &[&str] = if case.tailscale {
        &["proxy", "tailscale"]
    } else {
        &["proxy"]
    };
    assert_eq!(containers, expected, "{what}: proxy containers");
    assert_eq!(
        args.contains(&"--proxy-protocol"),
        case.tailscale,
        "{what}: --proxy-protocol behind tailscale serve only: {args:?}"
    );
    assert_eq!(
        args.iter().any(|a| a.starts_with("--tls-cert=")),
        !case.tailscale,
        "{what}: TLS by the proxy without the sidecar: {args:?}"
    );
    let mode = &named_item(&proxy_container["env"], "APISERVER_PROXY")["value"];
    let expected_mode = if case.auth { "true" } else { "noauth" };
    assert_eq!(mode, expected_mode, "{what}: APISERVER_PROXY");
    if case.persistent_spool {
        assert!(
            proxy_pod["volumes"]
                .as_array()
                .is_some_and(|v| v.iter().all(|v| v["name"] != "state")),
            "{what}: no emptyDir spool beside the claim"
        );
        let claim = proxy["spec"]["volumeClaimTemplates"]
            .as_array()
            .and_then(|claims| claims.iter().find(|c| c["metadata"]["name"] == "state"))
            .unwrap_or_else(|| panic!("{what}: no claim named state: {proxy}"));
        assert_eq!(
            (
                &claim["spec"]["resources"]["requests"]["storage"],
                &claim["spec"]["storageClassName"]
            ),
            (&json!("2Gi"), &json!("fast")),
            "{what}: the spool's claim: {claim}"
        );
        assert_eq!(
            proxy["spec"]["podManagementPolicy"], "Parallel",
            "{what}: replicas start together"
        );
    } else {
        let spool = named_item(&proxy_pod["volumes"], "state");
        assert!(
            spool["emptyDir"]["sizeLimit"].is_string(),
            "{what}: sized spool: {spool}"
        );
    }
    let other_proxy_kind = if case.persistent_spool {
        "Deployment"
    } else {
        "StatefulSet"
    };
    assert!(
        of_kind(objects, other_proxy_kind)
            .iter()
            .all(|o| !o["metadata"]["name"]
                .as_str()
                .unwrap_or("")
                .ends_with("-proxy")),
        "{what}: the proxy is a {} only",
        case.proxy_kind()
    );

    let cluster_roles = of_kind(objects, "ClusterRole");
    let bindings = of_kind(objects, "ClusterRoleBinding");
    if case.auth {
        assert_eq!(cluster_roles.len(), 1, "{what}: one ClusterRole");
        assert_eq!(bindings.len(), 1, "{what}: one ClusterRoleBinding");
        assert_eq!(
            cluster_roles[0]["rules"],
            json!([{"apiGroups": [""], "resources": ["users", "groups", "serviceaccounts"], "verbs": ["impersonate"]}]),
            "{what}: the ClusterRole only impersonates"
        );
    } else {
        assert!(
            cluster_roles.is_empty() && bindings.is_empty(),
            "{what}: no RBAC in noauth mode"
        );
    }
    let spread_expected = !case.sets.contains(&"proxy.topologySpread.enabled=false");
    assert_eq!(
        proxy_pod["topologySpreadConstraints"][0]["labelSelector"]["matchLabels"]
            ["app.kubernetes.io/component"]
            == "proxy",
        spread_expected,
        "{what}: topology spread of the proxy's replicas"
    );
    let disruption_budgets = of_kind(objects, "PodDisruptionBudget").len();
    let pdb_expected = !case
        .sets
        .contains(&"proxy.podDisruptionBudget.enabled=false");
    assert_eq!(
        disruption_budgets,
        usize::from(pdb_expected),
        "{what}: PodDisruptionBudget"
    );

    let batched = case.sets.contains(&"recorder.s3.batch.enabled=true");
    let (recorder_kind, other_kind) = if case.s3 && !batched {
        ("Deployment", "StatefulSet")
    } else {
        ("StatefulSet", "Deployment")
    };
    let recorder = named(objects, recorder_kind, "-recorder");
    assert!(
        of_kind(objects, other_kind)
            .iter()
            .all(|o| !o["metadata"]["name"]
                .as_str()
                .unwrap_or("")
                .ends_with("-recorder")),
        "{what}: the recorder is a {recorder_kind} only"
    );
    assert_eq!(
        recorder["spec"]["replicas"], case.recorder_replicas,
        "{what}: recorder replicas"
    );
    let recorder_pod = &recorder["spec"]["template"]["spec"];
    let (recorder_container, recorder_args) =
        product_container(recorder_pod, "kubescribe-recorder", what);
    assert_eq!(
        recorder_pod["automountServiceAccountToken"], false,
        "{what}: recorder token"
    );
    assert_eq!(
        recorder_args.contains(&"--ui"),
        case.ui,
        "{what}: --ui: {recorder_args:?}"
    );
    let any_uploader = case
        .sets
        .contains(&"recorder.insecureAllowAnyUploader=true");
    assert_eq!(
        (
            recorder_args.contains(&"--insecure-allow-any-uploader"),
            recorder_args
                .iter()
                .any(|a| a.starts_with("--identity-file=")),
        ),
        (any_uploader, !any_uploader),
        "{what}: the recorder can tell who uploads: {recorder_args:?}"
    );
    let env = names(&recorder_container["env"], "recorder env");
    if case.s3 {
        for name in [
            "TSRECORDER_DST",
            "TSRECORDER_BUCKET",
            "AWS_REGION",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
        ] {
            assert!(env.contains(&name), "{what}: recorder env {name}: {env:?}");
        }
        assert!(
            env.contains(&"KUBESCRIBE_REPLICA_NAME"),
            "{what}: each replica named on the bucket: {env:?}"
        );
        assert_ne!(
            recorder["spec"]["strategy"]["type"], "Recreate",
            "{what}: replicas share the bucket, a rollout may overlap"
        );
        if batched {
            assert!(
                recorder_args.contains(&"--s3-batch-dir=/var/lib/kubescribe-recorder/log")
                    && recorder_args.contains(&"--s3-batch-max-age=10s"),
                "{what}: the batched mode's log on the replica's own volume: {recorder_args:?}"
            );
            assert_eq!(
                recorder["spec"]["volumeClaimTemplates"][0]["metadata"]["name"], "data",
                "{what}: a log volume per replica"
            );
        }
    } else {
        let claims = &recorder["spec"]["volumeClaimTemplates"];
        assert_eq!(
            claims[0]["metadata"]["name"], "data",
            "{what}: the recorder's PVC: {claims}"
        );
    }
    assert_eq!(
        of_kind(objects, "ServiceMonitor").len(),
        usize::from(case.service_monitor),
        "{what}: ServiceMonitor"
    );
}

#[test]
fn the_chart_lints_renders_applies_and_grants_least_privilege() {
    let chart = chart_dir();
    let lint = helm(&["lint", "--strict", chart.to_str().expect("a UTF-8 path")]);
    assert!(
        lint.status.success(),
        "helm lint --strict: {}",
        output_text(&lint)
    );
    assert!(
        output_text(&lint).contains("0 chart(s) failed"),
        "helm lint --strict: {}",
        output_text(&lint)
    );

    check_bad_values();

    let plane = ControlPlane::start().unwrap_or_else(|e| panic!("{e}"));
    let kubectl = Kubectl::new(&plane);
    plane
        .create(
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
            &service_monitor_crd(),
        )
        .expect("the ServiceMonitor CRD");
    expect_success(
        kubectl.run(&[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/servicemonitors.monitoring.coreos.com",
        ]),
        "the ServiceMonitor CRD established",
    );
    let scratch = tempfile::tempdir().expect("a scratch directory");
    let secret_files = scratch.path().join("secret-files");
    write_secret_files(&plane, &secret_files);

    for case in CASES {
        let namespace = format!("chart-{}", case.release);
        rbac::namespace(&plane, &namespace).expect("the case's namespace");
        let rendered = helm_template(case.release, &namespace, case.sets);
        assert!(
            rendered.status.success(),
            "helm template {}: {}",
            case.release,
            output_text(&rendered)
        );
        let manifest = scratch.path().join(format!("{}.yaml", case.release));
        std::fs::write(&manifest, &rendered.stdout).expect("writing the rendering");
        let manifest = manifest.to_str().expect("a UTF-8 path");

        let applied = expect_success(
            kubectl.run(&[
                "apply",
                "--server-side",
                "--field-manager=helm-chart-test",
                "-o",
                "json",
                "-f",
                manifest,
            ]),
            &format!("server-side apply of {}", case.release),
        );
        let applied: Value =
            serde_json::from_slice(&applied.stdout).expect("kubectl apply -o json prints JSON");
        let objects = match applied["kind"].as_str() {
            Some("List") => applied["items"].as_array().expect("items").clone(),
            _ => vec![applied],
        };
        check_rendering(case, &objects);
        if !case.s3 {
            let recorder = named(&objects, "StatefulSet", "-recorder");
            start_as_rendered(
                &recorder["spec"]["template"]["spec"],
                "kubescribe-recorder",
                &[],
                &secret_files,
                scratch.path(),
                case.release,
            );
        }

        let proxy_account = ServiceAccountName {
            namespace: namespace.clone(),
            name: format!("{}-kubescribe-proxy", case.release),
        };
        let recorder_account = ServiceAccountName {
            namespace: namespace.clone(),
            name: format!("{}-kubescribe-recorder", case.release),
        };
        check_rbac(&kubectl, case, &proxy_account, &recorder_account);
        if !case.tailscale {
            // No in-cluster environment here: the proxy gets its ServiceAccount's token
            // (TokenRequest) and the API server in a kubeconfig instead.
            let kubeconfig =
                service_account_kubeconfig(&plane, &kubectl, &proxy_account, scratch.path());
            start_as_rendered(
                &named(&objects, case.proxy_kind(), "-proxy")["spec"]["template"]["spec"],
                "kubescribe-proxy",
                &[format!("--kubeconfig={}", kubeconfig.display())],
                &secret_files,
                scratch.path(),
                case.release,
            );
        }

        expect_success(
            kubectl.run(&["delete", "--wait=true", "-f", manifest]),
            &format!("deleting {}", case.release),
        );
        if case.auth {
            wait_until(
                "the proxy's impersonation is gone with the release",
                Duration::from_secs(30),
                || !kubectl.can_i(&proxy_account, "impersonate", "users"),
            );
        }
    }

    install_as_documented(&kubectl, &secret_files);
}

/// An identity file that names loopback callers as a node tagged `tag:k8s-proxy`.
const IDENTITY_FILE: &str = "\
entries:
  - name: proxies
    sources: [\"127.0.0.0/8\"]
    Node: {Name: k8s-proxy, Tags: [\"tag:k8s-proxy\"]}
    UserProfile: {LoginName: tagged-devices}
";

/// Writes the files docs/deploy.md makes its Secrets of into `files`: proxy.crt and proxy.key
/// (also as tls.crt and tls.key, the TLS Secret's keys), identities.yaml, and signing.key (with `kubescribe-recorder keygen`, as documented).
fn write_secret_files(plane: &ControlPlane, files: &Path) {
    std::fs::create_dir_all(files).expect("a directory for the documented files");
    let proxy_pair = plane
        .client_certificate("kubescribe-proxy", &[])
        .expect("a certificate for the TLS Secret");
    // Under the names `kubectl create secret tls` takes them, and under the TLS Secret's keys.
    for (name, pem) in [
        ("proxy.crt", &proxy_pair.cert_pem),
        ("proxy.key", &proxy_pair.key_pem),
        ("tls.crt", &proxy_pair.cert_pem),
        ("tls.key", &proxy_pair.key_pem),
    ] {
        std::fs::write(files.join(name), pem).expect("writing a TLS file");
    }
    std::fs::write(files.join("identities.yaml"), IDENTITY_FILE).expect("identities.yaml");
    let recorder = workspace_bin("kubescribe-recorder").unwrap_or_else(|e| panic!("{e}"));
    expect_success(
        with_deadline(
            Command::new(recorder)
                .current_dir(files)
                .args(["keygen", "signing.key"]),
            COMMAND_TIMEOUT,
        )
        .expect("kubescribe-recorder keygen runs"),
        "kubescribe-recorder keygen signing.key",
    );
}

/// A kubeconfig that reaches the API server with a token of `account` from the TokenRequest API
/// (`kubectl create token`), as a pod's projected token would.
fn service_account_kubeconfig(
    plane: &ControlPlane,
    kubectl: &Kubectl,
    account: &ServiceAccountName,
    scratch: &Path,
) -> PathBuf {
    let token = expect_success(
        kubectl.run(&["create", "token", &account.name, "-n", &account.namespace]),
        "kubectl create token",
    );
    let token = String::from_utf8_lossy(&token.stdout).trim().to_owned();
    let path = scratch.join(format!("{}-{}.kubeconfig", account.namespace, account.name));
    let kubeconfig = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "test", "cluster": {"server": plane.url(), "certificate-authority": plane.ca_path()}}],
        "users": [{"name": account.name, "user": {"token": token}}],
        "contexts": [{"name": "test", "context": {"cluster": "test", "user": account.name}}],
        "current-context": "test",
    });
    std::fs::write(&path, kubeconfig.to_string()).expect("writing the kubeconfig");
    path
}

/// Runs the pod's first container (the one running `binary`) on this machine as its rendering
/// says, with its args and environment, until its own readiness probe answers 200: each volume
/// is a directory (a Secret's holds every file of `secret_files`), each `0.0.0.0:PORT` a free
/// loopback port. Proves the rendered configuration starts, not only that it parses.
fn start_as_rendered(
    pod_spec: &Value,
    binary: &str,
    extra_args: &[String],
    secret_files: &Path,
    scratch: &Path,
    what: &str,
) {
    let container = &pod_spec["containers"][0];
    let root = scratch.join(format!("{what}-{binary}"));
    let mut mounts: Vec<(String, String)> = Vec::new();
    let mut ports_local: Vec<(String, String)> = Vec::new();
    for mount in container["volumeMounts"].as_array().expect("volumeMounts") {
        let volume = mount["name"].as_str().expect("a mount's volume");
        let dir = root.join(volume);
        std::fs::create_dir_all(&dir).expect("a volume's directory");
        // A volume not in the pod's list is a PersistentVolumeClaim's: an empty directory.
        let secret = pod_spec["volumes"]
            .as_array()
            .and_then(|volumes| volumes.iter().find(|v| v["name"] == volume))
            .is_some_and(|v| !v["secret"].is_null());
        if secret {
            for file in std::fs::read_dir(secret_files).expect("the Secret files") {
                let file = file.expect("a Secret file").path();
                std::fs::copy(&file, dir.join(file.file_name().expect("a name"))).expect("copying");
            }
        }
        let mount_path = mount["mountPath"].as_str().expect("a mountPath");
        mounts.push((mount_path.to_owned(), dir.display().to_string()));
    }
    let mut ports = std::collections::BTreeMap::new();
    for port in container["ports"].as_array().expect("ports") {
        let free = test_support::net::free_port().expect("a free port");
        let name = port["name"].as_str().expect("a port name").to_owned();
        let number = port["containerPort"].as_u64().expect("a containerPort");
        ports_local.push((format!("0.0.0.0:{number}"), format!("127.0.0.1:{free}")));
        ports.insert(name, free);
    }
    // The longest mount path a text names is its volume (only one: a replaced path must not be
    // replaced again), then the ports.
    mounts.sort_by_key(|(mount_path, _)| std::cmp::Reverse(mount_path.len()));
    let local = |text: &str| {
        let text = match mounts.iter().find(|(from, _)| text.contains(from.as_str())) {
            Some((from, to)) => text.replacen(from.as_str(), to, 1),
            None => text.to_owned(),
        };
        ports_local
            .iter()
            .fold(text, |text, (from, to)| text.replace(from.as_str(), to))
    };
    let args: Vec<String> = strings(&container["args"], "args")
        .into_iter()
        .map(local)
        .chain(extra_args.iter().cloned())
        .collect();
    let env: Vec<(String, String)> = container["env"]
        .as_array()
        .expect("env")
        .iter()
        .map(|variable| {
            let name = variable["name"].as_str().expect("an env name").to_owned();
            (
                name,
                local(variable["value"].as_str().unwrap_or("from-a-secret")),
            )
        })
        .collect();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let program = workspace_bin(binary).unwrap_or_else(|e| panic!("{e}"));
    let mut process = test_support::Spawned::start(binary, &program, &args, &env, &root)
        .unwrap_or_else(|e| panic!("{what}: starting {binary} as rendered: {e}"));
    let probe = &container["readinessProbe"]["httpGet"];
    let port = ports[probe["port"].as_str().expect("a named probe port")];
    let path = probe["path"].as_str().expect("a probe path");
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    process
        .wait_until(
            &format!("{binary} ready ({path} answers 200) with the rendered args {args:?}"),
            Duration::from_secs(30),
            Duration::from_millis(100),
            || test_support::http::get(addr, path).is_ok_and(|reply| reply.status == 200),
        )
        .unwrap_or_else(|e| panic!("{what}: {e}"));
}

/// docs/deploy.md, command for command: its Secrets, then each of its installs, checked and
/// uninstalled.
fn install_as_documented(kubectl: &Kubectl, files: &Path) {
    let ns = DOCUMENTED_NAMESPACE;
    let in_files = |args: &[&str]| {
        let output = with_deadline(
            kubectl.command().current_dir(files).args(args),
            COMMAND_TIMEOUT,
        )
        .expect("kubectl runs");
        expect_success(output, &format!("kubectl {}", args.join(" ")));
    };
    in_files(&["create", "namespace", ns]);
    for secret in DOCUMENTED_SECRETS {
        let mut args = vec!["-n", ns, "create", "secret"];
        args.extend_from_slice(secret);
        in_files(&args);
    }

    let chart = chart_dir();
    let kubeconfig = kubectl.kubeconfig().to_str().expect("a UTF-8 path");
    let proxy = ServiceAccountName {
        namespace: ns.into(),
        name: "kubescribe-proxy".into(),
    };
    for (sets, auth) in DOCUMENTED_INSTALLS {
        let mut args = vec![
            "install",
            "kubescribe",
            chart.to_str().expect("a UTF-8 path"),
            "--namespace",
            ns,
            "--kubeconfig",
            kubeconfig,
        ];
        for set in *sets {
            args.extend(["--set", set]);
        }
        let installed = helm(&args);
        let text = output_text(&installed);
        assert!(
            installed.status.success(),
            "helm install --set {sets:?}: {text}"
        );
        assert!(
            text.contains("STATUS: deployed"),
            "helm install --set {sets:?}: {text}"
        );
        assert_eq!(
            text.contains("ClusterRole kubescribe-proxy-impersonate"),
            *auth,
            "helm install --set {sets:?}: NOTES name the ClusterRole iff auth: {text}"
        );
        // Every Secret the release reads exists: the pods' references match the documented names.
        let secrets = expect_success(
            kubectl.run(&["-n", ns, "get", "deployment,statefulset", "-o", "json"]),
            "the release's workloads",
        );
        let workloads: Value = serde_json::from_slice(&secrets.stdout).expect("JSON workloads");
        let mut referenced = Vec::new();
        collect_secret_names(&workloads, &mut referenced);
        assert!(
            !referenced.is_empty(),
            "helm install --set {sets:?}: no Secret referenced"
        );
        for name in referenced {
            expect_success(
                kubectl.run(&["-n", ns, "get", "secret", &name]),
                &format!("helm install --set {sets:?}: the referenced Secret {name}"),
            );
        }
        assert_eq!(
            kubectl.can_i(&proxy, "impersonate", "users"),
            *auth,
            "helm install --set {sets:?}: the proxy impersonates iff auth mode"
        );
        let uninstalled = helm(&[
            "uninstall",
            "kubescribe",
            "--namespace",
            ns,
            "--kubeconfig",
            kubeconfig,
            "--wait",
        ]);
        assert!(
            uninstalled.status.success(),
            "helm uninstall: {}",
            output_text(&uninstalled)
        );
    }
}

/// Every Secret name a pod template refers to (volumes and `secretKeyRef`), anywhere in `value`.
fn collect_secret_names(value: &Value, names: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for key in ["secretName", "secretKeyRef"] {
                let name = match (key, map.get(key)) {
                    ("secretName", Some(Value::String(name))) => Some(name.clone()),
                    ("secretKeyRef", Some(reference)) => {
                        reference["name"].as_str().map(str::to_owned)
                    }
                    _ => None,
                };
                if let Some(name) = name.filter(|n| !names.contains(n)) {
                    names.push(name);
                }
            }
            map.values().for_each(|v| collect_secret_names(v, names));
        }
        Value::Array(items) => items.iter().for_each(|v| collect_secret_names(v, names)),
        _ => {}
    }
}

/// The proxy may impersonate (auth mode) and nothing else; the recorder nothing at all.
fn check_rbac(
    kubectl: &Kubectl,
    case: &Case,
    proxy: &ServiceAccountName,
    recorder: &ServiceAccountName,
) {
    let what = case.release;
    // The baseline: what any ServiceAccount of the namespace may do (discovery, self reviews).
    let stranger = ServiceAccountName {
        namespace: proxy.namespace.clone(),
        name: "no-such-account".into(),
    };
    let baseline = kubectl.rules(&stranger, &proxy.namespace);
    assert!(!baseline.is_empty(), "{what}: a baseline of rules");
    assert_eq!(
        kubectl.rules(recorder, &recorder.namespace),
        baseline,
        "{what}: the recorder's ServiceAccount may do nothing beyond the baseline"
    );

    for resource in ["users", "groups", "serviceaccounts"] {
        assert_eq!(
            kubectl.can_i(proxy, "impersonate", resource),
            case.auth,
            "{what}: proxy impersonates {resource} iff auth mode"
        );
    }
    for (verb, resource) in [
        ("get", "secrets"),
        ("list", "pods"),
        ("create", "pods"),
        ("list", "namespaces"),
        ("create", "tokenreviews"),
        ("create", "serviceaccounts/token"),
    ] {
        assert!(
            !kubectl.can_i(proxy, verb, resource),
            "{what}: the proxy's ServiceAccount must not {verb} {resource}"
        );
        assert!(
            !kubectl.can_i(recorder, verb, resource),
            "{what}: the recorder's ServiceAccount must not {verb} {resource}"
        );
    }
    let proxy_rules = kubectl.rules(proxy, &proxy.namespace);
    let extra: Vec<&String> = proxy_rules
        .iter()
        .filter(|r| !baseline.contains(r))
        .collect();
    if case.auth {
        assert_eq!(
            extra,
            [
                "groups [] [] [impersonate]",
                "serviceaccounts [] [] [impersonate]",
                "users [] [] [impersonate]",
            ],
            "{what}: the proxy's rules beyond the baseline are impersonation only"
        );
    } else {
        assert!(
            extra.is_empty(),
            "{what}: noauth proxy rules beyond the baseline: {extra:?}"
        );
    }
}

/// Values the schema or the templates refuse, each with the field its error must name.
fn check_bad_values() {
    let refused: &[(&[&str], &[&str])] = &[
        (&["proxy.replicas=-1"], &["'/proxy/replicas'", "minimum"]),
        (&["proxy.replica=3"], &["'/proxy'", "'replica' not allowed"]),
        (&["proxy.mode=open"], &["'/proxy/mode'", "'auth', 'noauth'"]),
        (
            &["recorder.storage=gcs"],
            &["'/recorder/storage'", "'disk', 's3'"],
        ),
        (
            &["recorder.storage=s3"],
            &["recorder.s3.bucket is required"],
        ),
        (
            &["recorder.replicas=2"],
            &["recorder.replicas: at most 1 with recorder.storage=disk"],
        ),
        (
            &["proxy.tls.secret=mine"],
            &["'/proxy/tls'", "'secret' not allowed"],
        ),
        (
            &["recorder.s3.endpoint=https://s3.example"],
            &["'/recorder/s3/endpoint'"],
        ),
    ];
    for (sets, fields) in refused {
        let output = helm_template("bad", "default", sets);
        let text = output_text(&output);
        assert!(
            !output.status.success(),
            "helm template --set {sets:?} must fail: {text}"
        );
        for field in *fields {
            assert!(
                text.contains(field),
                "helm template --set {sets:?}: the error names {field}: {text}"
            );
        }
    }
    // A string where the schema wants an integer (`--set-string`), named by its path.
    let chart = chart_dir();
    let output = helm(&[
        "template",
        "bad",
        chart.to_str().expect("a UTF-8 path"),
        "--set-string",
        "proxy.replicas=-1",
    ]);
    let text = output_text(&output);
    assert!(
        !output.status.success(),
        "a string replica count must fail: {text}"
    );
    assert!(
        text.contains("'/proxy/replicas': got string, want integer"),
        "the error names proxy.replicas: {text}"
    );
}
