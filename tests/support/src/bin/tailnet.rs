//! `cargo xtask tailnet`: a real tailnet by hand, inside a sealed network
//! namespace (`unshare --net`, see `test_support::netns`): control with DERP,
//! and four tailscaled nodes, `proxy` (`tag:k8s-proxy`), `recorder`
//! (`tag:k8s-recorder`), `alice` (a user's node) and `ci` (`tag:ci`).
//! Prints how to reach each node and runs until Ctrl-C.

use std::process::ExitCode;
use std::time::Duration;

use test_support::netns;
use test_support::tailnet::{NodeSpec, Tailnet};

const NODES: &[NodeSpec] = &[
    NodeSpec {
        hostname: "proxy",
        tags: &["tag:k8s-proxy"],
    },
    NodeSpec {
        hostname: "recorder",
        tags: &["tag:k8s-recorder"],
    },
    NodeSpec {
        hostname: "alice",
        tags: &[],
    },
    NodeSpec {
        hostname: "ci",
        tags: &["tag:ci"],
    },
];

fn main() -> ExitCode {
    let tailnet = match netns::seal().and_then(|()| Tailnet::start(NODES)) {
        Ok(tailnet) => tailnet,
        Err(err) => {
            eprintln!("tailnet: {err}");
            return ExitCode::FAILURE;
        }
    };
    let pid = std::process::id();
    let tailscale = test_support::peers::tailscale()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "tailscale".to_owned());
    println!("control    {}", tailnet.control_url());
    println!("state      {}", tailnet.dir().display());
    for node in tailnet.nodes() {
        let info = node.info();
        println!(
            "node {:<9} {:<15} {:<36} tags {:?} user {}",
            node.hostname(),
            info.ipv4,
            info.fqdn,
            info.tags,
            info.user_login
        );
        println!(
            "     LocalAPI {}  SOCKS5 {}  HTTP proxy {}",
            node.socket().display(),
            node.socks5(),
            node.http_proxy()
        );
    }
    println!();
    println!("Everything runs in a network namespace of its own; enter it to use the tailnet:");
    println!("  nsenter --net=/proc/{pid}/ns/net -- {tailscale} --socket=<LocalAPI> status");
    println!(
        "Grants: PUT {}/kubescribe/grants (see tests/peers-go/tailscale/control/main.go)",
        tailnet.control_url()
    );
    println!("Ctrl-C stops it.");
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}
