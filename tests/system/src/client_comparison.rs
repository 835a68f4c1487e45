//! The stack a client-library comparison test starts: one caller impersonated into a group that a
//! cluster role binds, a namespace for the direct run and one for the run through the proxy, and a
//! labelled fixture configmap in `default` and `kube-system` for the list and selector operations.
//! Used by the Python and kube-rs client tests, which then run the same operations both ways.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use serde_json::json;

use crate::identities::TestIdentity;
use crate::stack::{Stack, StackOptions, Storage};
use crate::upstream::UpstreamKind;
use crate::Error;
use crate::{rbac, received};

/// Who the client is and where its two runs work.
pub struct ClientComparison<'a> {
    /// The caller's name in the stack (its kubeconfig: `stack.caller(name)`), also the fixtures' label.
    pub name: &'a str,
    /// The tailnet login the caller's node belongs to.
    pub login: &'a str,
    /// The group it is impersonated into, bound to the cluster role `<name>-tester`.
    pub group: &'a str,
    /// The caller's WhoIs user id and tailnet address.
    pub user_id: i64,
    /// The caller's tailnet address.
    pub address: Ipv4Addr,
    /// The namespaces of the direct run and of the run through the proxy.
    pub namespaces: [&'a str; 2],
}

impl ClientComparison<'_> {
    /// Starts the stack on the real kube-apiserver (events required, fail closed) and sets up the
    /// role, its binding, the two namespaces and the fixtures.
    pub fn start(&self) -> Result<Stack, Error> {
        let mut options = StackOptions::new(UpstreamKind::ApiServer, Storage::Disk)?;
        let grants = vec![json!({
            "recorderAddrs": options.recorder_addrs(),
            "enforceRecorder": true,
            "enableEvents": true,
            "impersonate": {"groups": [self.group]}
        })];
        options = options.caller(
            self.name,
            TestIdentity::user(
                &format!("{}-laptop", self.name),
                self.login,
                self.user_id,
                IpAddr::V4(self.address),
                grants,
            ),
        );
        let stack = Stack::start_with_options(options)?;
        let plane = stack
            .upstream
            .control_plane()
            .ok_or("the stack has no real API server")?;
        let role = format!("{}-tester", self.name);
        rbac::cluster_role(
            plane,
            &role,
            &[
                rbac::rule("", &["configmaps", "services", "pods"], &["*"]),
                rbac::rule("apps", &["deployments"], &["*"]),
            ],
        )?;
        rbac::cluster_role_binding(plane, &role, &role, &[rbac::group(self.group)])?;
        for ns in self.namespaces {
            rbac::namespace(plane, ns)?;
        }
        for ns in ["default", "kube-system"] {
            plane.create(
                &format!("/api/v1/namespaces/{ns}/configmaps"),
                &json!({"apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": {"name": "fixture", "labels": {"fixture": self.name}}}),
            )?;
        }
        Ok(stack)
    }
}

/// The end of a comparison: every request `login` sent through the proxy has
/// its event (kube-apiserver's audit log against the recorder), then a panic
/// with every failure collected, if any.
pub fn assert_recorded_and_no_failures(stack: &Stack, login: &str, mut failures: Vec<String>) {
    match received::through_proxy(
        stack,
        login,
        &format!("user={}", login.replace('@', "%40")),
        Duration::from_secs(20),
    ) {
        Ok(got) => {
            println!("  requests and events: {got}");
            if !got.matches() || got.audited == 0 {
                failures.push(format!("requests and events differ: {got}"));
            }
        }
        Err(e) => failures.push(format!("comparing requests and events: {e}")),
    }
    assert!(
        failures.is_empty(),
        "{} checks failed (logs in {}):\n{}",
        failures.len(),
        stack.dir.path().display(),
        failures.join("\n")
    );
}
