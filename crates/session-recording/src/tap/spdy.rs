//! The kubectl exec/attach protocol over SPDY/3.1, for one direction.
//!
//! The client opens one stream per role with a SYN_STREAM whose `streamtype`
//! header says `error`, `stdin`, `stdout`, `stderr` or `resize`; the server
//! writes stdout/stderr/error data on those client-opened streams. So:
//! - client→server: every header block (SYN_STREAM, SYN_REPLY, HEADERS) goes
//!   through the one persistent decompressor; `streamtype` maps stream IDs;
//!   resize-stream data feeds the resize decoder; stdin is skipped unread.
//! - server→client: stdout/stderr data becomes output, error data the exit
//!   status; the server's header blocks (its own zlib stream) are not needed
//!   and are skipped by length, which keeps framing exact without inflating.

use super::{SessionEvents, StreamKind};
use crate::error::Direction;
use crate::spdy::frame::{kind, ControlFrame, FrameReader, FrameVisitor};
use crate::spdy::headers::{find_header, HeaderDecompressor};
use crate::spdy::SpdyError;

/// Most streams one connection may register (kubectl opens five).
pub(crate) const MAX_STREAMS: usize = 1024;

/// The per-direction parser state for a SPDY session.
#[derive(Debug)]
pub(crate) struct SpdyTap {
    direction: Direction,
    reader: FrameReader,
    headers: Option<HeaderDecompressor>,
}

impl SpdyTap {
    /// A parser for bytes flowing in `direction`.
    pub(crate) fn new(direction: Direction) -> Self {
        let headers = (direction == Direction::ClientToServer).then(HeaderDecompressor::new);
        SpdyTap {
            direction,
            reader: FrameReader::new(),
            headers,
        }
    }

    /// Parses a chunk of forwarded bytes.
    pub(crate) fn feed<E: SessionEvents>(
        &mut self,
        chunk: &[u8],
        events: &mut E,
    ) -> Result<(), SpdyError> {
        let mut visit = Visit {
            direction: self.direction,
            headers: self.headers.as_mut(),
            events,
        };
        self.reader.feed(chunk, &mut visit)
    }

    /// Whether the bytes so far end at a frame boundary (where a frame may be injected).
    pub(crate) fn at_frame_boundary(&self) -> bool {
        self.reader.at_frame_boundary()
    }
}

struct Visit<'a, E> {
    direction: Direction,
    headers: Option<&'a mut HeaderDecompressor>,
    events: &'a mut E,
}

fn stream_id(payload: &[u8]) -> u32 {
    u32::from_be_bytes([payload[0] & 0x7f, payload[1], payload[2], payload[3]])
}

impl<E: SessionEvents> FrameVisitor for Visit<'_, E> {
    fn control(&mut self, frame: ControlFrame<'_>) -> Result<(), SpdyError> {
        let fixed = match frame.kind {
            kind::SYN_STREAM => 10,
            kind::SYN_REPLY | kind::HEADERS => 4,
            // PING, RST_STREAM, SETTINGS, GOAWAY, WINDOW_UPDATE and unknown
            // types carry no header block: passed and ignored.
            _ => return Ok(()),
        };
        if frame.payload.len() < fixed {
            return Err(SpdyError::ShortControlFrame {
                kind: frame.kind,
                len: frame.payload.len(),
            });
        }
        let Some(inflate) = self.headers.as_deref_mut() else {
            return Ok(());
        };
        let block = &frame.payload[fixed..];
        if block.is_empty() {
            return Ok(());
        }
        let names = inflate.decompress(block)?;
        if frame.kind == kind::SYN_STREAM {
            if let Some(value) = find_header(names, "streamtype")? {
                let kind = StreamKind::from_stream_type(value);
                if kind != StreamKind::Other
                    && !self.events.register_stream(stream_id(frame.payload), kind)
                {
                    return Err(SpdyError::TooManyStreams { max: MAX_STREAMS });
                }
            }
        }
        Ok(())
    }

    fn data(&mut self, stream_id: u32, payload: &[u8]) {
        let Some(kind) = self.events.stream_kind(stream_id) else {
            return;
        };
        match (self.direction, kind) {
            (Direction::ServerToClient, StreamKind::Stdout | StreamKind::Stderr) => {
                if let Some(stream) = kind.output_stream() {
                    self.events.output(stream, payload);
                }
            }
            (Direction::ServerToClient, StreamKind::Error) => self.events.error_data(payload),
            (Direction::ClientToServer, StreamKind::Resize) => self.events.resize_data(payload),
            _ => {}
        }
    }

    fn data_end(&mut self, stream_id: u32, _flags: u8) {
        if self.direction != Direction::ServerToClient {
            return;
        }
        match self.events.stream_kind(stream_id) {
            Some(kind @ (StreamKind::Stdout | StreamKind::Stderr)) => {
                if let Some(stream) = kind.output_stream() {
                    self.events.output_end(stream);
                }
            }
            Some(StreamKind::Error) => self.events.error_end(),
            _ => {}
        }
    }
}
