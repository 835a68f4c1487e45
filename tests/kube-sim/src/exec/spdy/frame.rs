//! SPDY/3.1 frames: parsing client input (hostile: every length is checked) and
//! serialising server frames.

use bytes::{BufMut, Bytes, BytesMut};

/// SPDY version spoken.
pub const VERSION: u16 = 3;
/// FLAG_FIN on data and stream frames.
pub const FLAG_FIN: u8 = 0x01;
/// Largest frame payload accepted from a client.
pub const MAX_FRAME: usize = 1024 * 1024;

/// Control frame types.
pub mod kind {
    /// SYN_STREAM
    pub const SYN_STREAM: u16 = 1;
    /// SYN_REPLY
    pub const SYN_REPLY: u16 = 2;
    /// RST_STREAM
    pub const RST_STREAM: u16 = 3;
    /// SETTINGS
    pub const SETTINGS: u16 = 4;
    /// PING
    pub const PING: u16 = 6;
    /// GOAWAY
    pub const GOAWAY: u16 = 7;
    /// HEADERS
    pub const HEADERS: u16 = 8;
    /// WINDOW_UPDATE
    pub const WINDOW_UPDATE: u16 = 9;
}

/// One SPDY frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// DATA
    Data {
        /// Stream.
        stream_id: u32,
        /// Flags (FIN).
        flags: u8,
        /// Payload.
        data: Bytes,
    },
    /// SYN_STREAM
    SynStream {
        /// New stream.
        stream_id: u32,
        /// Associated stream.
        associated_id: u32,
        /// Priority (0–7).
        priority: u8,
        /// Flags (FIN, UNIDIRECTIONAL).
        flags: u8,
        /// Compressed header block.
        header_block: Bytes,
    },
    /// SYN_REPLY
    SynReply {
        /// Stream.
        stream_id: u32,
        /// Flags.
        flags: u8,
        /// Compressed header block.
        header_block: Bytes,
    },
    /// RST_STREAM
    RstStream {
        /// Stream.
        stream_id: u32,
        /// Status code.
        status: u32,
    },
    /// SETTINGS (entries are not interpreted).
    Settings {
        /// Raw payload.
        payload: Bytes,
    },
    /// PING
    Ping {
        /// Ping id.
        id: u32,
    },
    /// GOAWAY
    GoAway {
        /// Last stream the sender accepted.
        last_stream_id: u32,
        /// Status code.
        status: u32,
    },
    /// HEADERS
    Headers {
        /// Stream.
        stream_id: u32,
        /// Flags.
        flags: u8,
        /// Compressed header block.
        header_block: Bytes,
    },
    /// WINDOW_UPDATE
    WindowUpdate {
        /// Stream.
        stream_id: u32,
        /// Window increase.
        delta: u32,
    },
    /// A control frame of a type this server does not use (skipped).
    Unknown {
        /// Frame type.
        kind: u16,
    },
}

/// Frame parse errors; each ends the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Not SPDY/3.
    #[error("unsupported SPDY version {0} (this server speaks SPDY/3.1)")]
    Version(u16),
    /// Frame larger than [`MAX_FRAME`].
    #[error("SPDY frame of {0} bytes exceeds the {MAX_FRAME} byte limit")]
    TooLarge(usize),
    /// A frame shorter than its type requires.
    #[error("SPDY {0} frame is too short")]
    Short(&'static str),
    /// Data frame on stream 0.
    #[error("SPDY data frame on stream 0")]
    StreamZero,
}

fn be32(data: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]])
}

/// Parses one frame from the front of `buf`: `Ok(None)` when more bytes are needed,
/// else the frame and how many bytes it used.
pub fn parse(buf: &[u8]) -> Result<Option<(Frame, usize)>, FrameError> {
    if buf.len() < 8 {
        return Ok(None);
    }
    let flags = buf[4];
    let length = (usize::from(buf[5]) << 16) | (usize::from(buf[6]) << 8) | usize::from(buf[7]);
    if length > MAX_FRAME {
        return Err(FrameError::TooLarge(length));
    }
    if buf.len() < 8 + length {
        return Ok(None);
    }
    let payload = &buf[8..8 + length];
    let total = 8 + length;
    if buf[0] & 0x80 == 0 {
        let stream_id = be32(buf, 0) & 0x7fff_ffff;
        if stream_id == 0 {
            return Err(FrameError::StreamZero);
        }
        return Ok(Some((
            Frame::Data {
                stream_id,
                flags,
                data: Bytes::copy_from_slice(payload),
            },
            total,
        )));
    }
    let version = u16::from_be_bytes([buf[0], buf[1]]) & 0x7fff;
    if version != VERSION {
        return Err(FrameError::Version(version));
    }
    let frame_kind = u16::from_be_bytes([buf[2], buf[3]]);
    let need = |n: usize, name: &'static str| {
        if payload.len() < n {
            Err(FrameError::Short(name))
        } else {
            Ok(())
        }
    };
    let frame = match frame_kind {
        kind::SYN_STREAM => {
            need(10, "SYN_STREAM")?;
            Frame::SynStream {
                stream_id: be32(payload, 0) & 0x7fff_ffff,
                associated_id: be32(payload, 4) & 0x7fff_ffff,
                priority: payload[8] >> 5,
                flags,
                header_block: Bytes::copy_from_slice(&payload[10..]),
            }
        }
        kind::SYN_REPLY => {
            need(4, "SYN_REPLY")?;
            Frame::SynReply {
                stream_id: be32(payload, 0) & 0x7fff_ffff,
                flags,
                header_block: Bytes::copy_from_slice(&payload[4..]),
            }
        }
        kind::RST_STREAM => {
            need(8, "RST_STREAM")?;
            Frame::RstStream {
                stream_id: be32(payload, 0) & 0x7fff_ffff,
                status: be32(payload, 4),
            }
        }
        kind::SETTINGS => Frame::Settings {
            payload: Bytes::copy_from_slice(payload),
        },
        kind::PING => {
            need(4, "PING")?;
            Frame::Ping {
                id: be32(payload, 0),
            }
        }
        kind::GOAWAY => {
            need(8, "GOAWAY")?;
            Frame::GoAway {
                last_stream_id: be32(payload, 0) & 0x7fff_ffff,
                status: be32(payload, 4),
            }
        }
        kind::HEADERS => {
            need(4, "HEADERS")?;
            Frame::Headers {
                stream_id: be32(payload, 0) & 0x7fff_ffff,
                flags,
                header_block: Bytes::copy_from_slice(&payload[4..]),
            }
        }
        kind::WINDOW_UPDATE => {
            need(8, "WINDOW_UPDATE")?;
            Frame::WindowUpdate {
                stream_id: be32(payload, 0) & 0x7fff_ffff,
                delta: be32(payload, 4) & 0x7fff_ffff,
            }
        }
        other => Frame::Unknown { kind: other },
    };
    Ok(Some((frame, total)))
}

fn control(out: &mut BytesMut, frame_kind: u16, flags: u8, payload: &[u8]) {
    out.put_u16(0x8000 | VERSION);
    out.put_u16(frame_kind);
    out.put_u8(flags);
    out.put_uint(payload.len() as u64, 3);
    out.put_slice(payload);
}

/// Serialises a frame (header blocks must already be compressed).
pub fn serialize(frame: &Frame) -> Bytes {
    let mut out = BytesMut::new();
    match frame {
        Frame::Data {
            stream_id,
            flags,
            data,
        } => {
            out.put_u32(stream_id & 0x7fff_ffff);
            out.put_u8(*flags);
            out.put_uint(data.len() as u64, 3);
            out.put_slice(data);
        }
        Frame::SynStream {
            stream_id,
            associated_id,
            priority,
            flags,
            header_block,
        } => {
            let mut payload = BytesMut::new();
            payload.put_u32(*stream_id);
            payload.put_u32(*associated_id);
            payload.put_u8(priority << 5);
            payload.put_u8(0);
            payload.put_slice(header_block);
            control(&mut out, kind::SYN_STREAM, *flags, &payload);
        }
        Frame::SynReply {
            stream_id,
            flags,
            header_block,
        } => {
            let mut payload = BytesMut::new();
            payload.put_u32(*stream_id);
            payload.put_slice(header_block);
            control(&mut out, kind::SYN_REPLY, *flags, &payload);
        }
        Frame::RstStream { stream_id, status } => control(
            &mut out,
            kind::RST_STREAM,
            0,
            &[stream_id.to_be_bytes(), status.to_be_bytes()].concat(),
        ),
        Frame::Settings { payload } => control(&mut out, kind::SETTINGS, 0, payload),
        Frame::Ping { id } => control(&mut out, kind::PING, 0, &id.to_be_bytes()),
        Frame::GoAway {
            last_stream_id,
            status,
        } => control(
            &mut out,
            kind::GOAWAY,
            0,
            &[last_stream_id.to_be_bytes(), status.to_be_bytes()].concat(),
        ),
        Frame::Headers {
            stream_id,
            flags,
            header_block,
        } => {
            let mut payload = BytesMut::new();
            payload.put_u32(*stream_id);
            payload.put_slice(header_block);
            control(&mut out, kind::HEADERS, *flags, &payload);
        }
        Frame::WindowUpdate { stream_id, delta } => control(
            &mut out,
            kind::WINDOW_UPDATE,
            0,
            &[stream_id.to_be_bytes(), delta.to_be_bytes()].concat(),
        ),
        Frame::Unknown { kind } => control(&mut out, *kind, 0, &[]),
    }
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let frames = [
            Frame::Data {
                stream_id: 5,
                flags: FLAG_FIN,
                data: Bytes::from_static(b"hello"),
            },
            Frame::SynStream {
                stream_id: 1,
                associated_id: 0,
                priority: 3,
                flags: 0,
                header_block: Bytes::from_static(b"\x78\x01"),
            },
            Frame::SynReply {
                stream_id: 1,
                flags: 0,
                header_block: Bytes::new(),
            },
            Frame::RstStream {
                stream_id: 3,
                status: 5,
            },
            Frame::Ping { id: 7 },
            Frame::GoAway {
                last_stream_id: 9,
                status: 0,
            },
            Frame::WindowUpdate {
                stream_id: 1,
                delta: 65536,
            },
        ];
        for frame in frames {
            let bytes = serialize(&frame);
            assert_eq!(parse(&bytes).unwrap(), Some((frame, bytes.len())));
        }
    }

    #[test]
    fn partial_and_bad_input() {
        let ping = serialize(&Frame::Ping { id: 1 });
        assert_eq!(parse(&ping[..7]).unwrap(), None);
        assert_eq!(parse(&ping[..11]).unwrap(), None);
        assert_eq!(
            parse(&[0x80, 0x02, 0, 6, 0, 0, 0, 4, 0, 0, 0, 1]).unwrap_err(),
            FrameError::Version(2)
        );
        assert_eq!(
            parse(&[0, 0, 0, 0, 0, 0, 0, 0]).unwrap_err(),
            FrameError::StreamZero
        );
        assert_eq!(
            parse(&[0x80, 3, 0, 6, 0, 0, 0, 2, 0, 0]).unwrap_err(),
            FrameError::Short("PING")
        );
        assert!(matches!(
            parse(&[0x80, 3, 0, 1, 0, 0xff, 0xff, 0xff]).unwrap_err(),
            FrameError::TooLarge(_)
        ));
    }

    #[test]
    fn data_frames_use_all_31_stream_bits() {
        let bytes = serialize(&Frame::Data {
            stream_id: 0x0123_4567,
            flags: 0,
            data: Bytes::new(),
        });
        assert!(matches!(
            parse(&bytes).unwrap(),
            Some((
                Frame::Data {
                    stream_id: 0x0123_4567,
                    ..
                },
                8
            ))
        ));
    }
}
