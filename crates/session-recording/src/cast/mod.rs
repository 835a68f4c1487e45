//! Turns parsed session events (output, resizes) into asciicast v2 lines:
//! header gating for TTY sessions, `o` and `r` lines, UTF-8 reassembly.

pub(crate) mod line;
pub(crate) mod utf8;

use std::time::Instant;

use bytes::Bytes;
use event_model::{to_go_json, CastEvent, CastHeader, ResizeOrder, TerminalSize};

use crate::error::{RecordingError, SinkError};
use crate::shared_error::SharedError;
use crate::sink::CastSink;
use crate::status::RecordingStatus;
use utf8::Utf8Reassembler;

/// Default bound on output held back while a TTY session waits for its first
/// resize (see [`TapOptions::max_pending_before_header`](crate::TapOptions)).
pub(crate) const DEFAULT_MAX_PENDING_BEFORE_HEADER: usize = 1024 * 1024;

/// Payload bytes of one message that go into one `o` line at most; longer
/// messages are split into several lines at these exact payload offsets, so
/// memory stays bounded and the recording does not depend on how the bytes
/// were chunked on the way in.
pub(crate) const MAX_PAYLOAD_PER_LINE: usize = 64 * 1024;

/// Where cast times come from: seconds since the session was set up.
#[derive(Debug, Clone, Copy)]
pub enum Clock {
    /// Real time since the given instant (the proxy uses the moment of setup).
    Since(Instant),
    /// Always the same time (tests that compare exact lines).
    Fixed(f64),
}

impl Clock {
    /// Seconds since setup.
    pub fn now(&self) -> f64 {
        match self {
            Clock::Since(start) => start.elapsed().as_secs_f64(),
            Clock::Fixed(t) => *t,
        }
    }
}

/// The two recorded output streams; both become `o` lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OutputStream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

impl OutputStream {
    fn index(self) -> usize {
        match self {
            OutputStream::Stdout => 0,
            OutputStream::Stderr => 1,
        }
    }
}

/// An `o` line being built for one stream.
#[derive(Debug, Default)]
struct StreamLine {
    utf8: Utf8Reassembler,
    line: Vec<u8>,
    started: bool,
    payload_in_line: usize,
}

/// Writes one session's asciicast v2 stream into a [`CastSink`].
pub(crate) struct CastWriter {
    sink: Box<dyn CastSink>,
    status: RecordingStatus,
    clock: Clock,
    header: Option<CastHeader>,
    resize_order: ResizeOrder,
    pending: Vec<Bytes>,
    pending_bytes: usize,
    max_pending: usize,
    streams: [StreamLine; 2],
    stopped: bool,
    closed: bool,
}

impl CastWriter {
    /// A writer; for non-TTY sessions the header is written at once, for TTY
    /// sessions it waits for the first resize.
    pub(crate) fn new(
        header: CastHeader,
        tty: bool,
        clock: Clock,
        sink: Box<dyn CastSink>,
        status: RecordingStatus,
        max_pending: usize,
    ) -> Self {
        let resize_order = header.resize_order();
        let mut writer = CastWriter {
            sink,
            status,
            clock,
            header: Some(header),
            resize_order,
            pending: Vec::new(),
            pending_bytes: 0,
            max_pending,
            streams: Default::default(),
            stopped: false,
            closed: false,
        };
        if !tty {
            writer.write_header(None);
        }
        writer
    }

    /// Whether the header has gone out.
    pub(crate) fn header_written(&self) -> bool {
        self.header.is_none()
    }

    /// Stops recording (after a parse error): nothing more is written.
    pub(crate) fn stop(&mut self) {
        self.stopped = true;
        self.pending.clear();
        self.pending_bytes = 0;
    }

    /// Output payload bytes of the current message on `stream`.
    pub(crate) fn output(&mut self, stream: OutputStream, mut data: &[u8]) {
        if self.stopped || data.is_empty() {
            return;
        }
        self.status.count_output(data.len());
        while !data.is_empty() {
            let state = &mut self.streams[stream.index()];
            let room = MAX_PAYLOAD_PER_LINE - state.payload_in_line;
            let (now, rest) = data.split_at(data.len().min(room));
            data = rest;
            state.payload_in_line += now.len();
            let clock = self.clock;
            let StreamLine {
                utf8,
                line,
                started,
                ..
            } = state;
            utf8.decode(now, &mut |text: &str| {
                if !*started {
                    line::begin_output_line(line, clock.now());
                    *started = true;
                }
                line::push_escaped(line, text);
            });
            if state.payload_in_line == MAX_PAYLOAD_PER_LINE {
                self.output_end(stream);
            }
        }
    }

    /// The current message on `stream` is complete: its `o` line goes out
    /// (unless it decoded to nothing, e.g. an empty payload).
    pub(crate) fn output_end(&mut self, stream: OutputStream) {
        let state = &mut self.streams[stream.index()];
        state.payload_in_line = 0;
        if !state.started {
            return;
        }
        state.started = false;
        line::end_output_line(&mut state.line);
        // Hand the buffer over without copying; the next line gets a fresh one.
        let capacity = state.line.capacity().min(2 * MAX_PAYLOAD_PER_LINE);
        let bytes = Bytes::from(std::mem::replace(
            &mut state.line,
            Vec::with_capacity(capacity),
        ));
        if !self.stopped {
            self.emit_event(bytes);
        }
    }

    /// A terminal resize: the header's size if the header is still waiting,
    /// otherwise an `r` line in the header's resize order.
    pub(crate) fn resize(&mut self, size: TerminalSize) {
        if self.stopped {
            return;
        }
        if self.header.is_some() {
            self.write_header(Some(size));
            return;
        }
        let event = CastEvent::resize(self.clock.now(), size, self.resize_order);
        match to_go_json(&event) {
            Ok(line) => self.emit_event(Bytes::from(line)),
            Err(err) => self.fail(RecordingError::HeaderEncoding(SharedError::new(err))),
        }
    }

    /// Ends the recording: open lines and held UTF-8 bytes are flushed, a
    /// still-waiting header is written (size 0x0), the sink is closed.
    pub(crate) fn finish(&mut self) {
        if self.closed {
            return;
        }
        for stream in [OutputStream::Stdout, OutputStream::Stderr] {
            let clock = self.clock;
            let StreamLine {
                utf8,
                line,
                started,
                ..
            } = &mut self.streams[stream.index()];
            utf8.finish(&mut |text: &str| {
                if !*started {
                    line::begin_output_line(line, clock.now());
                    *started = true;
                }
                line::push_escaped(line, text);
            });
            self.output_end(stream);
        }
        if !self.stopped && self.header.is_some() {
            tracing::info!("TTY session ended before any terminal size was seen; cast header written with size 0x0");
            self.write_header(None);
        }
        self.closed = true;
        self.stopped = true;
        self.sink.close();
    }

    fn write_header(&mut self, size: Option<TerminalSize>) {
        let Some(mut header) = self.header.take() else {
            return;
        };
        if let Some(size) = size {
            header.width = size.width;
            header.height = size.height;
        }
        let line = match to_go_json(&header) {
            Ok(line) => Bytes::from(line),
            Err(err) => return self.fail(RecordingError::HeaderEncoding(SharedError::new(err))),
        };
        match self.sink.write_line(line) {
            Ok(()) => self.status.count_written(),
            Err(source) => {
                // Without its header a cast is unreadable: stop for good.
                self.status.count_dropped();
                self.fail(RecordingError::SinkClosed { source });
                return;
            }
        }
        let pending = std::mem::take(&mut self.pending);
        self.pending_bytes = 0;
        for line in pending {
            self.send(line);
        }
    }

    fn emit_event(&mut self, line: Bytes) {
        if self.header.is_none() {
            self.send(line);
            return;
        }
        if self.pending_bytes + line.len() > self.max_pending {
            tracing::warn!(
                limit_bytes = self.max_pending,
                "TTY session produced more output than may be held before its first resize; cast header written with size 0x0"
            );
            self.write_header(None);
            self.send(line);
            return;
        }
        self.pending_bytes += line.len();
        self.pending.push(line);
    }

    fn send(&mut self, line: Bytes) {
        if self.stopped {
            return;
        }
        match self.sink.write_line(line) {
            Ok(()) => self.status.count_written(),
            Err(source @ SinkError::Full { .. }) => {
                self.status.count_dropped();
                self.status.fail(RecordingError::SinkFull { source });
            }
            Err(source @ SinkError::Closed) => {
                self.status.count_dropped();
                self.fail(RecordingError::SinkClosed { source });
            }
        }
    }

    fn fail(&mut self, err: RecordingError) {
        tracing::warn!(error = %err, "session recording failed");
        self.status.fail(err);
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemorySink;

    fn writer(tty: bool, sink: &MemorySink, max_pending: usize) -> (CastWriter, RecordingStatus) {
        let status = RecordingStatus::new();
        let w = CastWriter::new(
            CastHeader {
                timestamp: 1,
                ..Default::default()
            },
            tty,
            Clock::Fixed(1.5),
            Box::new(sink.clone()),
            status.clone(),
            max_pending,
        );
        (w, status)
    }

    fn text(sink: &MemorySink) -> String {
        String::from_utf8(sink.contents()).unwrap()
    }

    #[test]
    fn non_tty_header_first_then_output() {
        let sink = MemorySink::new();
        let (mut w, _) = writer(false, &sink, 1024);
        w.output(OutputStream::Stdout, b"hi");
        w.output_end(OutputStream::Stdout);
        w.output(OutputStream::Stderr, b"");
        w.output_end(OutputStream::Stderr);
        let lines = sink.lines();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with(b"{\"version\":2,\"width\":0,\"height\":0,"));
        assert_eq!(lines[1], Bytes::from_static(b"[1.5,\"o\",\"hi\"]\n"));
    }

    #[test]
    fn tty_header_waits_for_resize_and_later_resizes_are_height_first() {
        let sink = MemorySink::new();
        let (mut w, _) = writer(true, &sink, 1024);
        w.output(OutputStream::Stdout, b"$ ");
        w.output_end(OutputStream::Stdout);
        assert!(sink.lines().is_empty());
        w.resize(TerminalSize {
            width: 120,
            height: 40,
        });
        w.resize(TerminalSize {
            width: 200,
            height: 50,
        });
        let t = text(&sink);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].contains("\"width\":120,\"height\":40"));
        assert_eq!(lines[1], "[1.5,\"o\",\"$ \"]");
        // No kubernetes object: the spec's width-first order applies.
        assert_eq!(lines[2], "[1.5,\"r\",\"200x50\"]");
    }

    #[test]
    fn kubernetes_header_uses_upstream_height_first_order() {
        let sink = MemorySink::new();
        let status = RecordingStatus::new();
        let header = CastHeader {
            kubernetes: Some(event_model::CastKubernetes::default()),
            ..Default::default()
        };
        let mut w = CastWriter::new(
            header,
            false,
            Clock::Fixed(0.0),
            Box::new(sink.clone()),
            status,
            10,
        );
        w.resize(TerminalSize {
            width: 200,
            height: 50,
        });
        assert!(text(&sink).ends_with(",\"r\",\"50x200\"]\n"));
    }

    #[test]
    fn tty_pending_overflow_writes_zero_size_header() {
        let sink = MemorySink::new();
        // Each line is 23 bytes: the first is held, the second exceeds 30.
        let (mut w, _) = writer(true, &sink, 30);
        for i in 0..3 {
            w.output(OutputStream::Stdout, b"0123456789");
            w.output_end(OutputStream::Stdout);
            if i == 0 {
                assert!(sink.lines().is_empty());
            }
        }
        let lines = sink.lines();
        assert_eq!(lines.len(), 4, "header + three output lines");
        assert!(lines[0].starts_with(b"{\"version\":2,\"width\":0,\"height\":0,"));
        w.resize(TerminalSize {
            width: 1,
            height: 2,
        });
        assert!(text(&sink).ends_with("[1.5,\"r\",\"1x2\"]\n"));
    }

    #[test]
    fn finish_writes_waiting_header_and_flushes_utf8() {
        let sink = MemorySink::new();
        let (mut w, _) = writer(true, &sink, 1024);
        w.output(OutputStream::Stdout, b"a\xE2\x82");
        w.output_end(OutputStream::Stdout);
        w.finish();
        let t = text(&sink);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[1], "[1.5,\"o\",\"a\"]");
        assert_eq!(lines[2], "[1.5,\"o\",\"\u{FFFD}\u{FFFD}\"]");
        assert!(sink.is_closed());
    }

    #[test]
    fn long_message_is_split_at_fixed_offsets() {
        let sink = MemorySink::new();
        let (mut w, _) = writer(false, &sink, 1024);
        let data = vec![b'x'; MAX_PAYLOAD_PER_LINE * 2 + 5];
        w.output(OutputStream::Stdout, &data[..100]);
        w.output(OutputStream::Stdout, &data[100..]);
        w.output_end(OutputStream::Stdout);
        let lines = sink.lines();
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[3], Bytes::from_static(b"[1.5,\"o\",\"xxxxx\"]\n"));
    }

    #[test]
    fn full_sink_counts_gap_and_keeps_recording() {
        let sink = MemorySink::with_max_lines(2);
        let (mut w, status) = writer(false, &sink, 1024);
        for _ in 0..3 {
            w.output(OutputStream::Stdout, b"x");
            w.output_end(OutputStream::Stdout);
        }
        assert_eq!(status.lines_written(), 2);
        assert_eq!(status.lines_dropped(), 2);
        assert!(matches!(
            status.failure(),
            Some(RecordingError::SinkFull { .. })
        ));
    }
}
