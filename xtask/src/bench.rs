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
        std::process::Command::new(crate::cmd::target_dir().join("release/bench_exec"))
            .env("KUBESCRIBE_PEERS", crate::cmd::peers_dir()),
    )
}

/// Builds release binaries and measures what `watches` open watches and as many idle keep-alive
/// connections cost the proxy's (and the recorder's) memory (`tests/system/src/bin/bench_watch.rs`).
pub fn watch_memory(watches: usize) -> Result<()> {
    exec(cargo().args(["build", "--release", "--workspace", "--bins"]))?;
    exec(
        std::process::Command::new(crate::cmd::target_dir().join("release/bench_watch"))
            .args(["--watches", &watches.to_string()])
            .env("KUBESCRIBE_PEERS", crate::cmd::peers_dir()),
    )
}

/// Runs the tailnet latency benchmark (`tests/system/src/bin/bench_tailnet.rs`, release build)
/// under `unshare --net`: a sealed network namespace with a real tailnet in it.
pub fn tailnet_latency() -> Result<()> {
    crate::peers::install_tailnet()?;
    exec(cargo().args(["build", "--release", "--workspace", "--bins"]))?;
    in_sealed_namespace("bench_tailnet")
}

/// Runs kubescribe-proxy and Tailscale's own API server proxy side by side on one tailnet
/// (`tests/system/src/bin/bench_side_by_side.rs`, release build) under `unshare --net`.
pub fn side_by_side() -> Result<()> {
    crate::peers::install_tailnet()?;
    exec(cargo().args(["build", "--release", "--workspace", "--bins"]))?;
    in_sealed_namespace("bench_side_by_side")
}

/// Runs the release binary `name` under `unshare --net` (it seals the namespace itself).
fn in_sealed_namespace(name: &str) -> Result<()> {
    exec(
        std::process::Command::new("unshare")
            .arg("--net")
            .arg("--")
            .arg(crate::cmd::target_dir().join("release").join(name))
            .env("KUBESCRIBE_PEERS", crate::cmd::peers_dir())
            .env("KUBESCRIBE_PRIVATE_NETNS", "1"),
    )
}

/// The upstreams `cargo xtask bench-proxy` measures in front of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProxyUpstream {
    /// A no-op API server answering a fixed 1 KiB PodList at once.
    Noop,
    /// The simulator (kube-sim, plain HTTP).
    Sim,
    /// Both, one table each.
    Both,
}

/// The ways of reaching the upstream `cargo xtask bench-proxy` measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProxyRow {
    /// Load straight to the upstream.
    Direct,
    /// A bare hyper HTTP/1.1 reverse proxy: the floor.
    Bare,
    /// nginx as a reverse proxy (when installed).
    Nginx,
    /// kubescribe-proxy, events off.
    Off,
    /// kubescribe-proxy, events on, fail open.
    Open,
    /// kubescribe-proxy, events on, fail closed.
    Closed,
    /// The recording floor, fail open: the bare proxy appending a line per request and per
    /// response to its own log, synced in groups, forwarding at once.
    LoggedOpen,
    /// The recording floor, fail closed: the same, forwarding once the request's line is durable.
    LoggedClosed,
}

/// Which load generator `cargo xtask bench-proxy` uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LoadGenerator {
    /// wrk when installed (installed with apt-get when missing and run as root), else builtin.
    Auto,
    /// wrk, 1 thread.
    Wrk,
    /// A closed-loop hyper client in the benchmark's process.
    Builtin,
}

/// Options of `cargo xtask bench-proxy`.
#[derive(Debug, Clone, clap::Args)]
pub struct ProxyOptions {
    /// Seconds of load per row (after a 1 s warm-up).
    #[arg(long, default_value_t = 5)]
    pub secs: u64,
    /// Connection counts, each a set of rows (comma-separated).
    #[arg(long, value_delimiter = ',', default_values_t = [4, 32, 64])]
    pub connections: Vec<usize>,
    /// The upstream behind the proxies.
    #[arg(long, value_enum, default_value = "both")]
    pub upstream: ProxyUpstream,
    /// Rows to run (comma-separated; default: all).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub rows: Vec<ProxyRow>,
    /// The load generator.
    #[arg(long, value_enum, default_value = "auto")]
    pub load: LoadGenerator,
    /// The recorder stores in a real SeaweedFS S3 server instead of on local disk.
    #[arg(long)]
    pub s3: bool,
    /// Run only the in-process variant (in-memory recorder: the proxy's cost alone).
    #[arg(long, conflicts_with = "no_in_memory")]
    pub in_memory_only: bool,
    /// Skip the in-process variant.
    #[arg(long)]
    pub no_in_memory: bool,
    /// One more flag for the recorder (repeatable; e.g. `--recorder-arg=--manifest-interval=1000h`).
    #[arg(long, allow_hyphen_values = true)]
    pub recorder_arg: Vec<String>,
}

/// Runs the proxy benchmark as users run the system: release binaries as separate processes
/// (`tests/system/examples/bench_proxy_system.rs`: the real recorder storing durably, the
/// proxy, an upstream, the bare-proxy floor, nginx, wrk), then the in-process variant with an
/// in-memory recorder (`crates/proxy/examples/bench_proxy.rs`). Prints Markdown tables and
/// writes the results to `target/bench/proxy-<unix time>.json`.
pub fn proxy_throughput(options: &ProxyOptions) -> Result<()> {
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let json = crate::cmd::target_dir()
        .join("bench")
        .join(format!("proxy-{started}.json"));
    if !options.in_memory_only {
        system_proxy_throughput(options, &json)?;
    }
    if options.no_in_memory {
        return Ok(());
    }
    let mut in_memory = cargo();
    in_memory.args([
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
    ]);
    eprintln!("+ in-process variant (in-memory recorder): cargo run --release -p kubescribe-proxy --example bench_proxy");
    let out = in_memory
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| format!("could not run bench_proxy: {e}"))?;
    let tables = String::from_utf8_lossy(&out.stdout).into_owned();
    println!(
        "\n## In process, in-memory recorder (the proxy's cost without the recorder's)\n{tables}"
    );
    if !out.status.success() {
        return Err(format!("bench_proxy failed: {}", out.status));
    }
    // The same run's JSON gets the in-process tables too (or holds only them).
    let mut doc = std::fs::read_to_string(&json)
        .ok()
        .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
        .unwrap_or_else(|| serde_json::json!({"benchmark": "proxy"}));
    doc["in_memory_markdown"] = serde_json::Value::String(tables);
    write_json(&json, &doc)
}

fn write_json(path: &std::path::Path, doc: &serde_json::Value) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let text = serde_json::to_string_pretty(doc).map_err(|e| e.to_string())?;
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    eprintln!("results in {}", path.display());
    Ok(())
}

/// Builds the release binaries and runs `bench_proxy_system`, which writes `json`.
fn system_proxy_throughput(options: &ProxyOptions, json: &std::path::Path) -> Result<()> {
    if options.load != LoadGenerator::Builtin && !crate::cmd::on_path("wrk") {
        install_wrk();
    }
    if options.s3 {
        // SeaweedFS comes with the Python peers.
        crate::peers::install_kubectl()?;
    }
    let mut args: Vec<std::ffi::OsString> = vec![
        "--secs".into(),
        options.secs.to_string().into(),
        "--connections".into(),
        options
            .connections
            .iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join(",")
            .into(),
        "--upstream".into(),
        flag_value(&options.upstream).into(),
        "--load".into(),
        flag_value(&options.load).into(),
        "--json".into(),
        json.into(),
    ];
    if !options.rows.is_empty() {
        let rows: Vec<String> = options.rows.iter().map(flag_value).collect();
        args.extend(["--rows".into(), rows.join(",").into()]);
    }
    for flag in &options.recorder_arg {
        args.extend(["--recorder-arg".into(), flag.into()]);
    }
    if options.s3 {
        args.push("--s3".into());
    }
    release_example_with(
        &[
            "kubescribe-proxy",
            "kubescribe-recorder",
            "kubescribe-kube-sim",
        ],
        &["bench_hop"],
        "bench_proxy_system",
        &args,
    )
}

/// How `value` is spelled on the command line (`fail-open`, `noop`).
fn flag_value(value: &impl clap::ValueEnum) -> String {
    value
        .to_possible_value()
        .map(|v| v.get_name().to_owned())
        .unwrap_or_default()
}

/// Installs wrk with apt-get when run as root; otherwise (or when that fails) the benchmark
/// falls back to its in-process load generator.
fn install_wrk() {
    let root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0");
    if !root || !crate::cmd::on_path("apt-get") {
        eprintln!(
            "wrk is not installed (apt-get install wrk): using the in-process load generator"
        );
        return;
    }
    if let Err(e) = exec(
        std::process::Command::new("apt-get")
            .args(["install", "-y", "-qq", "wrk"])
            .env("DEBIAN_FRONTEND", "noninteractive"),
    ) {
        eprintln!("{e}: using the in-process load generator");
    }
}

/// Runs the recorder ingest benchmark (`crates/recorder-server/examples/bench_ingest.rs`,
/// in-process hyper senders, single POSTs and batches), then, when `wrk` is
/// installed (`apt-get install wrk`), single POSTs from wrk (64 connections)
/// against the release `kubescribe-recorder` binary: a load generator that
/// costs the 2 shared cores less than the in-process one.
pub fn ingest_throughput() -> Result<()> {
    exec(cargo().args([
        "run",
        "--release",
        "-p",
        "kubescribe-recorder",
        "--example",
        "bench_ingest",
    ]))?;
    if !crate::cmd::on_path("wrk") {
        eprintln!("wrk is not installed: skipping the wrk run (apt-get install wrk)");
        return Ok(());
    }
    exec(cargo().args(["build", "--release", "-p", "kubescribe-recorder"]))?;
    wrk_single_posts()
}

/// Measures what tamper evidence costs ingest: `bench_ingest` (release)
/// alternately with the sealer idle (`--manifest-interval 1000h`) and sealing
/// every second (`1s`: each sealed 64 MiB segment is read back, chained and
/// signed during the run), `runs` times each, then `bench_chain`, one core's
/// hashing rate: the floor, printed as the share of the machine's CPU that
/// hashing alone needs at the idle ingest rate.
pub fn tamper_cost(runs: usize, secs: u64) -> Result<()> {
    exec(cargo().args([
        "build",
        "--release",
        "-p",
        "kubescribe-recorder",
        "--examples",
    ]))?;
    let examples = crate::cmd::target_dir().join("release/examples");
    let mut rates: [[Vec<f64>; 2]; 2] = Default::default();
    for run in 0..runs {
        for (mode, interval) in ["1000h", "1s"].into_iter().enumerate() {
            let out = std::process::Command::new(examples.join("bench_ingest"))
                .args([secs.to_string(), "100".into()])
                .env("BENCH_MANIFEST_INTERVAL", interval)
                .output()
                .map_err(|e| format!("bench_ingest: {e}"))?;
            let text = String::from_utf8_lossy(&out.stdout);
            for (phase, label) in ["single POST /v2/event:", "batched POST /v2/events:"]
                .into_iter()
                .enumerate()
            {
                let rate = text
                    .lines()
                    .find_map(|l| l.strip_prefix(label))
                    .and_then(|r| r.split_whitespace().next()?.parse::<f64>().ok())
                    .ok_or_else(|| format!("bench_ingest printed no {label:?}: {text}"))?;
                eprintln!("run {run}: interval {interval:>5}: {label} {rate:.0} events/s");
                rates[phase][mode].push(rate);
            }
        }
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let median = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(0.0)
    };
    let spread = |v: &[f64]| {
        let (lo, hi) = v
            .iter()
            .fold((f64::MAX, 0.0f64), |(lo, hi), x| (lo.min(*x), hi.max(*x)));
        format!("{lo:.0}–{hi:.0}")
    };
    println!("{runs} alternated runs of each mode, {secs} s per phase:");
    println!("| upload | sealer idle: mean (range) events/s | sealing every 1 s: mean (range) | cost of the means | cost of the medians |");
    println!("|---|---:|---:|---:|---:|");
    for (phase, name) in ["single POST /v2/event", "batched POST /v2/events"]
        .into_iter()
        .enumerate()
    {
        let (idle, sealing) = (&rates[phase][0], &rates[phase][1]);
        println!(
            "| {name} | {:.0} ({}) | {:.0} ({}) | {:.1} % | {:.1} % |",
            mean(idle),
            spread(idle),
            mean(sealing),
            spread(sealing),
            (1.0 - mean(sealing) / mean(idle)) * 100.0,
            (1.0 - median(sealing) / median(idle)) * 100.0
        );
    }
    let out = std::process::Command::new(examples.join("bench_chain"))
        .output()
        .map_err(|e| format!("bench_chain: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    print!("{text}");
    let chain_rate = text
        .lines()
        .filter_map(|l| {
            l.split(", ")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse::<f64>()
                .ok()
        })
        .fold(0.0, f64::max);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    if chain_rate > 0.0 {
        println!(
            "hashing alone, at the idle batched rate: {:.1} % of one core, {:.1} % of this machine's {cores} cores",
            mean(&rates[1][0]) / chain_rate * 100.0,
            mean(&rates[1][0]) / chain_rate / cores * 100.0
        );
    }
    Ok(())
}

const WRK_TOKEN: &str = "xtask-bench-ingest-token-0123456789";
const WRK_PORT: u16 = 18_181;

fn wrk_single_posts() -> Result<()> {
    let dir = std::env::temp_dir().join(format!("kubescribe-bench-ingest-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let write = |name: &str, text: &str| {
        std::fs::write(dir.join(name), text).map_err(|e| format!("{name}: {e}"))
    };
    write("token", WRK_TOKEN)?;
    let event = r#"{"type":"kubernetes-api-request","id":"","timestamp":1767225600,"userAgent":"kubectl/v1.35.0","request":{"method":"GET","path":"/api/v1/namespaces/default/pods/web-1","body":"","queryParameters":{}},"kubernetes":{"IsResourceRequest":true,"Path":"/api/v1/namespaces/default/pods/web-1","Verb":"get","APIPrefix":"api","APIGroup":"","APIVersion":"v1","Namespace":"default","Resource":"pods","Subresource":"","Name":"web-1","Parts":["pods","web-1"],"FieldSelector":"","LabelSelector":""},"source":{"node":"laptop.tail1234.ts.net","nodeID":"nAbC123CNTRL","nodeUserID":4242,"nodeUser":"alice@example.com"},"destination":{"node":"","nodeID":""}}"#;
    write(
        "post.lua",
        &format!(
            "wrk.method = \"POST\"\nwrk.headers[\"Content-Type\"] = \"application/json\"\n\
             wrk.headers[\"Authorization\"] = \"Bearer {WRK_TOKEN}\"\nwrk.body = '{event}'\n\
             done = function(summary, latency, requests)\n  io.write(string.format(\"errors or non-2xx: %d\\n\", \
             summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))\nend\n"
        ),
    )?;
    let mut recorder =
        std::process::Command::new(crate::cmd::target_dir().join("release/kubescribe-recorder"))
            .arg("--listen")
            .arg(format!("127.0.0.1:{WRK_PORT}"))
            .arg("--dst")
            .arg(dir.join("data"))
            .arg("--signing-key")
            .arg(dir.join("signing.key"))
            .arg("--generate-signing-key")
            .arg("--upload-token-file")
            .arg(dir.join("token"))
            .args(["--admin-listen", "off"])
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(|e| format!("could not start kubescribe-recorder: {e}"))?;
    std::thread::sleep(std::time::Duration::from_secs(1));
    eprintln!("single POST /v2/event from wrk, 64 connections, 5 s; every 2xx is a durable event:");
    let result = exec(
        std::process::Command::new("wrk")
            .args(["-t2", "-c64", "-d5s", "-s"])
            .arg(dir.join("post.lua"))
            .arg(format!("http://127.0.0.1:{WRK_PORT}/v2/event")),
    );
    let _ = recorder.kill();
    let _ = recorder.wait();
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// Runs `tests/system/examples/bench_stall.rs` against release binaries: fail-closed
/// refusal latency while the only recorder is stopped (SIGSTOP), and recovery after SIGCONT.
pub fn recorder_stall() -> Result<()> {
    release_example(
        &[
            "kubescribe-proxy",
            "kubescribe-recorder",
            "kubescribe-kube-sim",
        ],
        "bench_stall",
    )
}

/// Runs `tests/system/examples/bench_drain.rs` against the release recorder: the spool
/// drain rate from a 100,000-record backlog of mixed kinds.
pub fn spool_drain() -> Result<()> {
    release_example(&["kubescribe-recorder"], "bench_drain")
}

/// Runs `tests/system/examples/bench_s3_puts.rs` against the release recorder and a real
/// SeaweedFS (installed with the Python peers): PUTs per 1,000 events in each S3 mode.
pub fn s3_puts(args: &[std::ffi::OsString]) -> Result<()> {
    crate::peers::install_kubectl()?;
    release_example_with(&["kubescribe-recorder"], &[], "bench_s3_puts", args)
}

/// Builds `packages` in release, then runs the system tests' `example` in release (it
/// starts those packages' binaries from the release target directory).
fn release_example(packages: &[&str], example: &str) -> Result<()> {
    release_example_with(packages, &[], example, &[])
}

/// [`release_example`], with the system tests' `examples` built first too (the example starts
/// them as processes of their own) and `args` passed to it.
fn release_example_with(
    packages: &[&str],
    examples: &[&str],
    example: &str,
    args: &[std::ffi::OsString],
) -> Result<()> {
    let mut build = cargo();
    build.args(["build", "--release"]);
    for package in packages {
        build.args(["-p", package]);
    }
    exec(&mut build)?;
    if !examples.is_empty() {
        let mut build = cargo();
        build.args(["build", "--release", "-p", "kubescribe-system-tests"]);
        for example in examples {
            build.args(["--example", example]);
        }
        exec(&mut build)?;
    }
    exec(
        cargo()
            .args([
                "run",
                "--release",
                "-p",
                "kubescribe-system-tests",
                "--example",
                example,
                "--",
            ])
            .args(args)
            .env("KUBESCRIBE_PEERS", crate::cmd::peers_dir()),
    )
}
