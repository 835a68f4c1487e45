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

/// Runs the proxy benchmark (`crates/proxy/examples/bench_proxy.rs`), release build.
pub fn proxy_throughput() -> Result<()> {
    exec(cargo().args([
        "run",
        "--release",
        "-p",
        "kubescribe-proxy",
        "--example",
        "bench_proxy",
        "--",
        "--requests",
        "20000",
        "--concurrency",
        "16",
    ]))
}

/// Runs the recorder ingest benchmark (`crates/recorder-server/examples/bench_ingest.rs`),
/// release build: 5 s per phase, batches of 100, in a temporary directory.
pub fn ingest_throughput() -> Result<()> {
    exec(cargo().args([
        "run",
        "--release",
        "-p",
        "kubescribe-recorder",
        "--example",
        "bench_ingest",
    ]))
}
