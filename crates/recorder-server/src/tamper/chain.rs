//! Per-segment hash chains (the bottom of tamper evidence; docs/storage.md, "Tamper evidence").
//!
//! A record is one line of a stored object: the bytes between two `\n` (a
//! final line without its `\n` counts too). Its *leaf* is `SHA-256(line)`;
//! the chain runs `h₋₁ = 32 zero bytes`, `hᵢ = SHA-256(hᵢ₋₁ ‖ leafᵢ)`, so each
//! link covers the record's exact stored bytes (through its leaf) and the link
//! before it, and every stored byte is hashed once. The *head* of a segment is
//! its last link (all zeros for an empty segment).

use sha2::{Digest, Sha256};

/// A SHA-256 digest.
pub type Hash = [u8; 32];

/// The link before a segment's first record.
pub const GENESIS: Hash = [0; 32];

/// `SHA-256(line)`.
pub fn leaf(line: &[u8]) -> Hash {
    Sha256::digest(line).into()
}

/// The link after `prev` for the record whose leaf is `leaf`: `SHA-256(prev ‖ leaf)`.
pub fn link(prev: &Hash, leaf: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update(prev);
    h.update(leaf);
    h.finalize().into()
}

/// SHA-256 of a whole object (manifests, session casts).
pub fn digest(data: &[u8]) -> Hash {
    Sha256::digest(data).into()
}

/// A segment's chain, computed from its stored bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentChain {
    /// The leaf of every record, in order.
    pub leaves: Vec<Hash>,
    /// The last link.
    pub head: Hash,
    /// The recorder's id of the first record (its `id` field), if it has one.
    pub first_id: Option<String>,
    /// The id of the last record.
    pub last_id: Option<String>,
}

impl SegmentChain {
    /// Computes the chain of `data` (a [`ChainBuilder`] fed one chunk).
    pub fn of(data: &[u8]) -> Self {
        let mut builder = ChainBuilder::default();
        builder.feed(data);
        builder.finish()
    }
}

/// How many bytes at the start of a record are kept to read its `id`: the
/// recorder writes `{"type":"…","id":"…"` first, well inside this.
const ID_PREFIX_MAX: usize = 256;

/// A [`SegmentChain`] computed from a segment's bytes in chunks of any size,
/// so a sealed segment (up to 64 MiB) is hashed as it is read, through one
/// reused buffer, never held whole. Every way of cutting the same bytes into
/// chunks gives the same chain.
#[derive(Default)]
pub struct ChainBuilder {
    /// The hash of the record being read (bytes since the last `\n`).
    current: Sha256,
    /// Whether `current` has any bytes (a record in progress).
    in_record: bool,
    /// The first bytes of the record being read.
    prefix: Vec<u8>,
    /// The first bytes of the first record.
    first_prefix: Option<Vec<u8>>,
    /// The first bytes of the last complete record.
    last_prefix: Vec<u8>,
    leaves: Vec<Hash>,
    head: Hash,
}

impl ChainBuilder {
    /// Adds the next bytes of the segment.
    pub fn feed(&mut self, mut chunk: &[u8]) {
        while !chunk.is_empty() {
            let (part, rest, ends) = match memchr::memchr(b'\n', chunk) {
                Some(i) => (&chunk[..i], &chunk[i + 1..], true),
                None => (chunk, &[][..], false),
            };
            if self.prefix.len() < ID_PREFIX_MAX {
                let take = part.len().min(ID_PREFIX_MAX - self.prefix.len());
                self.prefix.extend_from_slice(&part[..take]);
            }
            self.current.update(part);
            self.in_record = true;
            if ends {
                self.end_record();
            }
            chunk = rest;
        }
    }

    fn end_record(&mut self) {
        let leaf: Hash = std::mem::take(&mut self.current).finalize().into();
        self.head = link(&self.head, &leaf);
        self.leaves.push(leaf);
        self.in_record = false;
        if self.first_prefix.is_none() {
            self.first_prefix = Some(self.prefix.clone());
        }
        std::mem::swap(&mut self.last_prefix, &mut self.prefix);
        self.prefix.clear();
    }

    /// The chain of everything fed (a final record without its `\n` counts).
    pub fn finish(mut self) -> SegmentChain {
        if self.in_record {
            self.end_record();
        }
        let first_id = self.first_prefix.as_deref().and_then(record_id);
        let last_id = match self.leaves.is_empty() {
            true => None,
            false => record_id(&self.last_prefix),
        };
        SegmentChain {
            leaves: self.leaves,
            head: self.head,
            first_id,
            last_id,
        }
    }
}

/// The `id` of a stored record line (`{"type":"…","id":"<id>",…`).
fn record_id(line: &[u8]) -> Option<String> {
    let comma = line.iter().position(|b| *b == b',')?;
    let rest = line[comma + 1..].strip_prefix(b"\"id\":\"")?;
    let end = rest.iter().position(|b| *b == b'"')?;
    String::from_utf8(rest[..end].to_vec()).ok()
}

/// How a segment's records differ from the leaves its manifest signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Change {
    /// A record's bytes changed (at this 0-based line of the stored segment).
    RecordEdited,
    /// A signed record is gone (at this line of the signed segment).
    RecordRemoved,
    /// Records are all there but in another order (first line out of place).
    RecordReordered,
    /// A record that was not signed was added (at this line of the stored segment).
    RecordAppended,
}

/// Compares the `signed` leaves with the `stored` ones: every change with its
/// 0-based line; empty when they are equal.
pub fn compare(signed: &[Hash], stored: &[Hash]) -> Vec<(Change, usize)> {
    if signed == stored {
        return Vec::new();
    }
    let mut unmatched: std::collections::HashMap<&Hash, Vec<usize>> =
        std::collections::HashMap::new();
    for (i, h) in signed.iter().enumerate().rev() {
        unmatched.entry(h).or_default().push(i);
    }
    let mut extra = Vec::new();
    for (i, h) in stored.iter().enumerate() {
        match unmatched.get_mut(h).and_then(Vec::pop) {
            Some(_) => {}
            None => extra.push(i),
        }
    }
    let mut missing: Vec<usize> = unmatched.into_values().flatten().collect();
    missing.sort_unstable();
    let mut out = Vec::new();
    let paired = missing.len().min(extra.len());
    for &i in &extra[..paired] {
        out.push((Change::RecordEdited, i));
    }
    for &i in &missing[paired..] {
        out.push((Change::RecordRemoved, i));
    }
    for &i in &extra[paired..] {
        out.push((Change::RecordAppended, i));
    }
    if out.is_empty() {
        if let Some(i) = signed.iter().zip(stored).position(|(a, b)| a != b) {
            out.push((Change::RecordReordered, i));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn data(lines: &[Vec<u8>]) -> Vec<u8> {
        let mut out = Vec::new();
        for l in lines {
            out.extend_from_slice(l);
            out.push(b'\n');
        }
        out
    }

    fn line() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(
            any::<u8>().prop_filter("no newline", |b| *b != b'\n'),
            1..40,
        )
    }

    /// The chain as the format defines it, from whole records split at `\n`.
    fn reference(data: &[u8]) -> SegmentChain {
        let body = data.strip_suffix(b"\n").unwrap_or(data);
        let records: Vec<&[u8]> = match data.is_empty() {
            true => Vec::new(),
            false => body.split(|b| *b == b'\n').collect(),
        };
        let mut head = GENESIS;
        let leaves: Vec<Hash> = records.iter().map(|r| leaf(r)).collect();
        for l in &leaves {
            head = link(&head, l);
        }
        let prefix = |r: &&[u8]| r[..r.len().min(ID_PREFIX_MAX)].to_vec();
        SegmentChain {
            leaves,
            head,
            first_id: records.first().map(prefix).as_deref().and_then(record_id),
            last_id: records.last().map(prefix).as_deref().and_then(record_id),
        }
    }

    /// Bytes rich in `\n`, ids and long records.
    fn segment_bytes() -> impl Strategy<Value = Vec<u8>> {
        let piece = prop_oneof![
            Just(b"\n".to_vec()),
            Just(b"{\"type\":\"kubernetes-api-request\",\"id\":\"e-7-1\",".to_vec()),
            proptest::collection::vec(any::<u8>(), 0..40),
            proptest::collection::vec(Just(b'x'), 200..400),
        ];
        proptest::collection::vec(piece, 0..12).prop_map(|p| p.concat())
    }

    #[test]
    fn ids_and_known_head() {
        let d = b"{\"type\":\"kubernetes-api-request\",\"id\":\"e-1-0\"}\n{\"type\":\"x\",\"id\":\"e-1-1\"}\n";
        let c = SegmentChain::of(d);
        assert_eq!(c.leaves.len(), 2);
        assert_eq!(c.first_id.as_deref(), Some("e-1-0"));
        assert_eq!(c.last_id.as_deref(), Some("e-1-1"));
        let mut h = GENESIS;
        for l in d.split(|b| *b == b'\n').take(2) {
            let mut x = Sha256::new();
            x.update(h);
            x.update(Sha256::digest(l));
            h = x.finalize().into();
        }
        assert_eq!(c.head, h);
        assert_eq!(SegmentChain::of(b"").leaves.len(), 0);
        assert_eq!(SegmentChain::of(b"").head, GENESIS);
    }

    proptest! {
        #[test]
        fn any_chunking_gives_the_defined_chain(data in segment_bytes(), cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..6)) {
            let mut at: Vec<usize> = cuts.iter().map(|c| c.index(data.len() + 1)).collect();
            at.push(0);
            at.push(data.len());
            at.sort_unstable();
            let mut builder = ChainBuilder::default();
            for pair in at.windows(2) {
                builder.feed(&data[pair[0]..pair[1]]);
            }
            let expected = reference(&data);
            prop_assert_eq!(builder.finish(), expected.clone());
            prop_assert_eq!(SegmentChain::of(&data), expected);
        }

        #[test]
        fn untouched_is_clean_and_head_depends_on_every_record(ls in proptest::collection::vec(line(), 1..20), pick in any::<prop::sample::Index>(), byte in any::<u8>()) {
            let c = SegmentChain::of(&data(&ls));
            prop_assert_eq!(c.leaves.len(), ls.len());
            prop_assert!(compare(&c.leaves, &c.leaves).is_empty());
            let i = pick.index(ls.len());
            let mut edited = ls.clone();
            let j = byte as usize % edited[i].len();
            edited[i][j] = if edited[i][j] == b'a' { b'b' } else { b'a' };
            let e = SegmentChain::of(&data(&edited));
            prop_assert_ne!(e.head, c.head);
            prop_assert_eq!(compare(&c.leaves, &e.leaves), vec![(Change::RecordEdited, i)]);
        }

        #[test]
        fn removal_append_and_swap_are_named(ls in proptest::collection::hash_set(line(), 2..20), pick in any::<prop::sample::Index>(), extra in line()) {
            let ls: Vec<Vec<u8>> = ls.into_iter().collect();
            let c = SegmentChain::of(&data(&ls));
            let i = pick.index(ls.len());
            let mut removed = ls.clone();
            removed.remove(i);
            prop_assert_eq!(compare(&c.leaves, &SegmentChain::of(&data(&removed)).leaves), vec![(Change::RecordRemoved, i)]);
            if !ls.contains(&extra) {
                let mut appended = ls.clone();
                appended.push(extra);
                prop_assert_eq!(compare(&c.leaves, &SegmentChain::of(&data(&appended)).leaves), vec![(Change::RecordAppended, ls.len())]);
            }
            let mut swapped = ls.clone();
            let k = (i + 1) % ls.len();
            swapped.swap(i, k);
            prop_assert_eq!(compare(&c.leaves, &SegmentChain::of(&data(&swapped)).leaves), vec![(Change::RecordReordered, i.min(k))]);
        }
    }
}
