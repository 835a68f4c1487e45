//! The Kubernetes channel protocol over WebSocket frames, for one direction.
//!
//! Each binary *message* starts with a channel byte: 0 stdin, 1 stdout,
//! 2 stderr, 3 error, 4 resize, 255 close (v5). The channel byte is the first
//! byte of the message, so only the first non-empty fragment carries it;
//! continuation fragments are pure data (RFC 6455 §5.4: fragments are one
//! message split at arbitrary points). Upstream instead strips a channel byte
//! from every fragment; see the crate README for why we do not.
//!
//! Control frames pass unparsed; text frames pass and are not recorded
//! (`base64.channel.k8s.io` is not decoded). Nothing is buffered beyond a
//! frame header: payload bytes go straight to the [`SessionEvents`].

use super::{SessionEvents, StreamKind};
use crate::error::Direction;
use crate::ws::frame::{unmask_into, FrameHeader, FrameReader, FrameVisitor, Opcode};
use crate::ws::WsError;

/// The message in progress.
#[derive(Debug, Clone, Copy)]
struct Message {
    binary: bool,
    /// The channel, once its byte was seen.
    channel: Option<u8>,
}

/// The per-direction parser state for a WebSocket session.
#[derive(Debug)]
pub(crate) struct WsTap {
    direction: Direction,
    reader: FrameReader,
    message: Option<Message>,
    scratch: Vec<u8>,
}

impl WsTap {
    /// A parser for bytes flowing in `direction`.
    pub(crate) fn new(direction: Direction) -> Self {
        WsTap {
            direction,
            reader: FrameReader::new(),
            message: None,
            scratch: Vec::new(),
        }
    }

    /// Parses a chunk of forwarded bytes.
    pub(crate) fn feed<E: SessionEvents>(
        &mut self,
        chunk: &[u8],
        events: &mut E,
    ) -> Result<(), WsError> {
        let mut visit = Visit {
            direction: self.direction,
            message: &mut self.message,
            scratch: &mut self.scratch,
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
    message: &'a mut Option<Message>,
    scratch: &'a mut Vec<u8>,
    events: &'a mut E,
}

impl<E: SessionEvents> Visit<'_, E> {
    fn route(&mut self, channel: u8, header: &FrameHeader, offset: u64, raw: &[u8]) {
        let kind = StreamKind::from_channel(channel);
        let server = self.direction == Direction::ServerToClient;
        let wanted = match kind {
            StreamKind::Stdout | StreamKind::Stderr | StreamKind::Error => server,
            StreamKind::Resize => !server,
            _ => false,
        };
        if !wanted || raw.is_empty() {
            return;
        }
        let plain: &[u8] = if header.mask.is_some() {
            unmask_into(raw, header.mask, offset, self.scratch);
            self.scratch
        } else {
            raw
        };
        match kind {
            StreamKind::Stdout | StreamKind::Stderr => {
                if let Some(stream) = kind.output_stream() {
                    self.events.output(stream, plain);
                }
            }
            StreamKind::Error => self.events.error_data(plain),
            StreamKind::Resize => self.events.resize_data(plain),
            _ => {}
        }
    }
}

impl<E: SessionEvents> FrameVisitor for Visit<'_, E> {
    fn frame_start(&mut self, header: &FrameHeader) -> Result<(), WsError> {
        match header.opcode {
            Opcode::Close | Opcode::Ping | Opcode::Pong => Ok(()),
            Opcode::Text | Opcode::Binary => {
                if self.message.is_some() {
                    return Err(WsError::UnfinishedMessage);
                }
                let binary = header.opcode == Opcode::Binary;
                *self.message = Some(Message {
                    binary,
                    channel: None,
                });
                Ok(())
            }
            Opcode::Continuation => {
                if self.message.is_none() {
                    return Err(WsError::UnexpectedContinuation);
                }
                Ok(())
            }
        }
    }

    fn payload(
        &mut self,
        header: &FrameHeader,
        mut offset: u64,
        mut raw: &[u8],
    ) -> Result<(), WsError> {
        if header.opcode.is_control() {
            return Ok(());
        }
        let Some(message) = *self.message else {
            return Ok(());
        };
        if !message.binary {
            return Ok(());
        }
        let channel = match message.channel {
            Some(channel) => channel,
            None => {
                let Some((&first, rest)) = raw.split_first() else {
                    return Ok(());
                };
                let channel = match header.mask {
                    Some(key) => first ^ key[(offset % 4) as usize],
                    None => first,
                };
                *self.message = Some(Message {
                    channel: Some(channel),
                    ..message
                });
                raw = rest;
                offset += 1;
                channel
            }
        };
        self.route(channel, header, offset, raw);
        Ok(())
    }

    fn frame_end(&mut self, header: &FrameHeader) -> Result<(), WsError> {
        if header.opcode.is_control() || !header.fin {
            return Ok(());
        }
        if let Some(Message {
            binary: true,
            channel: Some(channel),
        }) = self.message.take()
        {
            if self.direction == Direction::ServerToClient {
                let kind = StreamKind::from_channel(channel);
                if let Some(stream) = kind.output_stream() {
                    self.events.output_end(stream);
                } else if kind == StreamKind::Error {
                    self.events.error_end();
                }
            }
        }
        Ok(())
    }
}
