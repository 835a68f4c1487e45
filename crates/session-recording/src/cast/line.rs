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
pub fn push_escaped(out: &mut Vec<u8>, text: &str) {
    let bytes = text.as_bytes();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if !NEEDS_ESCAPE[b as usize] {
            i += 1;
            continue;
        }
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            b'<' => b"\\u003c",
            b'>' => b"\\u003e",
            b'&' => b"\\u0026",
            0xE2 => {
                if bytes.get(i + 1) == Some(&0x80) && matches!(bytes.get(i + 2), Some(0xA8 | 0xA9))
                {
                    out.extend_from_slice(&bytes[start..i]);
                    out.extend_from_slice(if bytes[i + 2] == 0xA8 {
                        b"\\u2028"
                    } else {
                        b"\\u2029"
                    });
                    i += 3;
                    start = i;
                } else {
                    i += 1;
                }
                continue;
            }
            control => {
                out.extend_from_slice(&bytes[start..i]);
                out.extend_from_slice(b"\\u00");
                out.push(HEX[(control >> 4) as usize]);
                out.push(HEX[(control & 0xf) as usize]);
                i += 1;
                start = i;
                continue;
            }
        };
        out.extend_from_slice(&bytes[start..i]);
        out.extend_from_slice(escape);
        i += 1;
        start = i;
    }
    out.extend_from_slice(&bytes[start..]);
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

    proptest::proptest! {
        #[test]
        fn matches_event_model(text in "\\PC*|[\\x00-\\x7f\u{2028}\u{2029}<>&\"\\\\]*", time in 0.0f64..1e7) {
            proptest::prop_assert_eq!(fast(time, &text), to_go_json(&CastEvent::output(time, text.clone())).unwrap());
        }
    }
}
