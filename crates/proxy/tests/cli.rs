//! The `kubescribe-proxy` binary: `whois` output and exit codes, `--help`,
//! start-up refusal of bad configuration, and a real start → SIGTERM → clean exit.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kubescribe-proxy"));
    c.env_remove("KUBECONFIG")
        .env_remove("APISERVER_PROXY")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("TS_EXPERIMENTAL_KUBE_API_EVENTS");
    c
}

#[test]
fn whois_explains_a_known_caller_as_json_and_fails_for_an_unknown_one() {
    let dir = tempfile::tempdir().unwrap();
    let ident = common::identity_file(
        dir.path(),
        r#"{recorderAddrs: ["100.64.0.5:80"], enforceRecorder: true, impersonate: {groups: [eng]}}"#,
    );
    let out = bin()
        .args([
            "whois",
            "--identity-file",
            ident.to_str().unwrap(),
            "127.0.0.1:5555",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["identity"]["login_name"], "alice@example.com");
    let text = v.to_string();
    assert!(text.contains("100.64.0.5:80"), "{text}");
    assert!(text.contains("eng"), "{text}");

    let out = bin()
        .args([
            "whois",
            "--identity-file",
            ident.to_str().unwrap(),
            "100.99.9.9:1",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("100.99.9.9"));
}

#[test]
fn help_documents_every_flag() {
    let out = bin().arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--listen",
        "--tls-cert",
        "--tls-key",
        "--proxy-protocol",
        "--kubeconfig",
        "--context",
        "--exec-plugin-timeout",
        "--mode",
        "--localapi-socket",
        "--identity-file",
        "--admin-listen",
        "--max-body-capture",
        "--max-header-bytes",
        "--events-for-all-callers",
        "--trust-forwarded-for",
        "--state-dir",
        "--spool-dir",
        "--spool-max-bytes",
        "--spool-full-policy",
        "--shutdown-grace",
        "--log-format",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}");
    }
}

#[test]
fn bad_configuration_is_refused_with_a_message_naming_the_problem() {
    let out = bin()
        .args(["--kubeconfig", "/nonexistent"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--identity-file"));
    let out = bin()
        .args(["--identity-file", "/x", "--kubeconfig", "/k"])
        .env("APISERVER_PROXY", "maybe")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("APISERVER_PROXY"));
}

#[test]
fn starts_logs_what_it_does_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let mut child = spawn_logging(
        dir.path(),
        &["--proxy-protocol", "--state-dir", state.to_str().unwrap()],
    );
    // Wait for the last start-up line, then SIGTERM.
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut log = String::new();
    while !log.contains("event policy:") {
        let mut line = String::new();
        if std::io::BufRead::read_line(&mut stderr, &mut line).unwrap() == 0 {
            panic!("exited before start-up finished:\n{log}");
        }
        log.push_str(&line);
    }
    let pid = child.id().to_string();
    let _ = Command::new("kill").args(["-TERM", &pid]).status();
    let _ = std::io::Read::read_to_string(&mut stderr, &mut log);
    let status = child.wait().unwrap();
    assert!(status.success(), "{log}");
    for needle in [
        "API server proxy listening on http://127.0.0.1:",
        "PROXY protocol: required",
        "admin endpoints on http://127.0.0.1:",
        "mode: auth",
        "identity source: identity file",
        "answers reused for 5 s per caller address",
        "upstream: http://127.0.0.1:9",
        "event policy:",
        &format!("spool: {}", dir.path().join("state/spool").display()),
        "when full: the oldest records are dropped",
        "SIGTERM received",
        "stopped",
    ] {
        assert!(log.contains(needle), "log lacks {needle:?}:\n{log}");
    }
    assert!(dir.path().join("state/spool").is_dir());
}

/// Starts the proxy (ephemeral ports, an empty identity file and a kubeconfig
/// in `dir`, upstream 127.0.0.1:9) with `extra` flags, logging at info to a
/// piped stderr.
fn spawn_logging(dir: &std::path::Path, extra: &[&str]) -> std::process::Child {
    let ident = common::identity_file(dir, "{}");
    let kc = dir.join("kubeconfig");
    std::fs::write(
        &kc,
        "current-context: c\nclusters: [{name: a, cluster: {server: \"http://127.0.0.1:9\"}}]\ncontexts: [{name: c, context: {cluster: a, user: u}}]\nusers: [{name: u, user: {token: t}}]\n",
    )
    .unwrap();
    bin()
        .args([
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--identity-file",
            ident.to_str().unwrap(),
            "--kubeconfig",
            kc.to_str().unwrap(),
        ])
        .args(extra)
        .env("RUST_LOG", "info")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// Starts the proxy with `extra` flags and returns what it logged until `until` (or its exit).
fn start_up_log(dir: &std::path::Path, extra: &[&str], until: &str) -> (String, Option<i32>) {
    let mut child = spawn_logging(dir, extra);
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut log = String::new();
    while !log.contains(until) {
        let mut line = String::new();
        if std::io::BufRead::read_line(&mut stderr, &mut line).unwrap() == 0 {
            break;
        }
        log.push_str(&line);
    }
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = std::io::Read::read_to_string(&mut stderr, &mut log);
    (log, child.wait().unwrap().code())
}

#[test]
fn a_state_dir_that_cannot_be_written_stops_the_start_naming_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"").unwrap();
    let state = file.join("state");
    let (log, code) = start_up_log(
        dir.path(),
        &["--state-dir", state.to_str().unwrap()],
        "cannot start",
    );
    assert_eq!(code, Some(1), "{log}");
    assert!(
        log.contains(&format!(
            "cannot use the spool directory {} (--state-dir)",
            state.display()
        )),
        "{log}"
    );
    assert!(log.contains("--spool-dir none"), "{log}");
}

#[test]
fn spool_dir_none_runs_without_a_spool_and_says_so_loudly() {
    let dir = tempfile::tempdir().unwrap();
    let (log, code) = start_up_log(dir.path(), &["--spool-dir", "none"], "event policy:");
    assert_eq!(code, Some(0), "{log}");
    let warning = log
        .lines()
        .find(|l| l.contains("--spool-dir none"))
        .unwrap_or_else(|| panic!("no warning:\n{log}"));
    assert!(
        warning.contains("WARN") && warning.contains("NO SPOOL"),
        "{warning}"
    );
    assert!(!log.contains("spool: "), "{log}");
}

#[test]
fn an_auth_provider_kubeconfig_is_refused_naming_the_exec_plugin_to_use_instead() {
    let dir = tempfile::tempdir().unwrap();
    let ident = common::identity_file(dir.path(), "{}");
    for (provider, instead) in [
        ("gcp", "gke-gcloud-auth-plugin"),
        ("azure", "kubelogin"),
        ("oidc", "kubectl oidc-login"),
    ] {
        let kubeconfig = dir.path().join(format!("{provider}.kubeconfig"));
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\ncurrent-context: c\nclusters: [{{name: k, cluster: {{server: \"https://127.0.0.1:1\"}}}}]\ncontexts: [{{name: c, context: {{cluster: k, user: u}}}}]\nusers: [{{name: u, user: {{auth-provider: {{name: {provider}, config: {{}}}}}}}}]\n"
            ),
        )
        .unwrap();
        let out = bin()
            .args([
                "--identity-file",
                ident.to_str().unwrap(),
                "--kubeconfig",
                kubeconfig.to_str().unwrap(),
                "--listen",
                "127.0.0.1:0",
                "--admin-listen",
                "127.0.0.1:0",
            ])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains(&format!("auth-provider \"{provider}\" is not supported")),
            "{stderr}"
        );
        assert!(stderr.contains(instead), "{stderr}");
    }
}
