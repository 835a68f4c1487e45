//! Manifests (docs/storage.md, "Tamper evidence"); their keys are [`crate::signing`]'s.
//!
//! A manifest object is two lines: line 1 is the manifest JSON ([`Manifest`],
//! the signed bytes exactly, without its `\n`), line 2 the [`Seal`]: the
//! Ed25519 signature of line 1 and the public key, or `{"alg":"none"}` for a
//! recorder run with `--unsigned`. Each manifest names the SHA-256 of the
//! whole previous manifest object (`prev`), so manifests form a chain.

use ed25519_dalek::{Signature, Signer, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};

use super::chain::Hash;
use crate::signing::{public_hex, Signing};

/// One manifest: what was sealed (or deleted), linked to the manifest before it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// Format version (1).
    pub version: u32,
    /// The manifest's UUIDv7 (32 hex digits; also its object name).
    pub id: String,
    /// When it was written (RFC 3339, UTC).
    pub time: String,
    /// SHA-256 (hex) of the whole previous manifest object; `None` for the first.
    pub prev: Option<String>,
    /// SHA-256 (hex) of this manifest's chains object (`<id>.chains`), when it covers segments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chains: Option<String>,
    /// The record segments it seals.
    #[serde(default)]
    pub segments: Vec<SegmentEntry>,
    /// The session casts it seals.
    #[serde(default)]
    pub sessions: Vec<SessionEntry>,
    /// Objects deleted by retention (a sweep writes this manifest before it deletes them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deleted: Vec<DeletedEntry>,
}

/// An object deleted by retention.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeletedEntry {
    /// Its object key.
    pub key: String,
    /// Why, for the operator (`retention: events older than 30 days`).
    pub reason: String,
}

/// A sealed record segment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SegmentEntry {
    /// Its object key.
    pub key: String,
    /// How many records (lines) it holds.
    pub records: u64,
    /// Its size in bytes.
    pub bytes: u64,
    /// The first record's id.
    pub first_id: Option<String>,
    /// The last record's id.
    pub last_id: Option<String>,
    /// The head of its chain (hex).
    pub chain: String,
}

/// A sealed session cast.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionEntry {
    /// Its object key.
    pub key: String,
    /// Its size in bytes.
    pub bytes: u64,
    /// SHA-256 (hex) of the whole cast.
    pub sha256: String,
}

/// Line 2 of a manifest object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Seal {
    /// `ed25519` or `none`.
    pub alg: String,
    /// The signer's public key (hex), with `ed25519`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
    /// The signature of line 1 (hex), with `ed25519`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

/// The first line of a chains object.
const CHAINS_MAGIC: &[u8] = b"kubescribe-chains/2\n";

/// The header line of one segment in a chains object.
#[derive(Serialize, Deserialize)]
struct ChainsHeader {
    key: String,
    records: u64,
}

/// Serialises a chains object: [`CHAINS_MAGIC`], then for each segment, in
/// the manifest's order, a JSON line `{"key":"…","records":N}` followed by
/// its N leaves, 32 raw bytes each (the leaf of every record, so `verify` can
/// name the record that changed; raw, they cost a twentieth of the segment).
pub fn encode_chains(chains: &[(String, Vec<Hash>)]) -> Vec<u8> {
    let leaves: usize = chains.iter().map(|(_, l)| l.len() * 32 + 64).sum();
    let mut out = Vec::with_capacity(CHAINS_MAGIC.len() + leaves);
    out.extend_from_slice(CHAINS_MAGIC);
    for (key, leaves) in chains {
        let header = ChainsHeader {
            key: key.clone(),
            records: leaves.len() as u64,
        };
        out.extend(serde_json::to_vec(&header).unwrap_or_default());
        out.push(b'\n');
        for leaf in leaves {
            out.extend_from_slice(leaf);
        }
    }
    out
}

/// Parses a chains object: each segment's key and leaves; `None` if it is
/// not one (bad magic, a bad header, or fewer leaf bytes than a header says).
pub fn decode_chains(mut data: &[u8]) -> Option<Vec<(String, Vec<Hash>)>> {
    data = data.strip_prefix(CHAINS_MAGIC)?;
    let mut out = Vec::new();
    while !data.is_empty() {
        let end = memchr::memchr(b'\n', data)?;
        let header: ChainsHeader = serde_json::from_slice(&data[..end]).ok()?;
        data = &data[end + 1..];
        let len = usize::try_from(header.records).ok()?.checked_mul(32)?;
        if len > data.len() {
            return None;
        }
        let (leaves, rest) = data.split_at(len);
        let leaves = leaves
            .chunks_exact(32)
            .filter_map(|c| Hash::try_from(c).ok())
            .collect();
        out.push((header.key, leaves));
        data = rest;
    }
    Some(out)
}

/// Serialises and seals `manifest`: the bytes of the manifest object.
pub fn encode(manifest: &Manifest, signing: &Signing) -> Vec<u8> {
    let mut out = serde_json::to_vec(manifest).unwrap_or_default();
    let seal = match signing {
        Signing::Key(key) => Seal {
            alg: "ed25519".into(),
            public_key: Some(public_hex(&key.verifying_key())),
            signature: Some(hex::encode(key.sign(&out).to_bytes())),
        },
        Signing::Unsigned => Seal {
            alg: "none".into(),
            public_key: None,
            signature: None,
        },
    };
    out.push(b'\n');
    out.extend(serde_json::to_vec(&seal).unwrap_or_default());
    out.push(b'\n');
    out
}

/// What checking a manifest object's seal found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SealCheck {
    /// Signed, and the signature is good (by this public key, hex).
    Signed(String),
    /// Written with `--unsigned`.
    Unsigned,
    /// The signature does not match line 1: the manifest was edited.
    BadSignature,
}

/// Parses a manifest object and checks its seal.
pub fn decode(data: &[u8]) -> Option<(Manifest, SealCheck)> {
    let mut parts = data.split(|b| *b == b'\n');
    let body = parts.next()?;
    let seal: Seal = serde_json::from_slice(parts.next()?).ok()?;
    let manifest: Manifest = serde_json::from_slice(body).ok()?;
    let check = match seal.alg.as_str() {
        "none" => SealCheck::Unsigned,
        "ed25519" => {
            let key = seal
                .public_key
                .as_deref()
                .and_then(|k| hex::decode(k).ok())
                .and_then(|k| <[u8; 32]>::try_from(k).ok())
                .and_then(|k| VerifyingKey::from_bytes(&k).ok());
            let sig = seal
                .signature
                .as_deref()
                .and_then(|s| hex::decode(s).ok())
                .and_then(|s| <[u8; 64]>::try_from(s).ok())
                .map(|s| Signature::from_bytes(&s));
            match (key, sig) {
                (Some(key), Some(sig)) if key.verify(body, &sig).is_ok() => {
                    SealCheck::Signed(public_hex(&key))
                }
                _ => SealCheck::BadSignature,
            }
        }
        _ => SealCheck::BadSignature,
    };
    Some((manifest, check))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn chains_round_trip(chains in proptest::collection::vec(("[a-z/.\\n\"]{0,12}", proptest::collection::vec(any::<[u8; 32]>(), 0..5)), 0..5)) {
            prop_assert_eq!(decode_chains(&encode_chains(&chains)), Some(chains));
        }

        #[test]
        fn chains_decoding_any_bytes_is_bounded(tail in proptest::collection::vec(any::<u8>(), 0..200), records in any::<u64>()) {
            let mut data = CHAINS_MAGIC.to_vec();
            data.extend(format!("{{\"key\":\"k\",\"records\":{records}}}\n").bytes());
            data.extend(&tail);
            if let Some(chains) = decode_chains(&data) {
                prop_assert_eq!(chains[0].1.len() as u64, records);
            }
            // Without the magic line, nothing is a chains object.
            prop_assert_eq!(decode_chains(&tail[tail.len().min(1)..]).is_some(), tail[tail.len().min(1)..].starts_with(CHAINS_MAGIC));
        }
    }
    use crate::signing::{generate_signing_key, read_public_key, read_signing_key};

    #[test]
    fn signed_round_trip_and_edit_detected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        let key = generate_signing_key(&path).unwrap();
        assert_eq!(read_signing_key(&path).unwrap().to_bytes(), key.to_bytes());
        let public = read_public_key(&dir.path().join("k.pub")).unwrap();
        assert!(generate_signing_key(&path).is_err(), "never overwrites");
        let m = Manifest {
            version: 1,
            id: "x".into(),
            time: "t".into(),
            prev: None,
            chains: None,
            segments: vec![],
            sessions: vec![],
            deleted: vec![],
        };
        let bytes = encode(&m, &Signing::Key(Box::new(key)));
        let (back, check) = decode(&bytes).unwrap();
        assert_eq!(back, m);
        assert_eq!(check, SealCheck::Signed(public_hex(&public)));
        let edited = String::from_utf8(bytes)
            .unwrap()
            .replacen("\"t\"", "\"u\"", 1);
        assert_eq!(
            decode(edited.as_bytes()).unwrap().1,
            SealCheck::BadSignature
        );
        assert_eq!(
            decode(&encode(&m, &Signing::Unsigned)).unwrap().1,
            SealCheck::Unsigned
        );
    }
}
