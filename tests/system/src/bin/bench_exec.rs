//! `cargo xtask bench-exec`: throughput of a large `kubectl exec` output
//! through the proxy, recorded versus unrecorded, and the proxy's CPU per MB.
//!
//! The same stack as the end-to-end run (release binaries when built with
//! `--release`). The session prints `--mb` MiB of ASCII text; kubectl writes
//! it to /dev/null. CPU time per process comes from `/proc/<pid>/stat`, the
//! machine's from `/proc/stat` (so run it on a quiet machine).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use kubescribe_system_tests::stack::{Caller, Stack, Storage};
use kubescribe_system_tests::Error;
use test_support::peers;
use test_support::process::{clock_ticks_per_second, cpu_ticks, machine_busy_ticks};

fn main() {
    if let Err(err) = run() {
        eprintln!("bench-exec: {err}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), Error> {
    let mib: u64 = std::env::args()
        .skip_while(|a| a != "--mb")
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    let rounds: usize = 3;
    let kubectl = peers::kubectl()?;
    let stack = Stack::start(Storage::Disk)?;
    let ticks = clock_ticks_per_second()? as f64;
    let recorder_pid = stack
        .recorder
        .as_ref()
        .map(|r| r.pid())
        .ok_or("the stack has no recorder")?;
    let pids = [
        stack.proxy.pid(),
        recorder_pid,
        stack.upstream.process().pid(),
    ];
    println!(
        "exec output: {mib} MiB per run, {rounds} runs each, kubectl {}",
        kubectl.display()
    );
    println!("CPU in ms per MiB; \"machine\" is all CPU time on the machine (kubectl, the PROXY forwarder, everything).");
    println!(
        "| session | MiB/s (median) | proxy CPU | recorder CPU | simulator CPU | machine CPU |"
    );
    println!("| --- | --- | --- | --- | --- | --- |");
    for (label, caller) in [
        ("unrecorded (no grants)", &stack.dave),
        ("recorded (fail closed)", &stack.alice),
    ] {
        let mut rates = Vec::new();
        let mut cpu: [Vec<f64>; 4] = Default::default();
        for _ in 0..rounds {
            let before = cpu_now(&pids)?;
            let start = Instant::now();
            exec_output(&kubectl, caller, mib)?;
            let seconds = start.elapsed().as_secs_f64();
            let after = cpu_now(&pids)?;
            rates.push(mib as f64 / seconds);
            for (i, series) in cpu.iter_mut().enumerate() {
                series.push((after[i] - before[i]) as f64 * 1000.0 / ticks / mib as f64);
            }
        }
        let [proxy, recorder, sim, machine] = &mut cpu;
        println!(
            "| {label} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} |",
            median(&mut rates),
            median(proxy),
            median(recorder),
            median(sim),
            median(machine),
        );
    }
    Ok(())
}

/// CPU ticks used so far by each of `pids` and by the whole machine.
fn cpu_now(pids: &[u32; 3]) -> Result<[u64; 4], Error> {
    Ok([
        cpu_ticks(pids[0])?,
        cpu_ticks(pids[1])?,
        cpu_ticks(pids[2])?,
        machine_busy_ticks()?,
    ])
}

fn exec_output(kubectl: &Path, caller: &Caller, mib: u64) -> Result<(), Error> {
    let script = format!(
        "yes kubescribe-benchmark-0123456789abcdefghijklmnopqrstuvwxyz-ABCDEFGHIJKLMNOPQRSTUVWXYZ | head -c {}",
        mib * 1024 * 1024
    );
    let status = Command::new(kubectl)
        .arg("--kubeconfig")
        .arg(&caller.kubeconfig)
        .args(["exec", "demo", "--", "sh", "-c", &script])
        .stdout(Stdio::null())
        .status()?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("kubectl exec failed: {status}").into())
    }
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}
