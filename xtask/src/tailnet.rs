//! `cargo xtask tailnet`: a real tailnet by hand (control with DERP and four
//! tailscaled nodes) in a sealed network namespace of its own.

use std::process::Command;

use crate::cmd::{cargo, exec, peers_dir, target_dir, Result};
use crate::peers;

/// Builds the Go peers (if their pins changed) and the `tailnet` runner,
/// then runs it under `unshare --net`: it prints each node's address,
/// LocalAPI socket and SOCKS5 proxy, and stops everything on Ctrl-C.
pub fn run() -> Result<()> {
    peers::install_tailnet()?;
    exec(cargo().args(["build", "-p", "kubescribe-test-support", "--bin", "tailnet"]))?;
    exec(
        Command::new("unshare")
            .arg("--net")
            .arg("--")
            .arg(target_dir().join("debug/tailnet"))
            .env("KUBESCRIBE_PEERS", peers_dir())
            .env("KUBESCRIBE_PRIVATE_NETNS", "1"),
    )
}
