//! `cargo xtask apiserver`: a real control plane (etcd and kube-apiserver)
//! by hand, to point kubectl or the proxy at.

use crate::cmd::{cargo, exec, target_dir, Result};
use crate::peers;

/// Builds the peers it needs (if their pins changed) and the
/// `control-plane` runner, then runs it: it prints the URL, kubeconfigs and
/// tokens, and stops everything on Ctrl-C.
pub fn run() -> Result<()> {
    let peers = peers::install_control_plane()?;
    exec(cargo().args([
        "build",
        "-p",
        "kubescribe-test-support",
        "--bin",
        "control-plane",
    ]))?;
    exec(
        std::process::Command::new(target_dir().join("debug/control-plane"))
            .env("KUBESCRIBE_PEERS", peers),
    )
}
