//! RFC 6455 frame parsing for a passive tap: headers are accumulated across
//! reads (up to 14 bytes); payloads are never buffered, they are handed to a
//! visitor piece by piece, still masked, with the offset needed to unmask.

use super::WsError;

/// The largest frame payload accepted (`golang.org/x/net/websocket`'s
/// `DefaultMaxPayloadBytes`, as the API server uses).
pub const MAX_FRAME_PAYLOAD: u64 = 32 << 20;

/// The longest frame header: 2 bytes, 8 bytes of length, 4 bytes of mask.
pub const MAX_HEADER_LEN: usize = 14;

/// A frame's opcode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opcode {
    /// 0: continues the current message.
    Continuation,
    /// 1: first frame of a text message.
    Text,
    /// 2: first frame of a binary message.
    Binary,
    /// 8: close.
    Close,
    /// 9: ping.
    Ping,
    /// 10: pong.
    Pong,
}

impl Opcode {
    fn from_bits(bits: u8) -> Result<Self, WsError> {
        Ok(match bits {
            0 => Opcode::Continuation,
            1 => Opcode::Text,
            2 => Opcode::Binary,
            8 => Opcode::Close,
            9 => Opcode::Ping,
            10 => Opcode::Pong,
            other => return Err(WsError::ReservedOpcode(other)),
        })
    }

    /// Close, ping and pong.
    pub fn is_control(self) -> bool {
        matches!(self, Opcode::Close | Opcode::Ping | Opcode::Pong)
    }
}

/// A parsed frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// The FIN bit: last frame of its message.
    pub fin: bool,
    /// The opcode.
    pub opcode: Opcode,
    /// The masking key (client→server frames).
    pub mask: Option<[u8; 4]>,
    /// Payload length in bytes.
    pub payload_len: u64,
    /// Header length in bytes (2 to 14).
    pub header_len: usize,
}

impl FrameHeader {
    /// Parses a header from the start of `buf`. `Ok(None)`: not all of it is there yet.
    pub fn parse(buf: &[u8]) -> Result<Option<Self>, WsError> {
        if buf.len() < 2 {
            return Ok(None);
        }
        let b0 = buf[0];
        let b1 = buf[1];
        if b0 & 0x70 != 0 {
            return Err(WsError::ReservedBits(b0 & 0x70));
        }
        let fin = b0 & 0x80 != 0;
        let opcode = Opcode::from_bits(b0 & 0x0f)?;
        let masked = b1 & 0x80 != 0;
        let (payload_len, mut pos) = match b1 & 0x7f {
            126 => {
                if buf.len() < 4 {
                    return Ok(None);
                }
                (u64::from(u16::from_be_bytes([buf[2], buf[3]])), 4)
            }
            127 => {
                if buf.len() < 10 {
                    return Ok(None);
                }
                let mut len = [0u8; 8];
                len.copy_from_slice(&buf[2..10]);
                let len = u64::from_be_bytes(len);
                if len >> 63 != 0 {
                    return Err(WsError::LengthHighBit);
                }
                (len, 10)
            }
            len => (u64::from(len), 2),
        };
        if opcode.is_control() && (!fin || payload_len > 125) {
            return Err(WsError::BadControlFrame {
                opcode,
                fin,
                len: payload_len,
            });
        }
        if payload_len > MAX_FRAME_PAYLOAD {
            return Err(WsError::FrameTooLarge {
                len: payload_len,
                max: MAX_FRAME_PAYLOAD,
            });
        }
        let mask = if masked {
            if buf.len() < pos + 4 {
                return Ok(None);
            }
            let key = [buf[pos], buf[pos + 1], buf[pos + 2], buf[pos + 3]];
            pos += 4;
            Some(key)
        } else {
            None
        };
        Ok(Some(FrameHeader {
            fin,
            opcode,
            mask,
            payload_len,
            header_len: pos,
        }))
    }

    /// Encodes this header (used by tests and by the fail-closed error message).
    pub fn encode(&self, out: &mut Vec<u8>) {
        let op = match self.opcode {
            Opcode::Continuation => 0,
            Opcode::Text => 1,
            Opcode::Binary => 2,
            Opcode::Close => 8,
            Opcode::Ping => 9,
            Opcode::Pong => 10,
        };
        out.push(if self.fin { 0x80 } else { 0 } | op);
        let mask_bit = if self.mask.is_some() { 0x80 } else { 0 };
        if self.payload_len < 126 {
            out.push(mask_bit | self.payload_len as u8);
        } else if self.payload_len <= u64::from(u16::MAX) {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(self.payload_len as u16).to_be_bytes());
        } else {
            out.push(mask_bit | 127);
            out.extend_from_slice(&self.payload_len.to_be_bytes());
        }
        if let Some(key) = self.mask {
            out.extend_from_slice(&key);
        }
    }
}

/// Unmasks `raw` (payload bytes starting at payload `offset`) into `out`.
pub fn unmask_into(raw: &[u8], mask: Option<[u8; 4]>, offset: u64, out: &mut Vec<u8>) {
    out.clear();
    match mask {
        None => out.extend_from_slice(raw),
        Some(key) => {
            let start = (offset % 4) as usize;
            out.extend(
                raw.iter()
                    .enumerate()
                    .map(|(i, b)| b ^ key[(start + i) % 4]),
            );
        }
    }
}

/// Receives frames from a [`FrameReader`].
pub trait FrameVisitor {
    /// A frame header was read.
    fn frame_start(&mut self, header: &FrameHeader) -> Result<(), WsError>;
    /// A piece of the frame's payload, as on the wire (still masked if
    /// `header.mask` is set); `offset` is its position in the payload.
    fn payload(&mut self, header: &FrameHeader, offset: u64, raw: &[u8]) -> Result<(), WsError>;
    /// The frame's payload is complete.
    fn frame_end(&mut self, header: &FrameHeader) -> Result<(), WsError>;
}

/// Incremental frame reader: feed it bytes in any chunking.
#[derive(Debug, Default)]
pub struct FrameReader {
    header_buf: [u8; MAX_HEADER_LEN],
    header_len: usize,
    current: Option<(FrameHeader, u64)>,
}

impl FrameReader {
    /// A reader at a frame boundary.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether the bytes fed so far end exactly at a frame boundary.
    pub fn at_frame_boundary(&self) -> bool {
        self.header_len == 0 && self.current.is_none()
    }

    /// Parses `input`, reporting every frame (and frame piece) to `visitor`.
    pub fn feed<V: FrameVisitor>(
        &mut self,
        mut input: &[u8],
        visitor: &mut V,
    ) -> Result<(), WsError> {
        while !input.is_empty() {
            if let Some((header, offset)) = self.current.as_mut() {
                let remaining = header.payload_len - *offset;
                let take = usize::try_from(remaining)
                    .unwrap_or(usize::MAX)
                    .min(input.len());
                let (piece, rest) = input.split_at(take);
                input = rest;
                visitor.payload(header, *offset, piece)?;
                *offset += take as u64;
                if *offset == header.payload_len {
                    let header = *header;
                    self.current = None;
                    visitor.frame_end(&header)?;
                }
                continue;
            }
            // Accumulate just enough header bytes; never more than 14.
            let before = self.header_len;
            let take = (MAX_HEADER_LEN - before).min(input.len());
            self.header_buf[before..before + take].copy_from_slice(&input[..take]);
            let available = before + take;
            match FrameHeader::parse(&self.header_buf[..available])? {
                None => {
                    self.header_len = available;
                    input = &input[take..];
                }
                Some(header) => {
                    let used = header.header_len - before;
                    input = &input[used..];
                    self.header_len = 0;
                    visitor.frame_start(&header)?;
                    if header.payload_len == 0 {
                        visitor.frame_end(&header)?;
                    } else {
                        self.current = Some((header, 0));
                    }
                }
            }
        }
        Ok(())
    }
}

/// Builds one frame (tests, benchmarks, fail-closed messages).
pub fn encode_frame(fin: bool, opcode: Opcode, mask: Option<[u8; 4]>, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + MAX_HEADER_LEN);
    FrameHeader {
        fin,
        opcode,
        mask,
        payload_len: payload.len() as u64,
        header_len: 0,
    }
    .encode(&mut out);
    let mut body = Vec::new();
    unmask_into(payload, mask, 0, &mut body);
    out.extend_from_slice(&body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Collect {
        frames: Vec<(FrameHeader, Vec<u8>)>,
    }

    impl FrameVisitor for Collect {
        fn frame_start(&mut self, header: &FrameHeader) -> Result<(), WsError> {
            self.frames.push((*header, Vec::new()));
            Ok(())
        }
        fn payload(
            &mut self,
            header: &FrameHeader,
            offset: u64,
            raw: &[u8],
        ) -> Result<(), WsError> {
            let mut plain = Vec::new();
            unmask_into(raw, header.mask, offset, &mut plain);
            self.frames.last_mut().unwrap().1.extend_from_slice(&plain);
            Ok(())
        }
        fn frame_end(&mut self, _: &FrameHeader) -> Result<(), WsError> {
            Ok(())
        }
    }

    fn parse_all(chunks: &[&[u8]]) -> Result<Vec<(FrameHeader, Vec<u8>)>, WsError> {
        let mut r = FrameReader::new();
        let mut c = Collect::default();
        for chunk in chunks {
            r.feed(chunk, &mut c)?;
        }
        Ok(c.frames)
    }

    // Mirrors upstream Test_msg_Parse: masked/unmasked, initial/continuation/final
    // fragments, 16- and 64-bit lengths.
    #[test]
    fn parse_lengths_masks_and_fragments() {
        let key = Some([1, 2, 3, 4]);
        let cases: Vec<(Vec<u8>, bool, Opcode, usize)> = vec![
            (
                encode_frame(true, Opcode::Binary, None, &[1, b'h', b'i']),
                true,
                Opcode::Binary,
                3,
            ),
            (
                encode_frame(true, Opcode::Binary, key, &[1, b'h', b'i']),
                true,
                Opcode::Binary,
                3,
            ),
            (
                encode_frame(false, Opcode::Binary, key, &[1; 10]),
                false,
                Opcode::Binary,
                10,
            ),
            (
                encode_frame(false, Opcode::Continuation, key, &[2; 10]),
                false,
                Opcode::Continuation,
                10,
            ),
            (
                encode_frame(true, Opcode::Continuation, None, &[3; 10]),
                true,
                Opcode::Continuation,
                10,
            ),
            (
                encode_frame(true, Opcode::Binary, None, &[7; 126]),
                true,
                Opcode::Binary,
                126,
            ),
            (
                encode_frame(true, Opcode::Binary, key, &[7; 65535]),
                true,
                Opcode::Binary,
                65535,
            ),
            (
                encode_frame(true, Opcode::Binary, key, &[7; 65536]),
                true,
                Opcode::Binary,
                65536,
            ),
        ];
        for (bytes, fin, opcode, len) in cases {
            let frames = parse_all(&[&bytes]).unwrap();
            assert_eq!(frames.len(), 1);
            let (h, payload) = &frames[0];
            assert_eq!((h.fin, h.opcode, payload.len()), (fin, opcode, len));
            assert_eq!(h.header_len + len, bytes.len());
        }
        let frames = parse_all(&[&encode_frame(true, Opcode::Binary, key, b"\x01hello")]).unwrap();
        assert_eq!(frames[0].1, b"\x01hello");
    }

    #[test]
    fn header_split_at_every_point() {
        for len in [5usize, 200, 70_000] {
            let payload = vec![9u8; len];
            for mask in [None, Some([9, 8, 7, 6])] {
                let bytes = encode_frame(true, Opcode::Binary, mask, &payload);
                let whole = parse_all(&[&bytes]).unwrap();
                for i in 0..=16.min(bytes.len()) {
                    for j in i..=16.min(bytes.len()) {
                        let parts = parse_all(&[&bytes[..i], &bytes[i..j], &bytes[j..]]).unwrap();
                        assert_eq!(parts, whole, "len {len} cuts {i},{j}");
                    }
                }
            }
        }
    }

    #[test]
    fn protocol_violations_are_errors() {
        assert_eq!(
            FrameHeader::parse(&[0x83, 0]),
            Err(WsError::ReservedOpcode(3))
        );
        assert_eq!(
            FrameHeader::parse(&[0xC2, 0]),
            Err(WsError::ReservedBits(0x40))
        );
        assert!(matches!(
            FrameHeader::parse(&[0x09, 0]),
            Err(WsError::BadControlFrame { .. })
        ));
        assert!(matches!(
            FrameHeader::parse(&[0x89, 126, 0, 200]),
            Err(WsError::BadControlFrame { .. })
        ));
        let mut too_big = vec![0x82, 127];
        too_big.extend_from_slice(&(MAX_FRAME_PAYLOAD + 1).to_be_bytes());
        assert!(matches!(
            FrameHeader::parse(&too_big),
            Err(WsError::FrameTooLarge { .. })
        ));
        let mut high = vec![0x82, 127];
        high.extend_from_slice(&u64::MAX.to_be_bytes());
        assert_eq!(FrameHeader::parse(&high), Err(WsError::LengthHighBit));
    }

    proptest::proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let _ = parse_all(&[&bytes]);
        }
    }
}
