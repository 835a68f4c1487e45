//! The proxy benchmark as users run the system: every part a process of its own, on loopback.
//!
//! * the real recorder (release `kubescribe-recorder`), storing durably on local disk (or, with
//!   `--s3`, in a real SeaweedFS S3 server), signing manifests, admin listener for its metrics;
//! * an upstream: the no-op API server (`bench_hop noop-api`: the same ~1 KiB `PodList` at once)
//!   or the simulator (`kube-sim --plain`, bearer tokens, impersonation checks, a real store);
//! * in front of it, one process per row: the bare hyper proxy (`bench_hop bare-proxy`: the
//!   floor), nginx as a reverse proxy (when installed), and `kubescribe-proxy` three times (auth
//!   mode, plain HTTP, `--identity-file` naming the bench caller by its loopback address with a
//!   grant for events off, fail open or fail closed), and the bare proxy keeping its own
//!   durable log (`bench_hop bare-proxy --log`, fail open and fail closed: the floor of
//!   recording a line per request and per response on this machine);
//! * a load generator: `wrk` (1 thread, `-c N`, a Lua `done` callback printing p50/p99/p99.9),
//!   or, without it, a closed-loop hyper client in this process (one current-thread runtime).
//!
//! Every row runs `GET /api/v1/namespaces/default/pods` for `--warmup` then `--secs` seconds at
//! each connection count. CPU per request is each process's utime + stime (`/proc/PID/stat`,
//! children included: nginx's workers) over the measured seconds, divided by the requests;
//! "other CPU" is what the rest of the machine used meanwhile (`/proc/stat` less this benchmark's
//! processes and wrk), in cores: how noisy the row was. After each recorded row the recorder's
//! metrics say how many events it received, how many records it stored durably and in how many
//! group commits, next to the requests made.
//!
//! Prints a Markdown table per upstream; `--json FILE` also writes every row as JSON.
//!
//! ```text
//! cargo xtask bench-proxy            # builds the release binaries, then runs this
//! cargo run --release -p kubescribe-system-tests --example bench_proxy_system -- \
//!     [--secs 5] [--warmup 1] [--connections 4,32,64] [--upstream noop|sim|both] \
//!     [--rows direct,bare,nginx,off,open,closed,logged-open,logged-closed] [--load auto|wrk|builtin] [--s3] [--json FILE]
//! ```
//! The binaries are taken from the example's own target directory (build them with
//! `cargo build --release -p kubescribe-proxy -p kubescribe-recorder -p kubescribe-kube-sim`).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use kubescribe_system_tests::load::quantile;
use kubescribe_system_tests::upstream::{Upstream, SIM_PROXY_TOKEN};
use kubescribe_system_tests::Error;
use serde_json::{json, Value};
use test_support::net::free_port;
use test_support::process::{
    child_pids, clock_ticks_per_second, cpu_ticks, machine_busy_ticks,
    own_and_reaped_children_cpu_ticks, workspace_bin, Spawned,
};
use test_support::seaweed::{self, Seaweed};

/// What every request asks for: a list of pods.
const PATH: &str = "/api/v1/namespaces/default/pods";
/// The caller's credential: the simulator's user for the direct, bare and nginx rows; the
/// kubescribe rows (auth mode) strip it, as they strip every caller's.
const CALLER_TOKEN: &str = "bench-caller-token-0123456789";
/// The recorder's metrics: records durably stored, and events received.
const STORED: &str = "kubescribe_recorder_records_stored_total";
const EVENTS: &str = "kubescribe_recorder_records_received_total{kind=\"event\"}";

/// One way of reaching the upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Row {
    Direct,
    Bare,
    Nginx,
    EventsOff,
    FailOpen,
    FailClosed,
    /// The bare proxy keeping its own durable log, forwarding at once: the floor of recording
    /// in fail open.
    LoggedOpen,
    /// The same, forwarding each request once its line is durable: the floor of fail closed.
    LoggedClosed,
}

impl Row {
    const ALL: [Row; 8] = [
        Row::Direct,
        Row::Bare,
        Row::Nginx,
        Row::EventsOff,
        Row::FailOpen,
        Row::FailClosed,
        Row::LoggedOpen,
        Row::LoggedClosed,
    ];

    /// Its name in `--rows` and in the JSON.
    fn flag(self) -> &'static str {
        match self {
            Row::Direct => "direct",
            Row::Bare => "bare",
            Row::Nginx => "nginx",
            Row::EventsOff => "off",
            Row::FailOpen => "open",
            Row::FailClosed => "closed",
            Row::LoggedOpen => "logged-open",
            Row::LoggedClosed => "logged-closed",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Row::Direct => "direct",
            Row::Bare => "bare hyper proxy (floor)",
            Row::Nginx => "nginx reverse proxy",
            Row::EventsOff => "kubescribe, events off",
            Row::FailOpen => "kubescribe, fail open",
            Row::FailClosed => "kubescribe, fail closed",
            Row::LoggedOpen => "bare proxy + own durable log, fail open (recording floor)",
            Row::LoggedClosed => "bare proxy + own durable log, fail closed (recording floor)",
        }
    }

    /// The bench caller's grant in this kubescribe row (None: not a kubescribe row).
    fn grant(self, recorder: SocketAddr) -> Option<String> {
        let impersonate = r#"impersonate: {groups: ["system:masters"]}"#;
        match self {
            Row::EventsOff => Some(format!("{{{impersonate}}}")),
            Row::FailOpen => Some(format!(
                r#"{{{impersonate}, recorderAddrs: ["{recorder}"], enableEvents: true}}"#
            )),
            Row::FailClosed => Some(format!(
                r#"{{{impersonate}, recorderAddrs: ["{recorder}"], enableEvents: true, enforceRecorder: true}}"#
            )),
            Row::Direct | Row::Bare | Row::Nginx | Row::LoggedOpen | Row::LoggedClosed => None,
        }
    }

    fn records(self) -> bool {
        matches!(self, Row::FailOpen | Row::FailClosed)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum UpstreamKind {
    Noop,
    Sim,
}

impl UpstreamKind {
    fn flag(self) -> &'static str {
        match self {
            UpstreamKind::Noop => "noop",
            UpstreamKind::Sim => "sim",
        }
    }

    fn label(self) -> &'static str {
        match self {
            UpstreamKind::Noop => "a no-op API server (`bench_hop noop-api`, 1 KiB PodList)",
            UpstreamKind::Sim => "the simulator (`kube-sim --plain`)",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LoadGen {
    Wrk,
    Builtin,
}

struct Args {
    secs: u64,
    warmup: u64,
    connections: Vec<usize>,
    upstreams: Vec<UpstreamKind>,
    rows: Vec<Row>,
    load: Option<LoadGen>,
    s3: bool,
    json: Option<PathBuf>,
    /// More flags for the recorder (`--recorder-arg`, repeatable).
    recorder_args: Vec<String>,
}

fn args() -> Result<Args, Error> {
    let mut args = Args {
        secs: 5,
        warmup: 1,
        connections: vec![4, 32, 64],
        upstreams: vec![UpstreamKind::Noop, UpstreamKind::Sim],
        rows: Row::ALL.to_vec(),
        load: None,
        s3: false,
        json: None,
        recorder_args: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--s3" {
            args.s3 = true;
            continue;
        }
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let bad = |e: &dyn std::fmt::Display| format!("{flag} {value}: {e}");
        match flag.as_str() {
            "--secs" => args.secs = value.parse::<u64>().map_err(|e| bad(&e))?.max(1),
            "--warmup" => args.warmup = value.parse().map_err(|e| bad(&e))?,
            "--connections" => {
                args.connections = value
                    .split(',')
                    .map(|n| n.trim().parse::<usize>().map(|n| n.max(1)))
                    .collect::<Result<_, _>>()
                    .map_err(|e| bad(&e))?
            }
            "--upstream" => {
                args.upstreams = match value.as_str() {
                    "noop" => vec![UpstreamKind::Noop],
                    "sim" => vec![UpstreamKind::Sim],
                    "both" => vec![UpstreamKind::Noop, UpstreamKind::Sim],
                    _ => return Err(bad(&"noop, sim or both").into()),
                }
            }
            "--rows" => {
                args.rows = value
                    .split(',')
                    .map(|name| {
                        Row::ALL
                            .into_iter()
                            .find(|row| row.flag() == name.trim())
                            .ok_or_else(|| bad(&"rows are direct, bare, nginx, off, open, closed, logged-open, logged-closed"))
                    })
                    .collect::<Result<_, _>>()?
            }
            "--load" => {
                args.load = match value.as_str() {
                    "auto" => None,
                    "wrk" => Some(LoadGen::Wrk),
                    "builtin" => Some(LoadGen::Builtin),
                    _ => return Err(bad(&"auto, wrk or builtin").into()),
                }
            }
            "--json" => args.json = Some(PathBuf::from(value)),
            "--recorder-arg" => args.recorder_args.push(value),
            _ => return Err(format!(
                "unknown flag {flag}: --secs, --warmup, --connections, --upstream, --rows, --load, --s3, --json, --recorder-arg"
            )
            .into()),
        }
    }
    Ok(args)
}

/// What one load run got.
#[derive(Debug, Clone, Copy)]
struct Load {
    /// Responses received (any status).
    requests: u64,
    /// Connection errors, timeouts and non-2xx responses.
    errors: u64,
    elapsed: Duration,
    p50_us: f64,
    p99_us: f64,
    p999_us: f64,
}

impl Load {
    fn rate(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// One measured row.
struct Measured {
    upstream: UpstreamKind,
    connections: usize,
    row: Row,
    load: Load,
    /// CPU µs per request of the proxy process (None: no proxy in the path).
    proxy_cpu: Option<f64>,
    recorder_cpu: f64,
    upstream_cpu: f64,
    /// CPU the rest of the machine used meanwhile (the other engineer's build), in cores.
    other_cores: f64,
    /// In a recorded row: requests made (warm-up included), and what the recorder did meanwhile.
    recorded: Option<(u64, RecorderCounters)>,
    load_average: f64,
}

/// The recorder's counters: events received, records durably stored, group commits and the
/// seconds they took.
#[derive(Debug, Clone, Copy, Default)]
struct RecorderCounters {
    events: f64,
    stored: f64,
    commits: f64,
    commit_secs: f64,
}

impl RecorderCounters {
    fn since(self, before: Self) -> Self {
        Self {
            events: self.events - before.events,
            stored: self.stored - before.stored,
            commits: self.commits - before.commits,
            commit_secs: self.commit_secs - before.commit_secs,
        }
    }
}

/// CPU clock ticks used so far by the proxy, the recorder and the upstream (each with its
/// children), by this process and the load generators it ran, and by the whole machine.
struct Cpu {
    processes: [Option<u64>; 3],
    own: u64,
    machine: u64,
}

impl Cpu {
    fn now(pids: [Option<u32>; 3]) -> Result<Self, Error> {
        Ok(Self {
            processes: pids.map(|pid| pid.map(tree_ticks)),
            own: own_and_reaped_children_cpu_ticks()?,
            machine: machine_busy_ticks()?,
        })
    }
}

/// The recorder, running for the whole benchmark.
struct Recorder {
    process: Spawned,
    addr: SocketAddr,
    admin: SocketAddr,
    _seaweed: Option<Seaweed>,
}

impl Recorder {
    fn start(dir: &Path, logs: &Path, s3: bool, extra: &[String]) -> Result<Self, Error> {
        let addr = loopback()?;
        let admin = loopback()?;
        let mut args: Vec<String> = vec![
            "--listen".into(),
            addr.to_string(),
            "--admin-listen".into(),
            admin.to_string(),
            "--signing-key".into(),
            path_arg(&dir.join("signing.key")),
            "--generate-signing-key".into(),
            "--insecure-allow-any-uploader".into(),
        ];
        args.extend(extra.iter().cloned());
        let mut envs = Vec::new();
        let seaweed = if s3 {
            let weed = Seaweed::start("kubescribe-bench")?;
            args.extend([
                "--dst".into(),
                format!("s3://{}", weed.endpoint()),
                "--bucket".into(),
                weed.bucket().to_owned(),
                "--s3-allow-http".into(),
            ]);
            envs.extend([
                ("AWS_ACCESS_KEY_ID", seaweed::ACCESS_KEY),
                ("AWS_SECRET_ACCESS_KEY", seaweed::SECRET_KEY),
            ]);
            Some(weed)
        } else {
            args.extend(["--dst".into(), path_arg(&dir.join("recordings"))]);
            None
        };
        let mut process = Spawned::start(
            "kubescribe-recorder",
            &workspace_bin("kubescribe-recorder")?,
            &args,
            &envs,
            logs,
        )?;
        process.wait_for_tcp(addr, Duration::from_secs(30))?;
        process.wait_for_tcp(admin, Duration::from_secs(30))?;
        Ok(Self {
            process,
            addr,
            admin,
            _seaweed: seaweed,
        })
    }

    fn counters(&self) -> Result<RecorderCounters, Error> {
        let metric = |name| -> Result<f64, Error> {
            Ok(test_support::http::metric(self.admin, name)?.unwrap_or(0.0))
        };
        Ok(RecorderCounters {
            events: metric(EVENTS)?,
            stored: metric(STORED)?,
            commits: metric("kubescribe_recorder_commit_duration_seconds_count")?,
            commit_secs: metric("kubescribe_recorder_commit_duration_seconds_sum")?,
        })
    }
}

/// A server the load is sent to, and the process that serves it (None: the upstream itself).
struct Target {
    row: Row,
    addr: SocketAddr,
    process: Option<Spawned>,
}

impl Drop for Target {
    fn drop(&mut self) {
        // nginx's workers outlive a master killed with SIGKILL: SIGTERM stops them all.
        if let (Row::Nginx, Some(process)) = (self.row, &mut self.process) {
            let _ = process.stop(Duration::from_secs(5));
        }
    }
}

fn main() -> Result<(), Error> {
    let args = args()?;
    let load_gen = match args.load {
        Some(load) => load,
        None if installed("wrk") => LoadGen::Wrk,
        None => LoadGen::Builtin,
    };
    let load_start = load_average();
    let nginx = installed("nginx");
    let dir = tempfile::Builder::new()
        .prefix("kubescribe-bench-proxy-")
        .tempdir()?;
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs)?;
    let script = dir.path().join("bench.lua");
    std::fs::write(&script, wrk_script())?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let ticks = clock_ticks_per_second()? as f64;
    let recorder = Recorder::start(dir.path(), &logs, args.s3, &args.recorder_args)?;
    let storage = if args.s3 {
        "SeaweedFS S3"
    } else {
        "local disk"
    };
    eprintln!(
        "load average {load_start:.2}; load generator {}; nginx {}; recorder storing on {storage}; {} s per row after {} s of warm-up",
        match load_gen {
            LoadGen::Wrk => "wrk -t1",
            LoadGen::Builtin => "in-process hyper client",
        },
        if nginx { "installed" } else { "not installed: no nginx rows" },
        args.secs,
        args.warmup
    );

    let mut measured = Vec::new();
    for &kind in &args.upstreams {
        let api = start_upstream(kind, dir.path(), &logs)?;
        let (upstream_addr, upstream_pid, kubeconfig) = (api.addr, api.pid(), &api.kubeconfig);
        let mut targets = Vec::new();
        for &row in &args.rows {
            let target = match row {
                Row::Direct => Some(Target {
                    row,
                    addr: upstream_addr,
                    process: None,
                }),
                Row::Bare | Row::LoggedOpen | Row::LoggedClosed => {
                    Some(start_bare(row, upstream_addr, dir.path(), &logs)?)
                }
                Row::Nginx if nginx => Some(start_nginx(dir.path(), upstream_addr, &logs)?),
                Row::Nginx => None,
                _ => Some(start_kubescribe(
                    row,
                    dir.path(),
                    &logs,
                    kubeconfig,
                    recorder.addr,
                )?),
            };
            if let Some(target) = target {
                probe(&target)?;
                targets.push(target);
            }
        }
        for &connections in &args.connections {
            for target in &targets {
                let load_average = load_average();
                let recorder_before = recorder.counters()?;
                let run = |secs| match load_gen {
                    LoadGen::Wrk => wrk(target.addr, connections, secs, &script),
                    LoadGen::Builtin => builtin(&runtime, target.addr, connections, secs),
                };
                let warm = if args.warmup > 0 {
                    run(args.warmup)?.requests
                } else {
                    0
                };
                let pids = [
                    target.process.as_ref().map(Spawned::pid),
                    Some(recorder.process.pid()),
                    Some(upstream_pid),
                ];
                let before = Cpu::now(pids)?;
                let load = run(args.secs)?;
                let after = Cpu::now(pids)?;
                let used = |i: usize| -> Option<u64> {
                    Some(after.processes[i]?.saturating_sub(before.processes[i]?))
                };
                let per_request = |i: usize| {
                    used(i).map(|t| t as f64 / ticks * 1e6 / load.requests.max(1) as f64)
                };
                let tracked = (0..3).filter_map(used).sum::<u64>() + after.own - before.own;
                let other_cores = after.machine.saturating_sub(before.machine + tracked) as f64
                    / ticks
                    / load.elapsed.as_secs_f64().max(1e-9);
                let recorded = if target.row.records() {
                    settle(|| Ok(recorder.counters()?.stored as u64))?;
                    let counters = recorder.counters()?.since(recorder_before);
                    Some((warm + load.requests, counters))
                } else {
                    None
                };
                let m = Measured {
                    upstream: kind,
                    connections,
                    row: target.row,
                    load,
                    proxy_cpu: per_request(0),
                    recorder_cpu: per_request(1).unwrap_or(0.0),
                    upstream_cpu: per_request(2).unwrap_or(0.0),
                    other_cores,
                    recorded,
                    load_average,
                };
                eprintln!(
                    "{} {:>2} conns {:<26} {:>8.0} req/s  p50 {:>6.0} µs  p99 {:>6.0} µs  errors {}",
                    kind.flag(),
                    connections,
                    target.row.label(),
                    load.rate(),
                    load.p50_us,
                    load.p99_us,
                    load.errors
                );
                measured.push(m);
            }
        }
    }
    let load_end = load_average();

    let title = format!(
        "`GET {PATH}`, {} s per row after {} s of warm-up, load from {}; recorder on {storage}; {} cores; load average {load_start:.2} before the first process started ({load_end:.2} at the end, the benchmark's own load included)",
        args.secs,
        args.warmup,
        match load_gen {
            LoadGen::Wrk => "wrk (1 thread)",
            LoadGen::Builtin => "an in-process hyper client (1 thread)",
        },
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!("{title}");
    for &kind in &args.upstreams {
        print_table(kind, &measured);
    }
    if let Some(path) = &args.json {
        let rows: Vec<Value> = measured.iter().map(|m| row_json(m, &measured)).collect();
        let doc = json!({
            "benchmark": "proxy",
            "path": PATH,
            "secs": args.secs,
            "warmup_secs": args.warmup,
            "load_generator": match load_gen { LoadGen::Wrk => "wrk", LoadGen::Builtin => "builtin" },
            "storage": if args.s3 { "s3" } else { "disk" },
            "cores": std::thread::available_parallelism().map_or(1, |n| n.get()),
            "load_average_start": load_start,
            "load_average_end": load_end,
            "rows": rows,
        });
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(path, serde_json::to_string_pretty(&doc)?)?;
        eprintln!("wrote {}", path.display());
    }
    let unrecorded: Vec<String> = measured
        .iter()
        .filter(|m| {
            m.recorded
                .is_some_and(|(requests, c)| (c.events as u64) < requests)
        })
        .map(|m| {
            format!(
                "{} {} conns {}",
                m.upstream.flag(),
                m.connections,
                m.row.label()
            )
        })
        .collect();
    if !unrecorded.is_empty() {
        return Err(format!(
            "the recorder received fewer events than requests were made: {}",
            unrecorded.join("; ")
        )
        .into());
    }
    Ok(())
}

/// The bare proxy's row at the same upstream and connection count: the floor.
fn floor<'a>(m: &Measured, all: &'a [Measured]) -> Option<&'a Measured> {
    all.iter()
        .find(|f| f.row == Row::Bare && f.upstream == m.upstream && f.connections == m.connections)
}

fn print_table(kind: UpstreamKind, measured: &[Measured]) {
    println!("\n### Upstream: {}\n", kind.label());
    println!("| conns | path | req/s | × floor | p50 µs | p99 µs | p99.9 µs | added p50 | added p99 | added p99.9 | proxy CPU µs/req | recorder CPU µs/req | upstream CPU µs/req | other CPU (cores) | errors |");
    println!("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let rows: Vec<&Measured> = measured.iter().filter(|m| m.upstream == kind).collect();
    for m in &rows {
        let l = &m.load;
        let floor = floor(m, measured);
        let (ratio, added) = match floor {
            Some(f) => (
                format!("{:.2}", l.rate() / f.load.rate()),
                [
                    l.p50_us - f.load.p50_us,
                    l.p99_us - f.load.p99_us,
                    l.p999_us - f.load.p999_us,
                ]
                .map(|d| format!("{d:+.0}")),
            ),
            None => ("–".into(), ["–".to_owned(), "–".into(), "–".into()]),
        };
        println!(
            "| {} | {} | {:.0} | {ratio} | {:.0} | {:.0} | {:.0} | {} | {} | {} | {} | {:.1} | {:.1} | {:.2} | {} |",
            m.connections,
            m.row.label(),
            l.rate(),
            l.p50_us,
            l.p99_us,
            l.p999_us,
            added[0],
            added[1],
            added[2],
            m.proxy_cpu.map_or("–".to_owned(), |c| format!("{c:.1}")),
            m.recorder_cpu,
            m.upstream_cpu,
            m.other_cores,
            l.errors
        );
    }
    if rows.iter().any(|m| m.recorded.is_some()) {
        println!("\nWhat the recorder received and stored durably during each recorded row (warm-up included):\n");
        println!("| conns | path | requests | events received | records stored | group commits | records per commit | mean commit ms |");
        println!("|---:|---|---:|---:|---:|---:|---:|---:|");
    }
    for m in &rows {
        let Some((requests, c)) = m.recorded else {
            continue;
        };
        println!(
            "| {} | {} | {requests} | {:.0} | {:.0} | {:.0} | {:.1} | {:.2} |",
            m.connections,
            m.row.label(),
            c.events,
            c.stored,
            c.commits,
            c.stored / c.commits.max(1.0),
            c.commit_secs * 1000.0 / c.commits.max(1.0)
        );
    }
}

fn row_json(m: &Measured, all: &[Measured]) -> Value {
    let l = &m.load;
    let floor = floor(m, all);
    json!({
        "upstream": m.upstream.flag(),
        "connections": m.connections,
        "row": m.row.flag(),
        "label": m.row.label(),
        "requests": l.requests,
        "errors": l.errors,
        "secs": l.elapsed.as_secs_f64(),
        "rps": l.rate(),
        "ratio_to_floor": floor.map(|f| l.rate() / f.load.rate()),
        "p50_us": l.p50_us,
        "p99_us": l.p99_us,
        "p999_us": l.p999_us,
        "added_p50_us": floor.map(|f| l.p50_us - f.load.p50_us),
        "added_p99_us": floor.map(|f| l.p99_us - f.load.p99_us),
        "added_p999_us": floor.map(|f| l.p999_us - f.load.p999_us),
        "proxy_cpu_us_per_request": m.proxy_cpu,
        "recorder_cpu_us_per_request": m.recorder_cpu,
        "upstream_cpu_us_per_request": m.upstream_cpu,
        "other_cpu_cores": m.other_cores,
        "requests_with_warmup": m.recorded.map(|r| r.0),
        "events_received": m.recorded.map(|r| r.1.events),
        "records_stored": m.recorded.map(|r| r.1.stored),
        "group_commits": m.recorded.map(|r| r.1.commits),
        "commit_secs": m.recorded.map(|r| r.1.commit_secs),
        "load_average": m.load_average,
    })
}

/// A running upstream (stopped when dropped).
struct Api {
    /// Where it listens.
    addr: SocketAddr,
    /// A kubeconfig that reaches it as the proxy.
    kubeconfig: PathBuf,
    process: ApiProcess,
}

enum ApiProcess {
    Noop(Spawned),
    Sim(Upstream),
}

impl Api {
    fn pid(&self) -> u32 {
        match &self.process {
            ApiProcess::Noop(process) => process.pid(),
            ApiProcess::Sim(sim) => sim.process().pid(),
        }
    }
}

/// Starts the upstream of `kind`.
fn start_upstream(kind: UpstreamKind, dir: &Path, logs: &Path) -> Result<Api, Error> {
    match kind {
        UpstreamKind::Noop => {
            let addr = loopback()?;
            let kubeconfig = dir.join("noop.kubeconfig");
            std::fs::write(
                &kubeconfig,
                format!(
                    "apiVersion: v1\nkind: Config\nclusters:\n- name: noop\n  cluster:\n    server: http://{addr}\nusers:\n- name: proxy\n  user:\n    token: {SIM_PROXY_TOKEN}\ncontexts:\n- name: noop\n  context:\n    cluster: noop\n    user: proxy\ncurrent-context: noop\n"
                ),
            )?;
            let mut process = Spawned::start(
                "bench-noop-api",
                &workspace_bin("bench_hop")?,
                &["noop-api".into(), "--listen".into(), addr.to_string()],
                &[],
                logs,
            )?;
            process.wait_for_tcp(addr, Duration::from_secs(20))?;
            Ok(Api {
                addr,
                kubeconfig,
                process: ApiProcess::Noop(process),
            })
        }
        UpstreamKind::Sim => {
            let sim = Upstream::start_plain_sim(
                dir,
                logs,
                &[&format!("{CALLER_TOKEN},bench@example.com,system:masters")],
            )?;
            let Upstream::Sim { addr, .. } = &sim else {
                return Err("start_plain_sim started no simulator".into());
            };
            Ok(Api {
                addr: *addr,
                kubeconfig: sim.proxy_kubeconfig(),
                process: ApiProcess::Sim(sim),
            })
        }
    }
}

/// The bare proxy (`row` Bare), or the bare proxy keeping its durable log in a directory of
/// `dir` on the recorder's disk (LoggedOpen, LoggedClosed).
fn start_bare(row: Row, upstream: SocketAddr, dir: &Path, logs: &Path) -> Result<Target, Error> {
    let addr = loopback()?;
    let mut args = vec![
        "bare-proxy".into(),
        "--listen".into(),
        addr.to_string(),
        "--upstream".into(),
        upstream.to_string(),
    ];
    if matches!(row, Row::LoggedOpen | Row::LoggedClosed) {
        args.extend([
            "--log".into(),
            path_arg(&dir.join(format!("log-{}", addr.port()))),
        ]);
    }
    if row == Row::LoggedClosed {
        args.push("--wait".into());
    }
    let mut process = Spawned::start(
        &format!("bench-{}-proxy", row.flag()),
        &workspace_bin("bench_hop")?,
        &args,
        &[],
        logs,
    )?;
    process.wait_for_tcp(addr, Duration::from_secs(20))?;
    Ok(Target {
        row,
        addr,
        process: Some(process),
    })
}

/// nginx as a reverse proxy with a generated configuration in `dir` (no daemon, its error log
/// in `dir`): one worker per core, keep-alive connections upstream, no access log, and no limit on
/// requests per connection (nginx closes a connection after 1,000 by default).
fn start_nginx(dir: &Path, upstream: SocketAddr, logs: &Path) -> Result<Target, Error> {
    let addr = loopback()?;
    let prefix = dir.join(format!("nginx-{}", addr.port()));
    std::fs::create_dir_all(&prefix)?;
    let p = prefix.display();
    let config = prefix.join("nginx.conf");
    std::fs::write(
        &config,
        format!(
            "daemon off;\nworker_processes auto;\npid {p}/nginx.pid;\nerror_log {p}/error.log warn;\n\
             events {{ worker_connections 1024; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {p}/body;\n  proxy_temp_path {p}/proxy;\n  \
             fastcgi_temp_path {p}/fastcgi;\n  uwsgi_temp_path {p}/uwsgi;\n  scgi_temp_path {p}/scgi;\n  \
             keepalive_requests 1000000;\n  \
             upstream api {{ server {upstream}; keepalive 128; keepalive_requests 1000000; }}\n  \
             server {{\n    listen {addr};\n    location / {{\n      proxy_pass http://api;\n      \
             proxy_http_version 1.1;\n      proxy_set_header Connection \"\";\n      proxy_set_header Host $http_host;\n    }}\n  }}\n}}\n"
        ),
    )?;
    let mut process = Spawned::start(
        "nginx",
        Path::new("nginx"),
        &[
            "-p".into(),
            path_arg(&prefix),
            "-c".into(),
            path_arg(&config),
            "-e".into(),
            path_arg(&prefix.join("error.log")),
        ],
        &[],
        logs,
    )?;
    process.wait_for_tcp(addr, Duration::from_secs(20))?;
    Ok(Target {
        row: Row::Nginx,
        addr,
        process: Some(process),
    })
}

/// `kubescribe-proxy` in auth mode, plain HTTP on loopback, the bench caller (any loopback
/// address) named by `--identity-file` with this row's grant.
fn start_kubescribe(
    row: Row,
    dir: &Path,
    logs: &Path,
    kubeconfig: &Path,
    recorder: SocketAddr,
) -> Result<Target, Error> {
    let grant = row.grant(recorder).ok_or("not a kubescribe row")?;
    let name = format!("kubescribe-proxy-{}-{}", row.flag(), free_port()?);
    let identities = dir.join(format!("{name}.identities.yaml"));
    std::fs::write(
        &identities,
        format!(
            "entries:\n  - name: bench\n    sources: [\"127.0.0.0/8\"]\n    \
             Node: {{ID: 7, StableID: nBENCHCNTRL, Name: bench-laptop.tail1234.ts.net., User: 42}}\n    \
             UserProfile: {{ID: 42, LoginName: bench@example.com}}\n    \
             CapMap:\n      tailscale.com/cap/kubernetes:\n        - {grant}\n"
        ),
    )?;
    let addr = loopback()?;
    let admin = loopback()?;
    let mut process = Spawned::start(
        &name,
        &workspace_bin("kubescribe-proxy")?,
        &[
            "--listen".into(),
            addr.to_string(),
            "--mode".into(),
            "auth".into(),
            "--kubeconfig".into(),
            path_arg(kubeconfig),
            "--identity-file".into(),
            path_arg(&identities),
            "--recorder-dial".into(),
            "direct".into(),
            "--admin-listen".into(),
            admin.to_string(),
            "--state-dir".into(),
            path_arg(&dir.join(format!("{name}.state"))),
        ],
        &[],
        logs,
    )?;
    process.wait_for_tcp(admin, Duration::from_secs(20))?;
    process.wait_for_tcp(addr, Duration::from_secs(20))?;
    Ok(Target {
        row,
        addr,
        process: Some(process),
    })
}

/// One request through `target`: it must succeed before anything is measured.
fn probe(target: &Target) -> Result<(), Error> {
    let reply = test_support::http::request(
        target.addr,
        None,
        "GET",
        PATH,
        &[("authorization", &format!("Bearer {CALLER_TOKEN}"))],
        b"",
    )?;
    if reply.status == 200 {
        Ok(())
    } else {
        Err(format!(
            "{}: GET {PATH} answered {}: {}",
            target.row.label(),
            reply.status,
            reply.text()
        )
        .into())
    }
}

fn wrk_script() -> String {
    format!(
        "wrk.headers[\"Authorization\"] = \"Bearer {CALLER_TOKEN}\"\n\
         wrk.headers[\"Accept\"] = \"application/json\"\n\
         wrk.headers[\"User-Agent\"] = \"kubescribe-bench\"\n\
         done = function(summary, latency, requests)\n  \
           local e = summary.errors\n  \
           io.write(string.format(\"bench-result %d %d %d %d %d %d %d\\n\", summary.requests, summary.duration, \
             e.connect + e.read + e.write + e.timeout, e.status, \
             latency:percentile(50), latency:percentile(99), latency:percentile(99.9)))\n\
         end\n"
    )
}

/// `wrk -t1 -cN -dSECS` against `addr`, with the script's `done` line parsed.
fn wrk(addr: SocketAddr, connections: usize, secs: u64, script: &Path) -> Result<Load, Error> {
    let out = Command::new("wrk")
        .args([
            "-t1".to_owned(),
            format!("-c{connections}"),
            format!("-d{secs}s"),
            "--timeout".into(),
            "10s".into(),
            "-s".into(),
            path_arg(script),
            format!("http://{addr}{PATH}"),
        ])
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let numbers: Vec<u64> = text
        .lines()
        .find_map(|l| l.strip_prefix("bench-result "))
        .map(|l| {
            l.split_whitespace()
                .filter_map(|n| n.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    let [requests, duration_us, socket_errors, non_2xx, p50, p99, p999] = numbers[..] else {
        return Err(format!(
            "wrk printed no result ({}): {text}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    };
    Ok(Load {
        requests,
        errors: socket_errors + non_2xx,
        elapsed: Duration::from_micros(duration_us),
        p50_us: p50 as f64,
        p99_us: p99 as f64,
        p999_us: p999 as f64,
    })
}

/// The fallback load generator: `connections` closed-loop HTTP/1.1 keep-alive connections on
/// this process's current-thread runtime for `secs`; exact percentiles of every latency.
fn builtin(
    runtime: &tokio::runtime::Runtime,
    addr: SocketAddr,
    connections: usize,
    secs: u64,
) -> Result<Load, Error> {
    runtime.block_on(async {
        let started = Instant::now();
        let deadline = started + Duration::from_secs(secs);
        let tasks: Vec<_> = (0..connections)
            .map(|_| tokio::spawn(closed_loop(addr, deadline)))
            .collect();
        let (mut latencies, mut requests, mut errors) = (Vec::new(), 0, 0);
        for task in tasks {
            let (l, r, e) = task.await?;
            latencies.extend(l);
            requests += r;
            errors += e;
        }
        let elapsed = started.elapsed();
        latencies.sort();
        let us = |q| quantile(&latencies, q).map_or(0.0, |d| d.as_secs_f64() * 1e6);
        Ok(Load {
            requests,
            errors,
            elapsed,
            p50_us: us(0.50),
            p99_us: us(0.99),
            p999_us: us(0.999),
        })
    })
}

/// One connection's requests until `deadline` (a new connection when the server closes one):
/// latencies of the answered ones, how many were answered, and how many failed or were not 2xx.
async fn closed_loop(addr: SocketAddr, deadline: Instant) -> (Vec<Duration>, u64, u64) {
    let mut latencies = Vec::new();
    let (mut requests, mut errors) = (0, 0);
    while Instant::now() < deadline {
        let Some(mut send) = connect(addr).await else {
            errors += 1;
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        while Instant::now() < deadline && send.ready().await.is_ok() {
            let request = http::Request::get(PATH)
                .header(http::header::HOST, addr.to_string())
                .header(
                    http::header::AUTHORIZATION,
                    format!("Bearer {CALLER_TOKEN}"),
                )
                .header(http::header::ACCEPT, "application/json")
                .body(Empty::new());
            let Ok(request) = request else {
                return (latencies, requests, errors + 1);
            };
            let sent = Instant::now();
            let answered = match send.send_request(request).await {
                Ok(response) => {
                    let ok = response.status().is_success();
                    response.into_body().collect().await.is_ok().then_some(ok)
                }
                Err(_) => None,
            };
            let Some(ok) = answered else {
                errors += 1;
                break;
            };
            requests += 1;
            latencies.push(sent.elapsed());
            errors += u64::from(!ok);
        }
    }
    (latencies, requests, errors)
}

/// A new HTTP/1.1 connection to `addr` (None: it could not be opened).
async fn connect(
    addr: SocketAddr,
) -> Option<hyper::client::conn::http1::SendRequest<Empty<Bytes>>> {
    let tcp = tokio::net::TcpStream::connect(addr).await.ok()?;
    let _ = tcp.set_nodelay(true);
    let (send, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .ok()?;
    tokio::spawn(connection);
    Some(send)
}

/// utime + stime of `pid` and of its children (nginx's workers), in clock ticks; 0 when gone.
fn tree_ticks(pid: u32) -> u64 {
    std::iter::once(pid)
        .chain(child_pids(pid))
        .map(|p| cpu_ticks(p).unwrap_or(0))
        .sum()
}

/// Reads `value` until it stops growing (100 ms apart), at most 5 s: records still in flight
/// after the load stops (response records, a last commit) land first.
fn settle(value: impl Fn() -> Result<u64, Error>) -> Result<u64, Error> {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut last = value()?;
    loop {
        std::thread::sleep(Duration::from_millis(100));
        let now = value()?;
        if now == last || Instant::now() > deadline {
            return Ok(now);
        }
        last = now;
    }
}

/// The 1-minute load average (`/proc/loadavg`); 0 when unreadable.
fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

/// Whether `program -v` starts at all (wrk and nginx are optional).
fn installed(program: &str) -> bool {
    Command::new(program).arg("-v").output().is_ok()
}

fn loopback() -> Result<SocketAddr, Error> {
    Ok(SocketAddr::new(
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        free_port()?,
    ))
}

fn path_arg(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}
