//! `cargo xtask bench`: every benchmark, briefly.

use crate::cmd::{cargo, exec, Result};

/// Runs the criterion benchmarks of every crate that has them.
pub fn run() -> Result<()> {
    exec(cargo().args(["bench", "--workspace", "--"]).args([
        "--warm-up-time",
        "1",
        "--measurement-time",
        "3",
    ]))
}

/// Builds release binaries and measures exec throughput through the proxy,
/// recorded and unrecorded.
pub fn exec_throughput() -> Result<()> {
    crate::peers::install_kubectl()?;
    exec(cargo().args(["build", "--release", "--workspace", "--bins"]))?;
    exec(
        std::process::Command::new(crate::cmd::workspace_root().join("target/release/bench_exec"))
            .env("KUBESCRIBE_PEERS", crate::cmd::peers_dir()),
    )
}
