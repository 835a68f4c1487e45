//! One listener under a flood, measured: legitimate requests one after another (each on a new
//! connection, as a client arriving during the attack would), and the owning process's open file
//! descriptors and RSS, before the flood, while it opens, while it is held, and after it has gone.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use test_support::http::Tls;
use tokio::sync::watch;

use super::servers::Target;
use super::sockets::{flood, Counts, FloodSpec, Tally};
use crate::Error;

/// Where the flood's connections come from.
#[derive(Debug, Clone)]
pub enum Runner {
    /// This process (fine up to a few thousand connections: they count against its own fd limit).
    InProcess,
    /// Worker processes (`exe worker …`, see [`worker_main`]), each with its own fd limit and its
    /// own source address.
    Workers {
        /// The executable that runs [`worker_main`] for `worker` (the `flood` binary).
        exe: PathBuf,
        /// How many.
        processes: usize,
    },
}

/// How a listener is flooded and measured.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Connections in the flood.
    pub sockets: usize,
    /// Who opens them.
    pub runner: Runner,
    /// Connections opened per second, at most, in all.
    pub rate: usize,
    /// How long legitimate requests are measured before and after the flood.
    pub quiet: Duration,
    /// How long the flood is held once opened.
    pub hold: Duration,
    /// After the flood has gone, how long before "after" is measured.
    pub settle: Duration,
    /// The pause between two legitimate requests.
    pub pause: Duration,
}

/// The legitimate requests of one phase.
#[derive(Debug, Clone, Default)]
pub struct Phase {
    /// Latency of each answered request.
    pub latencies: Vec<Duration>,
    /// Requests not answered `200`.
    pub errors: usize,
    /// The first few errors, for the report.
    pub first_errors: Vec<String>,
    /// Most open file descriptors seen.
    pub max_fds: usize,
    /// Largest RSS seen, in KiB.
    pub max_rss_kib: u64,
}

impl Phase {
    /// The `p`-th percentile latency (0–100), if any request was answered.
    pub fn percentile(&self, p: f64) -> Option<Duration> {
        if self.latencies.is_empty() {
            return None;
        }
        let mut sorted = self.latencies.clone();
        sorted.sort();
        let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
        Some(sorted[rank.clamp(1, sorted.len()) - 1])
    }

    /// Requests sent.
    pub fn requests(&self) -> usize {
        self.latencies.len() + self.errors
    }
}

/// The phases, in order.
const BEFORE: u8 = 0;
const OPENING: u8 = 1;
const HELD: u8 = 2;
const SETTLING: u8 = 3;
const AFTER: u8 = 4;
const DONE: u8 = 5;

/// What one listener did under its flood.
#[derive(Debug, Clone)]
pub struct Row {
    /// The listener.
    pub name: &'static str,
    /// The set-up pool bound of the listener.
    pub max_pending: usize,
    /// The flood: opened, refused, closed by the server (by the end of the hold).
    pub flood: Tally,
    /// Before the flood.
    pub before: Phase,
    /// While the flood's connections were being opened.
    pub opening: Phase,
    /// While they were held.
    pub held: Phase,
    /// After the flood had gone.
    pub after: Phase,
    /// Connections the listener closed itself from the start of the flood until after it had
    /// gone, by reason, as its metrics count them.
    pub refused: BTreeMap<String, u64>,
}

impl Row {
    /// All connections the listener closed itself, as its metrics count them.
    pub fn refused_total(&self) -> u64 {
        self.refused.values().sum()
    }
}

/// Floods `target` as `plan` says, measuring as it goes.
pub fn measure(target: &Target, plan: &Plan) -> Result<Row, Error> {
    let counted_before = target.counters.read()?;
    let tls = target.client_tls()?;
    let phase = Arc::new(AtomicU8::new(BEFORE));
    // However this ends, the measuring threads stop.
    let _finish = Finish(phase.clone());
    let phases: Arc<Mutex<Vec<Phase>>> = Arc::new(Mutex::new(vec![Phase::default(); 5]));
    let sampler = spawn_sampler(target.pid, phase.clone(), phases.clone());
    let prober = spawn_prober(
        target.clone(),
        tls,
        plan.pause,
        phase.clone(),
        phases.clone(),
    );

    std::thread::sleep(plan.quiet);
    phase.store(OPENING, Ordering::SeqCst);
    let running = RunningFlood::start(target, plan)?;
    let deadline = Instant::now()
        + Duration::from_secs(60)
        + Duration::from_secs((plan.sockets / plan.rate.max(1)) as u64 * 2);
    loop {
        let tally = running.tally();
        if tally.opened + tally.failed >= plan.sockets || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    phase.store(HELD, Ordering::SeqCst);
    std::thread::sleep(plan.hold);
    let flood_tally = running.tally();
    phase.store(SETTLING, Ordering::SeqCst);
    running.stop()?;
    std::thread::sleep(plan.settle);
    let counted_after = target.counters.read();
    phase.store(AFTER, Ordering::SeqCst);
    std::thread::sleep(plan.quiet);
    phase.store(DONE, Ordering::SeqCst);
    let _ = sampler.join();
    let _ = prober.join();
    let counted_after = counted_after?;
    let mut phases =
        std::mem::take(&mut *phases.lock().map_err(|_| "a measuring thread panicked")?);
    let take = |phases: &mut Vec<Phase>, i: u8| std::mem::take(&mut phases[usize::from(i)]);
    Ok(Row {
        name: target.name,
        max_pending: target.max_pending,
        flood: flood_tally,
        before: take(&mut phases, BEFORE),
        opening: take(&mut phases, OPENING),
        held: take(&mut phases, HELD),
        after: take(&mut phases, AFTER),
        refused: counted_after
            .into_iter()
            .map(|(reason, n)| {
                let before = counted_before.get(&reason).copied().unwrap_or(0);
                (reason, n.saturating_sub(before))
            })
            .filter(|(_, n)| *n > 0)
            .collect(),
    })
}

/// Sets the phase to [`DONE`] when dropped: the measuring threads end.
struct Finish(Arc<AtomicU8>);

impl Drop for Finish {
    fn drop(&mut self) {
        self.0.store(DONE, Ordering::SeqCst);
    }
}

/// Open file descriptors of process `pid`.
pub fn fd_count(pid: u32) -> Option<usize> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()
        .map(|dir| dir.count())
}

/// The soft limit on open files of process `pid` (`self` for this one), from `/proc/PID/limits`.
pub fn fd_limit(pid: &str) -> Option<String> {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    limits
        .lines()
        .find_map(|line| line.strip_prefix("Max open files"))
        .and_then(|rest| rest.split_whitespace().next())
        .map(str::to_owned)
}

/// Resident set size of process `pid`, in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

fn spawn_sampler(pid: u32, phase: Arc<AtomicU8>, phases: Arc<Mutex<Vec<Phase>>>) -> JoinHandle<()> {
    std::thread::spawn(move || loop {
        let now = phase.load(Ordering::SeqCst);
        if now == DONE {
            return;
        }
        let (fds, rss) = (fd_count(pid).unwrap_or(0), rss_kib(pid).unwrap_or(0));
        if let Ok(mut phases) = phases.lock() {
            let p = &mut phases[usize::from(now)];
            p.max_fds = p.max_fds.max(fds);
            p.max_rss_kib = p.max_rss_kib.max(rss);
        }
        std::thread::sleep(Duration::from_millis(50));
    })
}

fn spawn_prober(
    target: Target,
    tls: Option<Tls>,
    pause: Duration,
    phase: Arc<AtomicU8>,
    phases: Arc<Mutex<Vec<Phase>>>,
) -> JoinHandle<()> {
    std::thread::spawn(move || loop {
        let now = phase.load(Ordering::SeqCst);
        if now == DONE {
            return;
        }
        let started = Instant::now();
        let result = target.probe(tls.as_ref());
        let took = started.elapsed();
        // A request counts in the phase it started in.
        if let Ok(mut phases) = phases.lock() {
            let p = &mut phases[usize::from(now)];
            match result {
                Ok(()) => p.latencies.push(took),
                Err(e) => {
                    p.errors += 1;
                    if p.first_errors.len() < 3 {
                        p.first_errors.push(e.to_string());
                    }
                }
            }
        }
        std::thread::sleep(pause);
    })
}

/// A flood in progress.
enum RunningFlood {
    InProcess {
        counts: Arc<Counts>,
        stop: watch::Sender<bool>,
        thread: JoinHandle<Result<(), String>>,
    },
    Workers(Vec<Worker>),
}

struct Worker {
    child: Child,
    stdin: Option<ChildStdin>,
    tally: Arc<Mutex<Tally>>,
    reader: JoinHandle<()>,
}

/// The source addresses of worker `i` (or of the in-process flood): 127.0.0.(10 + i).
fn source(i: usize) -> std::net::Ipv4Addr {
    std::net::Ipv4Addr::new(127, 0, 0, 10 + (i % 200) as u8)
}

impl RunningFlood {
    fn start(target: &Target, plan: &Plan) -> Result<Self, Error> {
        match &plan.runner {
            Runner::InProcess => {
                let spec = FloodSpec {
                    target: target.addr,
                    count: plan.sockets,
                    sources: (0..4).map(source).collect(),
                    rate: plan.rate,
                    tls_ca: target.tls_ca.clone(),
                };
                let counts = Arc::new(Counts::default());
                let (stop, stopped) = watch::channel(false);
                let thread = {
                    let counts = counts.clone();
                    std::thread::spawn(move || {
                        let runtime = tokio::runtime::Builder::new_current_thread()
                            .enable_all()
                            .build()
                            .map_err(|e| e.to_string())?;
                        runtime
                            .block_on(flood(spec, counts, stopped))
                            .map_err(|e| e.to_string())
                    })
                };
                Ok(RunningFlood::InProcess {
                    counts,
                    stop,
                    thread,
                })
            }
            Runner::Workers { exe, processes } => {
                let processes = (*processes).max(1);
                let ca_file = match &target.tls_ca {
                    Some(ca) => {
                        let path = std::env::temp_dir()
                            .join(format!("kubescribe-flood-ca-{}.pem", std::process::id()));
                        std::fs::write(&path, ca)?;
                        Some(path)
                    }
                    None => None,
                };
                let mut workers = Vec::new();
                for i in 0..processes {
                    let count =
                        plan.sockets / processes + usize::from(i < plan.sockets % processes);
                    let mut command = Command::new(exe);
                    command
                        .arg("worker")
                        .arg(target.addr.to_string())
                        .arg(count.to_string())
                        .arg((plan.rate / processes).max(1).to_string())
                        .arg(source(i).to_string());
                    if let Some(ca) = &ca_file {
                        command.arg(ca);
                    }
                    let mut child = command
                        .stdin(Stdio::piped())
                        .stdout(Stdio::piped())
                        .stderr(Stdio::inherit())
                        .spawn()
                        .map_err(|e| format!("starting flood worker {}: {e}", exe.display()))?;
                    let stdin = child.stdin.take();
                    let stdout = child.stdout.take().ok_or("a worker's stdout")?;
                    let tally = Arc::new(Mutex::new(Tally::default()));
                    let reader = {
                        let tally = tally.clone();
                        std::thread::spawn(move || {
                            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                                if let Some(parsed) = parse_tally(&line) {
                                    if let Ok(mut t) = tally.lock() {
                                        *t = parsed;
                                    }
                                }
                            }
                        })
                    };
                    workers.push(Worker {
                        child,
                        stdin,
                        tally,
                        reader,
                    });
                }
                if let Some(ca) = ca_file {
                    // The workers read it at start; give them a moment before removing it.
                    std::thread::sleep(Duration::from_millis(500));
                    let _ = std::fs::remove_file(ca);
                }
                Ok(RunningFlood::Workers(workers))
            }
        }
    }

    fn tally(&self) -> Tally {
        match self {
            RunningFlood::InProcess { counts, .. } => counts.tally(),
            RunningFlood::Workers(workers) => {
                let mut total = Tally::default();
                for w in workers {
                    if let Ok(t) = w.tally.lock() {
                        total.add(*t);
                    }
                }
                total
            }
        }
    }

    /// Ends the flood: every connection closed, every worker gone.
    fn stop(self) -> Result<(), Error> {
        match self {
            RunningFlood::InProcess { stop, thread, .. } => {
                let _ = stop.send(true);
                thread
                    .join()
                    .map_err(|_| "the flood thread panicked")?
                    .map_err(|e| format!("the flood failed: {e}"))?;
            }
            RunningFlood::Workers(mut workers) => {
                // All told at once, then each waited for.
                for w in &mut workers {
                    drop(w.stdin.take());
                }
                let deadline = Instant::now() + Duration::from_secs(30);
                for mut w in workers {
                    while matches!(w.child.try_wait(), Ok(None)) && Instant::now() < deadline {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    let _ = w.child.kill();
                    let _ = w.child.wait();
                    let _ = w.reader.join();
                }
            }
        }
        Ok(())
    }
}

fn parse_tally(line: &str) -> Option<Tally> {
    let mut words = line.strip_prefix("tally ")?.split(' ');
    let mut next = || words.next()?.parse().ok();
    Some(Tally {
        opened: next()?,
        failed: next()?,
        closed: next()?,
    })
}

/// A flood worker: `worker TARGET COUNT RATE SOURCE [CA_FILE]` (what [`Runner::Workers`] starts).
/// Floods TARGET from SOURCE, printing `tally OPENED FAILED CLOSED` lines, until its stdin ends.
pub fn worker_main(args: &[String]) -> Result<(), Error> {
    let usage = "worker TARGET COUNT RATE SOURCE [CA_FILE]";
    let arg = |i: usize| args.get(i).ok_or_else(|| format!("usage: {usage}"));
    let spec = FloodSpec {
        target: arg(0)?.parse().map_err(|e| format!("TARGET: {e}"))?,
        count: arg(1)?.parse().map_err(|e| format!("COUNT: {e}"))?,
        rate: arg(2)?.parse().map_err(|e| format!("RATE: {e}"))?,
        sources: vec![arg(3)?.parse().map_err(|e| format!("SOURCE: {e}"))?],
        tls_ca: match args.get(4) {
            Some(path) => Some(std::fs::read_to_string(path)?),
            None => None,
        },
    };
    let counts = Arc::new(Counts::default());
    let (stop, stopped) = watch::channel(false);
    let ended = Arc::new(AtomicUsize::new(0));
    {
        // The orchestrator ends the flood by closing our stdin.
        let ended = ended.clone();
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
            ended.store(1, Ordering::SeqCst);
            let _ = stop.send(true);
        });
    }
    let reporter = {
        let counts = counts.clone();
        let ended = ended.clone();
        std::thread::spawn(move || {
            let mut out = std::io::stdout();
            loop {
                let t = counts.tally();
                if writeln!(out, "tally {} {} {}", t.opened, t.failed, t.closed)
                    .and_then(|()| out.flush())
                    .is_err()
                    || ended.load(Ordering::SeqCst) == 1
                {
                    return;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        })
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let result = runtime.block_on(flood(spec, counts, stopped));
    let _ = reporter.join();
    result
}

fn ms(d: Option<Duration>) -> String {
    d.map_or_else(
        || "–".to_owned(),
        |d| format!("{:.1}", d.as_secs_f64() * 1000.0),
    )
}

fn mib(kib: u64) -> String {
    format!("{:.1}", kib as f64 / 1024.0)
}

fn refusals(refused: &BTreeMap<String, u64>) -> String {
    if refused.is_empty() {
        return "0".to_owned();
    }
    let total: u64 = refused.values().sum();
    let reasons: Vec<String> = refused.iter().map(|(r, n)| format!("{r} {n}")).collect();
    format!("{total} ({})", reasons.join(", "))
}

/// The rows as a Markdown table.
pub fn table(rows: &[Row]) -> String {
    let mut out = String::from(
        "| listener | flood: opened / not opened / closed by the server | closed by the listener (its metrics) | p50 / p99 ms before | p50 / p99 ms while opening | p50 / p99 ms held | failed requests (before / opening / held / after) | fds before / during (max) / after | RSS MiB before / during (max) / after |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n",
    );
    for r in rows {
        let during_fds = r.opening.max_fds.max(r.held.max_fds);
        let during_rss = r.opening.max_rss_kib.max(r.held.max_rss_kib);
        out.push_str(&format!(
            "| {} (pending ≤ {}) | {} / {} / {} | {} | {} / {} ({} req) | {} / {} ({} req) | {} / {} ({} req) | {} / {} / {} / {} | {} / {} / {} | {} / {} / {} |\n",
            r.name,
            r.max_pending,
            r.flood.opened,
            r.flood.failed,
            r.flood.closed,
            refusals(&r.refused),
            ms(r.before.percentile(50.0)),
            ms(r.before.percentile(99.0)),
            r.before.requests(),
            ms(r.opening.percentile(50.0)),
            ms(r.opening.percentile(99.0)),
            r.opening.requests(),
            ms(r.held.percentile(50.0)),
            ms(r.held.percentile(99.0)),
            r.held.requests(),
            r.before.errors,
            r.opening.errors,
            r.held.errors,
            r.after.errors,
            r.before.max_fds,
            during_fds,
            r.after.max_fds,
            mib(r.before.max_rss_kib),
            mib(during_rss),
            mib(r.after.max_rss_kib),
        ));
    }
    out
}
