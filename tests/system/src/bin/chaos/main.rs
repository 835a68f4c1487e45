//! `cargo xtask chaos`: the recorder (and, with S3 storage, the S3 server) killed or stopped every
//! few seconds under load, then four counts that must all be 0.
//!
//! The system runs as users run it ([`kubescribe_system_tests::stack`]): kubescribe-recorder
//! storing durably (on disk, or in a real SeaweedFS), kubescribe-proxy in auth mode with a spool
//! directory, an upstream (kube-sim, which also runs exec sessions, or the real kube-apiserver),
//! and callers reaching the proxy through `tailscale serve` stand-ins: alice's grant fails closed,
//! ci's fails open. A bounded load of API requests (gets, lists, creates; each with a unique
//! `User-Agent` and a deadline) and, against kube-sim, a few `kubectl exec` sessions run as both
//! while the fault loop, every few seconds, either SIGKILLs the recorder (or the S3 server) and
//! restarts it, or SIGSTOPs it and SIGCONTs it (`--mode`). Then the load stops, everything is
//! running again, and the proxy's spool drains (the quiet period). Finally what the upstream
//! received (kube-sim's request log, kube-apiserver's audit log: the proxy sends each request
//! with `Audit-ID` = its event's idempotency key), what the callers got, the proxy's recorder-client
//! counters and every record in storage (read from the files or objects, not through the
//! recorder's index) are joined into the four counts:
//!
//! 1. **lost acknowledged records**: events (and response records) a recorder acknowledged that
//!    storage does not hold. What was acknowledged follows from the proxy's behaviour: it
//!    forwards a fail-closed request only after a recorder answered `200` to its event; a
//!    fail-open event or a response record that is not acknowledged at once goes to the spool and
//!    leaves it only when a recorder acknowledges it or as a counted drop. So with the spool
//!    drained and nothing dropped (both checked, and a failure of their own otherwise), every
//!    event of a forwarded request and every response record was acknowledged.
//! 2. **fail-closed requests forwarded without a stored event**: the upstream received a request
//!    of alice's whose `Audit-ID` names no stored event, or one whose event was stored only after
//!    alice had the upstream's reply (the commit time in the stored record's id is later than
//!    the reply: stored afterwards, e.g. from a spool, not before forwarding).
//! 3. **fail-open requests refused**: a request of ci's that never reached the upstream, or an
//!    exec session of ci's that did not run to its end.
//! 4. **duplicates stored**: copies of a record beyond the first, by idempotency key.
//!
//! Requests that pass their deadline are reported as hung and fail the run too. Also reported,
//! without failing the run (it is not one of the four counts): fail-closed exec sessions that ran
//! to their end although no stored cast (nor an unfinished session's chunks) holds their output. Every loop is
//! bounded in count and time; everything listens on loopback.
//!
//! With `--mode kill-proxy` the faults hit the proxy instead: two proxy replicas, each with a
//! spool of its own, serve the callers (their forwarders spread connections over the replicas
//! and skip one that is down, as a load balancer would), and the second is SIGKILLed and
//! restarted on its spool every few seconds. A request or exec session in flight through it then
//! may fail, and its response record may die with it: those are reported apart, not counted as
//! refused or lost. Every other count holds as is: in particular the event of every fail-open
//! request that reached the upstream must be stored (the proxy writes it to its spool before it
//! forwards, and the restarted replica delivers it), and no fail-closed request may reach the
//! upstream before its event is stored.
//!
//! Usage: `chaos [--secs N] [--mode kill|stop|kill-proxy] [--policy open|closed] [--storage disk|s3]
//! [--upstream sim|apiserver] [--seed N]` (default: 60 s, kill, both policies at once, disk,
//! sim, a seed from the clock). Exits 0 when every count is 0, 1 otherwise, 2 when it could not
//! run.

mod check;
mod faults;
mod load;
mod stored;

use std::time::{Duration, Instant};

use kubescribe_system_tests::stack::{Stack, StackOptions, Storage};
use kubescribe_system_tests::upstream::UpstreamKind;
use kubescribe_system_tests::Error;
use test_support::seaweed::{self, Seaweed};

use faults::{FaultMode, Faults};
use load::{Load, Policy};

/// The bucket the recorder stores to with `--storage s3`.
const BUCKET: &str = "kubescribe-chaos";
/// The longest quiet period: the spool must drain within it.
const DRAIN_LIMIT: Duration = Duration::from_secs(120);

/// What to run.
#[derive(Debug, Clone)]
struct Options {
    secs: u64,
    mode: FaultMode,
    policies: Vec<Policy>,
    storage: StorageKind,
    upstream: UpstreamKind,
    seed: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StorageKind {
    Disk,
    S3,
}

impl std::fmt::Display for StorageKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StorageKind::Disk => "disk",
            StorageKind::S3 => "s3",
        })
    }
}

fn main() {
    let options = match parse_args(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(err) => {
            eprintln!("chaos: {err}");
            std::process::exit(2);
        }
    };
    match run(&options) {
        Ok(true) => std::process::exit(0),
        Ok(false) => std::process::exit(1),
        Err(err) => {
            eprintln!("chaos: could not finish: {err}");
            std::process::exit(2);
        }
    }
}

const USAGE: &str = "usage: chaos [--secs N] [--mode kill|stop|kill-proxy] [--policy open|closed] \
                     [--storage disk|s3] [--upstream sim|apiserver] [--seed N]";

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Options, Error> {
    let mut options = Options {
        secs: 60,
        mode: FaultMode::Kill,
        policies: vec![Policy::Closed, Policy::Open],
        storage: StorageKind::Disk,
        upstream: UpstreamKind::Sim,
        seed: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1),
    };
    while let Some(flag) = args.next() {
        let mut value = || {
            args.next()
                .ok_or_else(|| format!("{flag} needs a value ({USAGE})"))
        };
        match flag.as_str() {
            "--secs" => {
                let v = value()?;
                options.secs = v
                    .parse()
                    .ok()
                    .filter(|s| (1..=3600).contains(s))
                    .ok_or_else(|| format!("--secs {v}: a number of seconds from 1 to 3600"))?;
            }
            "--mode" => {
                options.mode = match value()?.as_str() {
                    "kill" => FaultMode::Kill,
                    "stop" => FaultMode::Stop,
                    "kill-proxy" => FaultMode::KillProxy,
                    other => return Err(format!("--mode {other}: kill, stop or kill-proxy").into()),
                }
            }
            "--policy" => {
                options.policies = match value()?.as_str() {
                    "open" => vec![Policy::Open],
                    "closed" => vec![Policy::Closed],
                    "both" => vec![Policy::Closed, Policy::Open],
                    other => return Err(format!("--policy {other}: open, closed or both").into()),
                }
            }
            "--storage" => {
                options.storage = match value()?.as_str() {
                    "disk" => StorageKind::Disk,
                    "s3" => StorageKind::S3,
                    other => return Err(format!("--storage {other}: disk or s3").into()),
                }
            }
            "--upstream" => options.upstream = value()?.parse()?,
            "--seed" => {
                let v = value()?;
                options.seed = v
                    .parse()
                    .map_err(|_| format!("--seed {v}: a non-negative integer"))?;
            }
            other => return Err(format!("unknown argument {other:?} ({USAGE})").into()),
        }
    }
    Ok(options)
}

/// Runs the whole thing; `Ok(true)` when every count is 0.
fn run(options: &Options) -> Result<bool, Error> {
    let started = Instant::now();
    let policies: Vec<String> = options.policies.iter().map(|p| p.to_string()).collect();
    println!(
        "chaos: {} s, mode {}, policy {}, storage {}, upstream {}, seed {}",
        options.secs,
        options.mode,
        policies.join("+"),
        options.storage,
        options.upstream,
        options.seed
    );

    // The system.
    let mut weed = match options.storage {
        StorageKind::Disk => None,
        StorageKind::S3 => Some(Seaweed::start(BUCKET)?),
    };
    let storage = match &weed {
        None => Storage::Disk,
        Some(weed) => Storage::S3 {
            endpoint: weed.endpoint(),
            bucket: weed.bucket().to_owned(),
            access_key: seaweed::ACCESS_KEY.to_owned(),
            secret_key: seaweed::SECRET_KEY.to_owned(),
        },
    };
    let mut stack_options = StackOptions::new(options.upstream, storage)?;
    if options.mode == FaultMode::KillProxy {
        stack_options = stack_options.proxy_replicas(2);
    }
    let mut stack = Stack::start_with_options(stack_options)?;
    println!("scratch: {}", stack.dir.path().display());
    let setup = started.elapsed();
    println!("set up in {:.1} s", setup.as_secs_f64());

    // Load and faults, for --secs.
    let window = Duration::from_secs(options.secs);
    let load = Load::start(&stack, &options.policies, window)?;
    let mut faults = Faults::new(options.mode, options.seed);
    let fault_result = faults.run(&mut stack, weed.as_mut(), window);
    let sent = load.finish();
    // Whatever happened, everything runs again before the quiet period.
    let restored = faults.restore_all(&mut stack, weed.as_mut());
    fault_result?;
    restored?;
    let loaded = started.elapsed();
    println!(
        "load and faults: {:.1} s, {} faults ({}); {} API requests, {} exec sessions",
        (loaded - setup).as_secs_f64(),
        faults.log.len(),
        faults.summary(),
        sent.requests.len(),
        sent.sessions.len()
    );

    // The quiet period: the spool drains.
    let drain = check::drain(&stack, DRAIN_LIMIT)?;
    let drained = started.elapsed();
    println!(
        "quiet period: {:.1} s ({})",
        (drained - loaded).as_secs_f64(),
        drain
    );

    // The join.
    let stored = stored::read(&stack, weed.as_ref())?;
    let counts = check::count(&stack, &sent, &stored, &drain, &faults)?;
    let checked = started.elapsed();
    println!("{}", counts.report());
    let clean = counts.clean();
    println!(
        "\n| mode | policy | storage | lost acked | fail-closed forwarded without event | fail-open refused | duplicates | hung | fail-closed sessions ran without a cast | seconds |\n|---|---|---|---|---|---|---|---|---|---|\n| {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.0} (set-up {:.0}, load {:.0}, quiet {:.0}, check {:.0}) |",
        options.mode,
        policies.join("+"),
        options.storage,
        counts.lost_acked(),
        counts.closed_forwarded_without_event(),
        counts.open_refused(),
        counts.duplicates(),
        counts.hung(),
        counts.closed_sessions_without_cast(),
        checked.as_secs_f64(),
        setup.as_secs_f64(),
        (loaded - setup).as_secs_f64(),
        (drained - loaded).as_secs_f64(),
        (checked - drained).as_secs_f64(),
    );
    if counts.closed_sessions_without_cast() > 0 {
        println!(
            "\nnote: {} fail-closed exec session(s) ran to their end without their output in a \
             stored cast: the caller saw output that storage does not hold (not one of the four \
             counts; see the section above)",
            counts.closed_sessions_without_cast()
        );
    }
    if clean {
        println!("\nchaos: PASS");
    } else {
        println!(
            "\nchaos: FAIL (logs and storage kept in {})",
            stack.dir.path().display()
        );
        stack.dir.disable_cleanup(true);
        print_logs(&stack);
    }
    Ok(clean)
}

fn print_logs(stack: &Stack) {
    if let Some(recorder) = &stack.recorder {
        println!("--- recorder log tail ---\n{}", recorder.log_tail());
    }
    println!("--- proxy log tail ---\n{}", stack.proxy.log_tail());
}
