//! `cargo xtask oracle`: kube-apiserver's audit log as the oracle for kubescribe's request info.

use std::process::Command;
use std::time::Instant;

use crate::cmd::{cargo, exec, peers_dir, target_dir, Result};
use crate::peers;

/// Installs the peers, builds the proxy, the recorder and the oracle, and runs it.
pub fn run() -> Result<()> {
    peers::install()?;
    exec(cargo().args([
        "build",
        "-p",
        "kubescribe-proxy",
        "-p",
        "kubescribe-recorder",
        "-p",
        "kubescribe-system-tests",
        "--bins",
    ]))?;
    run_built()
}

/// Runs the oracle (`tests/system/src/bin/oracle.rs`) with the binaries and peers already in place:
/// some 2,700 requests through the proxy to the real kube-apiserver, each event compared with its
/// audit event. It prints the table of mismatches by field (also `target/oracle/report.md`) and
/// fails on any mismatch.
pub fn run_built() -> Result<()> {
    let started = Instant::now();
    let result =
        exec(Command::new(target_dir().join("debug/oracle")).env("KUBESCRIBE_PEERS", peers_dir()));
    eprintln!(
        "xtask: the oracle took {:.0} s",
        started.elapsed().as_secs_f64()
    );
    result
}
