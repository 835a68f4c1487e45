//! `cargo xtask test`: the one command that runs every test.

use crate::cmd::{cargo, exec, on_path, peers_dir, Result};
use crate::{e2e, peers};

/// Installs the peers, builds once, runs the workspace's tests (including
/// the slow real-peer tests, which fail rather than skip when a peer is
/// missing) and doc tests, then e2e (which ends with the oracle).
pub fn run(with_e2e: bool) -> Result<()> {
    peers::install()?;
    let peers = peers_dir();
    // Binaries (for the e2e run and the tests that start them) and examples
    // (the `requestinfo` contract test runs the built example). Benches are
    // checked by clippy and run by `cargo xtask bench`, not here.
    exec(
        cargo()
            .args(["build", "--workspace", "--bins", "--examples"])
            .env("KUBESCRIBE_PEERS", &peers),
    )?;
    if on_path("cargo-nextest") {
        // nextest's default targets: libraries, binaries and integration tests.
        exec(
            cargo()
                .args(["nextest", "run", "--workspace", "--no-fail-fast"])
                .args(["--run-ignored", "all", "--failure-output", "final"])
                .env("KUBESCRIBE_PEERS", &peers),
        )?;
    } else {
        exec(
            cargo()
                .args([
                    "test",
                    "--workspace",
                    "--lib",
                    "--bins",
                    "--tests",
                    "--no-fail-fast",
                ])
                .args(["--", "--include-ignored"])
                .env("KUBESCRIBE_PEERS", &peers),
        )?;
    }
    exec(
        cargo()
            .args(["test", "--workspace", "--doc"])
            .env("KUBESCRIBE_PEERS", &peers),
    )?;
    if with_e2e {
        e2e::run_built(&[e2e::Upstream::Sim, e2e::Upstream::Apiserver])?;
    }
    Ok(())
}
