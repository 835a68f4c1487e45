//! `cargo xtask bench-side-by-side`: kubescribe-proxy and Tailscale's own API server proxy
//! (v1.102.5, `tests/peers-go/tailscale/tsproxy`) in one run, on one real tailnet, in front of
//! the same upstream (the simulator), recording events into the same kubescribe-recorder,
//! with the same grants, under the same closed-loop load.
//!
//! Each request reaches each proxy's local listener as `tailscale serve` hands it over: plain
//! HTTP behind a PROXY protocol v2 header that names the caller's tailnet address. Both proxies
//! then ask their tailscaled who the caller is and send the event over the tailnet to the
//! recorder (kubescribe through its node's LocalAPI, Tailscale's through tsnet) before
//! forwarding. Callers: `alice` (fail closed) and `ci` (fail open), both with events on and the
//! recorder address resolved by control. Rounds alternate between the proxies so both see the
//! same machine; the table sums the rounds: throughput, p50/p99 latency, and the requests that
//! got no answer from the upstream (status 0 or 5xx).

use std::net::IpAddr;
use std::process::ExitCode;
use std::time::Duration;

use kubescribe_system_tests::load::{quantile, Load, Sample};
use kubescribe_system_tests::proxy_protocol::ProxyProtocolForwarder;
use kubescribe_system_tests::tailnet_stack::{TailnetStack, TailnetStackOptions, KUBERNETES_CAP};
use kubescribe_system_tests::tailscale_proxy::TS_PROXY_LOCAL;
use kubescribe_system_tests::upstream::UpstreamKind;
use kubescribe_system_tests::Error;
use serde_json::json;

/// Closed-loop connections per run.
const WORKERS: usize = 16;
/// Length of one round.
const ROUND: Duration = Duration::from_secs(10);
/// Rounds per proxy and caller (alternating).
const ROUNDS: usize = 2;
/// Load before the first measured round of each pairing.
const WARM_UP: Duration = Duration::from_secs(2);

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench-side-by-side: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Error> {
    test_support::netns::seal()?;
    let mut options = TailnetStackOptions::new(UpstreamKind::Sim);
    options.tailscale_proxy = true;
    options.plain_http_proxy = true;
    let stack = TailnetStack::start(options)?;
    let alice = stack.tailnet.node("alice")?.info().clone();
    stack.set_grants(&json!([
        {
            "src": [format!("user:{}", alice.user_login)],
            "dst": ["tag:k8s-proxy"],
            "app": {KUBERNETES_CAP: [{
                "recorder": ["tag:k8s-recorder"], "enforceRecorder": true, "enableEvents": true
            }]}
        },
        {
            "src": ["tag:ci"],
            "dst": ["tag:k8s-proxy"],
            "app": {KUBERNETES_CAP: [{"recorder": ["tag:k8s-recorder"], "enableEvents": true}]}
        }
    ]))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let proxies = [
        ("kubescribe-proxy", stack.proxy_local),
        ("Tailscale's proxy", TS_PROXY_LOCAL),
    ];

    println!(
        "| caller | proxy | requests/s | p50 | p99 | unanswered | throughput vs Tailscale's |"
    );
    println!("| --- | --- | ---: | ---: | ---: | ---: | ---: |");
    for (caller, policy) in [("alice", "fail closed"), ("ci", "fail open")] {
        let ip = IpAddr::V4(stack.tailnet.node(caller)?.ipv4());
        let mut forwarders = Vec::new();
        for (_, addr) in proxies {
            forwarders.push(runtime.block_on(ProxyProtocolForwarder::start(addr, ip))?);
        }
        for forwarder in &forwarders {
            let warm = Load::start(
                &runtime,
                forwarder.addr(),
                "default",
                WORKERS,
                Duration::ZERO,
            );
            std::thread::sleep(WARM_UP);
            warm.stop(&runtime);
        }
        let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); proxies.len()];
        for _ in 0..ROUNDS {
            for (i, forwarder) in forwarders.iter().enumerate() {
                let load = Load::start(
                    &runtime,
                    forwarder.addr(),
                    "default",
                    WORKERS,
                    Duration::ZERO,
                );
                std::thread::sleep(ROUND);
                samples[i].extend(load.stop(&runtime));
            }
        }
        let measured = ROUND * u32::try_from(ROUNDS).unwrap_or(1);
        let rate = |s: &[Sample]| s.len() as f64 / measured.as_secs_f64();
        let tailscale_rate = rate(&samples[1]);
        for ((name, _), samples) in proxies.iter().zip(&samples) {
            let mut latencies: Vec<Duration> = samples.iter().map(|s| s.latency).collect();
            latencies.sort();
            let ms = |q: f64| {
                quantile(&latencies, q).map_or("-".to_owned(), |d| {
                    format!("{:.2} ms", d.as_secs_f64() * 1e3)
                })
            };
            let unanswered = samples
                .iter()
                .filter(|s| s.status == 0 || s.status >= 500)
                .count();
            println!(
                "| {caller} ({policy}) | {name} | {:.0} | {} | {} | {unanswered} | {:.2}× |",
                rate(samples),
                ms(0.5),
                ms(0.99),
                rate(samples) / tailscale_rate.max(f64::MIN_POSITIVE)
            );
        }
    }
    println!(
        "\n{WORKERS} keep-alive connections per run, {ROUNDS} rounds of {ROUND:?} per proxy and caller, \
         alternating; simulator upstream; one kubescribe-recorder on disk, reached over the tailnet."
    );
    Ok(())
}
