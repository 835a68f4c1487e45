//! UTF-8 decoding across payload boundaries.
//!
//! A multi-byte character split between two frames is kept (at most 3 bytes)
//! until the next payload of the same stream and decoded whole, instead of
//! becoming two U+FFFD as upstream writes. Bytes that are truly invalid become
//! one U+FFFD each, as Go's `encoding/json` writes them.

/// The replacement character, as UTF-8.
const REPLACEMENT: &str = "\u{FFFD}";

/// Incremental, lossy UTF-8 decoder for one output stream.
#[derive(Debug, Default, Clone)]
pub(crate) struct Utf8Reassembler {
    carry: [u8; 4],
    carry_len: usize,
}

impl Utf8Reassembler {
    /// A decoder with nothing carried over.
    #[cfg(test)]
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Decodes `input`, calling `emit` with valid text pieces in order. An
    /// incomplete sequence at the end is kept for the next call.
    pub(crate) fn decode(&mut self, mut input: &[u8], emit: &mut impl FnMut(&str)) {
        if self.carry_len > 0 {
            let take = input.len().min(3);
            let mut head = [0u8; 7];
            let carry_len = self.carry_len;
            head[..carry_len].copy_from_slice(&self.carry[..carry_len]);
            head[carry_len..carry_len + take].copy_from_slice(&input[..take]);
            let head = &head[..carry_len + take];
            let mut pos = 0;
            while pos < carry_len {
                match std::str::from_utf8(&head[pos..]) {
                    Ok(text) => {
                        emit(text);
                        pos = head.len();
                    }
                    Err(err) => {
                        let valid = err.valid_up_to();
                        if valid > 0 {
                            emit(valid_prefix(&head[pos..pos + valid]));
                            pos += valid;
                            continue;
                        }
                        match err.error_len() {
                            Some(n) => {
                                for _ in 0..n {
                                    emit(REPLACEMENT);
                                }
                                pos += n;
                            }
                            None => break,
                        }
                    }
                }
            }
            if pos < carry_len {
                // Still incomplete: everything given so far belongs to the carry.
                let rest = &head[pos..];
                self.carry[..rest.len()].copy_from_slice(rest);
                self.carry_len = rest.len();
                return;
            }
            self.carry_len = 0;
            input = &input[pos - carry_len..];
        }
        let mut pos = 0;
        while pos < input.len() {
            match std::str::from_utf8(&input[pos..]) {
                Ok(text) => {
                    emit(text);
                    return;
                }
                Err(err) => {
                    let valid = err.valid_up_to();
                    if valid > 0 {
                        emit(valid_prefix(&input[pos..pos + valid]));
                        pos += valid;
                    }
                    match err.error_len() {
                        Some(n) => {
                            for _ in 0..n {
                                emit(REPLACEMENT);
                            }
                            pos += n;
                        }
                        None => {
                            let rest = &input[pos..];
                            self.carry[..rest.len()].copy_from_slice(rest);
                            self.carry_len = rest.len();
                            return;
                        }
                    }
                }
            }
        }
    }

    /// Ends the stream: an incomplete sequence still held becomes one U+FFFD per byte.
    pub(crate) fn finish(&mut self, emit: &mut impl FnMut(&str)) {
        for _ in 0..self.carry_len {
            emit(REPLACEMENT);
        }
        self.carry_len = 0;
    }
}

/// `bytes` is known valid (a `valid_up_to` prefix); never fails in practice.
fn valid_prefix(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_chunks(chunks: &[&[u8]]) -> String {
        let mut d = Utf8Reassembler::new();
        let mut out = String::new();
        for c in chunks {
            d.decode(c, &mut |s| out.push_str(s));
        }
        d.finish(&mut |s| out.push_str(s));
        out
    }

    /// What Go's encoding/json writes: one U+FFFD per byte that does not start a valid rune.
    fn go_lossy(bytes: &[u8]) -> String {
        let mut out = String::new();
        let mut pos = 0;
        while pos < bytes.len() {
            match std::str::from_utf8(&bytes[pos..]) {
                Ok(s) => {
                    out.push_str(s);
                    break;
                }
                Err(e) => {
                    out.push_str(std::str::from_utf8(&bytes[pos..pos + e.valid_up_to()]).unwrap());
                    pos += e.valid_up_to();
                    let n = e.error_len().unwrap_or(bytes.len() - pos);
                    for _ in 0..n {
                        out.push('\u{FFFD}');
                    }
                    pos += n;
                }
            }
        }
        out
    }

    #[test]
    fn split_multibyte_is_reassembled() {
        let text = "héllo €uro 𝄞 done";
        let bytes = text.as_bytes();
        for i in 0..=bytes.len() {
            for j in i..=bytes.len() {
                assert_eq!(
                    decode_chunks(&[&bytes[..i], &bytes[i..j], &bytes[j..]]),
                    text
                );
            }
        }
    }

    #[test]
    fn invalid_bytes_become_one_replacement_each() {
        assert_eq!(decode_chunks(&[b"a\xE2\x82Ab"]), "a\u{FFFD}\u{FFFD}Ab");
        assert_eq!(decode_chunks(&[b"\xff\xfe"]), "\u{FFFD}\u{FFFD}");
        assert_eq!(decode_chunks(&[b"x\xE2", b"\x82"]), "x\u{FFFD}\u{FFFD}");
        assert_eq!(decode_chunks(&[b"x\xE2", b"A"]), "x\u{FFFD}A");
    }

    proptest::proptest! {
        #[test]
        fn any_split_matches_whole(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64),
                                   cuts in proptest::collection::vec(0usize..64, 0..6)) {
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(bytes.len())).collect();
            cuts.sort_unstable();
            let mut chunks = Vec::new();
            let mut last = 0;
            for c in cuts { chunks.push(&bytes[last..c]); last = c; }
            chunks.push(&bytes[last..]);
            proptest::prop_assert_eq!(decode_chunks(&chunks), go_lossy(&bytes));
        }
    }
}
