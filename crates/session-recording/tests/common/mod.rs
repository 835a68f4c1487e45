//! Shared builders for the integration tests: frame encoders for both
//! protocols, and a harness that records a scripted session under any
//! chunking and returns the cast lines.
#![allow(dead_code, clippy::unwrap_used)]

use event_model::{CastHeader, CastKubernetes};
use session_recording::spdy::frame::{encode_control_frame, encode_data_frame, kind};
use session_recording::spdy::headers::{encode_header_block, HeaderCompressor};
use session_recording::ws::frame::{encode_frame, Opcode};
use session_recording::{
    Clock, Direction, MemorySink, Protocol, RecordingStatus, SessionTap, TapOptions,
};

/// The mask kubectl would pick (any value works).
pub const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// One scripted chunk of a session: who sent which bytes.
#[derive(Debug, Clone)]
pub enum Ev {
    /// Bytes from kubectl.
    C(Vec<u8>),
    /// Bytes from the API server.
    S(Vec<u8>),
}

impl Ev {
    pub fn bytes(&self) -> &[u8] {
        match self {
            Ev::C(b) | Ev::S(b) => b,
        }
    }
    pub fn direction(&self) -> Direction {
        match self {
            Ev::C(_) => Direction::ClientToServer,
            Ev::S(_) => Direction::ServerToClient,
        }
    }
}

/// A cast header as the proxy builds it for a Kubernetes session.
pub fn header() -> CastHeader {
    CastHeader {
        timestamp: 1_767_225_600,
        command: "/bin/sh".into(),
        src_node: "laptop.example.ts.net".into(),
        kubernetes: Some(CastKubernetes {
            pod_name: "web-0".into(),
            namespace: "default".into(),
            container: "nginx".into(),
            session_type: "exec".into(),
        }),
        ..Default::default()
    }
}

/// A client→server WebSocket message on `channel` (masked, one frame).
pub fn ws_c(channel: u8, data: &[u8]) -> Vec<u8> {
    let mut payload = vec![channel];
    payload.extend_from_slice(data);
    encode_frame(true, Opcode::Binary, Some(MASK), &payload)
}

/// A server→client WebSocket message on `channel` (unmasked, one frame).
pub fn ws_s(channel: u8, data: &[u8]) -> Vec<u8> {
    let mut payload = vec![channel];
    payload.extend_from_slice(data);
    encode_frame(true, Opcode::Binary, None, &payload)
}

/// kubectl's resize message.
pub fn resize_json(width: u32, height: u32) -> Vec<u8> {
    format!("{{\"Width\":{width},\"Height\":{height}}}\n").into_bytes()
}

/// The SPDY stream IDs kubectl uses for a session (odd, client-initiated).
pub struct SpdyIds {
    pub error: u32,
    pub stdin: u32,
    pub stdout: u32,
    pub stderr: u32,
    pub resize: u32,
}

pub const KUBECTL_IDS: SpdyIds = SpdyIds {
    error: 1,
    stdin: 3,
    stdout: 5,
    stderr: 7,
    resize: 9,
};
/// IDs above 127, which upstream's 7-bit mask truncates.
pub const HIGH_IDS: SpdyIds = SpdyIds {
    error: 301,
    stdin: 0x0001_0001,
    stdout: 0x7fff_fff1,
    stderr: 0x0123_4567,
    resize: 257,
};

/// A SPDY client with its own header compressor (one zlib stream).
pub struct SpdyClient {
    pub zlib: HeaderCompressor,
}

impl Default for SpdyClient {
    fn default() -> Self {
        Self::new()
    }
}

impl SpdyClient {
    pub fn new() -> Self {
        SpdyClient {
            zlib: HeaderCompressor::new(),
        }
    }

    /// SYN_STREAM opening `id` with the given `streamtype` header (name as given).
    pub fn syn_stream_named(&mut self, id: u32, name: &str, stream_type: &str) -> Vec<u8> {
        let block = self
            .zlib
            .compress(&encode_header_block(&[(name, stream_type), ("port", "")]));
        let mut payload = id.to_be_bytes().to_vec();
        payload.extend_from_slice(&0u32.to_be_bytes());
        payload.extend_from_slice(&[0, 0]);
        payload.extend_from_slice(&block);
        encode_control_frame(kind::SYN_STREAM, 0, &payload)
    }

    pub fn syn_stream(&mut self, id: u32, stream_type: &str) -> Vec<u8> {
        self.syn_stream_named(id, "streamtype", stream_type)
    }

    /// A HEADERS frame (its block must advance the shared zlib stream).
    pub fn headers(&mut self, id: u32, headers: &[(&str, &str)]) -> Vec<u8> {
        let block = self.zlib.compress(&encode_header_block(headers));
        let mut payload = id.to_be_bytes().to_vec();
        payload.extend_from_slice(&block);
        encode_control_frame(kind::HEADERS, 0, &payload)
    }

    /// The five SYN_STREAMs kubectl sends (with or without a resize stream).
    pub fn open_session(&mut self, ids: &SpdyIds, tty: bool) -> Vec<u8> {
        let mut out = self.syn_stream(ids.error, "error");
        out.extend(self.syn_stream(ids.stdin, "stdin"));
        out.extend(self.syn_stream(ids.stdout, "stdout"));
        if !tty {
            out.extend(self.syn_stream(ids.stderr, "stderr"));
        }
        if tty {
            out.extend(self.syn_stream(ids.resize, "resize"));
        }
        out
    }
}

/// A SYN_REPLY as the server sends it (compressed with the server's own zlib stream).
pub fn spdy_syn_reply(server_zlib: &mut HeaderCompressor, id: u32) -> Vec<u8> {
    let block = server_zlib.compress(&encode_header_block(&[("x-server", "kubelet")]));
    let mut payload = id.to_be_bytes().to_vec();
    payload.extend_from_slice(&block);
    encode_control_frame(kind::SYN_REPLY, 0, &payload)
}

pub fn spdy_ping(id: u32) -> Vec<u8> {
    encode_control_frame(kind::PING, 0, &id.to_be_bytes())
}

pub fn spdy_data(id: u32, data: &[u8]) -> Vec<u8> {
    encode_data_frame(id, 0, data)
}

/// Records `events`, each direction's bytes cut into the chunks `cut` returns.
pub fn record_with(
    protocol: Protocol,
    tty: bool,
    events: &[Ev],
    mut cut: impl FnMut(usize, &[u8]) -> Vec<Vec<u8>>,
) -> (Vec<String>, RecordingStatus) {
    let sink = MemorySink::new();
    let mut options = TapOptions::new(protocol, tty);
    options.clock = Clock::Fixed(1.0);
    let recorder = SessionTap::new(options, header(), sink.clone());
    for (i, ev) in events.iter().enumerate() {
        for chunk in cut(i, ev.bytes()) {
            recorder.observe(ev.direction(), &chunk);
        }
    }
    let status = recorder.status();
    recorder.finish();
    let text = String::from_utf8(sink.contents()).unwrap();
    (text.lines().map(str::to_owned).collect(), status)
}

/// Records `events` as given.
pub fn record(protocol: Protocol, tty: bool, events: &[Ev]) -> (Vec<String>, RecordingStatus) {
    record_with(protocol, tty, events, |_, b| vec![b.to_vec()])
}

/// The recording's lines after the header.
pub fn body(lines: &[String]) -> Vec<String> {
    lines.iter().skip(1).cloned().collect()
}

/// Asserts the recording is the same when any one chunk is split at any
/// byte, when each direction's bytes are merged into as few chunks as
/// possible, and when every byte arrives alone.
pub fn assert_split_invariant(protocol: Protocol, tty: bool, events: &[Ev]) -> Vec<String> {
    let (whole, status) = record(protocol, tty, events);
    assert!(
        status.failure().is_none(),
        "unexpected failure: {:?}",
        status.failure()
    );
    for target in 0..events.len() {
        let len = events[target].bytes().len();
        for at in 0..=len {
            let (split, _) = record_with(protocol, tty, events, |i, b| {
                if i == target {
                    vec![b[..at].to_vec(), b[at..].to_vec()]
                } else {
                    vec![b.to_vec()]
                }
            });
            assert_eq!(split, whole, "event {target} split at byte {at}");
        }
    }
    let (bytes, _) = record_with(protocol, tty, events, |_, b| {
        b.iter().map(|x| vec![*x]).collect()
    });
    assert_eq!(bytes, whole, "one byte per chunk");
    // Consecutive events of one direction merged into one chunk (several frames per read).
    let mut merged: Vec<Ev> = Vec::new();
    for ev in events {
        match (merged.last_mut(), ev) {
            (Some(Ev::C(acc)), Ev::C(b)) | (Some(Ev::S(acc)), Ev::S(b)) => acc.extend_from_slice(b),
            _ => merged.push(ev.clone()),
        }
    }
    let (joined, _) = record(protocol, tty, &merged);
    assert_eq!(joined, whole, "frames merged into one chunk");
    whole
}
