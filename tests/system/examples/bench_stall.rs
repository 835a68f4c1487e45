//! How fast fail closed refuses while the only recorder hangs: the whole
//! system as real processes (kube-sim, kubescribe-recorder, kubescribe-proxy;
//! see `kubescribe_system_tests::stack`), a closed-loop load of `--workers`
//! connections as alice (events on, fail closed, one recorder), and the
//! recorder frozen with SIGSTOP for `--stall` seconds, then resumed.
//!
//! Prints, as Markdown: the requests sent during the stall by what they got,
//! the latency of the refusals (p50, p90, p99, max) and how many waited
//! for the recorder's deadline, and how soon requests succeeded again after
//! SIGCONT.
//!
//! ```text
//! cargo xtask bench-stall            # builds the release binaries, then runs this
//! cargo run --release -p kubescribe-system-tests --example bench_stall -- [--workers N] [--stall SECONDS]
//! ```
//! The binaries are taken from the example's own target directory (build them
//! with `cargo build --release -p kubescribe-proxy -p kubescribe-recorder -p kubescribe-kube-sim`).

use std::time::{Duration, Instant};

use kubescribe_system_tests::load::{quantile, Load, Sample};
use kubescribe_system_tests::stack::{Stack, Storage};
use kubescribe_system_tests::Error;

struct Args {
    workers: usize,
    warm: Duration,
    stall: Duration,
    after: Duration,
}

fn args() -> Result<Args, Error> {
    let mut args = Args {
        workers: 16,
        warm: Duration::from_secs(3),
        stall: Duration::from_secs(15),
        after: Duration::from_secs(5),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let number: u64 = value.parse().map_err(|e| format!("{flag} {value}: {e}"))?;
        match flag.as_str() {
            "--workers" => args.workers = number.max(1) as usize,
            "--stall" => args.stall = Duration::from_secs(number.max(1)),
            "--warm" => args.warm = Duration::from_secs(number),
            "--after" => args.after = Duration::from_secs(number.max(1)),
            other => {
                return Err(
                    format!("unknown flag {other}: --workers, --stall, --warm, --after").into(),
                )
            }
        }
    }
    Ok(args)
}

fn ms(d: Option<Duration>) -> String {
    d.map_or_else(
        || "–".to_owned(),
        |d| format!("{:.1}", d.as_secs_f64() * 1000.0),
    )
}

fn main() -> Result<(), Error> {
    let args = args()?;
    let stack = Stack::start(Storage::Disk)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let load = Load::start(
        &runtime,
        stack.alice.addr(),
        "default",
        args.workers,
        Duration::ZERO,
    );
    std::thread::sleep(args.warm);
    let warm_ok = load
        .samples()
        .iter()
        .filter(|s| (200..500).contains(&s.status) && s.status != 403)
        .count();
    let stopped = Instant::now();
    stack.pause_recorder()?;
    std::thread::sleep(args.stall);
    let resumed = Instant::now();
    stack.resume_recorder()?;
    std::thread::sleep(args.after);
    let samples = load.stop(&runtime);

    let during: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.sent >= stopped && s.sent < resumed)
        .collect();
    let refused: Vec<&Sample> = during
        .iter()
        .copied()
        .filter(|s| s.status == 502 || s.status == 403)
        .collect();
    let mut latencies: Vec<Duration> = refused.iter().map(|s| s.latency).collect();
    latencies.sort();
    let slow = latencies
        .iter()
        .filter(|l| **l >= Duration::from_secs(1))
        .count();
    let forwarded = during
        .iter()
        .filter(|s| s.status == 200 || s.status == 404)
        .count();
    let other = during.len() - refused.len() - forwarded;
    let first_success = samples
        .iter()
        .filter(|s| s.sent >= resumed && (s.status == 200 || s.status == 404))
        .map(|s| s.answered().saturating_duration_since(resumed))
        .min();
    let tail_start = resumed + args.after.saturating_sub(Duration::from_secs(2));
    let tail: Vec<&Sample> = samples.iter().filter(|s| s.sent >= tail_start).collect();
    let tail_ok = tail
        .iter()
        .filter(|s| s.status == 200 || s.status == 404)
        .count();

    println!(
        "## Fail closed while the only recorder is stopped (SIGSTOP for {} s, {} closed-loop workers)\n",
        args.stall.as_secs(),
        args.workers
    );
    println!(
        "before the stall: {warm_ok} requests forwarded in {} s\n",
        args.warm.as_secs()
    );
    println!("| sent during the stall | refused (502/403) | forwarded | other |");
    println!("|---:|---:|---:|---:|");
    println!(
        "| {} | {} | {} | {} |\n",
        during.len(),
        refused.len(),
        forwarded,
        other
    );
    println!("| refusal latency | p50 ms | p90 ms | p99 ms | max ms | ≥ 1 s |");
    println!("|---|---:|---:|---:|---:|---:|");
    println!(
        "| during the stall | {} | {} | {} | {} | {} |\n",
        ms(quantile(&latencies, 0.50)),
        ms(quantile(&latencies, 0.90)),
        ms(quantile(&latencies, 0.99)),
        ms(latencies.last().copied()),
        slow
    );
    println!(
        "after SIGCONT: first request forwarded {} ms after it; of the requests sent in the last 2 s, {}/{} forwarded",
        ms(first_success),
        tail_ok,
        tail.len()
    );
    if let Some(example) = refused.first() {
        println!(
            "\na refusal: {} {}",
            example.status,
            example.body.trim_end()
        );
    }
    if other > 0 {
        if let Some(s) = during
            .iter()
            .find(|s| !(s.status == 502 || s.status == 403 || s.status == 200 || s.status == 404))
        {
            println!("\nan unexpected answer: {} {}", s.status, s.body.trim_end());
        }
    }
    Ok(())
}
