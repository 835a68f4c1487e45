//! `cargo xtask e2e`: the whole system against real kubectl.

use crate::cmd::{cargo, exec, peers_dir, workspace_root, Result};
use crate::peers;

/// Installs the peers, builds every binary, and runs the end-to-end
/// scenarios (`tests/system/src/bin/e2e/main.rs`), which print a report and fail
/// on any mismatch.
pub fn run() -> Result<()> {
    peers::install()?;
    exec(cargo().args(["build", "--workspace", "--bins"]))?;
    let e2e = workspace_root().join("target/debug/e2e");
    exec(std::process::Command::new(e2e).env("KUBESCRIBE_PEERS", peers_dir()))
}
