//! The proxy's own upstream credentials against the real kube-apiserver
//! (`test_support`'s `ControlPlane`), with the `kubescribe-proxy` binary in
//! auth mode and the identity file's caller (alice) impersonated:
//!
//! - exec credential plugins, `client.authentication.k8s.io/v1` and
//!   `v1beta1`: a shell script printing a ServiceAccount token (from the
//!   TokenRequest API) read from a file, counting its runs: one run for many
//!   requests while the credential is valid, another after its
//!   `expirationTimestamp`, and after the token is revoked (its bound Secret
//!   deleted) and the API server answers 401, a fresh credential for the next
//!   request; args, env and stdin as the kubeconfig says;
//! - a token file rotated the same way, a client certificate signed by the
//!   cluster CA, and an exec plugin that returns a client certificate;
//! - a plugin that fails and one that hangs: 502 with the reason, bounded,
//!   logged once per failure burst; in noauth mode the plugin never runs and
//!   the caller's own token reaches the API server.
//!
//! Needs the peers (`cargo xtask peers`).
#![allow(clippy::unwrap_used)]

mod common;

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use common::apiserver::*;
use serde_json::{json, Value};
use test_support::apiserver::{ControlPlane, ADMIN};

/// The identity file's loopback caller, impersonated in group system:masters.
const GRANT: &str = r#"{impersonate: {groups: ["system:masters"]}}"#;

/// A request any authenticated, impersonating proxy may make for alice.
const PATH: &str = "/api/v1/namespaces/default";

fn sa_user(sa: &str) -> String {
    format!("system:serviceaccount:{NAMESPACE}:{sa}")
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

fn script(path: &Path, body: &str) -> PathBuf {
    write(path, &format!("#!/bin/sh\n{body}"));
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path.to_path_buf()
}

fn runs(file: &Path) -> usize {
    std::fs::read_to_string(file)
        .map(|t| t.lines().count())
        .unwrap_or(0)
}

/// A kubeconfig for `plane` (its CA) whose user is `user` (JSON).
fn kubeconfig(dir: &Path, name: &str, plane: &ControlPlane, user: Value) -> PathBuf {
    let ca = base64::engine::general_purpose::STANDARD.encode(plane.ca_pem());
    let config = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "test", "cluster": {"server": plane.url(), "certificate-authority-data": ca}}],
        "users": [{"name": "proxy", "user": user}],
        "contexts": [{"name": "test", "context": {"cluster": "test", "user": "proxy"}}],
        "current-context": "test",
    });
    let path = dir.join(format!("{name}.kubeconfig"));
    write(&path, &serde_json::to_string_pretty(&config).unwrap());
    path
}

fn kubeconfig_args(path: &Path, extra: &[&str]) -> Vec<String> {
    let mut args = vec!["--kubeconfig".to_owned(), path.display().to_string()];
    args.extend(extra.iter().map(|a| (*a).to_owned()));
    args
}

/// The audit event of the last request for `PATH` and who made it.
fn last_audited_user(plane: &ControlPlane) -> (String, String) {
    let events = plane.audit_events().unwrap();
    let event = events
        .iter()
        .rev()
        .find(|e| e["requestURI"] == PATH)
        .unwrap_or_else(|| panic!("no audit event for {PATH}"));
    (
        event["user"]["username"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        event["impersonatedUser"]["username"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    )
}

/// The exec plugin: prints the token in `$TOKEN_FILE`, expiring
/// `$(cat $TTL_FILE)` seconds from now, in the apiVersion given as its
/// argument; counts its runs in `$RUNS_FILE` and keeps `KUBERNETES_EXEC_INFO`
/// in `$INFO_FILE`; refuses to run with a terminal or anything on stdin.
const TOKEN_PLUGIN: &str = r#"set -eu
echo run >> "$RUNS_FILE"
if [ -t 0 ]; then echo "stdin is a terminal" >&2; exit 9; fi
if [ -n "$(cat)" ]; then echo "stdin is not empty" >&2; exit 8; fi
printf '%s' "$KUBERNETES_EXEC_INFO" > "$INFO_FILE"
token=$(cat "$TOKEN_FILE")
ttl=$(cat "$TTL_FILE")
expiry=$(date -u -d "@$(( $(date +%s) + ttl ))" +%Y-%m-%dT%H:%M:%SZ)
printf '{"apiVersion":"%s","kind":"ExecCredential","status":{"token":"%s","expirationTimestamp":"%s"}}\n' "$1" "$token" "$expiry"
"#;

fn exec_plugin_scenario(plane: &ControlPlane, dir: &Path, api_version: &str, tag: &str) {
    let files = |name: &str| dir.join(format!("{tag}-{name}"));
    let (token_file, ttl_file, runs_file, info_file) =
        (files("token"), files("ttl"), files("runs"), files("info"));
    let first = format!("{tag}-first");
    let first_uid = secret(plane, &first);
    let second = format!("{tag}-second");
    let second_uid = secret(plane, &second);
    let token1 = token_request(plane, SERVICE_ACCOUNT, Some((&first, &first_uid)));
    let token2 = token_request(plane, SERVICE_ACCOUNT, Some((&second, &second_uid)));
    write(&token_file, &token1);
    write(&ttl_file, "2");
    let plugin = script(&files("plugin.sh"), TOKEN_PLUGIN);
    let env = |name: &str, path: &Path| json!({"name": name, "value": path.display().to_string()});
    let kc = kubeconfig(
        dir,
        tag,
        plane,
        json!({"exec": {
            "apiVersion": api_version,
            "command": plugin.display().to_string(),
            "args": [api_version],
            "env": [env("TOKEN_FILE", &token_file), env("TTL_FILE", &ttl_file), env("RUNS_FILE", &runs_file), env("INFO_FILE", &info_file)],
            "interactiveMode": "Never",
            "provideClusterInfo": true,
        }}),
    );
    let proxy = ProxyProcess::start(
        &format!("proxy-{tag}"),
        dir,
        &common::identity_file(dir, GRANT),
        &kubeconfig_args(&kc, &[]),
    );
    assert_eq!(
        runs(&runs_file),
        0,
        "the plugin runs only when a request needs it"
    );

    // The first request runs the plugin; the API server sees the token, and
    // the caller impersonated.
    let reply = proxy.get(PATH);
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(runs(&runs_file), 1);
    assert_eq!(
        last_audited_user(plane),
        (sa_user(SERVICE_ACCOUNT), "alice@example.com".to_owned())
    );
    let info: Value = serde_json::from_str(&std::fs::read_to_string(&info_file).unwrap()).unwrap();
    assert_eq!(info["apiVersion"], api_version);
    assert_eq!(info["kind"], "ExecCredential");
    assert_eq!(info["spec"]["interactive"], false);
    assert_eq!(info["spec"]["cluster"]["server"], plane.url());

    // After its expirationTimestamp (2 s away), the plugin runs again.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(proxy.get(PATH).status, 200);
    assert_eq!(runs(&runs_file), 2, "one run after the expiry");

    // While a credential is valid, many requests, one run.
    write(&ttl_file, "3600");
    std::thread::sleep(Duration::from_secs(3));
    for _ in 0..20 {
        assert_eq!(proxy.get(PATH).status, 200);
    }
    assert_eq!(runs(&runs_file), 3, "one run for 21 requests");

    // The token is revoked (its Secret deleted) and the file holds a new one:
    // requests go on with the cached token until the API server answers 401
    // (it caches a token's authentication for a few seconds), which the
    // caller gets; the next request has a fresh credential.
    write(&token_file, &token2);
    delete_secret(plane, &first);
    let mut statuses = Vec::new();
    let refused = eventually(Duration::from_secs(60), || {
        let status = proxy.get(PATH).status;
        statuses.push(status);
        status == 401
    });
    assert!(refused, "the revoked token was never refused: {statuses:?}");
    assert!(
        statuses[..statuses.len() - 1].iter().all(|s| *s == 200),
        "{statuses:?}"
    );
    assert_eq!(runs(&runs_file), 3, "no run before the 401");
    let reply = proxy.get(PATH);
    assert_eq!(reply.status, 200, "after a 401: {}", reply.text());
    assert_eq!(runs(&runs_file), 4, "one run after the 401");
    assert_eq!(proxy.get(PATH).status, 200);
    assert_eq!(runs(&runs_file), 4);
    assert_eq!(
        proxy.log_count("answered 401 to the exec plugin's credential"),
        1
    );
}

#[test]
fn exec_plugins_v1_and_v1beta1_are_cached_refreshed_on_expiry_and_run_again_after_a_401() {
    let plane = ControlPlane::start().unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().unwrap();
    service_account(&plane, SERVICE_ACCOUNT);
    apply_readme_rbac(&plane, None);
    exec_plugin_scenario(&plane, dir.path(), "client.authentication.k8s.io/v1", "v1");
    exec_plugin_scenario(
        &plane,
        dir.path(),
        "client.authentication.k8s.io/v1beta1",
        "v1beta1",
    );
}

#[test]
fn token_files_rotate_and_client_certificates_authenticate() {
    let plane = ControlPlane::start().unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let identity = common::identity_file(dir, GRANT);
    service_account(&plane, SERVICE_ACCOUNT);
    apply_readme_rbac(&plane, None);

    // A token file: after the token is revoked and the file rewritten, the
    // 401 makes the proxy re-read it for the next request.
    let first_uid = secret(&plane, "file-first");
    let second_uid = secret(&plane, "file-second");
    let token_file = dir.join("token");
    write(
        &token_file,
        &token_request(&plane, SERVICE_ACCOUNT, Some(("file-first", &first_uid))),
    );
    let kc = kubeconfig(
        dir,
        "token-file",
        &plane,
        json!({"tokenFile": token_file.display().to_string()}),
    );
    let proxy = ProxyProcess::start(
        "proxy-token-file",
        dir,
        &identity,
        &kubeconfig_args(&kc, &[]),
    );
    assert_eq!(proxy.get(PATH).status, 200);
    write(
        &token_file,
        &token_request(&plane, SERVICE_ACCOUNT, Some(("file-second", &second_uid))),
    );
    delete_secret(&plane, "file-first");
    let mut statuses = Vec::new();
    assert!(
        eventually(Duration::from_secs(60), || {
            statuses.push(proxy.get(PATH).status);
            statuses.last() == Some(&401)
        }),
        "the revoked token was never refused: {statuses:?}"
    );
    let reply = proxy.get(PATH);
    assert_eq!(reply.status, 200, "after a 401: {}", reply.text());
    drop(proxy);

    // A client certificate signed by the cluster CA, for a user bound to the
    // README's ClusterRole.
    let cert_user = "kubescribe-proxy-certificate";
    apply_readme_rbac(
        &plane,
        Some(json!([{"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": cert_user}])),
    );
    let cert = plane
        .client_certificate(cert_user, &["kubescribe"])
        .unwrap();
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let kc = kubeconfig(
        dir,
        "certificate",
        &plane,
        json!({"client-certificate-data": b64(&cert.cert_pem), "client-key-data": b64(&cert.key_pem)}),
    );
    let proxy = ProxyProcess::start(
        "proxy-certificate",
        dir,
        &identity,
        &kubeconfig_args(&kc, &[]),
    );
    let reply = proxy.get(PATH);
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(
        last_audited_user(&plane),
        (cert_user.to_owned(), "alice@example.com".to_owned())
    );
    drop(proxy);

    // An exec plugin that returns that certificate and key instead of a token.
    let pem = |name: &str, text: &str| {
        let path = dir.join(name);
        write(&path, text);
        path.display().to_string()
    };
    let (cert_file, key_file) = (
        pem("cert.pem", &cert.cert_pem),
        pem("key.pem", &cert.key_pem),
    );
    let plugin = script(
        &dir.join("cert-plugin.sh"),
        r#"set -eu
jq_escape() { sed -e ':a' -e 'N' -e '$!ba' -e 's/\n/\\n/g' "$1"; }
printf '{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"clientCertificateData":"%s","clientKeyData":"%s"}}\n' "$(jq_escape "$CERT")" "$(jq_escape "$KEY")"
"#,
    );
    let kc = kubeconfig(
        dir,
        "exec-certificate",
        &plane,
        json!({"exec": {
            "apiVersion": "client.authentication.k8s.io/v1",
            "command": plugin.display().to_string(),
            "env": [{"name": "CERT", "value": cert_file}, {"name": "KEY", "value": key_file}],
            "interactiveMode": "Never",
        }}),
    );
    let proxy = ProxyProcess::start(
        "proxy-exec-certificate",
        dir,
        &identity,
        &kubeconfig_args(&kc, &[]),
    );
    let reply = proxy.get(PATH);
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(
        last_audited_user(&plane),
        (cert_user.to_owned(), "alice@example.com".to_owned())
    );
}

#[test]
fn failing_and_hanging_plugins_answer_502_with_the_reason_bounded_and_logged_once() {
    let plane = ControlPlane::start().unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let identity = common::identity_file(dir, GRANT);
    service_account(&plane, SERVICE_ACCOUNT);
    apply_readme_rbac(&plane, None);
    let token_file = dir.join("token");
    write(&token_file, &token_request(&plane, SERVICE_ACCOUNT, None));

    // Fails while $BROKEN exists, else prints the token, valid for 2 s.
    let broken = dir.join("broken");
    let plugin = script(
        &dir.join("flaky.sh"),
        r#"if [ -e "$BROKEN" ]; then echo "token expired: run 'cloud login' again" >&2; exit 7; fi
expiry=$(date -u -d "@$(( $(date +%s) + 2 ))" +%Y-%m-%dT%H:%M:%SZ)
printf '{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":"%s","expirationTimestamp":"%s"}}\n' "$(cat "$TOKEN_FILE")" "$expiry"
"#,
    );
    let kc = kubeconfig(
        dir,
        "flaky",
        &plane,
        json!({"exec": {
            "apiVersion": "client.authentication.k8s.io/v1",
            "command": plugin.display().to_string(),
            "env": [{"name": "BROKEN", "value": broken.display().to_string()}, {"name": "TOKEN_FILE", "value": token_file.display().to_string()}],
            "interactiveMode": "Never",
        }}),
    );
    // Noauth mode never runs the plugin (it is broken: it would be a 502):
    // the caller's own token reaches the API server.
    write(&broken, "");
    let noauth = ProxyProcess::start(
        "proxy-noauth",
        dir,
        &identity,
        &kubeconfig_args(&kc, &["--mode", "noauth"]),
    );
    let bearer = format!("Bearer {}", ADMIN.token);
    let reply = noauth.get_with(PATH, &[("authorization", &bearer)]);
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(
        last_audited_user(&plane),
        (ADMIN.name.to_owned(), String::new())
    );
    drop(noauth);

    let proxy = ProxyProcess::start("proxy-flaky", dir, &identity, &kubeconfig_args(&kc, &[]));
    let logged = "requests that need the proxy's credentials are answered 502";
    for burst in 1..=2 {
        write(&broken, "");
        // The last credential (2 s) has expired.
        std::thread::sleep(Duration::from_secs(3));
        for _ in 0..3 {
            let reply = proxy.get(PATH);
            assert_eq!(reply.status, 502, "{}", reply.text());
            let body = reply.text();
            assert!(
                body.contains("failed (exit status: 7)")
                    && body.contains("token expired: run 'cloud login' again"),
                "{body}"
            );
            // Past the 1 s in which a failure is answered without a new run.
            std::thread::sleep(Duration::from_millis(1200));
        }
        assert_eq!(
            proxy.log_count(logged),
            burst,
            "once per burst: {}",
            proxy.process.log_tail()
        );
        std::fs::remove_file(&broken).unwrap();
        let reply = proxy.get(PATH);
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert_eq!(proxy.log_count("exec credential plugin works again"), burst);
    }
    drop(proxy);

    // A plugin that hangs is killed after --exec-plugin-timeout; the request
    // gets 502 saying so.
    let pid_file = dir.join("hung.pid");
    let plugin = script(
        &dir.join("hang.sh"),
        &format!("echo $$ > {}\nexec sleep 600\n", pid_file.display()),
    );
    let kc = kubeconfig(
        dir,
        "hang",
        &plane,
        json!({"exec": {"apiVersion": "client.authentication.k8s.io/v1beta1", "command": plugin.display().to_string()}}),
    );
    let proxy = ProxyProcess::start(
        "proxy-hang",
        dir,
        &identity,
        &kubeconfig_args(&kc, &["--exec-plugin-timeout", "2"]),
    );
    let reply = proxy.get(PATH);
    assert_eq!(reply.status, 502, "{}", reply.text());
    assert!(
        reply
            .text()
            .contains("did not finish within 2s and was killed"),
        "{}",
        reply.text()
    );
    let pid = std::fs::read_to_string(&pid_file).unwrap();
    let proc_dir = PathBuf::from(format!("/proc/{}", pid.trim()));
    assert!(
        eventually(Duration::from_secs(10), || !proc_dir.exists()),
        "the hung plugin (pid {pid}) is still there"
    );
}
