//! The spool's on-disk record format.
//!
//! A segment file starts with the 8-byte magic [`SEGMENT_MAGIC`] and holds
//! records back to back, each framed as
//!
//! ```text
//! len: u32 LE | crc: u32 LE | payload: len bytes
//! crc = CRC-32 (IEEE) of the 4 length bytes followed by the payload
//! payload = kind: u8 (1 event, 2 response record, 3 event of a refused request)
//!         | n_addrs: u8 | n_addrs × address
//!         | (address = 4 | IPv4: 4 bytes | port: u16 LE
//!         |          | 6 | IPv6: 16 bytes | port: u16 LE | flowinfo: u32 LE | scope: u32 LE)
//!         | key_len: u16 LE | key: UTF-8
//!         | body: the rest (the record's JSON line exactly as sent)
//! ```
//!
//! Records are only ever appended. A crash can leave a torn tail: a partial
//! header, a partial payload, or garbage. Because the checksum covers the
//! length as well as the payload, a reader detects every such tail (up to
//! CRC-32's 2⁻³² chance of a random match) and stops there; everything
//! before it is read back exactly. A reader never resynchronises past a bad
//! record, so it can never misread garbage as a record.

use std::io::{self, Read};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

/// The first 8 bytes of every segment file (format version 1).
pub const SEGMENT_MAGIC: &[u8; 8] = b"KSSPOOL1";

/// Largest payload a record may have (64 MiB).
pub const MAX_PAYLOAD: u32 = 64 << 20;

/// Bytes of the frame header (length and checksum).
pub const FRAME_HEADER: usize = 8;

/// What kind of record a spool entry holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecordKind {
    /// A `kubernetes-api-request` event.
    Event,
    /// A `kubescribe-api-response` record.
    Response,
    /// A `kubernetes-api-request` event sent after its request was refused
    /// (it says so in `kubescribe.decision`). Like a response record, it goes
    /// to kubescribe recorders only: a Tailscale recorder would store it as
    /// an event of a request that reached the API server.
    RefusedEvent,
}

impl RecordKind {
    fn to_byte(self) -> u8 {
        match self {
            RecordKind::Event => 1,
            RecordKind::Response => 2,
            RecordKind::RefusedEvent => 3,
        }
    }

    fn from_byte(b: u8) -> Option<Self> {
        match b {
            1 => Some(RecordKind::Event),
            2 => Some(RecordKind::Response),
            3 => Some(RecordKind::RefusedEvent),
            _ => None,
        }
    }

    /// `event`, `response` or `refused_event`, the metrics label.
    pub fn label(self) -> &'static str {
        match self {
            RecordKind::Event => "event",
            RecordKind::Response => "response",
            RecordKind::RefusedEvent => "refused_event",
        }
    }

    /// Whether only kubescribe recorders (`X-Kubescribe-Recorder: 1`) may
    /// receive it.
    pub fn kubescribe_only(self) -> bool {
        !matches!(self, RecordKind::Event)
    }
}

/// One spooled record: what to deliver, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolRecord {
    /// Event or response record.
    pub kind: RecordKind,
    /// The recorder addresses it was meant for, in order.
    pub addrs: Vec<SocketAddr>,
    /// Its idempotency key (may be empty).
    pub key: String,
    /// The JSON line exactly as it is sent.
    pub body: Vec<u8>,
}

/// Why a record cannot be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// More than 255 addresses.
    #[error("too many recorder addresses ({0}, at most 255)")]
    TooManyAddrs(usize),
    /// Key longer than 65535 bytes.
    #[error("idempotency key too long ({0} bytes)")]
    KeyTooLong(usize),
    /// Payload larger than [`MAX_PAYLOAD`].
    #[error("record too large for the spool ({0} bytes)")]
    TooLarge(usize),
}

/// Why reading stopped before the end of a segment: the tail is torn or
/// corrupt and is skipped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TornTail {
    /// Fewer than 8 header bytes remain.
    #[error("partial record header ({0} bytes)")]
    PartialHeader(usize),
    /// The length is zero or larger than [`MAX_PAYLOAD`].
    #[error("impossible record length {0}")]
    BadLength(u32),
    /// Fewer payload bytes remain than the length says.
    #[error("partial record payload ({have} of {want} bytes)")]
    PartialPayload {
        /// Bytes present.
        have: usize,
        /// Bytes announced.
        want: u32,
    },
    /// The checksum does not match.
    #[error("record checksum mismatch")]
    Checksum,
    /// The checksum matches but the payload is not a valid record.
    #[error("malformed record payload: {0}")]
    Malformed(&'static str),
}

/// The result of reading one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ReadOutcome {
    /// A valid record and the total frame length it occupied.
    Record(SpoolRecord, u64),
    /// Clean end: no bytes left.
    End,
    /// The rest of the segment is torn or corrupt.
    Torn(TornTail),
}

/// Encodes `record` as one framed record (header and payload).
pub fn encode(record: &SpoolRecord) -> Result<Vec<u8>, EncodeError> {
    if record.addrs.len() > 255 {
        return Err(EncodeError::TooManyAddrs(record.addrs.len()));
    }
    if record.key.len() > usize::from(u16::MAX) {
        return Err(EncodeError::KeyTooLong(record.key.len()));
    }
    let mut payload = Vec::with_capacity(record.body.len() + record.key.len() + 64);
    payload.push(record.kind.to_byte());
    payload.push(record.addrs.len() as u8);
    for addr in &record.addrs {
        match addr {
            SocketAddr::V4(a) => {
                payload.push(4);
                payload.extend_from_slice(&a.ip().octets());
                payload.extend_from_slice(&a.port().to_le_bytes());
            }
            SocketAddr::V6(a) => {
                payload.push(6);
                payload.extend_from_slice(&a.ip().octets());
                payload.extend_from_slice(&a.port().to_le_bytes());
                payload.extend_from_slice(&a.flowinfo().to_le_bytes());
                payload.extend_from_slice(&a.scope_id().to_le_bytes());
            }
        }
    }
    payload.extend_from_slice(&(record.key.len() as u16).to_le_bytes());
    payload.extend_from_slice(record.key.as_bytes());
    payload.extend_from_slice(&record.body);
    let len = u32::try_from(payload.len())
        .ok()
        .filter(|l| *l <= MAX_PAYLOAD)
        .ok_or(EncodeError::TooLarge(payload.len()))?;
    let len_bytes = len.to_le_bytes();
    let crc = crc32_of(&[&len_bytes, &payload]);
    let mut out = Vec::with_capacity(FRAME_HEADER + payload.len());
    out.extend_from_slice(&len_bytes);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&payload);
    Ok(out)
}

/// Reads the next record from `r`. I/O errors other than running out of
/// bytes are returned as errors; running out of bytes is [`ReadOutcome::End`]
/// (at a record boundary) or [`ReadOutcome::Torn`] (inside a record).
pub(crate) fn read_record<R: Read>(r: &mut R) -> io::Result<ReadOutcome> {
    let mut header = [0u8; FRAME_HEADER];
    let got = read_full(r, &mut header)?;
    if got == 0 {
        return Ok(ReadOutcome::End);
    }
    if got < FRAME_HEADER {
        return Ok(ReadOutcome::Torn(TornTail::PartialHeader(got)));
    }
    let len_bytes = [header[0], header[1], header[2], header[3]];
    let len = u32::from_le_bytes(len_bytes);
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    if len == 0 || len > MAX_PAYLOAD {
        return Ok(ReadOutcome::Torn(TornTail::BadLength(len)));
    }
    // `take` + `read_to_end` grows the buffer with the data actually present,
    // so a corrupt length never allocates more than the file holds.
    let mut payload = Vec::new();
    r.take(u64::from(len)).read_to_end(&mut payload)?;
    if payload.len() < len as usize {
        return Ok(ReadOutcome::Torn(TornTail::PartialPayload {
            have: payload.len(),
            want: len,
        }));
    }
    if crc32_of(&[&len_bytes, &payload]) != crc {
        return Ok(ReadOutcome::Torn(TornTail::Checksum));
    }
    match decode_payload(&payload) {
        Ok(record) => Ok(ReadOutcome::Record(
            record,
            FRAME_HEADER as u64 + u64::from(len),
        )),
        Err(why) => Ok(ReadOutcome::Torn(TornTail::Malformed(why))),
    }
}

/// Reads every valid record of a segment body (after the magic) held in
/// memory: the records with their offsets, the length of the valid prefix,
/// and why reading stopped early, if it did.
pub fn scan(mut bytes: &[u8]) -> (Vec<(u64, SpoolRecord)>, u64, Option<TornTail>) {
    let mut records = Vec::new();
    let mut offset = 0u64;
    loop {
        match read_record(&mut bytes) {
            Ok(ReadOutcome::Record(record, len)) => {
                records.push((offset, record));
                offset += len;
            }
            Ok(ReadOutcome::End) => return (records, offset, None),
            Ok(ReadOutcome::Torn(why)) => return (records, offset, Some(why)),
            // Reading from a slice cannot fail.
            Err(_) => return (records, offset, Some(TornTail::Malformed("read error"))),
        }
    }
}

fn read_full<R: Read>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

fn decode_payload(p: &[u8]) -> Result<SpoolRecord, &'static str> {
    let mut cur = p;
    let kind = RecordKind::from_byte(take(&mut cur, 1)?[0]).ok_or("unknown record kind")?;
    let n_addrs = take(&mut cur, 1)?[0];
    let mut addrs = Vec::with_capacity(usize::from(n_addrs));
    for _ in 0..n_addrs {
        addrs.push(match take(&mut cur, 1)?[0] {
            4 => {
                let b = take(&mut cur, 6)?;
                SocketAddr::V4(SocketAddrV4::new(
                    Ipv4Addr::new(b[0], b[1], b[2], b[3]),
                    u16::from_le_bytes([b[4], b[5]]),
                ))
            }
            6 => {
                let b = take(&mut cur, 26)?;
                let mut ip = [0u8; 16];
                ip.copy_from_slice(&b[..16]);
                let le32 = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
                SocketAddr::V6(SocketAddrV6::new(
                    Ipv6Addr::from(ip),
                    u16::from_le_bytes([b[16], b[17]]),
                    le32(18),
                    le32(22),
                ))
            }
            _ => return Err("unknown address family"),
        });
    }
    let klen = take(&mut cur, 2)?;
    let klen = u16::from_le_bytes([klen[0], klen[1]]);
    let key = std::str::from_utf8(take(&mut cur, usize::from(klen))?)
        .map_err(|_| "key is not UTF-8")?
        .to_owned();
    Ok(SpoolRecord {
        kind,
        addrs,
        key,
        body: cur.to_vec(),
    })
}

fn take<'a>(cur: &mut &'a [u8], n: usize) -> Result<&'a [u8], &'static str> {
    if cur.len() < n {
        return Err("payload shorter than its fields");
    }
    let (head, rest) = cur.split_at(n);
    *cur = rest;
    Ok(head)
}

/// CRC-32 (IEEE) of `parts` one after the other (crc32fast: SIMD where the CPU has it).
fn crc32_of(parts: &[&[u8]]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    for part in parts {
        hasher.update(part);
    }
    hasher.finalize()
}

/// CRC-32 (IEEE) of `data`.
#[cfg(test)]
fn crc32(data: &[u8]) -> u32 {
    crc32_of(&[data])
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn record(n: usize) -> SpoolRecord {
        SpoolRecord {
            kind: if n.is_multiple_of(2) {
                RecordKind::Event
            } else {
                RecordKind::Response
            },
            addrs: vec![
                "127.0.0.1:80".parse().unwrap(),
                "[::1]:8080".parse().unwrap(),
            ],
            key: format!("key-{n}"),
            body: format!("{{\"n\":{n}}}\n").into_bytes(),
        }
    }

    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn round_trip() {
        let mut seg = Vec::new();
        for n in 0..5 {
            seg.extend(encode(&record(n)).unwrap());
        }
        let (records, valid, torn) = scan(&seg);
        assert_eq!(torn, None);
        assert_eq!(valid, seg.len() as u64);
        let got: Vec<_> = records.into_iter().map(|(_, r)| r).collect();
        assert_eq!(got, (0..5).map(record).collect::<Vec<_>>());
    }

    #[test]
    fn corrupt_length_does_not_allocate_or_misread() {
        let mut seg = encode(&record(1)).unwrap();
        seg[0..4].copy_from_slice(&(MAX_PAYLOAD).to_le_bytes());
        let (records, valid, torn) = scan(&seg);
        assert!(records.is_empty());
        assert_eq!(valid, 0);
        assert!(matches!(torn, Some(TornTail::PartialPayload { .. })));
    }

    fn arb_record() -> impl Strategy<Value = SpoolRecord> {
        (
            0u8..3,
            proptest::collection::vec(any::<std::net::SocketAddr>(), 0..4),
            "[a-z0-9:-]{0,40}",
            proptest::collection::vec(any::<u8>(), 0..300),
        )
            .prop_map(|(kind, addrs, key, body)| SpoolRecord {
                kind: match kind {
                    0 => RecordKind::Event,
                    1 => RecordKind::Response,
                    _ => RecordKind::RefusedEvent,
                },
                addrs,
                key,
                body,
            })
    }

    proptest! {
        /// Truncating a segment anywhere recovers exactly the records that
        /// were wholly written, and reports a torn tail iff the cut is inside
        /// a record.
        #[test]
        fn truncation_recovers_the_valid_prefix(
            records in proptest::collection::vec(arb_record(), 1..8),
            cut in any::<proptest::sample::Index>(),
        ) {
            let mut seg = Vec::new();
            let mut ends = Vec::new();
            for r in &records {
                seg.extend(encode(r).unwrap());
                ends.push(seg.len());
            }
            let cut = cut.index(seg.len() + 1);
            let (got, valid, torn) = scan(&seg[..cut]);
            let whole = ends.iter().filter(|e| **e <= cut).count();
            prop_assert_eq!(got.len(), whole);
            for ((_, g), want) in got.iter().zip(&records) {
                prop_assert_eq!(g, want);
            }
            let boundary = cut == 0 || ends.contains(&cut);
            prop_assert_eq!(torn.is_none(), boundary);
            prop_assert_eq!(valid as usize, if whole == 0 { 0 } else { ends[whole - 1] });
        }

        /// Corrupting bytes in the last record (or appending garbage) never
        /// yields a record that was not written: the earlier records come
        /// back intact and the damaged one is reported torn.
        #[test]
        fn corruption_of_the_tail_is_detected(
            records in proptest::collection::vec(arb_record(), 1..6),
            flips in proptest::collection::vec((any::<proptest::sample::Index>(), 1u8..=255), 1..4),
            garbage in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let mut seg = Vec::new();
            let mut last_start = 0;
            for r in &records {
                last_start = seg.len();
                seg.extend(encode(r).unwrap());
            }
            let last_len = seg.len() - last_start;
            let original = seg.clone();
            for (idx, x) in &flips {
                let at = last_start + idx.index(last_len);
                seg[at] ^= x;
            }
            prop_assume!(seg != original);
            seg.extend(&garbage);
            let (got, _, torn) = scan(&seg);
            let n = records.len();
            prop_assert!(got.len() == n - 1, "corrupted record was accepted: {} of {}", got.len(), n);
            for ((_, g), want) in got.iter().zip(&records) {
                prop_assert_eq!(g, want);
            }
            prop_assert!(torn.is_some());
        }

        /// Arbitrary bytes never panic, never yield more bytes than given,
        /// and every record read re-encodes to exactly the bytes it came from.
        #[test]
        fn arbitrary_bytes_are_safe(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let (records, valid, _) = scan(&bytes);
            prop_assert!(valid as usize <= bytes.len());
            for (offset, record) in &records {
                let enc = encode(record).unwrap();
                let start = *offset as usize;
                prop_assert_eq!(&bytes[start..start + enc.len()], enc.as_slice());
            }
        }

        /// Valid records followed by arbitrary bytes: the records come back.
        #[test]
        fn valid_prefix_then_garbage(
            records in proptest::collection::vec(arb_record(), 0..5),
            garbage in proptest::collection::vec(any::<u8>(), 1..128),
        ) {
            let mut seg = Vec::new();
            for r in &records {
                seg.extend(encode(r).unwrap());
            }
            let prefix = seg.len();
            seg.extend(&garbage);
            let (got, valid, _) = scan(&seg);
            prop_assert!(got.len() >= records.len());
            prop_assert!(valid as usize >= prefix);
            for ((_, g), want) in got.iter().zip(&records) {
                prop_assert_eq!(g, want);
            }
        }
    }
}
