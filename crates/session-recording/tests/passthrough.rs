//! The copy helper end to end over in-memory sockets: bytes arrive
//! byte-identical in both directions (upstream's `TestBulkStdinPassthrough`),
//! the recording is made, and fail-open / fail-closed behave.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use session_recording::ws::frame::{encode_frame, Opcode};
use session_recording::{
    channel_sink, copy_bidirectional_recorded, Clock, CopyOptions, ExecStatus, MemorySink,
    Protocol, RecordingError, SessionTap, TapOptions,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// 8 MiB of stdin in 4 KiB and 32 KiB frames with pings between, then the v5
/// half-close and a close frame (sent in 1460-byte segments; stdout in 16 KiB ones).
fn bulk_stdin() -> Vec<u8> {
    let mut out = Vec::new();
    let mut n: u32 = 0;
    let mut sent = 0usize;
    while sent < 8 << 20 {
        let size = if n.is_multiple_of(3) {
            32 * 1024
        } else {
            4 * 1024
        };
        let data: Vec<u8> = (0..size)
            .map(|i| (i as u32).wrapping_mul(2_654_435_761).wrapping_add(n) as u8)
            .collect();
        out.extend(ws_c(0, &data));
        if n.is_multiple_of(7) {
            out.extend(encode_frame(true, Opcode::Ping, Some(MASK), b"keepalive"));
        }
        sent += size;
        n += 1;
    }
    out.extend(ws_c(255, &[0]));
    out.extend(encode_frame(true, Opcode::Close, Some(MASK), &[0x03, 0xe8]));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_stdin_and_stdout_pass_through_byte_identical() {
    let (client_app, mut proxy_client) = tokio::io::duplex(64 * 1024);
    let (mut proxy_upstream, server_app) = tokio::io::duplex(64 * 1024);
    let sink = MemorySink::new();
    let recorder = SessionTap::new(
        TapOptions::new(Protocol::WebSocket, false),
        header(),
        sink.clone(),
    );

    let stdin = bulk_stdin();
    let mut stdout = Vec::new();
    let mut expected_text = String::new();
    for i in 0..300 {
        let line = format!("line {i} <ok> é\n");
        expected_text.push_str(&line);
        stdout.extend(ws_s(1, line.as_bytes()));
        if i % 50 == 0 {
            stdout.extend(encode_frame(true, Opcode::Ping, None, b""));
        }
    }
    stdout.extend(ws_s(3, br#"{"metadata":{},"status":"Success"}"#));
    stdout.extend(encode_frame(true, Opcode::Close, None, &[0x03, 0xe8]));

    let proxy = {
        let recorder = recorder.clone();
        tokio::spawn(async move {
            copy_bidirectional_recorded(
                &mut proxy_client,
                &mut proxy_upstream,
                &recorder,
                &CopyOptions::default(),
            )
            .await
        })
    };
    let (client_read, client_write) = tokio::io::split(client_app);
    let (server_read, server_write) = tokio::io::split(server_app);
    let stdin_clone = stdin.clone();
    let stdout_clone = stdout.clone();
    let client_writer = tokio::spawn(async move {
        let mut w = client_write;
        for (i, chunk) in stdin_clone.chunks(1460).enumerate() {
            w.write_all(chunk).await.unwrap();
            if i % 11 == 0 {
                tokio::task::yield_now().await;
            }
        }
        w.shutdown().await.unwrap();
    });
    let server_writer = tokio::spawn(async move {
        let mut w = server_write;
        for chunk in stdout_clone.chunks(16 * 1024) {
            w.write_all(chunk).await.unwrap();
        }
        w.shutdown().await.unwrap();
    });
    let received_upstream = tokio::spawn(async move {
        let mut r = server_read;
        let mut out = Vec::new();
        r.read_to_end(&mut out).await.unwrap();
        out
    });
    let received_client = tokio::spawn(async move {
        let mut r = client_read;
        let mut out = Vec::new();
        r.read_to_end(&mut out).await.unwrap();
        out
    });
    client_writer.await.unwrap();
    server_writer.await.unwrap();
    let at_upstream = received_upstream.await.unwrap();
    let at_client = received_client.await.unwrap();
    let summary = proxy.await.unwrap().unwrap();

    assert!(at_upstream == stdin, "stdin bytes changed in transit");
    assert!(at_client == stdout, "stdout bytes changed in transit");
    assert_eq!(summary.client_to_server, stdin.len() as u64);
    assert_eq!(summary.server_to_client, stdout.len() as u64);
    assert!(recorder.status().failure().is_none());
    assert_eq!(recorder.status().exec_status().unwrap().exit_code, Some(0));
    assert!(sink.is_closed());

    let cast = String::from_utf8(sink.contents()).unwrap();
    let text: String = cast
        .lines()
        .skip(1)
        .map(|l| serde_json::from_str::<(f64, String, String)>(l).unwrap().2)
        .collect();
    assert_eq!(text, expected_text);
    assert!(!cast.contains("keepalive"));
}

#[tokio::test]
async fn segmented_writes_of_any_size_pass_through() {
    for segments in [&[1usize][..], &[3, 1460], &[16 * 1024, 7]] {
        let (client_app, mut proxy_client) = tokio::io::duplex(8 * 1024);
        let (mut proxy_upstream, server_app) = tokio::io::duplex(8 * 1024);
        let recorder = SessionTap::new(
            TapOptions::new(Protocol::WebSocket, true),
            header(),
            MemorySink::new(),
        );
        let mut stdin = ws_c(4, &resize_json(80, 24));
        stdin.extend(ws_c(0, &vec![b'y'; 70_000]));
        let proxy = tokio::spawn(async move {
            copy_bidirectional_recorded(
                &mut proxy_client,
                &mut proxy_upstream,
                &recorder,
                &CopyOptions::default(),
            )
            .await
            .map(|s| (s, recorder.header_written()))
        });
        let (server_read, server_write) = tokio::io::split(server_app);
        let (client_read, client_write) = tokio::io::split(client_app);
        drop(client_read);
        let reader = tokio::spawn(async move {
            let mut r = server_read;
            let mut out = Vec::new();
            r.read_to_end(&mut out).await.unwrap();
            out
        });
        let mut w = client_write;
        let mut pos = 0;
        let mut i = 0;
        while pos < stdin.len() {
            let end = (pos + segments[i % segments.len()]).min(stdin.len());
            w.write_all(&stdin[pos..end]).await.unwrap();
            pos = end;
            i += 1;
        }
        w.shutdown().await.unwrap();
        let mut sw = server_write;
        sw.shutdown().await.unwrap();
        assert_eq!(reader.await.unwrap(), stdin);
        let (_, header_written) = proxy.await.unwrap().unwrap();
        assert!(header_written);
    }
}

#[tokio::test]
async fn fail_closed_ends_session_with_error_channel_message() {
    let (client_app, mut proxy_client) = tokio::io::duplex(64 * 1024);
    let (mut proxy_upstream, server_app) = tokio::io::duplex(64 * 1024);
    let (sink, mut lines) = channel_sink(1 << 20);
    let mut options = TapOptions::new(Protocol::WebSocket, false);
    options.clock = Clock::Fixed(0.0);
    let recorder = SessionTap::new(options, header(), sink);
    let copy_options = CopyOptions {
        end_on_recording_failure: true,
        ..Default::default()
    };
    let proxy = {
        let recorder = recorder.clone();
        tokio::spawn(async move {
            copy_bidirectional_recorded(
                &mut proxy_client,
                &mut proxy_upstream,
                &recorder,
                &copy_options,
            )
            .await
        })
    };
    let (mut client_read, _client_write) = tokio::io::split(client_app);
    let (_server_read, mut server_write) = tokio::io::split(server_app);

    // First output arrives and is recorded.
    let first = ws_s(1, b"hello");
    server_write.write_all(&first).await.unwrap();
    let mut got = vec![0u8; first.len()];
    client_read.read_exact(&mut got).await.unwrap();
    assert_eq!(got, first);
    assert!(lines.recv().await.unwrap().starts_with(b"{\"version\":2"));
    assert_eq!(&lines.recv().await.unwrap()[..], b"[0.0,\"o\",\"hello\"]\n");

    // The recorder upload is lost; the next output cannot be recorded.
    lines.close();
    server_write
        .write_all(&ws_s(1, b"unrecorded"))
        .await
        .unwrap();

    let summary = proxy.await.unwrap().unwrap();
    assert!(matches!(
        summary.ended_by_recording_failure,
        Some(RecordingError::SinkClosed { .. })
    ));
    assert!(summary.sent_termination_message);
    let mut rest = Vec::new();
    client_read.read_to_end(&mut rest).await.unwrap();
    // The chunk seen when the loss was detected was still forwarded; then the
    // error-channel Status follows.
    let unrecorded = ws_s(1, b"unrecorded");
    assert!(rest.starts_with(&unrecorded));
    let frame = &rest[unrecorded.len()..];
    assert_eq!(frame[0], 0x82);
    let payload = &frame[2 + usize::from(frame[1] == 126) * 2..];
    assert_eq!(payload[0], 3, "error channel");
    let status = ExecStatus::parse(&payload[1..]);
    assert_eq!(status.status.as_deref(), Some("Failure"));
    assert!(status.message.unwrap().contains("fail closed"));
}

#[tokio::test]
async fn fail_open_keeps_forwarding_after_the_recorder_is_lost() {
    let (client_app, mut proxy_client) = tokio::io::duplex(64 * 1024);
    let (mut proxy_upstream, server_app) = tokio::io::duplex(64 * 1024);
    let (sink, lines) = channel_sink(1 << 20);
    drop(lines);
    let recorder = SessionTap::new(TapOptions::new(Protocol::WebSocket, false), header(), sink);
    let proxy = {
        let recorder = recorder.clone();
        tokio::spawn(async move {
            copy_bidirectional_recorded(
                &mut proxy_client,
                &mut proxy_upstream,
                &recorder,
                &CopyOptions::default(),
            )
            .await
        })
    };
    let (client_read, mut client_write) = tokio::io::split(client_app);
    let (server_read, server_write) = tokio::io::split(server_app);
    let mut output = Vec::new();
    for i in 0..100 {
        output.extend(ws_s(1, format!("{i}\n").as_bytes()));
    }
    let server = tokio::spawn(async move {
        let mut w = server_write;
        w.write_all(&output).await.unwrap();
        w.shutdown().await.unwrap();
        output
    });
    client_write.shutdown().await.unwrap();
    let sent = server.await.unwrap();
    let mut got = Vec::new();
    let mut r = client_read;
    r.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, sent);
    let mut sr = server_read;
    let mut up = Vec::new();
    sr.read_to_end(&mut up).await.unwrap();
    let summary = proxy.await.unwrap().unwrap();
    assert!(summary.ended_by_recording_failure.is_none());
    assert!(matches!(
        recorder.status().failure(),
        Some(RecordingError::SinkClosed { .. })
    ));
}

#[tokio::test]
async fn spdy_fail_closed_uses_the_error_stream() {
    let (sink, mut lines) = channel_sink(1 << 20);
    let recorder = SessionTap::new(TapOptions::new(Protocol::Spdy, false), header(), sink);
    let mut client = SpdyClient::new();
    recorder.observe_client_to_server(&client.open_session(&HIGH_IDS, false));
    lines.close();
    recorder.observe_server_to_client(&spdy_data(HIGH_IDS.stdout, b"x"));
    assert!(matches!(
        recorder.status().failed().await,
        RecordingError::SinkClosed { .. }
    ));
    let frame = recorder.termination_frame("recorder lost").unwrap();
    assert_eq!(
        u32::from_be_bytes(frame[..4].try_into().unwrap()),
        HIGH_IDS.error
    );
    assert_eq!(frame[4], 0x01, "FIN");
    assert_eq!(
        ExecStatus::parse(&frame[8..]).message.as_deref(),
        Some("recorder lost")
    );
}

#[test]
fn termination_frame_is_withheld_mid_frame() {
    let recorder = SessionTap::new(
        TapOptions::new(Protocol::WebSocket, false),
        header(),
        MemorySink::new(),
    );
    let frame = ws_s(1, b"partial");
    recorder.observe_server_to_client(&frame[..4]);
    assert!(recorder.termination_frame("x").is_none());
    recorder.observe_server_to_client(&frame[4..]);
    assert!(recorder.termination_frame("x").is_some());
}
