//! `cargo xtask e2e`: the whole system against real kubectl.

use crate::cmd::{cargo, exec, peers_dir, target_dir, Result};
use crate::{oracle, peers};

/// Which API server the end-to-end run puts behind the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Upstream {
    /// The project's simulator, which also plays the kubelet (exec, attach, logs).
    Sim,
    /// The real kube-apiserver (with etcd): real RBAC and audit log; no kubelet.
    Apiserver,
}

impl Upstream {
    pub fn as_arg(self) -> &'static str {
        match self {
            Upstream::Sim => "sim",
            Upstream::Apiserver => "apiserver",
        }
    }
}

/// Installs the peers, builds every binary, and runs the end-to-end
/// scenarios (`tests/system/src/bin/e2e/main.rs`) against each upstream in
/// `upstreams`, and the oracle after the real kube-apiserver; they print a
/// report and fail on any mismatch.
pub fn run(upstreams: &[Upstream]) -> Result<()> {
    peers::install()?;
    exec(cargo().args(["build", "--workspace", "--bins"]))?;
    run_built(upstreams)
}

/// Runs the end-to-end scenarios with the binaries and peers already in place; after the real
/// kube-apiserver's scenarios, the oracle (its audit log against every event).
pub fn run_built(upstreams: &[Upstream]) -> Result<()> {
    let e2e = target_dir().join("debug/e2e");
    for upstream in upstreams {
        exec(
            std::process::Command::new(&e2e)
                .args(["--upstream", upstream.as_arg()])
                .env("KUBESCRIBE_PEERS", peers_dir()),
        )?;
    }
    if upstreams.contains(&Upstream::Apiserver) {
        oracle::run_built()?;
    }
    Ok(())
}
