//! Output faster than the upload: with back-pressure the session is slowed
//! and nothing is lost; without it the bounded queue overflows.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use event_model::{CastHeader, CastKubernetes};
use session_recording::ws::frame::{encode_frame, Opcode};
use session_recording::{
    channel_sink, copy_bidirectional_recorded, CopyOptions, Protocol, SessionTap, TapOptions,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const FRAMES: usize = 256;
const PAYLOAD: usize = 16 * 1024;

/// Runs one fail-closed session whose server prints `FRAMES` stdout frames
/// while the upload takes lines slowly. Returns (recorded output bytes,
/// whether the recording failed, bytes the client received).
async fn session(backpressure: bool) -> (usize, bool, usize) {
    let (mut client_peer, mut client_side) = tokio::io::duplex(256 * 1024);
    let (mut upstream_side, mut server_peer) = tokio::io::duplex(256 * 1024);
    let header = CastHeader {
        kubernetes: Some(CastKubernetes {
            pod_name: "p".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let (sink, mut lines) = channel_sink(256 * 1024);
    let pressure = sink.pressure();
    let recorder = SessionTap::new(TapOptions::new(Protocol::WebSocket, false), header, sink);
    let options = CopyOptions {
        end_on_recording_failure: true,
        backpressure: backpressure.then_some(pressure),
        ..CopyOptions::default()
    };
    let copy_recorder = recorder.clone();
    let copy = tokio::spawn(async move {
        copy_bidirectional_recorded(
            &mut client_side,
            &mut upstream_side,
            &copy_recorder,
            &options,
        )
        .await
    });
    let server = tokio::spawn(async move {
        let mut payload = vec![b'x'; PAYLOAD + 1];
        payload[0] = 1; // stdout channel
        for _ in 0..FRAMES {
            if server_peer
                .write_all(&encode_frame(true, Opcode::Binary, None, &payload))
                .await
                .is_err()
            {
                return;
            }
        }
        let _ = server_peer.shutdown().await;
        let mut sink = Vec::new();
        let _ = server_peer.read_to_end(&mut sink).await;
    });
    let client = tokio::spawn(async move {
        let mut received = Vec::new();
        let _ = client_peer.read_to_end(&mut received).await;
        let _ = client_peer.shutdown().await;
        received.len()
    });
    // A slow upload: one line every 2 ms.
    let uploader = tokio::spawn(async move {
        let mut recorded = 0usize;
        while let Some(line) = lines.recv().await {
            if line.starts_with(b"[") {
                let event: serde_json::Value = serde_json::from_slice(&line).unwrap();
                recorded += event[2].as_str().unwrap().len();
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        recorded
    });
    let summary = copy.await.unwrap().unwrap();
    let _ = server.await;
    let received = client.await.unwrap();
    recorder.finish();
    drop(recorder);
    let recorded = uploader.await.unwrap();
    (
        recorded,
        summary.ended_by_recording_failure.is_some(),
        received,
    )
}

#[tokio::test]
async fn backpressure_slows_output_instead_of_losing_the_recording() {
    let (recorded, failed, received) = session(true).await;
    assert!(!failed, "the recording failed despite back-pressure");
    assert_eq!(recorded, FRAMES * PAYLOAD, "every output byte is recorded");
    assert!(
        received >= FRAMES * PAYLOAD,
        "the client got all output ({received} bytes)"
    );
}

#[tokio::test]
async fn without_backpressure_the_same_load_overflows_the_queue() {
    let (recorded, failed, _) = session(false).await;
    assert!(
        failed,
        "expected the bounded queue to overflow (fail closed ends the session)"
    );
    assert!(recorded < FRAMES * PAYLOAD);
}

/// Fail closed: an upload that ends while the session is quiet ends the
/// session at once (not at its next output), so output the server prints
/// afterwards never reaches the client.
#[tokio::test]
async fn an_upload_that_ends_while_the_session_is_quiet_ends_a_fail_closed_session_at_once() {
    let (mut client_peer, mut client_side) = tokio::io::duplex(64 * 1024);
    let (mut upstream_side, mut server_peer) = tokio::io::duplex(64 * 1024);
    let (sink, mut lines) = channel_sink(256 * 1024);
    let options = CopyOptions {
        end_on_recording_failure: true,
        backpressure: Some(sink.pressure()),
        ..CopyOptions::default()
    };
    let recorder = SessionTap::new(
        TapOptions::new(Protocol::WebSocket, false),
        CastHeader::default(),
        sink,
    );
    let copy_recorder = recorder.clone();
    let copy = tokio::spawn(async move {
        copy_bidirectional_recorded(
            &mut client_side,
            &mut upstream_side,
            &copy_recorder,
            &options,
        )
        .await
    });
    let stdout = |text: &str| {
        let mut payload = vec![1u8]; // stdout channel
        payload.extend_from_slice(text.as_bytes());
        encode_frame(true, Opcode::Binary, None, &payload)
    };
    // First output, recorded and passed on.
    let first = stdout("first");
    server_peer.write_all(&first).await.unwrap();
    let mut got = vec![0u8; first.len()];
    client_peer.read_exact(&mut got).await.unwrap();
    assert_eq!(got, first);
    // The upload ends (the recorder refused the session) while nothing is printed.
    lines.close();
    let summary = tokio::time::timeout(Duration::from_secs(5), copy)
        .await
        .expect("the session ends without waiting for more output")
        .unwrap()
        .unwrap();
    assert!(summary.ended_by_recording_failure.is_some());
    // Output the server prints afterwards never reaches the client.
    let _ = server_peer.write_all(&stdout("after")).await;
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), client_peer.read_to_end(&mut rest)).await;
    assert!(
        !String::from_utf8_lossy(&rest).contains("after"),
        "output after the upload ended reached the client: {rest:?}"
    );
    recorder.finish();
}
