//! `cargo xtask flood`: builds the release binaries and runs the connection flood
//! (`tests/system/src/bin/flood.rs`): against each listener of the proxy and the recorder in turn,
//! `--sockets` idle and half-open connections, while legitimate requests' latency and the server's
//! file descriptors and RSS are measured before, during and after. Prints a Markdown table.

use crate::cmd::{cargo, exec, target_dir, Result};

/// How big a flood, and how it is opened.
pub struct Options {
    /// Connections per listener.
    pub sockets: usize,
    /// Flood processes (each with its own fd limit and source address).
    pub workers: usize,
    /// Connections opened per second, in all.
    pub rate: usize,
    /// Seconds the flood is held once opened.
    pub hold: u64,
}

/// Builds the binaries (release) and runs the flood.
pub fn run(options: &Options) -> Result<()> {
    exec(cargo().args([
        "build",
        "--release",
        "-p",
        "kubescribe-proxy",
        "-p",
        "kubescribe-recorder",
        "-p",
        "kubescribe-kube-sim",
        "-p",
        "kubescribe-system-tests",
        "--bin",
        "kubescribe-proxy",
        "--bin",
        "kubescribe-recorder",
        "--bin",
        "kube-sim",
        "--bin",
        "flood",
    ]))?;
    exec(
        std::process::Command::new(target_dir().join("release/flood")).args([
            "--sockets".to_owned(),
            options.sockets.to_string(),
            "--workers".to_owned(),
            options.workers.to_string(),
            "--rate".to_owned(),
            options.rate.to_string(),
            "--hold".to_owned(),
            options.hold.to_string(),
        ]),
    )
}
