//! Our `/localapi/v0/dial` and `/localapi/v0/status` requests against the real tailscaled 1.96
//! binary, run in userspace-networking mode inside a loopback-only network namespace (as
//! `crates/identity/tests/real_tailscaled.rs` runs it). No tailnet can be formed here: this checks
//! that tailscaled's router takes our requests as they are shaped (a malformed `ts-dial` request
//! gets 400 "bad ts-dial upgrade", a missing header "missing Dial-Host or Dial-Port header"), that a
//! dial of an address tailscaled cannot reach fails with its own error, and that its status
//! document parses.
//!
//! Install the binary with `cargo xtask peers`.
#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use localapi::{LocalApi, LocalApiError};
use test_support::tailnet::LoneTailscaled;

/// The real tailscaled 1.96, alone in a network namespace.
fn start_tailscaled() -> LoneTailscaled {
    let binary = test_support::peers::tailscaled_1_96().unwrap_or_else(|e| panic!("{e}"));
    LoneTailscaled::start(&binary).unwrap_or_else(|e| panic!("{e}"))
}

fn api(tailscaled: &LoneTailscaled) -> LocalApi {
    LocalApi::new(tailscaled.socket())
}

/// Waits until the LocalAPI answers (or tailscaled dies).
async fn wait_ready(tailscaled: &mut LoneTailscaled) {
    let api = api(tailscaled);
    tailscaled
        .wait_ready(|| async {
            !matches!(
                api.get("/localapi/v0/status", 1 << 20).await,
                Err(LocalApiError::Connect { .. })
            )
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test]
async fn real_tailscaled_status_parses() {
    let mut tailscaled = start_tailscaled();
    wait_ready(&mut tailscaled).await;
    let status = api(&tailscaled).status().await.unwrap();
    // Not logged in: no netmap, so no peer and no recorder for any tag.
    assert!(
        ["NoState", "NeedsLogin", "Stopped"].contains(&status.backend_state.as_str()),
        "{status:?}"
    );
    assert!(status.peers.is_empty(), "{status:?}");
    assert!(status
        .recorders_for_tags(&["tag:k8s-recorder".to_owned()])
        .is_empty());
}

#[tokio::test]
async fn real_tailscaled_takes_our_dial_request_and_answers_with_its_own_error() {
    let mut tailscaled = start_tailscaled();
    wait_ready(&mut tailscaled).await;
    let api = api(&tailscaled);

    // A tailnet address this logged-out node has no route to.
    let err = api
        .dial("100.64.0.3".parse().unwrap(), 80)
        .await
        .unwrap_err();
    eprintln!("dial 100.64.0.3:80: {err}");
    match &err {
        LocalApiError::Status { status, body } => {
            assert_eq!(status.as_u16(), 502, "{err}");
            // serveDial's words: our request got past its method, upgrade and header checks.
            assert!(body.starts_with("dial failure: "), "{err}");
        }
        other => panic!(
            "expected tailscaled's 502, got {other:?}\n{}",
            tailscaled.log()
        ),
    }

    // A loopback address: not a tailnet route, so tailscaled 1.96 dials it itself, inside its
    // own (empty) network namespace, where nothing listens.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let err = api
        .dial("127.0.0.1".parse().unwrap(), port)
        .await
        .unwrap_err();
    eprintln!("dial 127.0.0.1:{port}: {err}");

    // A request not shaped like ours is refused before any dial: so the 502 above means ours
    // reached the dialer.
    let (status, body) = raw_post(&api, &[("Upgrade", "ts-dial")]).await;
    assert_eq!((status, body.as_str()), (400, "bad ts-dial upgrade"));
    let (status, body) = raw_post(&api, &[("Upgrade", "ts-dial"), ("Connection", "upgrade")]).await;
    assert_eq!(
        (status, body.as_str()),
        (400, "missing Dial-Host or Dial-Port header")
    );
}

/// A raw `POST /localapi/v0/dial` with only `headers`.
async fn raw_post(api: &LocalApi, headers: &[(&str, &str)]) -> (u16, String) {
    let stream = tokio::net::UnixStream::connect(api.socket_path())
        .await
        .unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    let driver = tokio::spawn(conn);
    let mut request = http::Request::post("/localapi/v0/dial")
        .header("host", "local-tailscaled.sock")
        .header("sec-tailscale", "localapi");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = sender
        .send_request(request.body(Empty::<Bytes>::new()).unwrap())
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    driver.abort();
    (status, String::from_utf8_lossy(&body).trim().to_owned())
}
