//! Decoder for the recorder's ack stream on `POST /v2/record`: a sequence of
//! JSON objects (`{"ack":N}`, `{}` meaning 0, and a final `{"error":"…"}`),
//! newline-separated in practice but accepted with any whitespace or none,
//! and split across reads anywhere.
//!
//! The decoder is a small state machine that finds object boundaries
//! (tracking strings and escapes) before handing one complete object to
//! `serde_json`. It holds at most [`AckDecoder::max_frame`] bytes: a longer
//! frame, or anything that is not an object, is an error — a hostile
//! recorder costs bounded memory.

use serde::Deserialize;

use crate::cause::Cause;

/// Default bound on one frame (4 KiB; a real ack frame is ~20 bytes).
pub(crate) const DEFAULT_MAX_FRAME: usize = 4096;

/// One decoded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AckFrame {
    /// The recorder has received this many body bytes so far.
    Ack(u64),
    /// The recorder failed; this is the last frame.
    Error(String),
}

/// The ack stream is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AckDecodeError {
    /// A byte outside any object that is not whitespace.
    #[error("unexpected byte 0x{0:02x} between ack frames")]
    Garbage(u8),
    /// A frame exceeded the size bound.
    #[error("ack frame longer than {0} bytes")]
    TooLong(usize),
    /// An object that is not a valid ack frame.
    #[error("invalid ack frame: {0}")]
    Invalid(#[source] Cause),
    /// The stream ended inside a frame.
    #[error("ack stream ended inside a frame")]
    UnexpectedEof,
    /// Bytes after the final error frame, or use after an error.
    #[error("ack stream continued after its final frame")]
    AfterEnd,
}

#[derive(Deserialize)]
struct RawFrame {
    #[serde(default)]
    ack: Option<i64>,
    #[serde(default)]
    error: Option<String>,
}

/// Incremental ack-frame decoder. Feed it bytes as they arrive.
#[derive(Debug, Clone)]
pub struct AckDecoder {
    buf: Vec<u8>,
    depth: u32,
    in_string: bool,
    escape: bool,
    done: bool,
    max_frame: usize,
}

impl Default for AckDecoder {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_FRAME)
    }
}

impl AckDecoder {
    /// A decoder that rejects frames longer than `max_frame` bytes.
    pub fn new(max_frame: usize) -> Self {
        Self {
            buf: Vec::new(),
            depth: 0,
            in_string: false,
            escape: false,
            done: false,
            max_frame: max_frame.max(2),
        }
    }

    /// The frame size bound.
    pub fn max_frame(&self) -> usize {
        self.max_frame
    }

    /// Feeds bytes; returns the frames they complete, in order. After an
    /// error frame or a decode error, any further non-whitespace input is an
    /// error.
    pub fn push(&mut self, data: &[u8]) -> Result<Vec<AckFrame>, AckDecodeError> {
        let mut frames = Vec::new();
        for &b in data {
            if self.depth == 0 {
                if b.is_ascii_whitespace() {
                    continue;
                }
                if self.done {
                    return Err(AckDecodeError::AfterEnd);
                }
                if b != b'{' {
                    self.done = true;
                    return Err(AckDecodeError::Garbage(b));
                }
                self.depth = 1;
                self.buf.clear();
                self.buf.push(b);
                continue;
            }
            if self.buf.len() >= self.max_frame {
                self.done = true;
                return Err(AckDecodeError::TooLong(self.max_frame));
            }
            self.buf.push(b);
            if self.in_string {
                if self.escape {
                    self.escape = false;
                } else if b == b'\\' {
                    self.escape = true;
                } else if b == b'"' {
                    self.in_string = false;
                }
                continue;
            }
            match b {
                b'"' => self.in_string = true,
                b'{' | b'[' => self.depth += 1,
                b'}' | b']' => {
                    self.depth -= 1;
                    if self.depth == 0 {
                        let frame = self.finish_frame()?;
                        if matches!(frame, AckFrame::Error(_)) {
                            self.done = true;
                        }
                        frames.push(frame);
                    }
                }
                _ => {}
            }
        }
        Ok(frames)
    }

    /// Call at end of stream: an error if it ended inside a frame.
    pub fn finish(&self) -> Result<(), AckDecodeError> {
        if self.depth > 0 {
            Err(AckDecodeError::UnexpectedEof)
        } else {
            Ok(())
        }
    }

    fn finish_frame(&mut self) -> Result<AckFrame, AckDecodeError> {
        let raw: RawFrame = serde_json::from_slice(&self.buf).map_err(|e| {
            self.done = true;
            AckDecodeError::Invalid(Cause::new(e))
        })?;
        self.buf.clear();
        // Go's decoder treats an empty error string as absent.
        if let Some(error) = raw.error.filter(|e| !e.is_empty()) {
            return Ok(AckFrame::Error(error));
        }
        let ack = raw.ack.unwrap_or(0);
        u64::try_from(ack).map(AckFrame::Ack).map_err(|_| {
            self.done = true;
            AckDecodeError::Invalid(Cause::msg(format!("negative ack {ack}")))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn decodes_upstream_frames() {
        let mut d = AckDecoder::default();
        let frames = d
            .push(b"{}\n{\"ack\":10}\n{\"ack\":20,\"extra\":[1,{\"x\":\"}\"}]}{\"error\":\"disk full\"}\n")
            .unwrap();
        assert_eq!(
            frames,
            vec![
                AckFrame::Ack(0),
                AckFrame::Ack(10),
                AckFrame::Ack(20),
                AckFrame::Error("disk full".into())
            ]
        );
        assert_eq!(d.push(b"\n"), Ok(vec![]));
        assert_eq!(d.push(b"{}"), Err(AckDecodeError::AfterEnd));
    }

    #[test]
    fn rejects_garbage_and_bounds_memory() {
        assert_eq!(
            AckDecoder::default().push(b"[1]"),
            Err(AckDecodeError::Garbage(b'['))
        );
        assert!(matches!(
            AckDecoder::default().push(b"{\"ack\":-1}"),
            Err(AckDecodeError::Invalid(_))
        ));
        assert!(matches!(
            AckDecoder::default().push(b"{\"ack\":1.5}"),
            Err(AckDecodeError::Invalid(_))
        ));
        let mut d = AckDecoder::new(64);
        let long = format!("{{\"ack\":1,\"pad\":\"{}\"}}", "x".repeat(100));
        assert_eq!(d.push(long.as_bytes()), Err(AckDecodeError::TooLong(64)));
        let mut d = AckDecoder::default();
        assert_eq!(d.push(b"{\"ack\":"), Ok(vec![]));
        assert_eq!(d.finish(), Err(AckDecodeError::UnexpectedEof));
    }

    fn arb_frame() -> impl Strategy<Value = AckFrame> {
        prop_oneof![
            (0u64..=i64::MAX as u64).prop_map(AckFrame::Ack),
            "[ -~]{1,40}".prop_map(AckFrame::Error),
        ]
    }

    fn encode(f: &AckFrame, zero_as_empty: bool) -> String {
        match f {
            AckFrame::Ack(0) if zero_as_empty => "{}".into(),
            AckFrame::Ack(n) => format!("{{\"ack\":{n}}}"),
            AckFrame::Error(e) => serde_json::json!({ "error": e }).to_string(),
        }
    }

    proptest! {
        /// Any sequence of acks (and a final error), with any whitespace,
        /// split into reads anywhere, decodes to exactly that sequence.
        #[test]
        fn split_anywhere(
            acks in proptest::collection::vec(0u64..1_000_000, 0..20),
            last in proptest::option::of(arb_frame()),
            seps in proptest::collection::vec(prop_oneof![Just(""), Just("\n"), Just(" \r\n\t")], 21),
            cuts in proptest::collection::vec(any::<proptest::sample::Index>(), 0..8),
            zero_as_empty in any::<bool>(),
        ) {
            let mut frames: Vec<AckFrame> = acks.into_iter().map(AckFrame::Ack).collect();
            frames.extend(last);
            let mut wire = String::new();
            for (i, f) in frames.iter().enumerate() {
                wire.push_str(&encode(f, zero_as_empty));
                wire.push_str(seps[i]);
            }
            let bytes = wire.as_bytes();
            let mut points: Vec<usize> = cuts.iter().map(|c| c.index(bytes.len() + 1)).collect();
            points.push(0);
            points.push(bytes.len());
            points.sort_unstable();
            let mut d = AckDecoder::default();
            let mut got = Vec::new();
            for w in points.windows(2) {
                got.extend(d.push(&bytes[w[0]..w[1]]).unwrap());
            }
            prop_assert_eq!(d.finish(), Ok(()));
            prop_assert_eq!(got, frames);
        }

        /// Arbitrary bytes never panic, and the buffer never exceeds the bound.
        #[test]
        fn arbitrary_bytes_are_bounded(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 0..10)) {
            let mut d = AckDecoder::new(128);
            for c in &chunks {
                if d.push(c).is_err() {
                    break;
                }
                prop_assert!(d.buf.len() <= 128);
            }
        }
    }
}
