//! `cargo xtask chaos`: the recorder (and the S3 server) killed or stopped under load, or one of
//! two proxy replicas killed.

use std::process::Command;

use crate::cmd::{cargo, exec, peers_dir, target_dir, Result};
use crate::peers;

/// What a fault does to the recorder (and the S3 server).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// SIGKILL, then a restart on the same address and storage.
    Kill,
    /// SIGSTOP, then SIGCONT.
    Stop,
    /// SIGKILL of one of two proxy replicas (each with its own spool), then a restart on its
    /// spool; the recorder stays up.
    KillProxy,
}

/// Which callers send the load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Policy {
    /// A fail-open caller only.
    Open,
    /// A fail-closed caller only.
    Closed,
}

/// Where the recorder stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Storage {
    /// A local directory.
    Disk,
    /// A real SeaweedFS S3 server (which faults hit too).
    S3,
}

/// One chaos run.
#[derive(Debug, Clone, clap::Args)]
pub struct Options {
    /// Seconds of load and faults (the quiet period and the checks come after).
    #[arg(long, default_value_t = 60)]
    pub secs: u64,
    /// What a fault does.
    #[arg(long, value_enum, default_value = "kill")]
    pub mode: Mode,
    /// The callers' failure policy (default: both at once, a fail-closed and a fail-open caller).
    #[arg(long, value_enum)]
    pub policy: Option<Policy>,
    /// Where the recorder stores.
    #[arg(long, value_enum, default_value = "disk")]
    pub storage: Storage,
    /// The API server behind the proxy: the simulator (exec sessions run too) or the real
    /// kube-apiserver.
    #[arg(long, value_enum, default_value = "sim")]
    pub upstream: crate::e2e::Upstream,
    /// Seed of the fault schedule (default: from the clock; printed, to repeat a run).
    #[arg(long)]
    pub seed: Option<u64>,
}

/// Installs the peers, builds the binaries, and runs one chaos run.
pub fn run(options: &Options) -> Result<()> {
    peers::install()?;
    build()?;
    run_built(options)
}

/// Builds what a chaos run starts: the proxy, the recorder, the simulator and the checker.
pub fn build() -> Result<()> {
    exec(cargo().args([
        "build",
        "-p",
        "kubescribe-proxy",
        "-p",
        "kubescribe-recorder",
        "-p",
        "kubescribe-kube-sim",
        "-p",
        "kubescribe-system-tests",
        "--bins",
    ]))
}

/// Runs the checker (`tests/system/src/bin/chaos/main.rs`) with the binaries and peers already in
/// place: load and faults for `--secs`, a quiet period, then the four counts, printed; fails
/// unless every one is 0.
pub fn run_built(options: &Options) -> Result<()> {
    let mut command = Command::new(target_dir().join("debug/chaos"));
    command
        .args(["--secs", &options.secs.to_string()])
        .args([
            "--mode",
            match options.mode {
                Mode::Kill => "kill",
                Mode::Stop => "stop",
                Mode::KillProxy => "kill-proxy",
            },
        ])
        .args([
            "--storage",
            match options.storage {
                Storage::Disk => "disk",
                Storage::S3 => "s3",
            },
        ])
        .args(["--upstream", options.upstream.as_arg()])
        .env("KUBESCRIBE_PEERS", peers_dir());
    if let Some(policy) = options.policy {
        command.args([
            "--policy",
            match policy {
                Policy::Open => "open",
                Policy::Closed => "closed",
            },
        ]);
    }
    if let Some(seed) = options.seed {
        command.args(["--seed", &seed.to_string()]);
    }
    exec(&mut command)
}
