//! The tailnet launcher against the real programs: control, DERP and three
//! tailscaled nodes in a sealed network namespace; a grant set through
//! control reaches the node it is granted on (and only as granted); a node
//! restarted with its state rejoins; `tailscale serve` forwards with a PROXY
//! protocol v2 header naming the tailnet caller.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener};
use std::time::Duration;

use serde_json::json;
use test_support::netns::run_isolated;
use test_support::tailnet::{NodeSpec, Tailnet};

const NODES: &[NodeSpec] = &[
    NodeSpec {
        hostname: "proxy",
        tags: &["tag:k8s-proxy"],
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

#[test]
fn tailnet_joins_grants_and_serves() {
    if !run_isolated("tailnet_joins_grants_and_serves").unwrap() {
        return;
    }
    let mut tailnet = Tailnet::start(NODES).unwrap();
    let alice = tailnet.node("alice").unwrap().info().clone();
    let ci = tailnet.node("ci").unwrap().info().clone();
    assert_eq!(alice.fqdn, "alice.kubescribe-test.ts.net.");
    assert!(alice.tags.is_empty(), "{alice:?}");
    assert_eq!(ci.tags, ["tag:ci"]);
    assert_ne!(alice.user_login, ci.user_login);

    // A grant for one user: alice gets it on the proxy, ci does not.
    tailnet
        .set_grants(&json!([{
            "src": [format!("user:{}", alice.user_login)],
            "dst": ["tag:k8s-proxy"],
            "app": {"tailscale.com/cap/kubernetes": [{"impersonate": {"groups": ["g1"]}}]}
        }]))
        .unwrap();
    let cap = "tailscale.com/cap/kubernetes";
    tailnet
        .wait_for_caps("proxy", "alice", |caps| {
            caps[cap][0]["impersonate"]["groups"] == json!(["g1"])
        })
        .unwrap();
    let ci_on_proxy: serde_json::Value = serde_json::from_str(
        &tailnet
            .node("proxy")
            .unwrap()
            .tailscale(&["whois", "--json", &ci.ipv4.to_string()])
            .unwrap(),
    )
    .unwrap();
    assert!(ci_on_proxy["CapMap"][cap].is_null(), "{ci_on_proxy}");

    // `tailscale serve` with PROXY protocol v2: the header names alice's address.
    let backend = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let proxy = tailnet.node("proxy").unwrap();
    proxy
        .serve_tcp(8443, backend.local_addr().unwrap(), 2)
        .unwrap();
    let socks = tailnet.node("alice").unwrap().socks5();
    let target = format!("{}:8443", proxy.ipv4());
    let client = std::thread::spawn(move || {
        let mut stream = socks::Socks5Stream::connect(socks, target.as_str()).unwrap();
        stream.write_all(b"hello").unwrap();
        stream
    });
    let (mut conn, _) = backend.accept().unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut head = [0u8; 28];
    conn.read_exact(&mut head).unwrap();
    assert_eq!(&head[..12], b"\r\n\r\n\0\r\nQUIT\n", "PROXY v2 signature");
    assert_eq!(head[13], 0x11, "TCP over IPv4");
    assert_eq!(&head[16..20], &alice.ipv4.octets(), "source is alice");
    assert_eq!(
        &head[20..24],
        &proxy.ipv4().octets(),
        "destination is the proxy"
    );
    let _client = client.join().unwrap();

    // A node restarted with its state comes back with the same identity.
    let node = tailnet.node_mut("ci").unwrap();
    node.stop().unwrap();
    node.start().unwrap();
    assert_eq!(node.info().ipv4, ci.ipv4);
}
