//! The recorder client reaching a real `kubescribe-recorder` at a tailnet address this host has no
//! route to, as a proxy beside a userspace-networking tailscaled must: through tailscaled's
//! LocalAPI (`ts-dial` upgrade, and `Dial-Self` for non-tailnet addresses) and through a SOCKS5
//! proxy. Events (pooled client) and a session upload (h2c) both go the chosen way; the recorders
//! are found from their tag in the (fake) tailscaled's status, as the proxy finds them.
#![allow(clippy::unwrap_used)]

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use localapi::{LocalApi, StatusCache};
use recorder_client::{
    ClientConfig, ConnectError, DialFailure, FailurePolicy, Outcome, RecorderClient,
    RecorderDialer, SessionAttemptError, SessionProtocol,
};
use sha2::{Digest, Sha256};
use support::real::*;
use support::tailnet::*;
use support::*;

/// Where the recorder "is" on the tailnet.
const TAILNET_IP: &str = "100.64.0.3";

/// tailscaled's status with the recorder tagged `tag:k8s-recorder`, another recorder that is not
/// routed anywhere under another tag, and a user's laptop.
fn status_json() -> String {
    format!(
        r#"{{"BackendState":"Running",
            "Self":{{"HostName":"proxy","TailscaleIPs":["100.64.0.1"]}},
            "Peer":{{
              "nodekey:01":{{"HostName":"recorder","TailscaleIPs":["{TAILNET_IP}"],"Tags":["tag:k8s-recorder"],"Online":true}},
              "nodekey:02":{{"HostName":"other","TailscaleIPs":["100.64.0.4"],"Tags":["tag:other-recorder"]}},
              "nodekey:03":{{"HostName":"laptop","TailscaleIPs":["100.64.0.2"]}}}}}}"#
    )
}

fn client(dialer: RecorderDialer) -> RecorderClient {
    let cfg = ClientConfig {
        dialer,
        ..test_config()
    };
    RecorderClient::with_metrics(cfg, Default::default()).unwrap()
}

/// Five events and a 256 KiB session to `target` through `dialer`; checks the real recorder at
/// `recorder` stored them all.
async fn deliver_events_and_a_session(
    dialer: RecorderDialer,
    target: SocketAddr,
    recorder: SocketAddr,
) {
    let client = client(dialer);
    let mut want = Vec::new();
    for i in 0..5 {
        let key = format!("e{i}");
        let outcome = client
            .record_event(&[target], FailurePolicy::FailClosed, &event(&key), "/api")
            .await;
        assert_eq!(outcome, Outcome::Forward, "event {key}");
        want.push(key);
    }
    assert_eq!(stored_keys(recorder).await, want);

    let cast = random_cast(256 << 10);
    let upload = client.connect_session(&[target]).await.unwrap();
    assert_eq!(upload.protocol(), SessionProtocol::V2);
    for line in cast.split_inclusive(|b| *b == b'\n') {
        upload.send(Bytes::copy_from_slice(line)).await.unwrap();
    }
    let summary = upload.finish().await.unwrap();
    assert_eq!(summary.bytes_sent, cast.len() as u64);
    let list: serde_json::Value =
        serde_json::from_slice(&get(recorder, "/api/v1/sessions").await).unwrap();
    let id = list["sessions"][0]["id"].as_str().unwrap().to_owned();
    let stored = get(recorder, &format!("/api/v1/sessions/{id}/cast")).await;
    assert_eq!(Sha256::digest(&stored), Sha256::digest(&cast));
}

async fn recorder(dir: &std::path::Path) -> (Recorder, SocketAddr) {
    let addr = free_port().await;
    let recorder = start_recorder(&recorder_binary(), &dir.join("recordings"), addr).await;
    (recorder, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tagged_recorder_is_found_in_the_status_and_reached_through_the_localapi() {
    let tmp = tempfile::tempdir().unwrap();
    let (_recorder, real) = recorder(tmp.path()).await;
    let routes = Routes::from([(TAILNET_IP.parse().unwrap(), real)]);
    let tailscaled = FakeTailscaled::start(routes, false, status_json());
    let api = LocalApi::new(&tailscaled.socket);

    // Found as the proxy finds it: the grant's tag, the netmap's peers; cached.
    let netmap = StatusCache::new(api.clone(), Duration::from_secs(60));
    let recorders = netmap
        .recorders_for_tags(&["tag:k8s-recorder".to_owned()])
        .await
        .unwrap();
    let target: SocketAddr = format!("{TAILNET_IP}:80").parse().unwrap();
    assert_eq!(recorders, [target]);
    netmap
        .recorders_for_tags(&["tag:k8s-recorder".to_owned()])
        .await
        .unwrap();
    assert_eq!(
        *tailscaled.status_gets.lock().unwrap(),
        1,
        "the status is cached"
    );

    deliver_events_and_a_session(RecorderDialer::LocalApi(api), target, real).await;

    let dials = tailscaled.dials.lock().unwrap().clone();
    // At least the pooled event connection and the session's.
    assert!(dials.len() >= 2, "{dials:?}");
    for dial in dials {
        assert_eq!(
            dial,
            SeenDial {
                host: TAILNET_IP.into(),
                port: "80".into(),
                network: "tcp".into(),
                upgrade: "ts-dial".into(),
                connection: "upgrade".into(),
                host_header: "local-tailscaled.sock".into(),
                sec_tailscale: "localapi".into(),
            }
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_and_a_session_reach_a_tailnet_recorder_through_socks5() {
    let tmp = tempfile::tempdir().unwrap();
    let (_recorder, real) = recorder(tmp.path()).await;
    let socks = Socks5Server::start(Routes::from([(TAILNET_IP.parse().unwrap(), real)])).await;
    let target: SocketAddr = format!("{TAILNET_IP}:80").parse().unwrap();

    deliver_events_and_a_session(RecorderDialer::Socks5(socks.addr.to_string()), target, real)
        .await;

    let targets = socks.targets.lock().unwrap().clone();
    assert!(targets.len() >= 2, "{targets:?}");
    assert!(
        targets.iter().all(|t| *t == target.to_string()),
        "{targets:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_tailnet_address_is_dialed_directly_when_tailscaled_says_dial_self() {
    let tmp = tempfile::tempdir().unwrap();
    let (_recorder, real) = recorder(tmp.path()).await;
    // newer tailscaled (1.102) answers `200 Dial-Self` for what is not a tailnet route.
    let tailscaled = FakeTailscaled::start(Routes::new(), true, status_json());

    deliver_events_and_a_session(
        RecorderDialer::LocalApi(LocalApi::new(&tailscaled.socket)),
        real,
        real,
    )
    .await;
    assert!(tailscaled.dial_count() >= 2);
}

#[tokio::test]
async fn an_unreachable_recorder_fails_with_tailscaleds_words_and_the_way_tried() {
    let tailscaled = FakeTailscaled::start(Routes::new(), false, status_json());
    let api = LocalApi::new(&tailscaled.socket);
    let client = client(RecorderDialer::LocalApi(api));
    let target: SocketAddr = "100.64.0.9:80".parse().unwrap();

    let err = client.connect_session(&[target]).await.unwrap_err();
    let ConnectError::AllFailed { attempts, .. } = &err else {
        panic!("{err}");
    };
    let SessionAttemptError::Dial(dial) = &attempts[0].1 else {
        panic!("{err}");
    };
    assert!(matches!(dial.failure, DialFailure::Failed(_)), "{dial}");
    assert_eq!(
        dial.to_string(),
        format!(
            "dialing 100.64.0.9:80 through tailscaled's LocalAPI at {}: tailscaled answered \
             502 Bad Gateway: dial failure: dial tcp 100.64.0.9:80: connect: network is unreachable",
            tailscaled.socket.display()
        )
    );

    // Events: refused under fail closed, and the log line says the same.
    let outcome = client
        .record_event(&[target], FailurePolicy::FailClosed, &event("x"), "/api")
        .await;
    let Outcome::Refuse(refusal) = outcome else {
        panic!("{outcome:?}");
    };
    let detail = format!("{refusal:?}");
    assert!(
        detail.contains("through tailscaled's LocalAPI at") && detail.contains("dial failure"),
        "{detail}"
    );
}
