//! `cargo xtask flood`: the release binaries as users run them (the simulator behind the proxy,
//! the proxy serving TLS, the recorder on disk; default connection limits), and against each of
//! their four listeners in turn a flood of `--sockets` connections (default 20,000) that send
//! nothing, half a request, half an HTTP/2 preface or half a TLS ClientHello (on the TLS listener:
//! half a ClientHello, or a whole handshake and half a request), held for `--hold` seconds, opened
//! from `--workers` processes on 127.0.0.10 and up at `--rate` per second. Meanwhile a legitimate
//! request is sent every 10 ms on a new connection; the table gives its latency, the failures, and
//! the server's open file descriptors and RSS before, during and after.
//!
//! ```text
//! flood [--sockets N] [--workers N] [--rate N] [--hold SECONDS]
//! flood worker TARGET COUNT RATE SOURCE [CA_FILE]      (one flood process; started by the above)
//! ```

use std::time::Duration;

use kubescribe_system_tests::flood::measure::{
    fd_limit, measure, table, worker_main, Plan, Runner,
};
use kubescribe_system_tests::flood::servers::Servers;
use kubescribe_system_tests::Error;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("worker") => worker_main(&args[1..]),
        _ => run(&args),
    };
    if let Err(err) = result {
        eprintln!("flood: {err}");
        std::process::exit(1);
    }
}

fn flag(args: &[String], name: &str, default: usize) -> Result<usize, Error> {
    match args.iter().position(|a| a == name) {
        None => Ok(default),
        Some(i) => Ok(args
            .get(i + 1)
            .ok_or_else(|| format!("{name} needs a value"))?
            .parse()
            .map_err(|e| format!("{name}: {e}"))?),
    }
}

fn run(args: &[String]) -> Result<(), Error> {
    let sockets = flag(args, "--sockets", 20_000)?;
    let workers = flag(args, "--workers", 4)?;
    let rate = flag(args, "--rate", 5_000)?;
    let hold = flag(args, "--hold", 15)?;
    let plan = Plan {
        sockets,
        runner: Runner::Workers {
            exe: std::env::current_exe()?,
            processes: workers,
        },
        rate,
        quiet: Duration::from_secs(3),
        hold: Duration::from_secs(u64::try_from(hold)?),
        settle: Duration::from_secs(2),
        pause: Duration::from_millis(10),
    };
    let dir = tempfile::Builder::new()
        .prefix("kubescribe-flood-")
        .tempdir()?;
    let servers = Servers::start(dir.path(), &[], 1024)?;
    let limit = |pid: &str| fd_limit(pid).unwrap_or_else(|| "unknown".to_owned());
    eprintln!(
        "flood: open-file limits: the proxy {}, the recorder {}, each flood worker {} (inherited)",
        limit(&servers.proxy.pid().to_string()),
        limit(&servers.recorder.pid().to_string()),
        limit("self"),
    );
    eprintln!(
        "flood: {sockets} connections per listener from {workers} processes at {rate}/s, held {hold} s; \
         a legitimate request every 10 ms on a new connection"
    );
    let mut rows = Vec::new();
    for target in servers.targets() {
        eprintln!("flood: {} at {}", target.name, target.addr);
        let row = measure(target, &plan)?;
        for phase in [&row.before, &row.opening, &row.held, &row.after] {
            for e in &phase.first_errors {
                eprintln!("  failed request: {e}");
            }
        }
        rows.push(row);
    }
    println!("{}", table(&rows));
    Ok(())
}
