//! Fast encoding of `o` lines, byte-identical to
//! `event_model::to_go_json(&CastEvent::output(t, text))` (tested below), but
//! streaming: text is escaped straight into the line buffer as it is decoded,
//! without building a `String` or a second JSON pass.

/// Bytes that need escaping in a Go-encoded JSON string (plus 0xE2, the lead
/// byte of U+2028/U+2029, which needs a look at what follows).
const fn escape_table() -> [bool; 256] {
    let mut table = [false; 256];
    let mut i = 0;
    while i < 0x20 {
        table[i] = true;
        i += 1;
    }
    table[b'"' as usize] = true;
    table[b'\\' as usize] = true;
    table[b'<' as usize] = true;
    table[b'>' as usize] = true;
    table[b'&' as usize] = true;
    table[0xE2] = true;
    table
}

static NEEDS_ESCAPE: [bool; 256] = escape_table();
const HEX: &[u8; 16] = b"0123456789abcdef";

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// High bit set in each byte of `x` that is zero. Only the lowest set bit
/// is exact (a borrow can flag bytes above a true zero), which is all
/// [`escape_mask`] needs.
const fn zero_bytes(x: u64) -> u64 {
    x.wrapping_sub(ONES) & !x & HIGHS
}

/// High bit set in bytes of the little-endian word `x` that may need a look:
/// non-ASCII, a control character, or one of `"`, `\\`, `<`, `>`, `&`.
/// The lowest set bit marks exactly the first such byte; zero means none.
const fn escape_mask(x: u64) -> u64 {
    (x & HIGHS)
        | (x.wrapping_sub(ONES * 0x20) & !x & HIGHS)
        | zero_bytes(x ^ (ONES * b'"' as u64))
        | zero_bytes(x ^ (ONES * b'\\' as u64))
        | zero_bytes(x ^ (ONES * b'<' as u64))
        | zero_bytes(x ^ (ONES * b'>' as u64))
        | zero_bytes(x ^ (ONES * b'&' as u64))
}

/// Index of the first byte at or after `from` that may need escaping (see
/// [`escape_mask`]), or `bytes.len()`.
fn next_candidate(bytes: &[u8], from: usize) -> usize {
    let mut i = from;
    while let Some(word) = bytes
        .get(i..i + 8)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
    {
        let mask = escape_mask(u64::from_le_bytes(word));
        if mask != 0 {
            return i + (mask.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while let Some(&b) = bytes.get(i) {
        if b >= 0x80 || NEEDS_ESCAPE[b as usize] {
            return i;
        }
        i += 1;
    }
    i
}

/// Starts an output line: `[<time>,"o","`.
pub(crate) fn begin_output_line(out: &mut Vec<u8>, time: f64) {
    out.push(b'[');
    push_time(out, time);
    out.extend_from_slice(b",\"o\",\"");
}

/// Ends a line begun with [`begin_output_line`]: `"]` and a newline.
pub(crate) fn end_output_line(out: &mut Vec<u8>) {
    out.extend_from_slice(b"\"]\n");
}

/// Writes `time` exactly as `event_model::CastEvent` serialises it.
pub(crate) fn push_time(out: &mut Vec<u8>, time: f64) {
    let time = if time.is_finite() { time } else { 0.0 };
    // Writing a finite f64 into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, &time);
}

/// Appends `text` JSON-escaped the way Go's `json.Encoder` does (HTML-safe).
///
/// Finds the next byte that may need escaping eight bytes at a time and
/// copies the safe run before it in one piece; non-ASCII bytes other than
/// the lead byte of U+2028/U+2029 stay in the run.
pub(crate) fn push_escaped(out: &mut Vec<u8>, text: &str) {
    let bytes = text.as_bytes();
    out.reserve(bytes.len() + bytes.len() / 8 + 16);
    let mut run = 0;
    let mut i = next_candidate(bytes, 0);
    while let Some(&b) = bytes.get(i) {
        let escape: Option<&[u8]> = match b {
            b'"' => Some(b"\\\""),
            b'\\' => Some(b"\\\\"),
            b'\n' => Some(b"\\n"),
            b'\r' => Some(b"\\r"),
            b'\t' => Some(b"\\t"),
            0x08 => Some(b"\\b"),
            0x0c => Some(b"\\f"),
            b'<' => Some(b"\\u003c"),
            b'>' => Some(b"\\u003e"),
            b'&' => Some(b"\\u0026"),
            0xE2 if bytes.get(i + 1) == Some(&0x80) => match bytes.get(i + 2) {
                Some(0xA8) => Some(b"\\u2028"),
                Some(0xA9) => Some(b"\\u2029"),
                _ => None,
            },
            0x00..=0x1f => {
                out.extend_from_slice(&bytes[run..i]);
                out.extend_from_slice(b"\\u00");
                out.push(HEX[(b >> 4) as usize]);
                out.push(HEX[(b & 0xf) as usize]);
                run = i + 1;
                i = next_candidate(bytes, run);
                continue;
            }
            _ => None,
        };
        match escape {
            Some(escaped) => {
                out.extend_from_slice(&bytes[run..i]);
                out.extend_from_slice(escaped);
                // U+2028/U+2029 are three bytes; everything else escaped is one.
                i += if b == 0xE2 { 3 } else { 1 };
                run = i;
            }
            // Non-ASCII that stays as it is: part of the run.
            None => i += 1,
        }
        i = next_candidate(bytes, i);
    }
    out.extend_from_slice(&bytes[run..]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use event_model::{to_go_json, CastEvent};

    fn fast(time: f64, text: &str) -> Vec<u8> {
        let mut out = Vec::new();
        begin_output_line(&mut out, time);
        push_escaped(&mut out, text);
        end_output_line(&mut out);
        out
    }

    #[test]
    fn matches_event_model_on_tricky_text() {
        for text in [
            "",
            "plain",
            "a\"b\\c\n\r\t\x08\x0c\x01\x1f\x7f",
            "<&>",
            "\u{2028}\u{2029}\u{2027}",
            "é€𝄞\u{FFFD}",
        ] {
            for time in [0.0, 0.000_000_1, 1.5, 12_345.678_9, f64::NAN] {
                assert_eq!(
                    fast(time, text),
                    to_go_json(&CastEvent::output(time, text)).unwrap()
                );
            }
        }
    }

    #[test]
    fn block_check_agrees_with_table_for_every_byte_at_every_position() {
        for b in 0..=255u8 {
            for pos in 0..8 {
                let mut block = [b'a'; 8];
                block[pos] = b;
                let table = NEEDS_ESCAPE[b as usize] || b >= 0x80;
                let mask = escape_mask(u64::from_le_bytes(block));
                assert_eq!(mask != 0, table, "byte {b:#x} at {pos}");
                if table {
                    assert_eq!(
                        mask.trailing_zeros() / 8,
                        pos as u32,
                        "byte {b:#x} at {pos}"
                    );
                }
                assert_eq!(
                    next_candidate(&block, 0),
                    if table { pos } else { 8 },
                    "byte {b:#x} at {pos}"
                );
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn matches_event_model(text in "\\PC*|[\\x00-\\x7f\u{2028}\u{2029}<>&\"\\\\]*", time in 0.0f64..1e7) {
            proptest::prop_assert_eq!(fast(time, &text), to_go_json(&CastEvent::output(time, text.clone())).unwrap());
        }
    }
}
