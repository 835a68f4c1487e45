//! Terminal resize messages: kubectl writes one JSON object
//! `{"Width":W,"Height":H}` per resize (Go `TerminalSize`, no JSON tags) onto
//! the resize stream/channel. The objects may arrive several per frame or
//! split across frames, so this decodes a byte stream of concatenated objects.

use event_model::TerminalSize;
use serde_json::Value;

/// Longest resize object accepted; longer ones are skipped (a real one is ~30 bytes).
pub(crate) const MAX_RESIZE_OBJECT_BYTES: usize = 4096;

/// Incremental decoder for a stream of concatenated JSON resize objects.
#[derive(Debug, Default)]
pub(crate) struct ResizeDecoder {
    buf: Vec<u8>,
    depth: u32,
    in_string: bool,
    escaped: bool,
    oversized: bool,
    invalid: u64,
}

impl ResizeDecoder {
    /// A decoder at the start of a stream.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Feeds bytes; calls `on_size` for every complete, valid resize object.
    /// Malformed objects and stray bytes are skipped and counted.
    pub(crate) fn feed(&mut self, bytes: &[u8], mut on_size: impl FnMut(TerminalSize)) {
        for &b in bytes {
            if self.depth == 0 {
                match b {
                    b'{' => {
                        self.depth = 1;
                        self.buf.clear();
                        self.buf.push(b);
                        self.oversized = false;
                    }
                    b' ' | b'\t' | b'\r' | b'\n' => {}
                    _ => self.invalid += 1,
                }
                continue;
            }
            if self.buf.len() < MAX_RESIZE_OBJECT_BYTES {
                self.buf.push(b);
            } else {
                self.oversized = true;
            }
            if self.in_string {
                if self.escaped {
                    self.escaped = false;
                } else if b == b'\\' {
                    self.escaped = true;
                } else if b == b'"' {
                    self.in_string = false;
                }
                continue;
            }
            match b {
                b'"' => self.in_string = true,
                b'{' | b'[' => self.depth = self.depth.saturating_add(1),
                b'}' | b']' => {
                    self.depth -= 1;
                    if self.depth == 0 {
                        match (!self.oversized).then(|| parse_size(&self.buf)).flatten() {
                            Some(size) => on_size(size),
                            None => self.invalid += 1,
                        }
                        self.buf.clear();
                    }
                }
                _ => {}
            }
        }
    }

    /// Objects or bytes skipped as not a valid resize message.
    #[cfg(test)]
    pub(crate) fn invalid_count(&self) -> u64 {
        self.invalid
    }
}

/// Parses one resize object, matching `width`/`height` case-insensitively as
/// Go's `encoding/json` does. A missing field is 0; a value that is not an
/// integer in `0..=65535` (Go's `uint16`) makes the object invalid.
pub(crate) fn parse_size(object: &[u8]) -> Option<TerminalSize> {
    let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(object) else {
        return None;
    };
    let mut size = TerminalSize::default();
    for (key, value) in &map {
        let target = if key.eq_ignore_ascii_case("width") {
            &mut size.width
        } else if key.eq_ignore_ascii_case("height") {
            &mut size.height
        } else {
            continue;
        };
        let n = value.as_u64().filter(|n| *n <= u64::from(u16::MAX))?;
        *target = n as u32;
    }
    Some(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(chunks: &[&[u8]]) -> Vec<TerminalSize> {
        let mut d = ResizeDecoder::new();
        let mut out = Vec::new();
        for c in chunks {
            d.feed(c, |s| out.push(s));
        }
        out
    }

    #[test]
    fn kubectl_encoding_with_newlines() {
        let sizes = decode_all(&[b"{\"Width\":80,\"Height\":24}\n{\"Width\":100,\"Height\":50}\n"]);
        assert_eq!(
            sizes,
            vec![
                TerminalSize {
                    width: 80,
                    height: 24
                },
                TerminalSize {
                    width: 100,
                    height: 50
                }
            ]
        );
    }

    #[test]
    fn case_insensitive_keys() {
        assert_eq!(
            parse_size(br#"{"width":3,"HEIGHT":4}"#),
            Some(TerminalSize {
                width: 3,
                height: 4
            })
        );
    }

    #[test]
    fn split_at_every_byte() {
        let stream = b"{\"Width\":80,\"Height\":24}{\"Width\":1,\"Height\":2,\"x\":\"}{\"}";
        let whole = decode_all(&[stream]);
        assert_eq!(whole.len(), 2);
        for i in 0..stream.len() {
            assert_eq!(
                decode_all(&[&stream[..i], &stream[i..]]),
                whole,
                "split at {i}"
            );
        }
    }

    #[test]
    fn invalid_values_are_skipped() {
        let mut d = ResizeDecoder::new();
        let mut out = Vec::new();
        d.feed(
            br#"{"Width":-1,"Height":2} junk {"Width":70000} {"Width":5,"Height":6}"#,
            |s| out.push(s),
        );
        assert_eq!(
            out,
            vec![TerminalSize {
                width: 5,
                height: 6
            }]
        );
        assert!(d.invalid_count() >= 2);
    }

    #[test]
    fn oversized_object_is_skipped_and_bounded() {
        let mut d = ResizeDecoder::new();
        let mut big = b"{\"pad\":\"".to_vec();
        big.extend(std::iter::repeat_n(b'a', 100_000));
        big.extend_from_slice(b"\"}{\"Width\":1,\"Height\":1}");
        let mut out = Vec::new();
        d.feed(&big, |s| out.push(s));
        assert_eq!(
            out,
            vec![TerminalSize {
                width: 1,
                height: 1
            }]
        );
        assert!(d.buf.capacity() <= 2 * MAX_RESIZE_OBJECT_BYTES);
    }
}
