//! `cargo xtask bench-tailnet`: what the tailnet adds to a request's latency. The whole system on a
//! real tailnet (`kubescribe_system_tests::tailnet_stack`, simulator upstream, release binaries),
//! in a sealed network namespace; the same `GET` sent, on a new TLS connection each time, two ways:
//!
//! - **loopback**: to the proxy's local port through a PROXY-protocol forwarder naming the caller's
//!   tailnet address (what `tailscale serve` hands the proxy, minus the tailnet);
//! - **tailnet**: from the caller's node through its tailscaled's SOCKS5 proxy, over the tailnet,
//!   into the proxy node's `tailscale serve`.
//!
//! for two callers: `eve` (no grants: nothing recorded) and `alice` (fail closed, events on: each
//! request waits for its event to be stored by the recorder, reached through the proxy node's
//! tailscaled). Requests alternate between the two ways so both see the same machine; the table
//! gives p50/p90/p99 and the tailnet's extra at p50 and p99.

use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use kubescribe_system_tests::load::quantile;
use kubescribe_system_tests::proxy_protocol::ProxyProtocolForwarder;
use kubescribe_system_tests::tailnet_stack::{TailnetStack, TailnetStackOptions, PROXY_NODE};
use kubescribe_system_tests::upstream::UpstreamKind;
use kubescribe_system_tests::Error;
use test_support::http::{self, Reply, Tls};

/// Requests per caller and way, after the warm-up.
const REQUESTS: usize = 400;
const WARM_UP: usize = 20;
const PATH: &str = "/api/v1/namespaces/default/configmaps";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench-tailnet: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Error> {
    test_support::netns::seal()?;
    let stack = TailnetStack::start(TailnetStackOptions::new(UpstreamKind::Sim))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let tls = Tls::trusting(&stack.proxy_ca_pem)?;
    let proxy = SocketAddr::new(IpAddr::V4(stack.tailnet.node(PROXY_NODE)?.ipv4()), 443);
    println!("| caller | way | p50 | p90 | p99 | tailnet's extra at p50 | at p99 |");
    println!("| --- | --- | ---: | ---: | ---: | ---: | ---: |");
    for caller in ["eve", "alice"] {
        let node = stack.tailnet.node(caller)?;
        let forwarder = runtime.block_on(ProxyProtocolForwarder::start(
            stack.proxy_local,
            IpAddr::V4(node.ipv4()),
        ))?;
        let socks = node.socks5();
        let loopback = || http::request(forwarder.addr(), Some(&tls), "GET", PATH, &[], b"");
        let tailnet = || http::request_via_socks5(socks, proxy, Some(&tls), "GET", PATH, &[], b"");
        let (mut on_loopback, mut on_tailnet) = (Vec::new(), Vec::new());
        for n in 0..WARM_UP + REQUESTS {
            for (way, samples) in [
                (&loopback as &dyn Fn() -> Result<Reply, _>, &mut on_loopback),
                (&tailnet as &dyn Fn() -> Result<Reply, _>, &mut on_tailnet),
            ] {
                let started = Instant::now();
                let reply = way()?;
                let took = started.elapsed();
                if reply.status != 200 {
                    return Err(format!("{caller}: {} {}", reply.status, reply.text()).into());
                }
                if n >= WARM_UP {
                    samples.push(took);
                }
            }
        }
        on_loopback.sort();
        on_tailnet.sort();
        let q = |s: &[Duration], p: f64| quantile(s, p).unwrap_or_default();
        let ms = |d: Duration| format!("{:.2} ms", d.as_secs_f64() * 1e3);
        let extra = |p: f64| {
            let (t, l) = (q(&on_tailnet, p), q(&on_loopback, p));
            format!("{:+.2} ms", (t.as_secs_f64() - l.as_secs_f64()) * 1e3)
        };
        for (way, samples) in [("loopback", &on_loopback), ("tailnet", &on_tailnet)] {
            let (e50, e99) = if way == "tailnet" {
                (extra(0.5), extra(0.99))
            } else {
                (String::new(), String::new())
            };
            println!(
                "| {caller} | {way} | {} | {} | {} | {e50} | {e99} |",
                ms(q(samples, 0.5)),
                ms(q(samples, 0.9)),
                ms(q(samples, 0.99)),
            );
        }
    }
    println!(
        "\n{REQUESTS} requests per row (after {WARM_UP} warm-up), each on a new TLS connection; \
         eve: nothing recorded; alice: fail closed, each event stored before the reply."
    );
    Ok(())
}
