//! Throughput of the recording tap on a large stdout stream (like `cat` of a
//! big file through `kubectl exec`), against a memcpy-only passthrough.
//!
//! Run with `cargo bench -p kubescribe-session-recording --bench throughput`.

use bytes::Bytes;
use criterion::{criterion_main, Criterion, Throughput};
use event_model::{CastHeader, CastKubernetes};
use session_recording::spdy::frame::encode_data_frame;
use session_recording::spdy::frame::{encode_control_frame, kind};
use session_recording::spdy::headers::{encode_header_block, HeaderCompressor};
use session_recording::ws::frame::{encode_frame, Opcode};
use session_recording::{CastSink, Protocol, SessionTap, SinkError, TapOptions};

const TOTAL: usize = 16 << 20;
const FRAME: usize = 32 * 1024;
const READ: usize = 64 * 1024;

/// A sink that takes every line and drops it (the upload is not measured).
struct DiscardSink;

impl CastSink for DiscardSink {
    fn write_line(&mut self, line: Bytes) -> Result<(), SinkError> {
        std::hint::black_box(line);
        Ok(())
    }
}

/// Text like a log file: printable ASCII, tabs, newlines, an occasional quote or `<`.
fn text(len: usize) -> Vec<u8> {
    let line =
        b"2026-11-28T19:00:00Z INFO request handled\tpath=\"/api/v1/pods\" status=200 <ok>\n";
    line.iter().copied().cycle().take(len).collect()
}

fn ws_stream() -> Vec<u8> {
    let data = text(FRAME - 1);
    let mut payload = vec![1u8];
    payload.extend_from_slice(&data);
    let frame = encode_frame(true, Opcode::Binary, None, &payload);
    frame
        .iter()
        .copied()
        .cycle()
        .take(frame.len() * (TOTAL / FRAME))
        .collect()
}

fn spdy_setup() -> Vec<u8> {
    let mut zlib = HeaderCompressor::new();
    let block = zlib.compress(&encode_header_block(&[("streamtype", "stdout")]));
    let mut payload = 1u32.to_be_bytes().to_vec();
    payload.extend_from_slice(&[0; 6]);
    payload.extend_from_slice(&block);
    encode_control_frame(kind::SYN_STREAM, 0, &payload)
}

fn spdy_stream() -> Vec<u8> {
    let frame = encode_data_frame(1, 0, &text(FRAME));
    frame
        .iter()
        .copied()
        .cycle()
        .take(frame.len() * (TOTAL / FRAME))
        .collect()
}

fn header() -> CastHeader {
    CastHeader {
        kubernetes: Some(CastKubernetes::default()),
        ..Default::default()
    }
}

/// What the proxy does per read without recording: copy the chunk on.
fn passthrough(stream: &[u8], out: &mut [u8]) {
    for chunk in stream.chunks(READ) {
        out[..chunk.len()].copy_from_slice(chunk);
        std::hint::black_box(&out[..chunk.len()]);
    }
}

fn recorded(recorder: &SessionTap, stream: &[u8], out: &mut [u8]) {
    for chunk in stream.chunks(READ) {
        recorder.observe_server_to_client(chunk);
        out[..chunk.len()].copy_from_slice(chunk);
        std::hint::black_box(&out[..chunk.len()]);
    }
}

fn bench(c: &mut Criterion) {
    let ws = ws_stream();
    let spdy = spdy_stream();
    let setup = spdy_setup();
    let mut out = vec![0u8; READ];
    let mut group = c.benchmark_group("stdout_16MiB");
    group.sample_size(10);
    group.warm_up_time(std::time::Duration::from_millis(500));
    group.measurement_time(std::time::Duration::from_secs(3));

    group.throughput(Throughput::Bytes(ws.len() as u64));
    group.bench_function("passthrough_memcpy", |b| {
        b.iter(|| passthrough(&ws, &mut out))
    });
    group.bench_function("websocket_recorded", |b| {
        b.iter(|| {
            let recorder = SessionTap::new(
                TapOptions::new(Protocol::WebSocket, false),
                header(),
                DiscardSink,
            );
            recorded(&recorder, &ws, &mut out);
            recorder.finish();
        })
    });
    group.throughput(Throughput::Bytes(spdy.len() as u64));
    group.bench_function("spdy_recorded", |b| {
        b.iter(|| {
            let recorder = SessionTap::new(
                TapOptions::new(Protocol::Spdy, false),
                header(),
                DiscardSink,
            );
            recorder.observe_client_to_server(&setup);
            recorded(&recorder, &spdy, &mut out);
            recorder.finish();
        })
    });
    group.finish();
}

/// The criterion group (the macro's generated function has no doc comment).
mod group {
    #![allow(missing_docs)]
    use super::bench;
    criterion::criterion_group!(benches, bench);
}

criterion_main!(group::benches);
