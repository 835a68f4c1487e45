//! SPDY/3.1 framing: 8-byte headers, control frames (buffered whole, bounded)
//! and data frames (payload handed over piece by piece, never buffered).
//! Data frames carry the full 31-bit stream ID.

use super::SpdyError;

/// The SPDY version kubectl speaks.
pub const SPDY_VERSION: u16 = 3;
/// Frame header length.
pub const FRAME_HEADER_LEN: usize = 8;
/// Largest control frame buffered (real ones are well under 1 KiB).
pub const MAX_CONTROL_FRAME_LEN: u32 = 1 << 20;

/// Control frame types (SPDY/3.1).
pub mod kind {
    /// Opens a stream; carries a header block.
    pub const SYN_STREAM: u16 = 1;
    /// Accepts a stream; carries a header block.
    pub const SYN_REPLY: u16 = 2;
    /// Aborts a stream.
    pub const RST_STREAM: u16 = 3;
    /// Connection settings.
    pub const SETTINGS: u16 = 4;
    /// Liveness check.
    pub const PING: u16 = 6;
    /// Connection shutdown.
    pub const GOAWAY: u16 = 7;
    /// More headers for a stream; carries a header block.
    pub const HEADERS: u16 = 8;
    /// Flow control.
    pub const WINDOW_UPDATE: u16 = 9;
}

/// Data frame flag: last frame of the stream in this direction.
pub const FLAG_FIN: u8 = 0x01;

/// A parsed frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameHeader {
    /// A control frame.
    Control {
        /// Protocol version (3).
        version: u16,
        /// Frame type (see [`kind`]).
        kind: u16,
        /// Flags.
        flags: u8,
        /// Payload length (24 bits).
        length: u32,
    },
    /// A data frame.
    Data {
        /// Stream ID (31 bits).
        stream_id: u32,
        /// Flags.
        flags: u8,
        /// Payload length (24 bits).
        length: u32,
    },
}

impl FrameHeader {
    /// Parses and validates an 8-byte header.
    pub fn parse(b: &[u8; FRAME_HEADER_LEN]) -> Result<Self, SpdyError> {
        let flags = b[4];
        let length = u32::from_be_bytes([0, b[5], b[6], b[7]]);
        if b[0] & 0x80 != 0 {
            let version = u16::from_be_bytes([b[0] & 0x7f, b[1]]);
            let kind = u16::from_be_bytes([b[2], b[3]]);
            if version != SPDY_VERSION {
                return Err(SpdyError::UnsupportedVersion(version));
            }
            if kind == 0 {
                return Err(SpdyError::ZeroControlType);
            }
            if length > MAX_CONTROL_FRAME_LEN {
                return Err(SpdyError::ControlFrameTooLarge {
                    len: length,
                    max: MAX_CONTROL_FRAME_LEN,
                });
            }
            Ok(FrameHeader::Control {
                version,
                kind,
                flags,
                length,
            })
        } else {
            let stream_id = u32::from_be_bytes([b[0] & 0x7f, b[1], b[2], b[3]]);
            if stream_id == 0 {
                return Err(SpdyError::ZeroStreamId);
            }
            Ok(FrameHeader::Data {
                stream_id,
                flags,
                length,
            })
        }
    }

    /// Encodes this header.
    pub fn encode(&self) -> [u8; FRAME_HEADER_LEN] {
        let (first, flags, length) = match *self {
            FrameHeader::Control {
                version,
                kind,
                flags,
                length,
            } => (
                0x8000_0000 | (u32::from(version & 0x7fff) << 16) | u32::from(kind),
                flags,
                length,
            ),
            FrameHeader::Data {
                stream_id,
                flags,
                length,
            } => (stream_id & 0x7fff_ffff, flags, length),
        };
        let mut out = [0u8; FRAME_HEADER_LEN];
        out[..4].copy_from_slice(&first.to_be_bytes());
        out[4] = flags;
        out[5..].copy_from_slice(&length.to_be_bytes()[1..]);
        out
    }
}

/// A complete control frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControlFrame<'a> {
    /// Frame type (see [`kind`]).
    pub kind: u16,
    /// Flags.
    pub flags: u8,
    /// The payload (for SYN_STREAM/SYN_REPLY/HEADERS: fixed fields, then the compressed header block).
    pub payload: &'a [u8],
}

/// Receives frames from a [`FrameReader`].
pub trait FrameVisitor {
    /// A complete control frame.
    fn control(&mut self, frame: ControlFrame<'_>) -> Result<(), SpdyError>;
    /// A piece of a data frame's payload.
    fn data(&mut self, stream_id: u32, payload: &[u8]);
    /// A data frame is complete.
    fn data_end(&mut self, stream_id: u32, flags: u8);
}

#[derive(Debug)]
enum State {
    Header,
    Control {
        kind: u16,
        flags: u8,
        length: usize,
    },
    Data {
        stream_id: u32,
        flags: u8,
        remaining: usize,
    },
}

/// Incremental frame reader: feed it bytes in any chunking; every complete
/// frame is reported, none is held back.
#[derive(Debug)]
pub struct FrameReader {
    header: [u8; FRAME_HEADER_LEN],
    header_len: usize,
    state: State,
    control: Vec<u8>,
}

impl Default for FrameReader {
    fn default() -> Self {
        Self::new()
    }
}

impl FrameReader {
    /// A reader at a frame boundary.
    pub fn new() -> Self {
        FrameReader {
            header: [0; FRAME_HEADER_LEN],
            header_len: 0,
            state: State::Header,
            control: Vec::new(),
        }
    }

    /// Whether the bytes fed so far end exactly at a frame boundary.
    pub fn at_frame_boundary(&self) -> bool {
        matches!(self.state, State::Header) && self.header_len == 0
    }

    /// Parses `input`, reporting frames to `visitor`.
    pub fn feed<V: FrameVisitor>(
        &mut self,
        mut input: &[u8],
        visitor: &mut V,
    ) -> Result<(), SpdyError> {
        while !input.is_empty() {
            match self.state {
                State::Header => {
                    let take = (FRAME_HEADER_LEN - self.header_len).min(input.len());
                    self.header[self.header_len..self.header_len + take]
                        .copy_from_slice(&input[..take]);
                    self.header_len += take;
                    input = &input[take..];
                    if self.header_len < FRAME_HEADER_LEN {
                        continue;
                    }
                    self.header_len = 0;
                    match FrameHeader::parse(&self.header)? {
                        FrameHeader::Control {
                            kind,
                            flags,
                            length,
                            ..
                        } => {
                            self.control.clear();
                            self.state = State::Control {
                                kind,
                                flags,
                                length: length as usize,
                            };
                            if length == 0 {
                                self.finish_control(visitor)?;
                            }
                        }
                        FrameHeader::Data {
                            stream_id,
                            flags,
                            length,
                        } => {
                            if length == 0 {
                                visitor.data_end(stream_id, flags);
                            } else {
                                self.state = State::Data {
                                    stream_id,
                                    flags,
                                    remaining: length as usize,
                                };
                            }
                        }
                    }
                }
                State::Control { length, .. } => {
                    let take = (length - self.control.len()).min(input.len());
                    self.control.extend_from_slice(&input[..take]);
                    input = &input[take..];
                    if self.control.len() == length {
                        self.finish_control(visitor)?;
                    }
                }
                State::Data {
                    stream_id,
                    flags,
                    ref mut remaining,
                } => {
                    let take = (*remaining).min(input.len());
                    let (piece, rest) = input.split_at(take);
                    input = rest;
                    *remaining -= take;
                    let done = *remaining == 0;
                    visitor.data(stream_id, piece);
                    if done {
                        self.state = State::Header;
                        visitor.data_end(stream_id, flags);
                    }
                }
            }
        }
        Ok(())
    }

    fn finish_control<V: FrameVisitor>(&mut self, visitor: &mut V) -> Result<(), SpdyError> {
        let State::Control { kind, flags, .. } = self.state else {
            return Ok(());
        };
        self.state = State::Header;
        let result = visitor.control(ControlFrame {
            kind,
            flags,
            payload: &self.control,
        });
        if self.control.capacity() > 64 * 1024 {
            self.control = Vec::new();
        }
        result
    }
}

/// Builds a data frame (tests, benchmarks, fail-closed messages).
pub fn encode_data_frame(stream_id: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
    let length = payload.len() as u32;
    frame_bytes(
        FrameHeader::Data {
            stream_id,
            flags,
            length,
        },
        payload,
    )
}

/// Builds a control frame (tests and benchmarks).
pub fn encode_control_frame(kind: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    let length = payload.len() as u32;
    let version = SPDY_VERSION;
    frame_bytes(
        FrameHeader::Control {
            version,
            kind,
            flags,
            length,
        },
        payload,
    )
}

/// A frame: its header, then its payload.
fn frame_bytes(header: FrameHeader, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(FRAME_HEADER_LEN + payload.len());
    out.extend_from_slice(&header.encode());
    out.extend_from_slice(payload);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default, Debug, PartialEq)]
    struct Collect {
        control: Vec<(u16, u8, Vec<u8>)>,
        data: Vec<(u32, Vec<u8>, Option<u8>)>,
    }

    impl FrameVisitor for Collect {
        fn control(&mut self, f: ControlFrame<'_>) -> Result<(), SpdyError> {
            self.control.push((f.kind, f.flags, f.payload.to_vec()));
            Ok(())
        }
        fn data(&mut self, id: u32, p: &[u8]) {
            match self.data.last_mut() {
                Some((last, buf, None)) if *last == id => buf.extend_from_slice(p),
                _ => self.data.push((id, p.to_vec(), None)),
            }
        }
        fn data_end(&mut self, id: u32, flags: u8) {
            match self.data.last_mut() {
                Some((last, _, end @ None)) if *last == id => *end = Some(flags),
                _ => self.data.push((id, Vec::new(), Some(flags))),
            }
        }
    }

    fn parse(chunks: &[&[u8]]) -> Result<Collect, SpdyError> {
        let mut r = FrameReader::new();
        let mut c = Collect::default();
        for chunk in chunks {
            r.feed(chunk, &mut c)?;
        }
        Ok(c)
    }

    // Mirrors upstream Test_spdyFrame_Parse, with the stream-ID mask fixed.
    #[test]
    fn parses_control_and_data_frames() {
        let mut bytes = encode_control_frame(kind::PING, 0, &[0, 0, 0, 1]);
        bytes.extend(encode_data_frame(1, 0, b"abc"));
        bytes.extend(encode_data_frame(0x7fff_ffff, FLAG_FIN, b"big id"));
        bytes.extend(encode_data_frame(300, FLAG_FIN, b""));
        let c = parse(&[&bytes]).unwrap();
        assert_eq!(c.control, vec![(kind::PING, 0, vec![0, 0, 0, 1])]);
        assert_eq!(
            c.data,
            vec![
                (1, b"abc".to_vec(), Some(0)),
                (0x7fff_ffff, b"big id".to_vec(), Some(FLAG_FIN)),
                (300, Vec::new(), Some(FLAG_FIN)),
            ]
        );
        for i in 0..=bytes.len() {
            assert_eq!(
                parse(&[&bytes[..i], &bytes[i..]]).unwrap(),
                c,
                "split at {i}"
            );
        }
    }

    #[test]
    fn stream_ids_above_127_are_not_truncated() {
        let h = FrameHeader::parse(
            &encode_data_frame(0x0123_4567, 0, b"")[..8]
                .try_into()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(
            h,
            FrameHeader::Data {
                stream_id: 0x0123_4567,
                flags: 0,
                length: 0
            }
        );
    }

    #[test]
    fn invalid_headers_are_errors() {
        let mut v2 = encode_control_frame(kind::PING, 0, &[0; 4]);
        v2[1] = 2;
        assert_eq!(parse(&[&v2]).unwrap_err(), SpdyError::UnsupportedVersion(2));
        assert_eq!(
            parse(&[&encode_control_frame(0, 0, &[])]).unwrap_err(),
            SpdyError::ZeroControlType
        );
        assert_eq!(
            parse(&[&encode_data_frame(0, 0, b"x")]).unwrap_err(),
            SpdyError::ZeroStreamId
        );
        let huge = FrameHeader::Control {
            version: 3,
            kind: 1,
            flags: 0,
            length: 0xff_ffff,
        }
        .encode();
        assert!(matches!(
            parse(&[&huge]).unwrap_err(),
            SpdyError::ControlFrameTooLarge { .. }
        ));
    }

    proptest::proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let _ = parse(&[&bytes]);
        }
    }
}
