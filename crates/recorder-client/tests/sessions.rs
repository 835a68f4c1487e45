//! Session uploads against in-process fake recorders: v2 with acks, the v1
//! fallback, ack timeouts, failover, and a 1 MiB random session compared by
//! SHA-256 on both sides.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use rand::RngCore;
use recorder_client::{
    connect_session, ConnectError, FailurePolicy, Outcome, PushError, Refusal, SessionOptions,
    SessionProtocol, UploadError,
};
use sha2::{Digest, Sha256};
use support::*;

fn random_mib() -> Vec<u8> {
    let mut data = vec![0u8; 1 << 20];
    rand::thread_rng().fill_bytes(&mut data);
    data
}

async fn upload(
    addrs: &[std::net::SocketAddr],
    opts: &SessionOptions,
    data: &[u8],
) -> recorder_client::UploadSummary {
    let up = connect_session(addrs, opts).await.unwrap();
    for chunk in data.chunks(7919) {
        up.send(Bytes::copy_from_slice(chunk)).await.unwrap();
    }
    up.finish().await.unwrap()
}

fn sha(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

#[tokio::test]
async fn v2_upload_of_one_mib_arrives_intact() {
    let fake = Fake::ok().await;
    let data = random_mib();
    let summary = upload(&[fake.addr], &SessionOptions::default(), &data).await;
    assert_eq!(summary.protocol, SessionProtocol::V2);
    assert_eq!(summary.bytes_sent, data.len() as u64);
    assert_eq!(summary.bytes_acked, Some(data.len() as u64));
    let sessions = fake.state.sessions.lock().unwrap().clone();
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0].0, "v2");
    assert_eq!(sha(&sessions[0].1), sha(&data));
    assert_eq!(
        fake.state.v1_hits.load(Ordering::SeqCst),
        0,
        "v1 never used"
    );
}

#[tokio::test]
async fn v1_fallback_of_one_mib_arrives_intact() {
    let fake = Fake::start(EventMode::Ok, false, SessionMode::V1Only).await;
    let data = random_mib();
    let summary = upload(&[fake.addr], &SessionOptions::default(), &data).await;
    assert_eq!(summary.protocol, SessionProtocol::V1);
    let sessions = fake.state.sessions.lock().unwrap().clone();
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0].0, "v1");
    assert_eq!(sha(&sessions[0].1), sha(&data));
    assert_eq!(fake.state.v2_hits.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn no_ack_frames_fail_the_upload() {
    let fake = Fake::start(EventMode::Ok, true, SessionMode::V2NoAcks).await;
    let opts = SessionOptions {
        ack_window: Duration::from_millis(200),
        ..Default::default()
    };
    let up = connect_session(&[fake.addr], &opts).await.unwrap();
    assert_eq!(up.protocol(), SessionProtocol::V2);
    up.push(Bytes::from_static(b"[0.1,\"o\",\"hi\"]\n"))
        .unwrap();
    let err = up.failed().await.unwrap();
    assert_eq!(err, UploadError::NoAcks(Duration::from_millis(200)));
    assert_eq!(
        err.to_string(),
        "did not receive ack frames from the recorder in 200ms"
    );
    assert!(matches!(
        up.push(Bytes::from_static(b"x")),
        Err(PushError::Failed(_))
    ));
    assert_eq!(up.finish().await.unwrap_err(), err);
}

#[tokio::test]
async fn failover_to_the_next_recorder_and_the_errors_of_all() {
    let dead = dead_addr().await;
    let fake = Fake::ok().await;
    let data = b"[0.5,\"o\",\"$ ls\\r\\n\"]\n".to_vec();
    let summary = upload(&[dead, fake.addr], &SessionOptions::default(), &data).await;
    assert_eq!(summary.recorder, fake.addr);

    let dead2 = dead_addr().await;
    let err = connect_session(&[dead, dead2], &SessionOptions::default())
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains(&format!(
            "recording: error starting recording on \"{dead}\""
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "recording: error starting recording on \"{dead2}\""
        )),
        "{text}"
    );
    let out = FailurePolicy::FailClosed.session_connect_failed(&err);
    match out {
        Outcome::Refuse(Refusal { status, message }) => {
            assert_eq!(status, http::StatusCode::FORBIDDEN);
            assert!(message.starts_with(
                "error connecting to session recorders: recording: error starting recording on"
            ));
            assert!(message.ends_with("; failure mode is 'fail closed'; closing connection."));
        }
        other => panic!("{other:?}"),
    }
    assert!(FailurePolicy::FailOpen
        .session_connect_failed(&err)
        .forwards());
    assert_eq!(
        connect_session(&[], &SessionOptions::default())
            .await
            .unwrap_err(),
        ConnectError::NoRecorders
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_full_channel_is_reported_not_waited_on() {
    let fake = Fake::ok().await;
    let opts = SessionOptions {
        channel_capacity: 2,
        ..Default::default()
    };
    let up = connect_session(&[fake.addr], &opts).await.unwrap();
    // Without yielding, the connection cannot drain the channel.
    up.push(Bytes::from_static(b"1")).unwrap();
    up.push(Bytes::from_static(b"2")).unwrap();
    assert_eq!(
        up.push(Bytes::from_static(b"3")),
        Err(PushError::Full { capacity: 2 })
    );
    let summary = up.finish().await.unwrap();
    assert_eq!(summary.bytes_sent, 2);
}

#[tokio::test]
async fn session_metrics_count_uploads() {
    let fake = Fake::ok().await;
    let mut registry = prometheus_client::registry::Registry::default();
    let client = recorder_client::RecorderClient::start(test_config(), &mut registry).unwrap();
    let up = client.connect_session(&[fake.addr]).await.unwrap();
    up.push(Bytes::from_static(b"{}\n")).unwrap();
    up.finish().await.unwrap();
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    assert!(
        text.contains("kubescribe_recorder_client_session_uploads_started_total 1"),
        "{text}"
    );
    assert!(
        text.contains("kubescribe_recorder_client_session_uploads_finished_total 1"),
        "{text}"
    );
}

#[tokio::test]
async fn acks_that_stop_advancing_fail_the_upload() {
    let fake = Fake::start(EventMode::Ok, true, SessionMode::V2Stalled).await;
    let opts = SessionOptions {
        ack_window: Duration::from_millis(200),
        ..Default::default()
    };
    let up = connect_session(&[fake.addr], &opts).await.unwrap();
    up.push(Bytes::from_static(b"[0.1,\"o\",\"hi\"]\n"))
        .unwrap();
    let err = up.failed().await.unwrap();
    assert!(
        matches!(
            err,
            UploadError::AcksStalled {
                acked: 0,
                sent: 15,
                ..
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_v1_recorder_that_never_sends_100_continue_is_not_connected() {
    // Accepts, reads the request head, never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            let (mut tcp, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 4096];
            let _ = tokio::io::AsyncReadExt::read(&mut tcp, &mut buf).await;
            held.push(tcp);
        }
    });
    let opts = SessionOptions {
        probe_timeout: Duration::from_millis(200),
        response_timeout: Duration::from_millis(200),
        ..Default::default()
    };
    let err = connect_session(&[addr], &opts).await.unwrap_err();
    assert!(
        err.to_string().contains("did not answer 100 Continue"),
        "{err}"
    );
    server.abort();
}
