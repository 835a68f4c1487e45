//! A second proxy in `--mode noauth` in front of the real kube-apiserver: the caller's own bearer
//! token arrives, so the audit log names that token's user (never the proxy's), RBAC decides by
//! that user, and the caller's grants impersonate nothing. A token the API server does not know
//! is its 401, no token is its anonymous user, and a caller's own `Impersonate-User` is the API
//! server's to judge (the caller's token user may not impersonate). Requests of callers whose
//! grants ask for events have their events.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use kubescribe_system_tests::run::with_deadline;
use kubescribe_system_tests::stack::{Stack, StackOptions, Storage};
use kubescribe_system_tests::upstream::UpstreamKind;
use kubescribe_system_tests::{rbac, received};
use serde_json::Value;
use test_support::apiserver::{TestUser, ALICE, BOB, CAROL};
use test_support::http::{self, Tls};
use test_support::peers;

const NS: &str = "noauth";

fn kubectl(kubeconfig: &Path, args: &[&str]) -> Output {
    with_deadline(
        Command::new(peers::kubectl().unwrap_or_else(|e| panic!("{e}")))
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args(args),
        Duration::from_secs(60),
    )
    .unwrap()
}

/// The audit event of the request whose URI contains `needle`, or why there is none.
fn audit(stack: &Stack, needle: &str) -> Result<Value, String> {
    stack
        .upstream
        .control_plane()
        .expect("the real API server")
        .wait_for_audit_event(Duration::from_secs(10), |e| {
            e["requestURI"].as_str().is_some_and(|u| u.contains(needle))
        })
        .map_err(|e| e.to_string())
}

struct Check {
    what: String,
    problem: Option<String>,
}

fn check(checks: &mut Vec<Check>, what: impl Into<String>, problem: Option<String>) {
    checks.push(Check {
        what: what.into(),
        problem,
    });
}

/// The audit event names `user` (with its groups), no impersonation, and not the proxy.
fn names_token_user(
    event: &Result<Value, String>,
    user: &TestUser,
    proxy_user: &str,
) -> Option<String> {
    let event = match event {
        Ok(event) => event,
        Err(e) => return Some(e.clone()),
    };
    let groups: Vec<&str> = event["user"]["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    if event["user"]["username"] == proxy_user {
        return Some(format!("the audit log names the proxy: {}", event["user"]));
    }
    if event["user"]["username"] != user.name || !user.groups.iter().all(|g| groups.contains(g)) {
        return Some(format!(
            "the audit log names {}, want {} in {:?}",
            event["user"], user.name, user.groups
        ));
    }
    if !event["impersonatedUser"].is_null() {
        return Some(format!("impersonated {}", event["impersonatedUser"]));
    }
    None
}

fn outcome(output: &Output) -> String {
    format!(
        "exit {:?}: {}{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn in_noauth_mode_the_callers_token_reaches_the_api_server_and_names_its_user() {
    let options = StackOptions::new(UpstreamKind::ApiServer, Storage::Disk)
        .unwrap()
        .noauth();
    let stack =
        Stack::start_with_options(options).unwrap_or_else(|e| panic!("starting the system: {e}"));
    let plane = stack.upstream.control_plane().expect("the real API server");
    let noauth = stack.noauth.as_ref().expect("the noauth proxy");
    let proxy_user = stack.upstream.proxy_user();
    rbac::namespace(plane, NS).unwrap();
    rbac::role(
        plane,
        NS,
        "edit",
        &[rbac::rule(
            "",
            &["configmaps"],
            &["get", "list", "create", "delete"],
        )],
    )
    .unwrap();
    rbac::role(
        plane,
        NS,
        "view",
        &[rbac::rule("", &["configmaps"], &["get", "list"])],
    )
    .unwrap();
    rbac::role_binding(
        plane,
        NS,
        "developers",
        ("Role", "edit"),
        &[rbac::group("developers")],
    )
    .unwrap();
    rbac::role_binding(plane, NS, "bob", ("Role", "view"), &[rbac::user(BOB.name)]).unwrap();

    // The tailnet caller alice (whose grants would impersonate system:masters in auth mode, and
    // ask for events) presents ALICE's token; bob presents BOB's; dave (no grants) presents CAROL's.
    let alice = noauth
        .caller("alice")
        .unwrap()
        .kubeconfig_with_token("token", ALICE.token)
        .unwrap();
    let bob = noauth
        .caller("bob")
        .unwrap()
        .kubeconfig_with_token("token", BOB.token)
        .unwrap();
    let carol = noauth
        .caller("dave")
        .unwrap()
        .kubeconfig_with_token("token", CAROL.token)
        .unwrap();
    let tls = Tls::trusting(&noauth.ca_pem).unwrap();
    let mut checks = Vec::new();

    for (who, kubeconfig, user, may_create) in [
        ("alice", &alice, &ALICE, true),
        ("bob", &bob, &BOB, false),
        ("dave", &carol, &CAROL, true),
    ] {
        let name = format!("made-by-{who}");
        // The field manager names the request in the audit log (a refused create's has no name).
        let created = kubectl(
            kubeconfig,
            &[
                "create",
                "configmap",
                &name,
                "-n",
                NS,
                &format!("--field-manager={name}"),
            ],
        );
        check(
            &mut checks,
            format!(
                "{who} with {}'s token creates a configmap: {}",
                user.name,
                if may_create { "allowed" } else { "refused" }
            ),
            (created.status.success() != may_create).then(|| outcome(&created)),
        );
        let event = audit(&stack, &format!("fieldManager={name}&"));
        check(
            &mut checks,
            format!("  the audit log names {} for it", user.name),
            names_token_user(&event, user, proxy_user),
        );
        let listed = kubectl(
            kubeconfig,
            &["get", "configmaps", "-n", NS, "-l", &format!("who={who}")],
        );
        check(
            &mut checks,
            format!("{who} lists configmaps"),
            (!listed.status.success()).then(|| outcome(&listed)),
        );
        let event = audit(&stack, &format!("labelSelector=who%3D{who}"));
        check(
            &mut checks,
            format!("  the audit log names {} for it", user.name),
            names_token_user(&event, user, proxy_user),
        );
    }

    // The grants impersonate nothing: alice's token user may not read kube-system's secrets, though
    // in auth mode her grants' system:masters may.
    let refused = kubectl(
        &alice,
        &["get", "secrets", "-n", "kube-system", "-l", "via=noauth"],
    );
    check(
        &mut checks,
        "alice (grants: system:masters) reads kube-system's secrets through the noauth proxy: refused",
        (refused.status.success() || !String::from_utf8_lossy(&refused.stderr).contains("User \"alice\""))
            .then(|| outcome(&refused)),
    );
    check(
        &mut checks,
        "  the audit log names alice for it",
        names_token_user(
            &audit(&stack, "labelSelector=via%3Dnoauth"),
            &ALICE,
            proxy_user,
        ),
    );

    // A caller's own impersonation passes through: the API server judges it as the token's user.
    let reply = http::request(
        noauth.caller("alice").unwrap().addr(),
        Some(&tls),
        "GET",
        &format!("/api/v1/namespaces/{NS}/configmaps?labelSelector=via%3Dimpersonation"),
        &[
            ("authorization", &format!("Bearer {}", ALICE.token)),
            ("impersonate-user", "admin"),
            ("impersonate-group", "system:masters"),
        ],
        b"",
    )
    .unwrap();
    check(
        &mut checks,
        "alice asks to impersonate admin through the noauth proxy: the API server refuses alice",
        (reply.status != 403 || !reply.text().contains("cannot impersonate"))
            .then(|| format!("{} {}", reply.status, reply.text())),
    );
    let event = audit(&stack, "labelSelector=via%3Dimpersonation");
    check(
        &mut checks,
        "  the audit log names alice for it",
        match &event {
            Ok(event) => {
                (event["user"]["username"] != ALICE.name).then(|| format!("{}", event["user"]))
            }
            Err(e) => Some(e.clone()),
        },
    );

    // A token the API server does not know: its 401. No token: its anonymous user.
    let unknown = http::request(
        noauth.caller("bob").unwrap().addr(),
        Some(&tls),
        "GET",
        &format!("/api/v1/namespaces/{NS}/configmaps?labelSelector=via%3Dunknown-token"),
        &[("authorization", "Bearer not-a-token-the-api-server-knows")],
        b"",
    )
    .unwrap();
    check(
        &mut checks,
        "an unknown token through the noauth proxy: 401",
        (unknown.status != 401).then(|| format!("{} {}", unknown.status, unknown.text())),
    );
    let anonymous = http::request(
        noauth.caller("bob").unwrap().addr(),
        Some(&tls),
        "GET",
        &format!("/api/v1/namespaces/{NS}/configmaps?labelSelector=via%3Dno-token"),
        &[],
        b"",
    )
    .unwrap();
    check(
        &mut checks,
        "no token through the noauth proxy: 403 for system:anonymous",
        (anonymous.status != 403 || !anonymous.text().contains("system:anonymous"))
            .then(|| format!("{} {}", anonymous.status, anonymous.text())),
    );
    let event = audit(&stack, "labelSelector=via%3Dno-token");
    check(
        &mut checks,
        "  the audit log names system:anonymous for it",
        match &event {
            Ok(event) => (event["user"]["username"] != "system:anonymous")
                .then(|| format!("{}", event["user"])),
            Err(e) => Some(e.clone()),
        },
    );

    // Nothing in the namespace was done as the proxy; alice's requests (her grants ask for events)
    // each have their event.
    let as_proxy: Vec<String> = plane
        .audit_events()
        .unwrap()
        .iter()
        .filter(|e| e["user"]["username"] == proxy_user)
        .filter(|e| {
            e["objectRef"]["namespace"] == NS
                || e["requestURI"]
                    .as_str()
                    .is_some_and(|u| u.contains("via%3D"))
        })
        .filter_map(|e| e["requestURI"].as_str().map(str::to_owned))
        .collect();
    check(
        &mut checks,
        "the API server received none of these requests as the proxy's user",
        (!as_proxy.is_empty()).then(|| format!("{as_proxy:?}")),
    );
    let got = received::compare(
        &stack,
        |e| e["user"]["username"] == ALICE.name,
        "user=alice%40example.com",
        Duration::from_secs(20),
    )
    .unwrap();
    check(
        &mut checks,
        format!("alice's requests have their events: {got}"),
        (!got.matches() || got.audited == 0).then(|| got.to_string()),
    );

    // The same caller through the auth-mode proxy is impersonated as her grants say.
    let allowed = kubectl(
        &stack.alice.kubeconfig,
        &["get", "secrets", "-n", "kube-system", "-l", "via=auth"],
    );
    check(
        &mut checks,
        "alice reads kube-system's secrets through the auth proxy (system:masters): allowed",
        (!allowed.status.success()).then(|| outcome(&allowed)),
    );
    let event = audit(&stack, "labelSelector=via%3Dauth");
    check(
        &mut checks,
        "  the audit log names the proxy impersonating alice@example.com",
        match &event {
            Ok(event) => (event["user"]["username"] != proxy_user
                || event["impersonatedUser"]["username"] != "alice@example.com")
                .then(|| format!("{} as {}", event["user"], event["impersonatedUser"])),
            Err(e) => Some(e.clone()),
        },
    );

    println!("\nnoauth mode against the real API server:");
    for c in &checks {
        println!(
            "  {:4} {}",
            if c.problem.is_some() { "FAIL" } else { "ok" },
            c.what
        );
    }
    let failures: Vec<String> = checks
        .iter()
        .filter_map(|c| c.problem.as_ref().map(|p| format!("{}: {p}", c.what)))
        .collect();
    assert!(
        failures.is_empty(),
        "{} checks failed (logs in {}):\n{}",
        failures.len(),
        stack.dir.path().display(),
        failures.join("\n")
    );
}
