//! JSON bytes exactly as Go's `json.Encoder` writes them.

use serde::Serialize;

/// Serialises `value` compactly, with Go's HTML escaping (`<`, `>`, `&`,
/// U+2028 and U+2029 as `\u` escapes) and a trailing newline, as Go's
/// `json.Encoder.Encode` does. Struct fields keep their declared order.
///
/// ```
/// let bytes = event_model::to_go_json(&serde_json::json!({"q": "a&b<c>"}))?;
/// assert_eq!(bytes, b"{\"q\":\"a\\u0026b\\u003cc\\u003e\"}\n");
/// # Ok::<(), serde_json::Error>(())
/// ```
pub fn to_go_json<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, serde_json::Error> {
    let plain = serde_json::to_vec(value)?;
    let mut out = go_escape_html(&plain);
    out.push(b'\n');
    Ok(out)
}

/// Rewrites compact JSON with Go's HTML escaping. The characters it escapes
/// never appear outside strings in valid JSON, so a byte-level rewrite is
/// exact.
pub fn go_escape_html(json: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(json.len() + 16);
    let mut i = 0;
    while i < json.len() {
        match json[i] {
            b'<' => out.extend_from_slice(b"\\u003c"),
            b'>' => out.extend_from_slice(b"\\u003e"),
            b'&' => out.extend_from_slice(b"\\u0026"),
            // U+2028 and U+2029 are E2 80 A8 / E2 80 A9 in UTF-8.
            0xE2 if json.get(i + 1) == Some(&0x80)
                && matches!(json.get(i + 2), Some(0xA8) | Some(0xA9)) =>
            {
                out.extend_from_slice(if json[i + 2] == 0xA8 {
                    b"\\u2028"
                } else {
                    b"\\u2029"
                });
                i += 2;
            }
            other => out.push(other),
        }
        i += 1;
    }
    out
}
