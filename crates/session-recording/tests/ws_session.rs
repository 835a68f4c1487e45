//! WebSocket sessions, mirroring upstream's `ws/conn_test.go` and
//! `ws/frame_split_test.go` lists with kubescribe's corrected behaviour.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use session_recording::ws::frame::{encode_frame, Opcode};
use session_recording::ws::WsError;
use session_recording::{Direction, Protocol, RecordingError};

const WS: Protocol = Protocol::WebSocket;

// --- Test_conn_Read (client→server) ---

#[test]
fn read_single_resize_writes_header_with_size() {
    let lines = assert_split_invariant(WS, true, &[Ev::C(ws_c(4, &resize_json(120, 40)))]);
    assert_eq!(lines.len(), 1);
    assert!(
        lines[0].contains(r#""width":120,"height":40"#),
        "{}",
        lines[0]
    );
    assert!(lines[0].contains(r#""kubernetes":{"PodName":"web-0""#));
}

#[test]
fn read_resizes_after_the_first_are_height_first_r_lines() {
    let lines = assert_split_invariant(
        WS,
        true,
        &[
            Ev::C(ws_c(4, &resize_json(80, 24))),
            Ev::C(ws_c(4, &resize_json(200, 50))),
        ],
    );
    assert_eq!(body(&lines), vec![r#"[1.0,"r","50x200"]"#]);
}

#[test]
fn read_resize_fragmented_across_frames_only_first_fragment_has_channel() {
    let json = resize_json(100, 30);
    let mut first = vec![4u8];
    first.extend_from_slice(&json[..7]);
    let events = [
        Ev::C(encode_frame(false, Opcode::Binary, Some(MASK), &first)),
        Ev::C(encode_frame(
            true,
            Opcode::Continuation,
            Some(MASK),
            &json[7..],
        )),
    ];
    let lines = assert_split_invariant(WS, true, &events);
    assert!(lines[0].contains(r#""width":100,"height":30"#));
}

#[test]
fn read_control_and_data_in_one_read() {
    let mut chunk = encode_frame(true, Opcode::Ping, Some(MASK), b"ping");
    chunk.extend(ws_c(4, &resize_json(10, 5)));
    let lines = assert_split_invariant(WS, true, &[Ev::C(chunk)]);
    assert!(lines[0].contains(r#""width":10,"height":5"#));
}

#[test]
fn read_two_frames_in_one_read() {
    let mut chunk = ws_c(0, b"ls\n");
    chunk.extend(ws_c(4, &resize_json(10, 5)));
    let lines = assert_split_invariant(WS, true, &[Ev::C(chunk)]);
    assert_eq!(lines.len(), 1);
}

#[test]
fn read_empty_continuation_and_empty_first_fragment() {
    let events = [
        // Empty first fragment: the channel byte comes with the next fragment.
        Ev::C(encode_frame(false, Opcode::Binary, Some(MASK), b"")),
        Ev::C(encode_frame(
            false,
            Opcode::Continuation,
            Some(MASK),
            b"\x04{\"Width\":7,",
        )),
        Ev::C(encode_frame(false, Opcode::Continuation, Some(MASK), b"")),
        Ev::C(encode_frame(
            true,
            Opcode::Continuation,
            Some(MASK),
            b"\"Height\":3}",
        )),
    ];
    let lines = assert_split_invariant(WS, true, &events);
    assert!(lines[0].contains(r#""width":7,"height":3"#));
}

#[test]
fn v5_close_channel_from_client_is_passed_and_ignored() {
    let events = [Ev::C(ws_c(255, &[0])), Ev::S(ws_s(1, b"still here"))];
    let lines = assert_split_invariant(WS, false, &events);
    assert_eq!(body(&lines), vec![r#"[1.0,"o","still here"]"#]);
}

// --- Test_conn_Write (server→client) ---

#[test]
fn write_stdout_and_stderr_are_o_lines_stdin_never_recorded() {
    let events = [
        Ev::C(ws_c(0, b"echo secret-password\n")),
        Ev::S(ws_s(1, b"out")),
        Ev::S(ws_s(2, b"err")),
        Ev::S(ws_s(0, b"server stdin?")),
    ];
    let lines = assert_split_invariant(WS, false, &events);
    assert_eq!(
        body(&lines),
        vec![r#"[1.0,"o","out"]"#, r#"[1.0,"o","err"]"#]
    );
    assert!(!lines.join("\n").contains("secret"));
}

#[test]
fn write_fragmented_message_is_one_line_with_continuations_as_data() {
    let events = [
        Ev::S(encode_frame(false, Opcode::Binary, None, b"\x01ab")),
        // A ping between fragments must not disturb the message.
        Ev::S(encode_frame(true, Opcode::Ping, None, b"")),
        Ev::S(encode_frame(false, Opcode::Continuation, None, b"cd")),
        Ev::S(encode_frame(true, Opcode::Continuation, None, b"ef")),
    ];
    let lines = assert_split_invariant(WS, false, &events);
    // Upstream would strip 'c' and 'e' as channel bytes and write "ab","d","f".
    assert_eq!(body(&lines), vec![r#"[1.0,"o","abcdef"]"#]);
}

#[test]
fn write_two_frames_in_one_write() {
    let mut chunk = ws_s(1, b"one");
    chunk.extend(ws_s(1, b"two"));
    let lines = assert_split_invariant(WS, false, &[Ev::S(chunk)]);
    assert_eq!(
        body(&lines),
        vec![r#"[1.0,"o","one"]"#, r#"[1.0,"o","two"]"#]
    );
}

#[test]
fn write_data_then_close() {
    let mut chunk = ws_s(1, b"bye");
    chunk.extend(ws_s(3, br#"{"metadata":{},"status":"Success"}"#));
    chunk.extend(encode_frame(true, Opcode::Close, None, &[0x03, 0xe8]));
    let events = [Ev::S(chunk)];
    let lines = assert_split_invariant(WS, false, &events);
    assert_eq!(body(&lines), vec![r#"[1.0,"o","bye"]"#]);
    let (_, status) = record(WS, false, &events);
    assert_eq!(status.exec_status().unwrap().exit_code, Some(0));
}

#[test]
fn error_channel_exit_code_is_exposed() {
    let status_json = br#"{"metadata":{},"status":"Failure","message":"command terminated with non-zero exit code: exit status 42","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"42"}]}}"#;
    let (_, status) = record(WS, false, &[Ev::S(ws_s(3, status_json))]);
    assert_eq!(status.exec_status().unwrap().exit_code, Some(42));
}

#[test]
fn text_frames_are_passed_and_do_not_stop_recording() {
    let events = [
        Ev::S(encode_frame(true, Opcode::Text, None, b"1aGVsbG8=")),
        Ev::S(ws_s(1, b"binary after text")),
    ];
    let lines = assert_split_invariant(WS, false, &events);
    assert_eq!(body(&lines), vec![r#"[1.0,"o","binary after text"]"#]);
}

#[test]
fn one_byte_messages_carry_no_data() {
    let events = [
        Ev::S(ws_s(1, b"")),
        Ev::S(ws_s(2, b"")),
        Ev::S(ws_s(3, b"")),
        Ev::S(ws_s(1, b"x")),
    ];
    let lines = assert_split_invariant(WS, false, &events);
    assert_eq!(body(&lines), vec![r#"[1.0,"o","x"]"#]);
}

// --- TTY header gating, interleaving, UTF-8 ---

#[test]
fn output_before_first_resize_is_held_not_stalled() {
    let events = [
        Ev::S(ws_s(1, b"motd\r\n")),
        Ev::C(ws_c(4, &resize_json(90, 30))),
        Ev::S(ws_s(1, b"$ ")),
        Ev::C(ws_c(4, &resize_json(91, 31))),
    ];
    let lines = assert_split_invariant(WS, true, &events);
    assert!(lines[0].contains(r#""width":90,"height":30"#));
    assert_eq!(
        body(&lines),
        vec![
            r#"[1.0,"o","motd\r\n"]"#,
            r#"[1.0,"o","$ "]"#,
            r#"[1.0,"r","31x91"]"#
        ]
    );
}

#[test]
fn tty_session_without_resize_gets_header_at_end() {
    let lines = assert_split_invariant(WS, true, &[Ev::S(ws_s(1, b"x"))]);
    assert!(lines[0].contains(r#""width":0,"height":0"#));
    assert_eq!(body(&lines), vec![r#"[1.0,"o","x"]"#]);
}

#[test]
fn interleaved_channels_both_directions() {
    let events = [
        Ev::C(ws_c(4, &resize_json(80, 24))),
        Ev::S(ws_s(1, b"a")),
        Ev::C(ws_c(0, b"typed")),
        Ev::S(ws_s(2, b"b")),
        Ev::C(encode_frame(true, Opcode::Pong, Some(MASK), b"")),
        Ev::S(encode_frame(true, Opcode::Ping, None, b"hb")),
        Ev::S(ws_s(1, b"c")),
        Ev::C(ws_c(4, &resize_json(81, 25))),
    ];
    let lines = assert_split_invariant(WS, true, &events);
    assert_eq!(
        body(&lines),
        vec![
            r#"[1.0,"o","a"]"#,
            r#"[1.0,"o","b"]"#,
            r#"[1.0,"o","c"]"#,
            r#"[1.0,"r","25x81"]"#
        ]
    );
}

#[test]
fn utf8_split_across_frames_is_reassembled() {
    let text = "grüße €𝄞";
    let bytes = text.as_bytes();
    // Cut inside 'ü' (2 bytes), and inside '𝄞' (4 bytes).
    let events = [
        Ev::S(ws_s(1, &bytes[..3])),
        Ev::S(ws_s(1, &bytes[3..bytes.len() - 2])),
        Ev::S(ws_s(1, &bytes[bytes.len() - 2..])),
    ];
    let lines = assert_split_invariant(WS, false, &events);
    let joined: String = body(&lines)
        .iter()
        .map(|l| serde_json::from_str::<(f64, String, String)>(l).unwrap().2)
        .collect();
    assert_eq!(joined, text);
    assert!(!joined.contains('\u{FFFD}'));
}

#[test]
fn invalid_utf8_becomes_replacement_per_byte() {
    let lines = assert_split_invariant(WS, false, &[Ev::S(ws_s(1, b"a\xffb"))]);
    assert_eq!(body(&lines), vec!["[1.0,\"o\",\"a\u{FFFD}b\"]"]);
}

#[test]
fn html_and_control_characters_escaped_as_go_does() {
    let lines = assert_split_invariant(WS, false, &[Ev::S(ws_s(1, b"<a&b>\"\x1b[0m\n"))]);
    assert_eq!(
        body(&lines),
        vec![r#"[1.0,"o","\u003ca\u0026b\u003e\"\u001b[0m\n"]"#]
    );
}

// --- errors: recording stops, nothing panics ---

#[test]
fn oversized_frame_stops_recording_and_reports() {
    let mut huge = vec![0x82, 127];
    huge.extend_from_slice(&(33u64 << 20).to_be_bytes());
    let events = [
        Ev::S(ws_s(1, b"before")),
        Ev::S(huge),
        Ev::S(ws_s(1, b"after")),
    ];
    let (lines, status) = record(WS, false, &events);
    assert_eq!(body(&lines), vec![r#"[1.0,"o","before"]"#]);
    assert!(matches!(
        status.failure(),
        Some(RecordingError::WebSocket {
            direction: Direction::ServerToClient,
            source: WsError::FrameTooLarge { .. }
        })
    ));
}

#[test]
fn continuation_without_message_is_reported() {
    let (_, status) = record(
        WS,
        false,
        &[Ev::S(encode_frame(true, Opcode::Continuation, None, b"x"))],
    );
    assert!(matches!(
        status.failure(),
        Some(RecordingError::WebSocket {
            source: WsError::UnexpectedContinuation,
            ..
        })
    ));
}

#[test]
fn random_bytes_never_panic_either_direction() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    for _ in 0..300 {
        let len = rng.gen_range(0..2048);
        let bytes: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
        let _ = record(WS, rng.gen(), &[Ev::C(bytes.clone()), Ev::S(bytes)]);
    }
}

#[test]
fn parse_error_keeps_what_was_recorded_before_it() {
    let events = [
        Ev::S(ws_s(1, b"held before resize")),
        Ev::S(vec![0x83, 0x00]),
        Ev::C(ws_c(4, &resize_json(5, 5))),
    ];
    let (lines, status) = record(WS, true, &events);
    assert!(
        lines[0].contains(r#""width":0,"height":0"#),
        "header written at the error"
    );
    assert_eq!(body(&lines), vec![r#"[1.0,"o","held before resize"]"#]);
    assert!(matches!(
        status.failure(),
        Some(RecordingError::WebSocket {
            source: WsError::ReservedOpcode(3),
            ..
        })
    ));
}
