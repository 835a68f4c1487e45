//! Does a request body name an object of kind `Secret`? The defence in depth
//! behind the resource rule: a Secret sent to any other resource (a
//! mistake, or a `List` of manifests) is still redacted.
//!
//! The sniffer reads the body once, in time linear in its length and with
//! memory bounded by a few small buffers, and never fails: anything it
//! cannot read is "no Secret" unless the body was cut short by the capture
//! limit before the object's `kind` was seen, which counts as a Secret
//! (the part recorded might be its `data`). It recognises:
//!
//! * **protobuf**: kube-apiserver's envelope (`k8s\0`, then a
//!   `runtime.Unknown` whose field 1 is the `TypeMeta`, whose field 2 is the
//!   `kind`), and anywhere in the body a `TypeMeta` kind field holding
//!   `Secret` (the items of a protobuf `List`);
//! * **CBOR**: the text strings `kind` then `Secret` anywhere in the body;
//! * **JSON** (and YAML flow style): the `kind` of the top-level object, or
//!   of an object in the top-level `items` array, with string escapes
//!   decoded and keys and values compared ignoring ASCII case;
//! * **YAML** block style: any `kind: Secret` line (any indentation, quoted
//!   or not, with a `!!str` tag or not), and, for a whole body, the
//!   top-level or `items[]` `kind` of every document as `serde_yaml_ng`
//!   reads it.

use memchr::memmem;

/// The protobuf envelope's magic prefix (k8s.io/apimachinery
/// `runtime/serializer/protobuf`).
const PROTOBUF_MAGIC: &[u8] = b"k8s\x00";
/// A `TypeMeta` `kind` field (field 2, length-delimited) holding `Secret`.
const PROTOBUF_KIND_SECRET: &[u8] = b"\x12\x06Secret";
/// CBOR: the text string `kind` followed by the text string `Secret`.
const CBOR_KIND_SECRET: &[u8] = b"\x64kind\x66Secret";
/// YAML documents read structurally at most (a body may hold many).
const MAX_YAML_DOCUMENTS: usize = 64;

/// Whether `body` names (or, cut short at the capture limit when
/// `truncated`, may name) an object of kind `Secret`.
pub fn names_secret(body: &[u8], truncated: bool) -> bool {
    if body.starts_with(PROTOBUF_MAGIC) {
        return protobuf_kind(&body[PROTOBUF_MAGIC.len()..]) == Some(b"Secret".as_slice())
            || memmem::find(body, PROTOBUF_KIND_SECRET).is_some();
    }
    if memmem::find(body, CBOR_KIND_SECRET).is_some() {
        return true;
    }
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        None => false,
        Some(b'{' | b'[') => json_names_secret(body, truncated),
        Some(_) => yaml_names_secret(body, truncated),
    }
}

// ---------------------------------------------------------------------------
// protobuf

/// Reads a base-128 varint at `*at`, advancing it.
fn varint(buf: &[u8], at: &mut usize) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *buf.get(*at)?;
        *at += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

/// The length-delimited field `field` of the message `buf` (the first one),
/// skipping other fields; `None` when absent or malformed.
fn field(buf: &[u8], wanted: u64) -> Option<&[u8]> {
    let mut at = 0;
    while at < buf.len() {
        let key = varint(buf, &mut at)?;
        let (number, wire) = (key >> 3, key & 7);
        match wire {
            0 => {
                varint(buf, &mut at)?;
            }
            1 => at = at.checked_add(8)?,
            2 => {
                let len = usize::try_from(varint(buf, &mut at)?).ok()?;
                let end = at.checked_add(len)?;
                let bytes = buf.get(at..end)?;
                if number == wanted {
                    return Some(bytes);
                }
                at = end;
            }
            5 => at = at.checked_add(4)?,
            _ => return None,
        }
    }
    None
}

/// The `kind` of the envelope's `TypeMeta` (`Unknown` field 1, then
/// `TypeMeta` field 2).
fn protobuf_kind(unknown: &[u8]) -> Option<&[u8]> {
    field(field(unknown, 1)?, 2)
}

// ---------------------------------------------------------------------------
// JSON and YAML flow style

/// Where an open container sits, as far as `kind` matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// The top-level object: its `kind` counts.
    Top,
    /// The top-level object's `items` array.
    Items,
    /// An object in `items`: its `kind` counts.
    Item,
    /// Anything else.
    Other,
}

/// One open container.
#[derive(Debug, Clone, Copy)]
struct Frame {
    role: Role,
    object: bool,
    /// Object: the next string is a key (else a value).
    want_key: bool,
    /// Object: the current key is `kind` / `items`.
    key_kind: bool,
    key_items: bool,
    /// Object with a role that counts: a `kind` was seen.
    kind_seen: bool,
}

impl Frame {
    fn new(role: Role, object: bool) -> Self {
        Frame {
            role,
            object,
            want_key: object,
            key_kind: false,
            key_items: false,
            kind_seen: false,
        }
    }

    fn counts(&self) -> bool {
        matches!(self.role, Role::Top | Role::Item)
    }
}

/// A short decoded string: equal to `kind`, `items` or `secret` or not.
struct Short {
    buf: [u8; 8],
    len: usize,
    long: bool,
}

impl Short {
    fn new() -> Self {
        Short {
            buf: [0; 8],
            len: 0,
            long: false,
        }
    }

    fn push(&mut self, c: u32) {
        match u8::try_from(c) {
            Ok(b) if b.is_ascii() && self.len < self.buf.len() => {
                self.buf[self.len] = b;
                self.len += 1;
            }
            _ => self.long = true,
        }
    }

    fn is(&self, word: &str) -> bool {
        !self.long && self.buf[..self.len].eq_ignore_ascii_case(word.as_bytes())
    }
}

/// Reads a quoted string starting after its opening `quote` at `*at`
/// (JSON escapes for `"`, YAML's doubled quote for `'`), advancing past
/// its end. `None`: the body ended inside it.
fn quoted(body: &[u8], at: &mut usize, quote: u8) -> Option<Short> {
    let mut s = Short::new();
    while let Some(&b) = body.get(*at) {
        *at += 1;
        if b == quote {
            if quote == b'\'' && body.get(*at) == Some(&b'\'') {
                *at += 1;
                s.push(u32::from(b'\''));
                continue;
            }
            return Some(s);
        }
        if b == b'\\' && quote == b'"' {
            let e = *body.get(*at)?;
            *at += 1;
            let c = match e {
                b'u' => {
                    let hex = body.get(*at..*at + 4)?;
                    *at += 4;
                    std::str::from_utf8(hex)
                        .ok()
                        .and_then(|h| u32::from_str_radix(h, 16).ok())
                        .unwrap_or(0xFFFF)
                }
                b'n' => u32::from(b'\n'),
                b't' => u32::from(b'\t'),
                b'r' => u32::from(b'\r'),
                b'b' => 8,
                b'f' => 12,
                other => u32::from(other),
            };
            s.push(c);
            continue;
        }
        s.push(u32::from(b));
    }
    None
}

/// Whether a byte ends a bare (unquoted) token.
fn ends_bare(b: u8) -> bool {
    b.is_ascii_whitespace() || matches!(b, b',' | b':' | b'{' | b'}' | b'[' | b']' | b'"')
}

/// The JSON (or YAML flow) scan: a top-level or `items[]` `kind` equal to
/// `Secret`, or, cut short, an object whose `kind` was not yet seen.
fn json_names_secret(body: &[u8], truncated: bool) -> bool {
    // Only the first three levels matter; deeper ones are counted.
    let mut frames: Vec<Frame> = Vec::with_capacity(4);
    let mut deeper = 0usize;
    let mut at = 0;
    while let Some(&b) = body.get(at) {
        match b {
            b'{' | b'[' => {
                at += 1;
                let object = b == b'{';
                if deeper > 0 || frames.len() >= 3 {
                    deeper += 1;
                    continue;
                }
                let role = match frames.last() {
                    None if object => Role::Top,
                    Some(f) if f.role == Role::Top && f.key_items && !object => Role::Items,
                    Some(f) if f.role == Role::Items && object => Role::Item,
                    _ => Role::Other,
                };
                frames.push(Frame::new(role, object));
            }
            b'}' | b']' => {
                at += 1;
                if deeper > 0 {
                    deeper -= 1;
                } else {
                    frames.pop();
                    if frames.is_empty() {
                        // Only the first top-level value is decoded.
                        return false;
                    }
                    value_done(&mut frames);
                }
            }
            b',' => {
                at += 1;
                if deeper == 0 {
                    if let Some(f) = frames.last_mut() {
                        f.want_key = f.object;
                    }
                }
            }
            b':' => {
                at += 1;
                if deeper == 0 {
                    if let Some(f) = frames.last_mut() {
                        f.want_key = false;
                    }
                }
            }
            b if b.is_ascii_whitespace() => at += 1,
            _ => {
                let token = if b == b'"' || b == b'\'' {
                    at += 1;
                    match quoted(body, &mut at, b) {
                        Some(s) => s,
                        None => break,
                    }
                } else {
                    let mut s = Short::new();
                    while let Some(&c) = body.get(at) {
                        if ends_bare(c) {
                            break;
                        }
                        s.push(u32::from(c));
                        at += 1;
                    }
                    if at == body.len() {
                        // A bare token cut short: it may go on.
                        break;
                    }
                    s
                };
                if deeper > 0 {
                    continue;
                }
                let Some(f) = frames.last_mut() else {
                    // A scalar at the top: not an object.
                    return false;
                };
                if f.object && f.want_key {
                    f.key_kind = token.is("kind");
                    f.key_items = token.is("items");
                    f.want_key = false;
                } else {
                    if f.object && f.key_kind && f.counts() {
                        f.kind_seen = true;
                        if token.is("secret") {
                            return true;
                        }
                    }
                    value_done(&mut frames);
                }
            }
        }
    }
    // The body ended with containers still open: cut short, an object
    // whose kind is still unknown may be a Secret.
    truncated
        && frames
            .iter()
            .any(|f| f.object && f.counts() && !f.kind_seen)
}

/// A value of the innermost open object ended: its key no longer applies.
fn value_done(frames: &mut [Frame]) {
    if let Some(f) = frames.last_mut() {
        if f.object {
            f.key_kind = false;
            f.key_items = false;
        }
    }
}

// ---------------------------------------------------------------------------
// YAML block style

/// The YAML scan: any `kind: Secret` line; for a whole body, the documents'
/// top-level and `items[]` kinds; cut short, no top-level `kind` line yet.
fn yaml_names_secret(body: &[u8], truncated: bool) -> bool {
    let (mut top_kind_seen, mut top_key_seen) = (false, false);
    // Cut short, the last line may be cut too (`kind: Sec`): it says no kind.
    let complete = match (truncated, body.iter().rposition(|b| *b == b'\n')) {
        (false, _) => body,
        (true, Some(end)) => &body[..end],
        (true, None) => &[],
    };
    for line in body.split(|b| *b == b'\n') {
        let indented = line.first().is_some_and(|b| *b == b' ' || *b == b'\t');
        let whole = line.as_ptr_range().end <= complete.as_ptr_range().end;
        if let Some(value) = yaml_kind_value(line).filter(|_| whole) {
            if !indented {
                top_kind_seen = true;
            }
            if value.eq_ignore_ascii_case(b"secret") {
                return true;
            }
        }
        top_key_seen |= !indented && is_mapping_key(line);
    }
    if truncated {
        // A manifest (top-level keys) whose kind was not seen yet may be a Secret.
        return top_key_seen && !top_kind_seen;
    }
    yaml_documents_name_secret(body)
}

/// The value of a `kind:` line (after indentation, list markers, quotes and
/// a `!!str` tag), if the line is one.
fn yaml_kind_value(line: &[u8]) -> Option<&[u8]> {
    let mut rest = trim_start(line);
    while let Some(r) = rest.strip_prefix(b"-") {
        if r.first().is_some_and(|b| !b.is_ascii_whitespace()) {
            break;
        }
        rest = trim_start(r);
    }
    let key_len = [&b"kind"[..], b"\"kind\"", b"'kind'"]
        .iter()
        .find(|k| rest.len() >= k.len() && rest[..k.len()].eq_ignore_ascii_case(k))
        .map(|k| k.len())?;
    rest = trim_start(&rest[key_len..]);
    rest = trim_start(rest.strip_prefix(b":")?);
    if let Some(r) = rest.strip_prefix(b"!!str") {
        rest = trim_start(r);
    }
    let rest = rest.strip_suffix(b"\r").unwrap_or(rest);
    let end = rest
        .iter()
        .position(|b| b.is_ascii_whitespace() || *b == b'#')
        .unwrap_or(rest.len());
    let value = &rest[..end];
    let value = value
        .strip_prefix(b"\"")
        .and_then(|v| v.strip_suffix(b"\""))
        .or_else(|| value.strip_prefix(b"'").and_then(|v| v.strip_suffix(b"'")))
        .unwrap_or(value);
    Some(value)
}

/// Whether a line starts with a YAML mapping key (`name:` followed by a
/// space or the line's end).
fn is_mapping_key(line: &[u8]) -> bool {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let Some(colon) = line.iter().position(|b| *b == b':') else {
        return false;
    };
    colon > 0
        && line[..colon]
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'"' | b'\''))
        && line.get(colon + 1).is_none_or(|b| b.is_ascii_whitespace())
}

fn trim_start(s: &[u8]) -> &[u8] {
    let n = s
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(s.len());
    &s[n..]
}

/// Every YAML document of a whole body, read with `serde_yaml_ng`: a
/// top-level or `items[]` kind `Secret` (ignoring ASCII case).
fn yaml_documents_name_secret(body: &[u8]) -> bool {
    use serde::Deserialize;
    use serde_yaml_ng::Value;

    fn is_secret(v: &Value) -> bool {
        v.get("kind")
            .and_then(Value::as_str)
            .is_some_and(|k| k.eq_ignore_ascii_case("secret"))
    }

    for document in serde_yaml_ng::Deserializer::from_slice(body).take(MAX_YAML_DOCUMENTS) {
        let Ok(value) = Value::deserialize(document) else {
            // Unreadable: kube-apiserver cannot decode it either.
            return false;
        };
        if is_secret(&value)
            || value
                .get("items")
                .and_then(Value::as_sequence)
                .is_some_and(|items| items.iter().any(is_secret))
        {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yes(body: &str) {
        assert!(
            names_secret(body.as_bytes(), false),
            "should name a Secret: {body}"
        );
    }

    fn no(body: &str) {
        assert!(!names_secret(body.as_bytes(), false), "should not: {body}");
    }

    #[test]
    fn json_top_level_and_items() {
        yes(r#"{"apiVersion":"v1","kind":"Secret","data":{"a":"eA=="}}"#);
        yes(r#"{"data":{"a":"eA=="},"kind":"Secret"}"#);
        yes(r#" { "kind" : "secret" } "#);
        yes(r#"{"\u006bind":"\u0053ecret"}"#);
        yes(
            r#"{"apiVersion":"v1","kind":"List","items":[{"kind":"ConfigMap"},{"kind":"Secret","data":{}}]}"#,
        );
        yes(r#"{kind: Secret, data: {a: b}}"#);
        yes(r#"{'kind': 'Secret'}"#);
        no(r#"{"apiVersion":"v1","kind":"ConfigMap","data":{"kind":"Secret"}}"#);
        no(r#"{"kind":"Event","involvedObject":{"kind":"Secret"}}"#);
        no(r#"{"kind":"Pod","metadata":{"ownerReferences":[{"kind":"Secret"}]}}"#);
        no(r#"{"kind":"List","items":[{"kind":"ConfigMap","data":{"kind":"Secret"}}]}"#);
        no(r#"{"kind":"SecretStore"}"#);
        no(r#"[{"op":"replace","path":"/data/a","value":"Secret"}]"#);
        no(r#"{"kind":"ConfigMap","data":{"x":"kind: Secret\n"}}"#);
    }

    #[test]
    fn json_cut_short() {
        let body = br#"{"data":{"password":"aHVudGVyMg=="},"kind":"Sec"#;
        assert!(names_secret(body, true));
        let body = br#"{"apiVersion":"v1","kind":"ConfigMap","data":{"a":"b"#;
        assert!(!names_secret(body, true));
        let body = br#"{"kind":"List","items":[{"kind":"ConfigMap"},{"data":{"a":"#;
        assert!(names_secret(body, true));
    }

    #[test]
    fn yaml() {
        yes("apiVersion: v1\nkind: Secret\ndata:\n  a: eA==\n");
        yes("apiVersion: v1\nkind: \"Secret\" # a comment\n");
        yes("kind: !!str Secret\r\n");
        yes("apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Secret\n");
        yes("kind: ConfigMap\n---\nkind: Secret\n");
        yes("? kind\n: Secret\n");
        yes("\"k\\x69nd\": Secret\n");
        no("apiVersion: v1\nkind: ConfigMap\ndata:\n  a: Secret\n");
        no("not: [valid");
        no("");
        no("   ");
        assert!(names_secret(b"data:\n  a: eA==\n", true));
        assert!(!names_secret(b"abcdefghijklmnopqrstuvwxyz", true));
        assert!(names_secret(b"data:\n  p: eA==\nkind: Se", true));
        assert!(!names_secret(b"plain text: not a manifest\n", true));
        assert!(!names_secret(b"kind: ConfigMap\ndata:\n  a: eA==\n", true));
    }

    fn envelope(kind: &str) -> Vec<u8> {
        let mut type_meta = vec![0x0a, 2, b'v', b'1', 0x12, kind.len() as u8];
        type_meta.extend_from_slice(kind.as_bytes());
        let mut body = b"k8s\x00".to_vec();
        body.push(0x0a);
        body.push(type_meta.len() as u8);
        body.extend_from_slice(&type_meta);
        body.extend_from_slice(&[0x12, 3, 1, 2, 3]);
        body
    }

    #[test]
    fn protobuf() {
        assert!(names_secret(&envelope("Secret"), false));
        assert!(!names_secret(&envelope("ConfigMap"), false));
        assert!(!names_secret(&envelope("SecretX"), false));
        let mut list = envelope("List");
        list.extend_from_slice(&envelope("Secret"));
        assert!(names_secret(&list, false));
        assert!(!names_secret(b"k8s\x00\xff\xff\xff", true));
    }

    #[test]
    fn cbor() {
        let mut body = vec![0xd9, 0xd9, 0xf7, 0xa2];
        body.extend_from_slice(b"\x64kind\x66Secret");
        assert!(names_secret(&body, false));
    }

    #[test]
    fn deep_nesting_is_cheap() {
        let body = "[".repeat(1 << 20);
        assert!(!names_secret(body.as_bytes(), true));
        let body = "{\"a\":".repeat(1 << 18);
        assert!(names_secret(body.as_bytes(), true));
    }
}
