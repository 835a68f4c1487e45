//! A caller's own `Impersonate-User`, `Impersonate-Group`, `Impersonate-Uid` and
//! `Impersonate-Extra-*` headers never reach the API server in auth mode: requests that carry them
//! (sent raw, and by real kubectl with `--as`, `--as-group`, `--as-uid`) end exactly as the same
//! request without them, and the audit log names the user and groups the caller's grants give,
//! with no UID and no extra, never what the caller asked for.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;
use std::time::Duration;

use kubescribe_system_tests::identities::TestIdentity;
use kubescribe_system_tests::run::with_deadline;
use kubescribe_system_tests::stack::{Stack, StackOptions, Storage, CALLER_TOKEN};
use kubescribe_system_tests::upstream::UpstreamKind;
use kubescribe_system_tests::{rbac, received};
use serde_json::{json, Value};
use test_support::apiserver::ADMIN;
use test_support::http;
use test_support::peers::{self, KUBECTL_VERSIONS};

/// What callers ask to be: the administrator, the masters group, a service account, a UID and
/// extras; in several spellings.
const SPOOFS: &[&[(&str, &str)]] = &[
    &[
        ("Impersonate-User", ADMIN.name),
        ("Impersonate-Group", "system:masters"),
    ],
    &[
        (
            "impersonate-user",
            "system:serviceaccount:kube-system:default",
        ),
        ("impersonate-uid", "0"),
    ],
    &[
        ("IMPERSONATE-USER", ADMIN.name),
        ("Impersonate-Extra-Scopes", "cluster-admin"),
        ("Impersonate-Extra-Reason", "because"),
    ],
    &[("Impersonate-Group", "system:masters")],
    &[
        ("Impersonate-Group", "system:masters"),
        ("Impersonate-Group", "team-a-devs"),
        ("Impersonate-Extra-acme.com%2Fproject", "x"),
    ],
];

struct SpoofCaller {
    name: &'static str,
    identity: TestIdentity,
    groups: Vec<&'static str>,
}

/// The requests each spoof is tried with: one the caller is refused (secrets in kube-system),
/// one it is allowed or refused by its own grants (configmaps in team-a). `{marker}` makes each
/// request's URI unique, to find it in the audit log.
const PATHS: &[&str] = &[
    "/api/v1/namespaces/kube-system/secrets?labelSelector=spoof%3D{marker}",
    "/api/v1/namespaces/team-a/configmaps?labelSelector=spoof%3D{marker}",
];

fn get(stack: &Stack, caller: &str, path: &str, extra: &[(&str, &str)]) -> (u16, String) {
    let bearer = format!("Bearer {CALLER_TOKEN}");
    let mut headers = vec![("authorization", bearer.as_str())];
    headers.extend_from_slice(extra);
    let reply = http::request(
        stack.caller(caller).unwrap().addr(),
        None,
        "GET",
        path,
        &headers,
        b"",
    )
    .unwrap();
    (reply.status, reply.text())
}

/// The audit event of the one request whose URI contains `marker`, and what is wrong with it.
fn audit_problem(stack: &Stack, marker: &str, caller: &SpoofCaller) -> Option<String> {
    let plane = stack.upstream.control_plane().expect("the real API server");
    let selector = format!("%3D{marker}");
    let event = match plane.wait_for_audit_event(Duration::from_secs(10), |e| {
        e["requestURI"]
            .as_str()
            .is_some_and(|uri| uri.ends_with(&selector) || uri.contains(&format!("{selector}&")))
    }) {
        Ok(event) => event,
        Err(e) => return Some(format!("no audit event: {e}")),
    };
    let imp = &event["impersonatedUser"];
    let mut groups: Vec<&str> = imp["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    groups.sort_unstable();
    let mut want = caller.groups.clone();
    want.push("system:authenticated");
    want.sort_unstable();
    let user = caller.identity.impersonated_user();
    let mut problems = Vec::new();
    if event["user"]["username"] != stack.upstream.proxy_user() {
        problems.push(format!("authenticated user {}", event["user"]["username"]));
    }
    if imp["username"] != user.as_str() {
        problems.push(format!(
            "impersonated user {}, want {user}",
            imp["username"]
        ));
    }
    if groups != want {
        problems.push(format!("impersonated groups {groups:?}, want {want:?}"));
    }
    if !imp["uid"].is_null() || !imp["extra"].is_null() {
        problems.push(format!(
            "impersonated uid {} extra {}",
            imp["uid"], imp["extra"]
        ));
    }
    (!problems.is_empty()).then(|| format!("{}: {}", event["requestURI"], problems.join("; ")))
}

#[test]
fn a_callers_own_impersonation_headers_never_reach_the_api_server() {
    let mut options = StackOptions::new(UpstreamKind::ApiServer, Storage::Disk).unwrap();
    let events = json!({"recorderAddrs": options.recorder_addrs(), "enforceRecorder": true, "enableEvents": true});
    let mut dev_grant = events.clone();
    dev_grant["impersonate"] = json!({"groups": ["team-a-devs"]});
    let callers = vec![
        SpoofCaller {
            name: "dev",
            identity: TestIdentity::user(
                "dev-laptop",
                "dev@example.com",
                8001,
                IpAddr::V4(Ipv4Addr::new(100, 64, 4, 1)),
                vec![dev_grant],
            ),
            groups: vec!["team-a-devs"],
        },
        SpoofCaller {
            name: "builder",
            identity: TestIdentity::tagged(
                "builder",
                &["tag:builder"],
                IpAddr::V4(Ipv4Addr::new(100, 64, 4, 2)),
                vec![events.clone()],
            ),
            groups: vec!["tag:builder"],
        },
        SpoofCaller {
            name: "plain",
            identity: TestIdentity::user(
                "plain-laptop",
                "plain@example.com",
                8003,
                IpAddr::V4(Ipv4Addr::new(100, 64, 4, 3)),
                vec![events],
            ),
            groups: vec![],
        },
    ];
    for caller in &callers {
        options = options.caller(caller.name, caller.identity.clone());
    }
    let stack =
        Stack::start_with_options(options).unwrap_or_else(|e| panic!("starting the system: {e}"));
    let plane = stack.upstream.control_plane().expect("the real API server");
    rbac::namespace(plane, "team-a").unwrap();
    rbac::role(
        plane,
        "team-a",
        "configmap-reader",
        &[rbac::rule("", &["configmaps"], &["get", "list"])],
    )
    .unwrap();
    rbac::role_binding(
        plane,
        "team-a",
        "team-a-devs",
        ("Role", "configmap-reader"),
        &[rbac::group("team-a-devs")],
    )
    .unwrap();

    let mut failures = Vec::new();
    let mut checked = 0;
    println!("\nCallers' own Impersonate-* headers through the proxy (status without/with):");
    for caller in &callers {
        for (p, path) in PATHS.iter().enumerate() {
            let marker = format!("{}-{p}-plain", caller.name);
            let (baseline, _) = get(&stack, caller.name, &path.replace("{marker}", &marker), &[]);
            if let Some(problem) = audit_problem(&stack, &marker, caller) {
                failures.push(format!("{} without spoofing: {problem}", caller.name));
            }
            for (s, spoof) in SPOOFS.iter().enumerate() {
                let marker = format!("{}-{p}-{s}", caller.name);
                let (status, body) = get(
                    &stack,
                    caller.name,
                    &path.replace("{marker}", &marker),
                    spoof,
                );
                checked += 1;
                let names: Vec<String> = spoof.iter().map(|(n, v)| format!("{n}: {v}")).collect();
                println!(
                    "  {:8} {baseline}/{status} {} [{}]",
                    caller.name,
                    path.split('?').next().unwrap_or_default(),
                    names.join(", ")
                );
                if status != baseline {
                    failures.push(format!(
                        "{} {path} with {names:?}: {status}, without {baseline}: {body}",
                        caller.name
                    ));
                }
                if status == 403 && !body.contains(&caller.identity.impersonated_user()) {
                    failures.push(format!(
                        "{} {path} with {names:?}: the refusal names someone else: {body}",
                        caller.name
                    ));
                }
                if let Some(problem) = audit_problem(&stack, &marker, caller) {
                    failures.push(format!("{} with {names:?}: {problem}", caller.name));
                }
            }
        }
    }
    // Real kubectl asking to be the administrator: refused as the caller, audited as the caller.
    for minor in KUBECTL_VERSIONS {
        let kubectl = peers::kubectl_version(minor).unwrap_or_else(|e| panic!("{e}"));
        for caller in &callers {
            let marker = format!("{}-kubectl-{}", caller.name, minor.replace('.', ""));
            let output = with_deadline(
                Command::new(&kubectl)
                    .arg("--kubeconfig")
                    .arg(&stack.caller(caller.name).unwrap().kubeconfig)
                    .args([
                        "--as",
                        ADMIN.name,
                        "--as-group",
                        "system:masters",
                        "--as-uid",
                        "0",
                    ])
                    .args([
                        "get",
                        "secrets",
                        "-n",
                        "kube-system",
                        "-l",
                        &format!("spoof={marker}"),
                    ]),
                Duration::from_secs(60),
            )
            .unwrap();
            checked += 1;
            let stderr = String::from_utf8_lossy(&output.stderr);
            println!(
                "  {:8} kubectl {minor} --as {} --as-group system:masters --as-uid 0 get secrets: exit {:?}",
                caller.name,
                ADMIN.name,
                output.status.code()
            );
            if output.status.success() || !stderr.contains("Forbidden") {
                failures.push(format!(
                    "kubectl {minor} as {} asking to be {}: {:?}: {stderr}",
                    caller.name,
                    ADMIN.name,
                    output.status.code()
                ));
            }
            if let Some(problem) = audit_problem(&stack, &marker, caller) {
                failures.push(format!("kubectl {minor} as {}: {problem}", caller.name));
            }
        }
    }
    for caller in &callers {
        let got = received::for_caller(&stack, &caller.identity, Duration::from_secs(20)).unwrap();
        println!("  {}: {got}", caller.name);
        if !got.matches() {
            failures.push(format!(
                "{}: requests and events differ: {got}",
                caller.name
            ));
        }
    }
    println!("  {checked} spoofed requests");
    assert!(
        failures.is_empty(),
        "{} checks failed (logs in {}):\n{}",
        failures.len(),
        stack.dir.path().display(),
        failures.join("\n")
    );
}
