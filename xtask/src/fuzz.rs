//! `cargo xtask fuzz [--secs N] [TARGET…]`: every cargo-fuzz target of the workspace, for N
//! seconds each, on the stable toolchain.
//!
//! * Fuzz crates are the `fuzz/` folders beside the crates (`crates/*/fuzz`, `tests/*/fuzz`),
//!   each with `cargo-fuzz = true` metadata, its own `[workspace]` and a committed `Cargo.lock`
//!   aligned with the root one (checked here: `--sync-locks` realigns them).
//! * cargo-fuzz needs nightly flags (`-Zsanitizer`): `RUSTC_BOOTSTRAP=1` lets the stable
//!   compiler take them. cargo-fuzz itself is installed when missing, at [`CARGO_FUZZ_VERSION`].
//! * All fuzz crates build into one target directory, `target/fuzz`, so that the dependencies
//!   they share compile once; target names are therefore unique across the workspace.
//! * Each target starts from its committed seeds (`fuzz/corpus/<target>/`, small files made
//!   from the crate's test vectors and golden files) and writes what it finds to
//!   `target/fuzz/corpus/<target>/`, never to the repository. A crash is written to
//!   `target/fuzz/artifacts/<target>/`; the run goes on with the next target, then fails
//!   naming each crash and the commands that reproduce and print it.
//! * Every run is appended to the committed ledger `docs/fuzz-history.tsv` (commit it after a
//!   long run): when, which target, wall and CPU seconds, executions, result (`ok`, `crash`, or
//!   `void` by hand for a run disturbed from outside, see `sum_history`), the commit fuzzed.
//!   `--history` sums it per target; the CPU seconds are what the "≥ 1 CPU-hour per target"
//!   rule counts. CPU time is the fuzzer process's own (`/proc/<pid>/stat`), so a run at
//!   `--nice` on a busy machine counts only what it really got.
//! * `--jobs N` fuzzes N targets at once; `--nice` runs the fuzzers at the lowest priority, to
//!   spend a machine's idle CPU without slowing anything else.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use crate::cmd::{cargo, exec, target_dir, workspace_root, Result};

/// The cargo-fuzz release installed when none is on PATH (builds with Rust 1.89 and later).
pub const CARGO_FUZZ_VERSION: &str = "0.13.2";
/// The target triple cargo-fuzz builds for, and so the folder its binaries land in.
const TRIPLE: &str = "x86_64-unknown-linux-gnu";
/// Committed seeds of one target stay below this size: seeds, not a generated corpus.
const MAX_SEED_BYTES: u64 = 64 * 1024;
/// One input that runs longer than this is a hang, reported as a crash.
const INPUT_TIMEOUT_SECS: u64 = 10;

/// What `cargo xtask fuzz` was asked to do.
#[derive(Debug, Clone)]
pub struct Options {
    /// Seconds of fuzzing per target.
    pub secs: u64,
    /// Targets to run (all when empty).
    pub targets: Vec<String>,
    /// Only list the targets.
    pub list: bool,
    /// Only print the summed history.
    pub history: bool,
    /// Rewrite every fuzz crate's `Cargo.lock` from the root one first.
    pub sync_locks: bool,
    /// Targets fuzzed at the same time.
    pub jobs: usize,
    /// Run the fuzzers at the lowest CPU priority (`nice -n 19`).
    pub nice: bool,
}

/// The committed ledger of fuzzing runs, relative to the workspace root.
const HISTORY: &str = "docs/fuzz-history.tsv";

/// One fuzz crate: its folder and its targets.
#[derive(Debug)]
struct FuzzCrate {
    /// The `fuzz/` folder, relative to the workspace root.
    dir: PathBuf,
    /// Its `[[bin]]` names.
    targets: Vec<String>,
}

/// How one target's run ended.
#[derive(Debug)]
struct Outcome {
    target: String,
    secs: f64,
    /// CPU seconds the fuzzer process used (user + system).
    cpu_secs: f64,
    execs: u64,
    corpus: u64,
    coverage: u64,
    /// `None` when clean; else what went wrong.
    failure: Option<Failure>,
}

#[derive(Debug)]
struct Failure {
    kind: String,
    artifact: Option<PathBuf>,
    log: PathBuf,
    fuzz_dir: PathBuf,
}

/// Runs the task.
pub fn run(options: &Options) -> Result<()> {
    let root = workspace_root();
    let out = target_dir().join("fuzz");
    let history = root.join(HISTORY);
    if options.history {
        return print_history(&history);
    }
    let crates = discover(&root)?;
    let selected = select(&crates, &options.targets)?;
    if options.list {
        for (krate, targets) in &selected {
            for target in targets {
                println!("{target}\t{}", krate.dir.display());
            }
        }
        return Ok(());
    }
    let started = Instant::now();
    ensure_cargo_fuzz()?;
    for (krate, _) in &selected {
        if options.sync_locks {
            sync_lock(&root, krate)?;
        }
        check_lock(&root, krate)?;
        check_seeds(&root, krate)?;
    }
    for (krate, targets) in &selected {
        build(&root, &out, krate, targets)?;
    }
    let built = started.elapsed();
    let queue: Vec<(&FuzzCrate, &String)> = selected
        .iter()
        .flat_map(|(krate, targets)| targets.iter().map(move |t| (*krate, t)))
        .collect();
    let commit = head_commit(&root);
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..options.jobs.max(1) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let Some((krate, target)) = queue.get(i) else {
                    break;
                };
                let outcome = fuzz_one(&root, &out, krate, target, options.secs, options.nice);
                if let Ok(outcome) = &outcome {
                    record_history(&history, outcome, &commit);
                }
                if let Ok(mut results) = results.lock() {
                    results.push(outcome);
                }
            });
        }
    });
    let mut outcomes = Vec::new();
    for outcome in results
        .into_inner()
        .map_err(|_| "a fuzzing thread panicked")?
    {
        outcomes.push(outcome?);
    }
    print_summary(&outcomes, built, started.elapsed());
    let failures: Vec<&Outcome> = outcomes.iter().filter(|o| o.failure.is_some()).collect();
    if failures.is_empty() {
        return Ok(());
    }
    let mut message = format!("{} fuzz target(s) failed:", failures.len());
    for outcome in failures {
        if let Some(failure) = &outcome.failure {
            message.push_str(&describe_failure(&root, &out, &outcome.target, failure));
        }
    }
    Err(message)
}

/// Every fuzz crate under `crates/` and `tests/`, by folder name, with its targets.
fn discover(root: &Path) -> Result<Vec<FuzzCrate>> {
    let mut crates = Vec::new();
    for parent in ["crates", "tests"] {
        let entries = std::fs::read_dir(root.join(parent))
            .map_err(|e| format!("{}: {e}", root.join(parent).display()))?;
        let mut dirs: Vec<PathBuf> = entries
            .filter_map(|entry| entry.ok().map(|e| e.path().join("fuzz")))
            .filter(|dir| dir.join("Cargo.toml").is_file())
            .collect();
        dirs.sort();
        for dir in dirs {
            let manifest = read(&dir.join("Cargo.toml"))?;
            if !manifest.contains("cargo-fuzz = true") {
                continue;
            }
            let targets = bin_names(&manifest);
            if targets.is_empty() {
                return Err(format!(
                    "{}: a fuzz crate without [[bin]] targets",
                    dir.display()
                ));
            }
            let dir = dir.strip_prefix(root).map(Path::to_path_buf).unwrap_or(dir);
            crates.push(FuzzCrate { dir, targets });
        }
    }
    // One shared target directory: a name used twice would overwrite the other's binary.
    let mut seen = BTreeMap::new();
    for krate in &crates {
        for target in &krate.targets {
            if let Some(other) = seen.insert(target.clone(), krate.dir.clone()) {
                return Err(format!(
                    "fuzz target {target} is defined in both {} and {}: names must be unique \
                     (all fuzz crates build into target/fuzz)",
                    other.display(),
                    krate.dir.display()
                ));
            }
        }
    }
    Ok(crates)
}

/// The `name` of every `[[bin]]` table of a manifest.
fn bin_names(manifest: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut in_bin = false;
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_bin = line == "[[bin]]";
        } else if in_bin {
            if let Some(value) = line.strip_prefix("name") {
                let value = value.trim_start().trim_start_matches('=').trim();
                names.push(value.trim_matches('"').to_owned());
                in_bin = false;
            }
        }
    }
    names
}

/// The crates and targets to run: all, or those named (each must exist).
fn select<'a>(
    crates: &'a [FuzzCrate],
    wanted: &[String],
) -> Result<Vec<(&'a FuzzCrate, Vec<String>)>> {
    let known: BTreeSet<&str> = crates
        .iter()
        .flat_map(|c| c.targets.iter().map(String::as_str))
        .collect();
    if let Some(unknown) = wanted.iter().find(|t| !known.contains(t.as_str())) {
        return Err(format!(
            "no fuzz target named {unknown}; known: {}",
            known.into_iter().collect::<Vec<_>>().join(", ")
        ));
    }
    Ok(crates
        .iter()
        .map(|krate| {
            let targets = krate
                .targets
                .iter()
                .filter(|t| wanted.is_empty() || wanted.contains(t))
                .cloned()
                .collect::<Vec<_>>();
            (krate, targets)
        })
        .filter(|(_, targets)| !targets.is_empty())
        .collect())
}

/// Installs cargo-fuzz unless `cargo fuzz` already runs.
fn ensure_cargo_fuzz() -> Result<()> {
    let runs = cargo()
        .args(["fuzz", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if runs {
        return Ok(());
    }
    exec(cargo().args([
        "install",
        "--locked",
        "cargo-fuzz",
        "--version",
        CARGO_FUZZ_VERSION,
    ]))
}

/// `(name, version)` of every package in a `Cargo.lock`.
fn lock_packages(text: &str) -> BTreeSet<(String, String)> {
    let mut packages = BTreeSet::new();
    let mut name = None;
    for line in text.lines() {
        if line == "[[package]]" {
            name = None;
        } else if let Some(value) = line.strip_prefix("name = ") {
            name = Some(value.trim_matches('"').to_owned());
        } else if let Some(value) = line.strip_prefix("version = ") {
            if let Some(name) = name.take() {
                packages.insert((name, value.trim_matches('"').to_owned()));
            }
        }
    }
    packages
}

/// Fails when the fuzz crate's lock is missing, would change on build, or holds a version of a
/// package other than the root lock's (a fuzz build must test what ships).
fn check_lock(root: &Path, krate: &FuzzCrate) -> Result<()> {
    let lock = root.join(&krate.dir).join("Cargo.lock");
    let again = format!(
        "realign with `cargo xtask fuzz --sync-locks {}`",
        krate.targets.join(" ")
    );
    if !lock.is_file() {
        return Err(format!("{} is missing: {again}", lock.display()));
    }
    let quiet = cargo()
        .args([
            "metadata",
            "--locked",
            "--offline",
            "--format-version",
            "1",
            "--manifest-path",
        ])
        .arg(root.join(&krate.dir).join("Cargo.toml"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !quiet {
        // Online, to tell a stale lock from a missing download.
        exec(
            cargo()
                .args([
                    "metadata",
                    "--locked",
                    "--format-version",
                    "1",
                    "--manifest-path",
                ])
                .arg(root.join(&krate.dir).join("Cargo.toml"))
                .stdout(Stdio::null()),
        )
        .map_err(|e| format!("{e}\n{} is stale: {again}", lock.display()))?;
    }
    let ours = lock_packages(&read(&lock)?);
    let theirs = lock_packages(&read(&root.join("Cargo.lock"))?);
    let root_names: BTreeSet<&str> = theirs.iter().map(|(n, _)| n.as_str()).collect();
    let drifted: Vec<String> = ours
        .iter()
        .filter(|p| root_names.contains(p.0.as_str()) && !theirs.contains(*p))
        .map(|(n, v)| format!("{n} {v}"))
        .collect();
    if drifted.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} differs from the root Cargo.lock in {}: {again}",
            lock.display(),
            drifted.join(", ")
        ))
    }
}

/// Rewrites a fuzz crate's lock as the root lock trimmed to what the fuzz crate uses (cargo
/// keeps every locked version it can, and adds only what the root lock lacks).
fn sync_lock(root: &Path, krate: &FuzzCrate) -> Result<()> {
    let lock = root.join(&krate.dir).join("Cargo.lock");
    std::fs::copy(root.join("Cargo.lock"), &lock)
        .map_err(|e| format!("copying Cargo.lock to {}: {e}", lock.display()))?;
    exec(
        cargo()
            .args(["metadata", "--format-version", "1", "--manifest-path"])
            .arg(root.join(&krate.dir).join("Cargo.toml"))
            .stdout(Stdio::null()),
    )
}

/// Fails when a target's committed seeds are missing or too large.
fn check_seeds(root: &Path, krate: &FuzzCrate) -> Result<()> {
    for target in &krate.targets {
        let dir = root.join(&krate.dir).join("corpus").join(target);
        let files = list_files(&dir);
        if files.is_empty() {
            return Err(format!(
                "{}: no seeds (commit a few small inputs made from the crate's test vectors)",
                dir.display()
            ));
        }
        let bytes: u64 = files
            .iter()
            .filter_map(|f| f.metadata().ok())
            .map(|m| m.len())
            .sum();
        if bytes > MAX_SEED_BYTES {
            return Err(format!(
                "{}: {bytes} bytes of seeds; keep committed seeds under {MAX_SEED_BYTES} bytes",
                dir.display()
            ));
        }
    }
    Ok(())
}

/// The environment every cargo-fuzz command runs in.
fn fuzz_env(command: &mut Command, out: &Path) {
    command
        .env("RUSTC_BOOTSTRAP", "1")
        .env("CARGO_TARGET_DIR", out)
        .env("CARGO_INCREMENTAL", "0");
}

/// Builds the crate's selected targets (all of them in one cargo invocation when all are
/// selected).
fn build(root: &Path, out: &Path, krate: &FuzzCrate, targets: &[String]) -> Result<()> {
    let dir = root.join(&krate.dir);
    let all = targets.len() == krate.targets.len();
    let runs: Vec<Option<&String>> = if all {
        vec![None]
    } else {
        targets.iter().map(Some).collect()
    };
    for target in runs {
        let mut command = cargo();
        command.args(["fuzz", "build", "--fuzz-dir"]).arg(&dir);
        command.args(target);
        fuzz_env(&mut command, out);
        exec(&mut command)?;
    }
    Ok(())
}

/// Runs one target for `secs` seconds and reads libFuzzer's report.
fn fuzz_one(
    root: &Path,
    out: &Path,
    krate: &FuzzCrate,
    target: &str,
    secs: u64,
    nice: bool,
) -> Result<Outcome> {
    let binary = out.join(TRIPLE).join("release").join(target);
    let scratch = out.join("corpus").join(target);
    let artifacts = out.join("artifacts").join(target);
    let logs = out.join("logs");
    let seeds = root.join(&krate.dir).join("corpus").join(target);
    for dir in [&scratch, &artifacts, &logs] {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let log = logs.join(format!("{target}.log"));
    let log_file = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
    let mut prefix = artifacts.into_os_string();
    prefix.push("/");
    let mut artifact_arg = std::ffi::OsString::from("-artifact_prefix=");
    artifact_arg.push(&prefix);
    eprintln!("fuzzing {target} for {secs} s (log: {})", log.display());
    let started = Instant::now();
    let mut command = if nice {
        // nice execs the fuzzer: the pid stays the fuzzer's, so its CPU time is read below.
        let mut command = Command::new("nice");
        command.args(["-n", "19"]).arg(&binary);
        command
    } else {
        Command::new(&binary)
    };
    let mut child = command
        .arg(artifact_arg)
        .arg(format!("-max_total_time={secs}"))
        .arg(format!("-timeout={INPUT_TIMEOUT_SECS}"))
        .arg("-print_final_stats=1")
        .arg(&scratch)
        .arg(&seeds)
        // As cargo-fuzz sets it: Rust's statics trip ASan's ODR check.
        .env("ASAN_OPTIONS", "detect_odr_violation=0")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log_file)
        .spawn()
        .map_err(|e| format!("could not start {}: {e}", binary.display()))?;
    // libFuzzer stops itself; this bounds a target that cannot (a hang outside an input).
    let limit = Duration::from_secs(secs + 2 * INPUT_TIMEOUT_SECS + 120);
    let mut cpu_secs = 0.0;
    let status = loop {
        // Read before try_wait reaps it; at most one poll interval is missed at the end.
        cpu_secs = process_cpu_secs(child.id()).unwrap_or(cpu_secs);
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if started.elapsed() > limit => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(200)),
            Err(e) => return Err(format!("waiting for {target}: {e}")),
        }
    };
    let elapsed = started.elapsed().as_secs_f64();
    let report = read(&log)?;
    let stats = Stats::parse(&report);
    let failure = match status {
        Some(status) if status.success() => None,
        Some(status) => Some(Failure {
            kind: stats
                .kind
                .clone()
                .unwrap_or_else(|| format!("exit {status}")),
            artifact: stats.artifact.clone(),
            log: log.clone(),
            fuzz_dir: krate.dir.clone(),
        }),
        None => Some(Failure {
            kind: format!("still running after {} s, killed", limit.as_secs()),
            artifact: None,
            log: log.clone(),
            fuzz_dir: krate.dir.clone(),
        }),
    };
    Ok(Outcome {
        target: target.to_owned(),
        secs: elapsed,
        cpu_secs,
        execs: stats.execs,
        corpus: stats.corpus,
        coverage: stats.coverage,
        failure,
    })
}

/// What libFuzzer's output says about a run.
#[derive(Debug, Default)]
struct Stats {
    execs: u64,
    corpus: u64,
    coverage: u64,
    kind: Option<String>,
    artifact: Option<PathBuf>,
}

impl Stats {
    fn parse(report: &str) -> Self {
        let mut stats = Stats::default();
        let mut final_execs = None;
        for line in report.lines() {
            if let Some(n) = line.strip_prefix("stat::number_of_executed_units:") {
                final_execs = n.trim().parse().ok();
            }
            // Status lines: "#1234\tNEW    cov: 56 ft: 78 corp: 9/10b …"; the last one counts.
            if let Some(status) = line.strip_prefix('#') {
                if let Some(n) = status
                    .split_whitespace()
                    .next()
                    .and_then(|n| n.parse().ok())
                {
                    stats.execs = n;
                }
                if let Some(n) = field_after(status, "cov: ") {
                    stats.coverage = n;
                }
                if let Some(n) = field_after(status, "corp: ") {
                    stats.corpus = n;
                }
            }
            if stats.kind.is_none() {
                if let Some(rest) = line.split("ERROR: ").nth(1) {
                    stats.kind = Some(rest.trim().to_owned());
                } else if line.starts_with("thread '") && line.contains("panicked") {
                    stats.kind = Some(line.trim().to_owned());
                }
            }
            if let Some(rest) = line.split("Test unit written to ").nth(1) {
                stats.artifact = Some(PathBuf::from(rest.trim()));
            }
        }
        stats.execs = final_execs.unwrap_or(stats.execs);
        stats
    }
}

/// The number after `key` in a libFuzzer status line (`corp: 9/10b` gives 9).
fn field_after(line: &str, key: &str) -> Option<u64> {
    let rest = &line[line.find(key)? + key.len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

fn describe_failure(root: &Path, out: &Path, target: &str, failure: &Failure) -> String {
    let mut text = format!(
        "\n\n{target}: {}\n  log: {}",
        failure.kind,
        failure.log.display()
    );
    if let Some(artifact) = &failure.artifact {
        let artifact = if artifact.is_absolute() {
            artifact.clone()
        } else {
            root.join(artifact)
        };
        let env = format!("RUSTC_BOOTSTRAP=1 CARGO_TARGET_DIR={}", out.display());
        let dir = failure.fuzz_dir.display();
        let _ = write!(
            text,
            "\n  crashing input: {a}\n  reproduce: {env} cargo fuzz run --fuzz-dir {dir} {target} {a}\n  \
             print it:  {env} cargo fuzz fmt --fuzz-dir {dir} {target} {a}\n  \
             then add it as a regression test in the crate, fix the cause, and run the target again",
            a = artifact.display(),
        );
    }
    text
}

fn print_summary(outcomes: &[Outcome], built: Duration, total: Duration) {
    println!();
    println!(
        "{:<16} {:>7} {:>7} {:>12} {:>9} {:>7} {:>6}  result",
        "target", "wall s", "CPU s", "executions", "exec/s", "corpus", "cov"
    );
    for o in outcomes {
        let rate = if o.secs > 0.0 {
            o.execs as f64 / o.secs
        } else {
            0.0
        };
        let result = match &o.failure {
            None => "ok".to_owned(),
            Some(f) => format!("FAILED: {}", f.kind),
        };
        println!(
            "{:<16} {:>7.0} {:>7.0} {:>12} {:>9.0} {:>7} {:>6}  {result}",
            o.target, o.secs, o.cpu_secs, o.execs, rate, o.corpus, o.coverage
        );
    }
    println!(
        "{} target(s); build {:.0} s, total {:.0} s",
        outcomes.len(),
        built.as_secs_f64(),
        total.as_secs_f64()
    );
}

/// The commit being fuzzed (short hash, `+` when the tree has changes), or `unknown`.
fn head_commit(root: &Path) -> String {
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(root)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    let Some(hash) = git(&["rev-parse", "--short=12", "HEAD"]) else {
        return "unknown".to_owned();
    };
    let dirty = git(&["status", "--porcelain", "--untracked-files=no"])
        .is_some_and(|changes| !changes.is_empty());
    if dirty {
        format!("{hash}+")
    } else {
        hash
    }
}

/// User + system CPU seconds of a running process, from `/proc/<pid>/stat` (`None` once gone).
fn process_cpu_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start at field 3, the state.
    let after = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / clock_ticks_per_sec())
}

/// `getconf CLK_TCK` (100 on Linux unless configured otherwise).
fn clock_ticks_per_sec() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// The ledger's column names (its first line).
const HISTORY_HEADER: &str = "unix_time\ttarget\twall_secs\tcpu_secs\texecutions\tresult\tcommit\n";

/// Appends one line per run: unix time, target, wall and CPU seconds, executions, result, commit.
fn record_history(path: &Path, o: &Outcome, commit: &str) {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let result = if o.failure.is_some() { "crash" } else { "ok" };
    let line = format!(
        "{now}\t{}\t{:.0}\t{:.0}\t{}\t{result}\t{commit}\n",
        o.target, o.secs, o.cpu_secs, o.execs
    );
    let new = !path.exists();
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path);
    if let Ok(mut file) = file {
        if new {
            let _ = file.write_all(HISTORY_HEADER.as_bytes());
        }
        let _ = file.write_all(line.as_bytes());
    }
}

/// One target's summed runs.
#[derive(Debug, Default, PartialEq)]
struct Totals {
    runs: u64,
    wall_secs: f64,
    cpu_secs: f64,
    execs: u64,
    crashes: u64,
}

/// Sums the ledger per target.
fn sum_history(text: &str) -> BTreeMap<String, Totals> {
    let mut totals: BTreeMap<String, Totals> = BTreeMap::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split('\t').collect();
        let [_, target, wall, cpu, execs, result, ..] = fields[..] else {
            continue;
        };
        let Ok(wall) = wall.parse::<f64>() else {
            continue; // the header
        };
        let entry = totals.entry(target.to_owned()).or_default();
        entry.runs += 1;
        entry.wall_secs += wall;
        entry.cpu_secs += cpu.parse::<f64>().unwrap_or(0.0);
        entry.execs += execs.parse::<u64>().unwrap_or(0);
        // `void`, set by hand: a run disturbed from outside (a fuzzer SIGSTOPped while a
        // benchmark ran reports a timeout when resumed) whose input was replayed and ran at
        // once; its CPU time counts, it is not a finding.
        entry.crashes += u64::from(result != "ok" && result != "void");
    }
    totals
}

/// Prints the ledger summed per target, and how far each is from one CPU-hour.
fn print_history(path: &Path) -> Result<()> {
    let text = read(path)?;
    println!(
        "{:<16} {:>5} {:>9} {:>9} {:>14} {:>8}  1 CPU-hour",
        "target", "runs", "wall s", "CPU s", "executions", "crashes"
    );
    for (target, t) in sum_history(&text) {
        let reached = if t.cpu_secs >= 3600.0 {
            "reached".to_owned()
        } else {
            format!("{:.0} s to go", 3600.0 - t.cpu_secs)
        };
        println!(
            "{target:<16} {:>5} {:>9.0} {:>9.0} {:>14} {:>8}  {reached}",
            t.runs, t.wall_secs, t.cpu_secs, t.execs, t.crashes
        );
    }
    Ok(())
}

fn list_files(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file())
                .collect()
        })
        .unwrap_or_default()
}

fn read(path: &Path) -> Result<String> {
    std::fs::read(path)
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bin_names_are_read_from_bin_tables_only() {
        let manifest = "[package]\nname = \"x-fuzz\"\n\n[[bin]]\nname = \"a\"\npath = \"a.rs\"\n\n\
                        [dependencies]\nname = \"not-a-bin\"\n\n[[bin]]\nname=\"b\"\n";
        assert_eq!(bin_names(manifest), ["a", "b"]);
    }

    #[test]
    fn libfuzzer_reports_are_read() {
        let report = "#2\tINITED cov: 10 ft: 11 corp: 3/20b exec/s: 0 rss: 30Mb\n\
                      #4096\tpulse  cov: 12 ft: 14 corp: 5/40b lim: 43 exec/s: 2048 rss: 31Mb\n\
                      ==1== ERROR: libFuzzer: deadly signal\n\
                      artifact_prefix='t/'; Test unit written to t/crash-abc\n\
                      stat::number_of_executed_units: 5000\n";
        let stats = Stats::parse(report);
        assert_eq!((stats.execs, stats.corpus, stats.coverage), (5000, 5, 12));
        assert_eq!(stats.kind.as_deref(), Some("libFuzzer: deadly signal"));
        assert_eq!(stats.artifact, Some(PathBuf::from("t/crash-abc")));
    }

    #[test]
    fn the_ledger_sums_cpu_seconds_per_target_and_skips_its_header() {
        let ledger = format!(
            "{HISTORY_HEADER}1\ta\t60\t30\t1000\tok\tabc\n2\ta\t60\t55\t2000\tcrash\tabc+\n\
             3\tb\t10\t9\t5\tok\tdef\n"
        );
        let totals = sum_history(&ledger);
        assert_eq!(
            totals["a"],
            Totals {
                runs: 2,
                wall_secs: 120.0,
                cpu_secs: 85.0,
                execs: 3000,
                crashes: 1
            }
        );
        assert_eq!(totals["b"].cpu_secs, 9.0);
        assert_eq!(totals.len(), 2);
    }

    #[test]
    fn cpu_time_of_this_process_is_read() {
        let mut spin = 0u64;
        let started = Instant::now();
        while started.elapsed() < Duration::from_millis(300) {
            spin = spin.wrapping_add(1);
        }
        assert!(spin > 0);
        let secs = process_cpu_secs(std::process::id()).expect("own /proc stat");
        assert!(secs >= 0.1, "{secs}");
    }

    #[test]
    fn lock_packages_pair_names_with_versions() {
        let lock = "version = 4\n\n[[package]]\nname = \"a\"\nversion = \"1.0.0\"\n\n\
                    [[package]]\nname = \"b\"\nversion = \"2.1.0\"\nsource = \"x\"\n";
        let packages = lock_packages(lock);
        assert!(packages.contains(&("a".to_owned(), "1.0.0".to_owned())));
        assert!(packages.contains(&("b".to_owned(), "2.1.0".to_owned())));
        assert_eq!(packages.len(), 2);
    }
}
