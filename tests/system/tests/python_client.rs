//! The Python `kubernetes` client (from the peers' virtualenv) through the proxy to the real
//! kube-apiserver: `tests/python/client_ops.py` does what the kubectl test does (discovery,
//! OpenAPI, access reviews, create, server-side apply, dry-run, get, list, watch with a change
//! during it, merge, JSON and strategic patches, delete, delete collection), once directly as the
//! same effective user and group (`Impersonate-User`/`Impersonate-Group` with the administrator's
//! kubeconfig) and once through the proxy. Every operation must end the same way both ways, and
//! as the script expects; every request it sent through the proxy must have its event.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use kubescribe_system_tests::client_comparison::{
    assert_recorded_and_no_failures, ClientComparison,
};
use kubescribe_system_tests::run::with_deadline;
use serde_json::{json, Value};
use test_support::peers;

const LOGIN: &str = "python@example.com";
const GROUP: &str = "python-testers";
const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/client_ops.py");

/// Runs the script; returns its operations by name, in order.
fn run_script(
    python: &Path,
    kubeconfig: &Path,
    namespace: &str,
    cache: &Path,
    impersonate: bool,
) -> Vec<(String, Value)> {
    let mut command = Command::new(python);
    command
        .arg(SCRIPT)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["--namespace", namespace])
        .arg("--cache-file")
        .arg(cache);
    if impersonate {
        command.args(["--as-user", LOGIN, "--as-group", GROUP]);
    }
    let output = with_deadline(&mut command, Duration::from_secs(120)).unwrap();
    assert!(
        output.status.success(),
        "client_ops.py in {namespace} failed: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| {
            let op: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("client_ops.py printed {line:?}: {e}"));
            (op["op"].as_str().unwrap_or_default().to_owned(), op)
        })
        .collect()
}

#[test]
fn the_python_client_works_through_the_proxy_as_it_does_directly() {
    let python = peers::python().unwrap_or_else(|e| panic!("{e}"));
    let stack = ClientComparison {
        name: "python",
        login: LOGIN,
        group: GROUP,
        user_id: 6001,
        address: Ipv4Addr::new(100, 64, 2, 1),
        namespaces: ["py-d", "py-p"],
    }
    .start()
    .unwrap_or_else(|e| panic!("starting the system: {e}"));

    let cache = |way: &str| {
        stack
            .dir
            .path()
            .join(format!("python-discovery-{way}.json"))
    };
    let direct = run_script(
        &python,
        &stack.upstream.admin_kubeconfig(),
        "py-d",
        &cache("d"),
        true,
    );
    let proxied = run_script(
        &python,
        &stack.caller("python").unwrap().kubeconfig,
        "py-p",
        &cache("p"),
        false,
    );

    let mut failures = Vec::new();
    if direct.len() != proxied.len() {
        failures.push(format!(
            "{} operations directly, {} through the proxy",
            direct.len(),
            proxied.len()
        ));
    }
    println!("\nPython client through the proxy against directly (status direct/proxy):");
    for ((name, d), (_, p)) in direct.iter().zip(&proxied) {
        let mut problems = Vec::new();
        if d["status"] != p["status"] || d["out"] != p["out"] || d.get("error") != p.get("error") {
            problems.push(format!("directly {d}\n    through the proxy {p}"));
        }
        if d["status"] != d["expect"] {
            problems.push(format!("expected {}, directly {d}", d["expect"]));
        }
        println!(
            "  {:>4}/{:<4} {:4} {name}",
            d["status"].to_string().trim_matches('"'),
            p["status"].to_string().trim_matches('"'),
            if problems.is_empty() { "ok" } else { "FAIL" }
        );
        if !problems.is_empty() {
            failures.push(format!("{name}: {}", problems.join("\n  ")));
        }
    }

    // The impersonation is real: the API server saw the caller's user and group, and RBAC
    // decided by them (the administrator may do anything).
    let outs: BTreeMap<&str, &Value> = proxied
        .iter()
        .map(|(n, v)| (n.as_str(), &v["out"]))
        .collect();
    for (name, want) in [
        ("who am I", json!([LOGIN, [GROUP, "system:authenticated"]])),
        ("can I create deployments", json!(true)),
        ("can I delete nodes", json!(false)),
        ("can I list secrets", json!(false)),
        (
            "watch configmaps, changed during it",
            json!([
                ["ADDED", "app-config", "changed"],
                ["MODIFIED", "app-config", "watched"]
            ]),
        ),
    ] {
        if outs.get(name).copied() != Some(&want) {
            failures.push(format!("{name}: {:?}, want {want}", outs.get(name)));
        }
    }

    assert_recorded_and_no_failures(&stack, LOGIN, failures);
}
