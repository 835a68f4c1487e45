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

/// Whether any byte of the word is zero (exact for "any").
const fn has_zero(x: u64) -> bool {
    x.wrapping_sub(ONES) & !x & HIGHS != 0
}

/// Whether any of the eight bytes is non-ASCII, a control character, or one
/// of `"`, `\\`, `<`, `>`, `&` (exact for "any"; then the bytes are handled one by one).
const fn block_needs_escape(x: u64) -> bool {
    x & HIGHS != 0
        || x.wrapping_sub(ONES * 0x20) & !x & HIGHS != 0
        || has_zero(x ^ (ONES * b'"' as u64))
        || has_zero(x ^ (ONES * b'\\' as u64))
        || has_zero(x ^ (ONES * b'<' as u64))
        || has_zero(x ^ (ONES * b'>' as u64))
        || has_zero(x ^ (ONES * b'&' as u64))
}

/// Starts an output line: `[<time>,"o","`.
pub fn begin_output_line(out: &mut Vec<u8>, time: f64) {
    out.push(b'[');
    push_time(out, time);
    out.extend_from_slice(b",\"o\",\"");
}

/// Ends a line begun with [`begin_output_line`]: `"]` and a newline.
pub fn end_output_line(out: &mut Vec<u8>) {
    out.extend_from_slice(b"\"]\n");
}

/// Writes `time` exactly as `event_model::CastEvent` serialises it.
pub fn push_time(out: &mut Vec<u8>, time: f64) {
    let time = if time.is_finite() { time } else { 0.0 };
    // Writing a finite f64 into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, &time);
}

/// Appends `text` JSON-escaped the way Go's `json.Encoder` does (HTML-safe).
///
/// Safe bytes are pushed one by one rather than copied in runs: terminal
/// output is dense in escapes (`\n`, `\r`, `\t`, `"`, ESC), so runs are short
/// and a `memcpy` call per run costs more than the bytes it copies.
pub fn push_escaped(out: &mut Vec<u8>, text: &str) {
    let bytes = text.as_bytes();
    out.reserve(bytes.len() + bytes.len() / 8 + 16);
    let mut i = 0;
    while i < bytes.len() {
        // Eight plain ASCII bytes at a time when none needs escaping.
        if let Some(block) = bytes
            .get(i..i + 8)
            .and_then(|b| <&[u8; 8]>::try_from(b).ok())
        {
            if !block_needs_escape(u64::from_le_bytes(*block)) {
                out.extend_from_slice(block);
                i += 8;
                continue;
            }
        }
        let b = bytes[i];
        i += 1;
        if !NEEDS_ESCAPE[b as usize] {
            out.push(b);
            continue;
        }
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            b'<' => out.extend_from_slice(b"\\u003c"),
            b'>' => out.extend_from_slice(b"\\u003e"),
            b'&' => out.extend_from_slice(b"\\u0026"),
            0xE2 => {
                if bytes.get(i) == Some(&0x80) && matches!(bytes.get(i + 1), Some(0xA8 | 0xA9)) {
                    out.extend_from_slice(if bytes[i + 1] == 0xA8 {
                        b"\\u2028"
                    } else {
                        b"\\u2029"
                    });
                    i += 2;
                } else {
                    out.push(b);
                }
            }
            control => {
                out.extend_from_slice(b"\\u00");
                out.push(HEX[(control >> 4) as usize]);
                out.push(HEX[(control & 0xf) as usize]);
            }
        }
    }
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
                assert_eq!(
                    block_needs_escape(u64::from_le_bytes(block)),
                    table,
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
