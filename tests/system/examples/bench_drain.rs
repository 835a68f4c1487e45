//! How fast the proxy's spool drains into a real recorder: a backlog of
//! `--records` (default 100,000) records of mixed kinds — each request's
//! event followed by its response record, as a fail-open outage leaves them —
//! is spooled by a recorder client while no recorder listens; then the
//! release `kubescribe-recorder` binary starts, storing durably on disk
//! (fsync of file and directory before every 200), and a fresh client with
//! the production spool settings (fsync always) redelivers the backlog.
//!
//! Prints the drain time and records per second, and checks that the
//! recorder stored every record (its `kubescribe_recorder_records_stored_total`).
//!
//! ```text
//! cargo xtask bench-drain            # builds the release recorder, then runs this
//! cargo run --release -p kubescribe-system-tests --example bench_drain -- [--records N]
//! ```

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use event_model::{Event, Extension, Request, ResponseRecord, Source};
use kubescribe_system_tests::Error;
use recorder_client::{ClientConfig, FailurePolicy, FsyncPolicy, RecorderClient, SpoolConfig};
use test_support::net::free_port;
use test_support::process::{workspace_bin, Spawned};

fn records_arg() -> Result<u64, Error> {
    let mut it = std::env::args().skip(1);
    let mut records = 100_000;
    while let Some(flag) = it.next() {
        match (flag.as_str(), it.next()) {
            ("--records", Some(n)) => {
                records = n.parse().map_err(|e| format!("--records {n}: {e}"))?
            }
            _ => return Err(format!("unknown flag {flag}: --records N").into()),
        }
    }
    Ok(records.max(2))
}

fn event(n: u64) -> Event {
    let path = format!("/api/v1/namespaces/default/pods/web-{n}");
    Event {
        timestamp: 1_767_225_600 + n as i64,
        user_agent: "kubectl/v1.37.0 (linux/amd64) kubernetes/abcdef0".into(),
        request: Request {
            method: "GET".into(),
            path: path.clone(),
            ..Default::default()
        },
        kubernetes: k8s_request_parse::request_info("GET", &path).unwrap_or_default(),
        source: Source {
            node: "alice-laptop.tail1234.ts.net".into(),
            node_id: "nALICE1CNTRL".into(),
            node_user_id: 4242,
            node_user: "alice@example.com".into(),
            ..Default::default()
        },
        kubescribe: Some(Extension {
            key: format!("bench-drain-{n:08}"),
            request_id: format!("bench-drain-{n:08}"),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn response(n: u64) -> ResponseRecord {
    ResponseRecord {
        key: format!("bench-drain-{n:08}"),
        timestamp: 1_767_225_600 + n as i64,
        status: 200,
        duration_ms: 3.25,
        response_bytes: 1432,
        ..Default::default()
    }
}

fn stored(admin: SocketAddr) -> Result<u64, Error> {
    test_support::http::metric(admin, "kubescribe_recorder_records_stored_total")?
        .map(|v| v as u64)
        .ok_or_else(|| {
            "no kubescribe_recorder_records_stored_total in the recorder's metrics".into()
        })
}

fn main() -> Result<(), Error> {
    let total = records_arg()?;
    let requests = total / 2;
    let dir = tempfile::Builder::new()
        .prefix("kubescribe-bench-drain-")
        .tempdir()?;
    let spool_dir = dir.path().join("spool");
    let recorder_addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), free_port()?);
    let admin_addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), free_port()?);
    let recorders = [recorder_addr];
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;

    // The backlog: nothing listens yet, so every record is spooled. Filling
    // without fsync only makes the set-up quicker; draining below syncs.
    let filled = Instant::now();
    runtime.block_on(async {
        let mut spool = SpoolConfig::new(&spool_dir);
        spool.fsync = FsyncPolicy::Never;
        spool.max_bytes = 1 << 30;
        let client = RecorderClient::start(
            ClientConfig {
                spool: Some(spool),
                ..Default::default()
            },
            &mut prometheus_client::registry::Registry::default(),
        )?;
        for n in 0..requests {
            let ev = event(n);
            let _ = client
                .record_event(&recorders, FailurePolicy::FailOpen, &ev, &ev.request.path)
                .await;
            client.send_response_record(&recorders, &response(n));
        }
        let deadline = Instant::now() + Duration::from_secs(300);
        while client.spool_pending() < Some(requests * 2) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let pending = client.spool_pending();
        client.shutdown().await;
        if pending != Some(requests * 2) {
            return Err(format!(
                "the backlog holds {pending:?} records, not {}",
                requests * 2
            )
            .into());
        }
        Ok::<_, Error>(())
    })?;
    eprintln!(
        "backlog of {} records spooled in {:.1} s",
        requests * 2,
        filled.elapsed().as_secs_f64()
    );

    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs)?;
    let mut recorder = Spawned::start(
        "kubescribe-recorder",
        &workspace_bin("kubescribe-recorder")?,
        &[
            "--listen".into(),
            recorder_addr.to_string(),
            "--dst".into(),
            dir.path().join("data").to_string_lossy().into_owned(),
            "--signing-key".into(),
            dir.path()
                .join("signing.key")
                .to_string_lossy()
                .into_owned(),
            "--generate-signing-key".into(),
            "--insecure-allow-any-uploader".into(),
            "--admin-listen".into(),
            admin_addr.to_string(),
        ],
        &[("RUST_LOG", "warn")],
        &logs,
    )?;
    recorder.wait_for_tcp(recorder_addr, Duration::from_secs(30))?;
    recorder.wait_for_tcp(admin_addr, Duration::from_secs(30))?;
    let before = stored(admin_addr)?;

    let (elapsed, left) = runtime.block_on(async {
        let started = Instant::now();
        let client = RecorderClient::start(
            ClientConfig {
                spool: Some(SpoolConfig::new(&spool_dir)),
                ..Default::default()
            },
            &mut prometheus_client::registry::Registry::default(),
        )?;
        let deadline = started + Duration::from_secs(600);
        while client.spool_pending() > Some(0) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let elapsed = started.elapsed();
        let left = client.spool_pending();
        client.shutdown().await;
        Ok::<_, Error>((elapsed, left))
    })?;
    let stored_now = stored(admin_addr)? - before;
    let drained = requests * 2 - left.unwrap_or(0);
    println!("## Spool drain into kubescribe-recorder (disk, durable)\n");
    println!("| backlog (events + response records) | drained | stored by the recorder | time s | records/s |");
    println!("|---:|---:|---:|---:|---:|");
    println!(
        "| {} | {} | {} | {:.2} | {:.0} |",
        requests * 2,
        drained,
        stored_now,
        elapsed.as_secs_f64(),
        drained as f64 / elapsed.as_secs_f64()
    );
    if stored_now < drained {
        return Err(
            format!("the recorder stored {stored_now} records of {drained} drained").into(),
        );
    }
    Ok(())
}
