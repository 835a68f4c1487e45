//! Durable ingest throughput on the disk back end: 64 concurrent senders,
//! first single `POST /v2/event`s, then NDJSON batches on `/v2/events`.
//! Every counted event got its `200`, i.e. is fsynced.
//!
//! `cargo run --release -p kubescribe-recorder --example bench_ingest -- [SECONDS] [BATCH] [DIR]`
//! (defaults: 5 s per phase, 100 events per batch, a temporary directory).
//! `BENCH_MANIFEST_INTERVAL` sets `--manifest-interval` (default `60s`, as in production; `1s`
//! makes the sealer re-read and sign segments as they are sealed during the run, `1000h`
//! keeps it idle: the cost of tamper evidence is the difference).
//! Senders keep their HTTP/1.1 connection alive (Tailscale's client opens a
//! new one per event; that costs the client, not the recorder's storage path).

use std::error::Error;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use kubescribe_recorder::storage::disk::DiskStorage;

/// The same allocator as the binaries.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SENDERS: usize = 64;

fn event(sender: usize, i: u64) -> String {
    format!(
        concat!(
            r#"{{"type":"kubernetes-api-request","id":"","timestamp":1767225600,"userAgent":"kubectl/v1.35.0 (linux/amd64) kubernetes/0000000","#,
            r#""request":{{"method":"GET","path":"/api/v1/namespaces/default/pods/web-{i}","body":"","queryParameters":{{}}}},"#,
            r#""kubernetes":{{"IsResourceRequest":true,"Path":"/api/v1/namespaces/default/pods/web-{i}","Verb":"get","APIPrefix":"api","APIGroup":"","#,
            r#""APIVersion":"v1","Namespace":"default","Resource":"pods","Subresource":"","Name":"web-{i}","Parts":["pods","web-{i}"],"#,
            r#""FieldSelector":"","LabelSelector":""}},"source":{{"node":"laptop.tail1234.ts.net","nodeID":"nAbC123CNTRL","nodeUserID":4242,"#,
            r#""nodeUser":"alice@example.com"}},"destination":{{"node":"","nodeID":""}},"kubescribe":{{"key":"bench-{s}-{i}"}}}}"#,
            "\n"
        ),
        s = sender,
        i = i
    )
}

async fn phase(
    addr: std::net::SocketAddr,
    seconds: u64,
    batch: usize,
    tag: &'static str,
) -> Result<f64, Box<dyn Error>> {
    let stored = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for s in 0..SENDERS {
        let stored = stored.clone();
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let stream = tokio::net::TcpStream::connect(addr).await?;
            stream.set_nodelay(true)?;
            let (mut send, conn) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
            tokio::spawn(conn);
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let (path, ct, body) = if batch <= 1 {
                    i += 1;
                    (
                        "/v2/event",
                        "application/json",
                        event(s, i + 1_000_000 * u64::from(tag == "batch")),
                    )
                } else {
                    let mut b = String::new();
                    for _ in 0..batch {
                        i += 1;
                        b.push_str(&event(s, i + 1_000_000_000));
                    }
                    ("/v2/events", "application/x-ndjson", b)
                };
                send.ready().await?;
                let req = http::Request::post(path)
                    .header("host", "recorder")
                    .header("content-type", ct)
                    .body(Full::new(Bytes::from(body)))?;
                let res = send.send_request(req).await?;
                let ok = res.status() == http::StatusCode::OK;
                res.into_body().collect().await?;
                if !ok {
                    return Err::<(), Box<dyn Error + Send + Sync>>("non-200 answer".into());
                }
                stored.fetch_add(batch.max(1) as u64, Ordering::Relaxed);
            }
            Ok(())
        }));
    }
    // Warm up for one second, then measure.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let start_count = stored.load(Ordering::Relaxed);
    let start = Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let count = stored.load(Ordering::Relaxed) - start_count;
    let elapsed = start.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        if let Err(e) = t.await? {
            return Err(format!("sender failed: {e}").into());
        }
    }
    Ok(count as f64 / elapsed)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let seconds: u64 = args.first().map(|s| s.parse()).transpose()?.unwrap_or(5);
    let batch: usize = args.get(1).map(|s| s.parse()).transpose()?.unwrap_or(100);
    let tmp = tempfile_dir(args.get(2))?;
    let key = tmp.join("signing.key");
    let interval = std::env::var("BENCH_MANIFEST_INTERVAL").unwrap_or_else(|_| "60s".into());
    let config = kubescribe_recorder::Cli::try_parse_from([
        "kubescribe-recorder",
        "--listen",
        "127.0.0.1:0",
        "--signing-key",
        &key.to_string_lossy(),
        "--generate-signing-key",
        "--manifest-interval",
        &interval,
        "--insecure-allow-any-uploader",
        "--index-max-bytes",
        "67108864",
        "--admin-listen",
        "off",
    ])?
    .validate()?;
    let storage = Arc::new(DiskStorage::open(&tmp)?);
    let (addr, app) = kubescribe_recorder::spawn(config, storage).await?;
    let single = phase(addr, seconds, 1, "single").await?;
    let batched = phase(addr, seconds, batch, "batch").await?;
    let metrics = app.metrics_text();
    let commits: Vec<&str> = metrics
        .lines()
        .filter(|l| {
            l.starts_with("kubescribe_recorder_commit_batch_records_sum")
                || l.starts_with("kubescribe_recorder_commit_batch_records_count")
                || l.starts_with("kubescribe_recorder_commit_duration_seconds_sum")
                || l.starts_with("kubescribe_recorder_commit_duration_seconds_count")
        })
        .collect();
    println!("disk dir: {}", tmp.display());
    println!(
        "senders: {SENDERS}, phase: {seconds}s, batch size: {batch}, cores: {}",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );
    println!("single POST /v2/event: {single:.0} durable events/s");
    println!("batched POST /v2/events: {batched:.0} durable events/s");
    println!("{}", commits.join("\n"));
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(())
}

fn tempfile_dir(arg: Option<&String>) -> std::io::Result<std::path::PathBuf> {
    let base = arg
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
        .join(format!("kubescribe-bench-{}", std::process::id()));
    std::fs::create_dir_all(&base)?;
    Ok(base)
}
