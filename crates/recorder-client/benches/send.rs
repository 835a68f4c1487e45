//! Event send benchmark against an in-process, non-fsyncing fake recorder on
//! loopback: latency percentiles of one synchronous send (p50/p99) and
//! throughput (events/s) with many concurrent senders, with and without
//! batching. Run: `cargo bench -p kubescribe-recorder-client --bench send`.
#![allow(clippy::unwrap_used, missing_docs)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use criterion::Criterion;
use recorder_client::{ClientConfig, FailurePolicy, Outcome, RecorderClient};
use support::{event, EventMode, Fake, SessionMode};

fn client(batching: bool) -> RecorderClient {
    let mut cfg = ClientConfig::default();
    cfg.batch.enabled = batching;
    RecorderClient::with_metrics(cfg, Default::default()).unwrap()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx]
}

async fn latency(c: &RecorderClient, addr: std::net::SocketAddr, n: usize) -> Vec<Duration> {
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        let e = event(&format!("lat-{i}"));
        let t = Instant::now();
        let out = c
            .record_event(&[addr], FailurePolicy::FailClosed, &e, "/")
            .await;
        samples.push(t.elapsed());
        assert_eq!(out, Outcome::Forward);
    }
    samples.sort();
    samples
}

async fn throughput(
    c: &RecorderClient,
    addr: std::net::SocketAddr,
    senders: usize,
    each: usize,
    tag: &str,
) -> f64 {
    let t = Instant::now();
    let mut tasks = Vec::new();
    for s in 0..senders {
        let c = c.clone();
        let tag = tag.to_owned();
        tasks.push(tokio::spawn(async move {
            for i in 0..each {
                let e = event(&format!("{tag}-{s}-{i}"));
                let out = c
                    .record_event(&[addr], FailurePolicy::FailClosed, &e, "/")
                    .await;
                assert_eq!(out, Outcome::Forward);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    (senders * each) as f64 / t.elapsed().as_secs_f64()
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let fake = Fake::start(EventMode::Ok, true, SessionMode::V2Acks).await;
        let plain = client(false);
        // Warm up the connection and the probe cache.
        latency(&plain, fake.addr, 500).await;
        let s = latency(&plain, fake.addr, 20_000).await;
        println!(
            "sync send (one client, one recorder, loopback): n={} p50={:?} p90={:?} p99={:?} p99.9={:?} max={:?}",
            s.len(),
            percentile(&s, 0.50),
            percentile(&s, 0.90),
            percentile(&s, 0.99),
            percentile(&s, 0.999),
            s[s.len() - 1]
        );
        let eps = throughput(&plain, fake.addr, 64, 500, "nb").await;
        println!("throughput, 64 concurrent senders, no batching: {eps:.0} events/s");
        let batched = client(true);
        latency(&batched, fake.addr, 100).await;
        let eps = throughput(&batched, fake.addr, 64, 500, "b").await;
        println!(
            "throughput, 64 concurrent senders, batching: {eps:.0} events/s ({} batch requests so far)",
            fake.state.batches.load(std::sync::atomic::Ordering::Relaxed)
        );
    });

    let fake = rt.block_on(Fake::start(EventMode::Ok, true, SessionMode::V2Acks));
    let c = rt.block_on(async { client(false) });
    let addr = fake.addr;
    let mut n = 0u64;
    let mut crit = Criterion::default().configure_from_args();
    crit.bench_function("record_event_sync_loopback", |b| {
        b.iter(|| {
            n += 1;
            let e = event(&format!("crit-{n}"));
            rt.block_on(c.record_event(&[addr], FailurePolicy::FailClosed, &e, "/"))
        })
    });
    crit.final_summary();
}
