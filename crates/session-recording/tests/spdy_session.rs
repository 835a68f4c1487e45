//! SPDY/3.1 sessions, mirroring upstream's `spdy/conn_test.go` lists
//! (`Test_Writes`, `Test_Reads`, random input) with the upstream bugs fixed.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use session_recording::spdy::frame::{encode_control_frame, encode_data_frame, kind, FLAG_FIN};
use session_recording::spdy::headers::HeaderCompressor;
use session_recording::spdy::SpdyError;
use session_recording::{Protocol, RecordingError};

const SPDY: Protocol = Protocol::Spdy;

fn open(ids: &SpdyIds, tty: bool) -> (SpdyClient, Ev) {
    let mut client = SpdyClient::new();
    let frames = client.open_session(ids, tty);
    (client, Ev::C(frames))
}

// --- Test_Writes (server→client) ---

#[test]
fn write_control_frames_only_records_nothing() {
    let mut server_zlib = HeaderCompressor::new();
    let (_, opened) = open(&KUBECTL_IDS, false);
    let mut replies = spdy_syn_reply(&mut server_zlib, 1);
    replies.extend(spdy_syn_reply(&mut server_zlib, 3));
    replies.extend(spdy_ping(2));
    let lines = assert_split_invariant(SPDY, false, &[opened, Ev::S(replies)]);
    assert_eq!(lines.len(), 1, "header only");
    assert!(lines[0].contains(r#""width":0,"height":0"#));
}

#[test]
fn write_stdout_stderr_and_unknown_stream() {
    let (_, opened) = open(&KUBECTL_IDS, false);
    let events = [
        opened,
        Ev::S(spdy_data(KUBECTL_IDS.stdout, b"out")),
        Ev::S(spdy_data(KUBECTL_IDS.stderr, b"err")),
        Ev::S(spdy_data(99, b"unknown stream")),
        Ev::S(spdy_data(KUBECTL_IDS.stdin, b"not output")),
    ];
    let lines = assert_split_invariant(SPDY, false, &events);
    assert_eq!(
        body(&lines),
        vec![r#"[1.0,"o","out"]"#, r#"[1.0,"o","err"]"#]
    );
}

#[test]
fn write_split_frames_and_two_frames_in_one_write_forward_everything() {
    // Upstream's two_writes_control_frame_with_leftover: leftover frames were
    // delayed. Here every complete frame in a chunk is handled at once.
    let (_, opened) = open(&KUBECTL_IDS, false);
    let mut chunk = spdy_ping(4);
    chunk.extend(spdy_data(KUBECTL_IDS.stdout, b"first"));
    chunk.extend(spdy_data(KUBECTL_IDS.stdout, b"second"));
    let lines = assert_split_invariant(SPDY, false, &[opened, Ev::S(chunk)]);
    assert_eq!(
        body(&lines),
        vec![r#"[1.0,"o","first"]"#, r#"[1.0,"o","second"]"#]
    );
}

#[test]
fn stream_ids_above_127_are_mapped() {
    let (_, opened) = open(&HIGH_IDS, false);
    let events = [
        opened,
        Ev::S(spdy_data(HIGH_IDS.stdout, b"high stdout")),
        Ev::S(spdy_data(HIGH_IDS.stderr, b"high stderr")),
        // Upstream's 0x7f mask would read 0x7fff_fff1 as 0x71 etc.
        Ev::S(spdy_data(0x71, b"aliased")),
    ];
    let lines = assert_split_invariant(SPDY, false, &events);
    assert_eq!(
        body(&lines),
        vec![r#"[1.0,"o","high stdout"]"#, r#"[1.0,"o","high stderr"]"#]
    );
}

#[test]
fn tty_output_waits_for_resize_but_is_never_lost() {
    let (_, opened) = open(&KUBECTL_IDS, true);
    let events = [
        opened,
        Ev::S(spdy_data(KUBECTL_IDS.stdout, b"prompt$ ")),
        Ev::C(spdy_data(KUBECTL_IDS.resize, &resize_json(132, 43))),
        Ev::S(spdy_data(KUBECTL_IDS.stdout, b"ls\r\n")),
    ];
    let lines = assert_split_invariant(SPDY, true, &events);
    assert!(lines[0].contains(r#""width":132,"height":43"#));
    assert_eq!(
        body(&lines),
        vec![r#"[1.0,"o","prompt$ "]"#, r#"[1.0,"o","ls\r\n"]"#]
    );
}

// --- Test_Reads (client→server) ---

#[test]
fn read_single_many_and_split_resizes() {
    let (_, opened) = open(&KUBECTL_IDS, true);
    let mut two = resize_json(100, 40);
    two.extend(resize_json(101, 41));
    let json = resize_json(102, 42);
    let events = [
        opened,
        Ev::C(spdy_data(KUBECTL_IDS.resize, &resize_json(80, 24))),
        Ev::C(spdy_data(KUBECTL_IDS.resize, &two)),
        Ev::C(spdy_data(KUBECTL_IDS.resize, &json[..9])),
        Ev::C(spdy_data(KUBECTL_IDS.resize, &json[9..])),
    ];
    let lines = assert_split_invariant(SPDY, true, &events);
    assert!(lines[0].contains(r#""width":80,"height":24"#));
    assert_eq!(
        body(&lines),
        vec![
            r#"[1.0,"r","40x100"]"#,
            r#"[1.0,"r","41x101"]"#,
            r#"[1.0,"r","42x102"]"#
        ]
    );
}

#[test]
fn streamtype_header_name_is_case_insensitive() {
    let mut client = SpdyClient::new();
    let mut frames = client.syn_stream_named(1, "StreamType", "stdout");
    frames.extend(client.syn_stream_named(3, "STREAMTYPE", "stderr"));
    let events = [
        Ev::C(frames),
        Ev::S(spdy_data(1, b"a")),
        Ev::S(spdy_data(3, b"b")),
    ];
    let lines = assert_split_invariant(SPDY, false, &events);
    assert_eq!(body(&lines), vec![r#"[1.0,"o","a"]"#, r#"[1.0,"o","b"]"#]);
}

#[test]
fn headers_frames_advance_the_shared_zlib_stream() {
    let mut client = SpdyClient::new();
    let mut frames = client.syn_stream(1, "error");
    frames.extend(client.headers(1, &[("x-extra", "value that primes the window")]));
    frames.extend(client.syn_stream(3, "stdout"));
    let events = [Ev::C(frames), Ev::S(spdy_data(3, b"mapped after HEADERS"))];
    let lines = assert_split_invariant(SPDY, false, &events);
    assert_eq!(body(&lines), vec![r#"[1.0,"o","mapped after HEADERS"]"#]);
}

#[test]
fn non_tty_session_with_stdin_data_and_half_close_works() {
    let (_, opened) = open(&KUBECTL_IDS, false);
    let events = [
        opened,
        Ev::C(spdy_data(KUBECTL_IDS.stdin, b"piped input\n")),
        Ev::C(encode_data_frame(KUBECTL_IDS.stdin, FLAG_FIN, b"")),
        Ev::S(spdy_data(KUBECTL_IDS.stdout, b"piped input\n")),
        Ev::S(spdy_data(
            KUBECTL_IDS.error,
            br#"{"metadata":{},"status":"Success"}"#,
        )),
    ];
    let lines = assert_split_invariant(SPDY, false, &events);
    assert_eq!(body(&lines), vec![r#"[1.0,"o","piped input\n"]"#]);
    let (_, status) = record(SPDY, false, &events);
    assert!(status.failure().is_none());
    assert_eq!(status.exec_status().unwrap().exit_code, Some(0));
}

#[test]
fn other_control_frames_are_passed_and_ignored() {
    let (_, opened) = open(&KUBECTL_IDS, false);
    let mut client_extra =
        encode_control_frame(kind::SETTINGS, 0, &[0, 0, 0, 1, 0, 0, 0, 7, 0, 0, 0, 1]);
    client_extra.extend(encode_control_frame(
        kind::WINDOW_UPDATE,
        0,
        &[0, 0, 0, 5, 0, 0, 1, 0],
    ));
    client_extra.extend(encode_control_frame(
        kind::RST_STREAM,
        0,
        &[0, 0, 0, 9, 0, 0, 0, 5],
    ));
    client_extra.extend(encode_control_frame(
        kind::GOAWAY,
        0,
        &[0, 0, 0, 0, 0, 0, 0, 0],
    ));
    client_extra.extend(encode_control_frame(42, 0, b"unknown type"));
    let events = [
        opened,
        Ev::C(client_extra),
        Ev::S(spdy_data(KUBECTL_IDS.stdout, b"ok")),
    ];
    let lines = assert_split_invariant(SPDY, false, &events);
    assert_eq!(body(&lines), vec![r#"[1.0,"o","ok"]"#]);
}

#[test]
fn utf8_split_across_data_frames_is_reassembled() {
    let (_, opened) = open(&KUBECTL_IDS, false);
    let text = "€uro";
    let events = [
        opened,
        Ev::S(spdy_data(KUBECTL_IDS.stdout, &text.as_bytes()[..1])),
        Ev::S(spdy_data(KUBECTL_IDS.stdout, &text.as_bytes()[1..])),
    ];
    let lines = assert_split_invariant(SPDY, false, &events);
    assert_eq!(body(&lines), vec![r#"[1.0,"o","€uro"]"#]);
}

// --- errors ---

#[test]
fn not_spdy_is_reported_and_recording_stops() {
    let (_, opened) = open(&KUBECTL_IDS, false);
    let events = [
        opened,
        Ev::S(spdy_data(KUBECTL_IDS.stdout, b"before")),
        Ev::S(encode_data_frame(0, 0, b"stream zero")),
        Ev::S(spdy_data(KUBECTL_IDS.stdout, b"after")),
    ];
    let (lines, status) = record(SPDY, false, &events);
    assert_eq!(body(&lines), vec![r#"[1.0,"o","before"]"#]);
    assert!(matches!(
        status.failure(),
        Some(RecordingError::Spdy {
            source: SpdyError::ZeroStreamId,
            ..
        })
    ));
}

#[test]
fn corrupt_header_block_is_reported() {
    let mut payload = 1u32.to_be_bytes().to_vec();
    payload.extend_from_slice(&[0; 6]);
    payload.extend_from_slice(b"not zlib at all");
    let (_, status) = record(
        SPDY,
        false,
        &[Ev::C(encode_control_frame(kind::SYN_STREAM, 0, &payload))],
    );
    assert!(matches!(
        status.failure(),
        Some(RecordingError::Spdy {
            source: SpdyError::Decompress(_),
            ..
        })
    ));
}

#[test]
fn random_bytes_never_panic_read_and_write() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    for _ in 0..300 {
        let len = rng.gen_range(0..2048);
        let mut bytes: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
        if rng.gen_bool(0.5) && bytes.len() > 8 {
            // Make it look like a SPDY/3 control frame to get past the header checks.
            bytes[0] = 0x80;
            bytes[1] = 3;
        }
        let (_, opened) = open(&KUBECTL_IDS, rng.gen());
        let _ = record(
            SPDY,
            rng.gen(),
            &[opened, Ev::C(bytes.clone()), Ev::S(bytes)],
        );
    }
}
