//! `kubescribe-recorder verify`: checks every manifest's signature and link,
//! every sealed segment against its signed chain, and every session cast
//! against its signed SHA-256, and names each difference.

use std::collections::{HashMap, HashSet};

use serde::Serialize;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::chain::{compare, digest, ChainBuilder, Hash};
use super::manifest::{self, SealCheck, SegmentEntry, SessionEntry};
use super::store::{get_opt, hash_object, list_manifests};
use crate::record::{unix_millis, RecordKind};
use crate::storage::layout::{self, KeyKind};
use crate::storage::{Storage, StorageError};

/// What `verify` checks against.
#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    /// The public key (hex) every manifest must be signed by; `None`: any
    /// key the manifests name (reported in [`Report::signers`]).
    pub public_key: Option<String>,
    /// Only data objects written at or after this time (Unix milliseconds);
    /// manifests are always all checked.
    pub since_ms: Option<i64>,
    /// Only this UTC day's data objects (`events/date=D/…`,
    /// `responses/date=D/…`, `sessions/date=D/…`); every manifest's link is
    /// still followed, but only the manifests naming an object of the day
    /// are counted and reported on (a manifest that cannot be read, so
    /// whose objects are unknown, is reported for every day).
    pub day: Option<time::Date>,
}

impl VerifyOptions {
    /// The `date=YYYY-MM-DD` partition name of [`VerifyOptions::day`].
    fn day_partition(&self) -> Option<String> {
        self.day.map(|d| {
            format!(
                "date={:04}-{:02}-{:02}",
                d.year(),
                u8::from(d.month()),
                d.day()
            )
        })
    }

    /// Whether data object `key` is in [`VerifyOptions::day`] (always, without one).
    fn in_day(&self, key: &str) -> bool {
        self.day_partition()
            .is_none_or(|date| key.split('/').nth(1) == Some(date.as_str()))
    }
}

/// One thing found wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// What: `record-edited`, `record-removed`, `record-reordered`,
    /// `record-appended`, `segment-missing`, `segment-unmanifested`,
    /// `session-edited`, `session-missing`, `session-unmanifested`,
    /// `manifest-edited`, `manifest-removed`, `manifest-unreadable`,
    /// `manifest-unsigned`, `manifest-wrong-key`, `chains-edited`, `chains-missing`.
    pub kind: String,
    /// The object concerned.
    pub object: String,
    /// The 0-based line, for record findings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    /// A sentence for the operator.
    pub detail: String,
}

/// An object deleted by retention, as its manifest names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Deleted {
    /// The object.
    pub object: String,
    /// Why (from the manifest).
    pub reason: String,
    /// The manifest that names it.
    pub manifest: String,
}

/// What `verify` found.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// Manifests checked.
    pub manifests: usize,
    /// Manifests written with `--unsigned`.
    pub unsigned_manifests: usize,
    /// The public keys (hex) that signed the manifests.
    pub signers: Vec<String>,
    /// Segments looked at (verified, open, or with a finding).
    pub segments: usize,
    /// Session casts looked at.
    pub sessions: usize,
    /// Segments whose records match their signed chain.
    pub segments_verified: usize,
    /// Records in them.
    pub records_verified: u64,
    /// Session casts matching their signed hash.
    pub sessions_verified: usize,
    /// Objects that a manifest names as deleted by retention, and why.
    pub deleted_by_retention: Vec<Deleted>,
    /// Segments still open (being written, or left open until the recorder's
    /// next start): not sealed, so not yet covered.
    pub open_segments: Vec<String>,
    /// Everything found wrong; empty means the store verifies.
    pub findings: Vec<Finding>,
}

impl Report {
    fn find(&mut self, kind: &str, object: &str, line: Option<usize>, detail: String) {
        self.findings.push(Finding {
            kind: kind.to_owned(),
            object: object.to_owned(),
            line,
            detail,
        });
    }

    /// The report as text, one finding a line.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for f in &self.findings {
            let line = f
                .line
                .map(|l| format!(" line {}", l + 1))
                .unwrap_or_default();
            out.push_str(&format!("{}: {}{}: {}\n", f.kind, f.object, line, f.detail));
        }
        for d in &self.deleted_by_retention {
            out.push_str(&format!(
                "deleted by retention (not a finding): {}: {} ({})\n",
                d.object, d.reason, d.manifest
            ));
        }
        out.push_str(&format!(
            "{} manifests ({} unsigned; signed by: {}), {} segments ({} records) and {} sessions verified, {} segments open, {} objects deleted by retention, {} findings\n",
            self.manifests,
            self.unsigned_manifests,
            if self.signers.is_empty() { "-".to_owned() } else { self.signers.join(", ") },
            self.segments_verified,
            self.records_verified,
            self.sessions_verified,
            self.open_segments.len(),
            self.deleted_by_retention.len(),
            self.findings.len(),
        ));
        out
    }
}

/// Signed facts gathered from the manifest chain.
#[derive(Default)]
struct Signed {
    segments: HashMap<String, (SegmentEntry, Option<Vec<Hash>>)>,
    sessions: HashMap<String, SessionEntry>,
    deleted: HashMap<String, Deleted>,
}

async fn check_manifests(
    storage: &dyn Storage,
    options: &VerifyOptions,
    report: &mut Report,
) -> Result<Signed, StorageError> {
    let mut signed = Signed::default();
    let listed = list_manifests(storage).await?;
    let manifests: HashSet<Uuid> = listed.iter().filter(|m| !m.2).map(|m| m.0).collect();
    let chains_objects: HashSet<Uuid> = listed.iter().filter(|m| m.2).map(|m| m.0).collect();
    for (id, key, is_chains) in &listed {
        if *is_chains && !manifests.contains(id) {
            report.find(
                "manifest-removed",
                layout::manifest_key(id).as_str(),
                None,
                format!("its chains object {key} is there, the manifest is not"),
            );
        }
    }
    let mut prev: Option<String> = None;
    let mut signers = HashSet::new();
    for (id, key, is_chains) in listed {
        if is_chains {
            continue;
        }
        report.manifests += 1;
        let Some(data) = get_opt(storage, &key).await? else {
            continue;
        };
        let hash = hex::encode(digest(&data));
        let Some((m, seal)) = manifest::decode(&data) else {
            // Unreadable: which objects it covered is unknown, so it counts for every day.
            report.find(
                "manifest-unreadable",
                &key,
                None,
                "not a manifest (two JSON lines)".into(),
            );
            prev = Some(hash);
            continue;
        };
        // With a day, a manifest naming none of its objects is only followed (its link).
        let names_day = options.day.is_none()
            || m.segments
                .iter()
                .map(|s| &s.key)
                .chain(m.sessions.iter().map(|s| &s.key))
                .chain(m.deleted.iter().map(|d| &d.key))
                .any(|k| options.in_day(k));
        if !names_day {
            report.manifests -= 1;
            prev = Some(hash);
            continue;
        }
        match &seal {
            SealCheck::Signed(public) => {
                if options
                    .public_key
                    .as_deref()
                    .is_some_and(|want| want != public)
                {
                    report.find(
                        "manifest-wrong-key",
                        &key,
                        None,
                        format!("signed by {public}, not by the given --public-key"),
                    );
                }
                signers.insert(public.clone());
            }
            SealCheck::Unsigned => {
                report.unsigned_manifests += 1;
                if options.public_key.is_some() {
                    report.find(
                        "manifest-unsigned",
                        &key,
                        None,
                        "written by a recorder run with --unsigned".into(),
                    );
                }
            }
            SealCheck::BadSignature => report.find(
                "manifest-edited",
                &key,
                None,
                "its signature does not match its content".into(),
            ),
        }
        if m.prev != prev {
            report.find(
                "manifest-removed",
                &key,
                None,
                match &prev {
                    None => "it links to a previous manifest, but none is stored before it (a manifest was removed)".into(),
                    Some(_) => "its link to the previous manifest is broken (the previous manifest was removed or edited)".into(),
                },
            );
        }
        prev = Some(hash);
        let mut leaves: HashMap<String, Vec<Hash>> = HashMap::new();
        if let Some(want) = &m.chains {
            let chains_key = layout::chains_key(&id);
            match get_opt(storage, chains_key.as_str()).await? {
                None => report.find(
                    "chains-missing",
                    chains_key.as_str(),
                    None,
                    format!("manifest {} names it", m.id),
                ),
                Some(body) if hex::encode(digest(&body)) != *want => report.find(
                    "chains-edited",
                    chains_key.as_str(),
                    None,
                    format!("its SHA-256 is not the one manifest {} signed", m.id),
                ),
                Some(body) => {
                    // Unreadable but signed: written by another version; the
                    // segments are still checked against their signed heads.
                    leaves.extend(manifest::decode_chains(&body).unwrap_or_default());
                }
            }
        } else if chains_objects.contains(&id) && !m.segments.is_empty() {
            report.find(
                "chains-edited",
                layout::chains_key(&id).as_str(),
                None,
                "the manifest names no chains object".into(),
            );
        }
        for s in m.segments {
            let l = leaves.remove(&s.key);
            signed.segments.insert(s.key.clone(), (s, l));
        }
        for s in m.sessions {
            signed.sessions.insert(s.key.clone(), s);
        }
        for d in m.deleted {
            signed.deleted.insert(
                d.key.clone(),
                Deleted {
                    object: d.key,
                    reason: d.reason,
                    manifest: key.clone(),
                },
            );
        }
    }
    report.signers = signers.into_iter().collect();
    report.signers.sort();
    Ok(signed)
}

/// Verifies `storage` (see the module doc).
pub async fn verify(
    storage: &dyn Storage,
    options: &VerifyOptions,
) -> Result<Report, StorageError> {
    let mut report = Report::default();
    let mut signed = check_manifests(storage, options, &mut report).await?;
    let recent = |id: &Uuid| {
        options
            .since_ms
            .is_none_or(|since| unix_millis(id) >= since)
    };
    let mut seen = HashSet::new();
    let mut keys = Vec::new();
    for folder in [
        layout::folder(RecordKind::Event),
        layout::folder(RecordKind::Response),
        layout::SESSIONS,
    ] {
        let prefix = match options.day_partition() {
            Some(date) => format!("{folder}/{date}"),
            None => folder.to_owned(),
        };
        keys.extend(storage.list(&prefix).await?.into_iter().map(|i| i.key));
    }
    keys.retain(|k| options.in_day(k));
    keys.sort();
    for key in keys {
        let Some((_, kind)) = layout::parse_key(&key) else {
            continue;
        };
        seen.insert(key.clone());
        match kind {
            KeyKind::Batch(_, id) => {
                if !recent(&id) {
                    continue;
                }
                report.segments += 1;
                let Some((entry, leaves)) = signed.segments.get(&key) else {
                    if storage.is_sealed(&key).await.unwrap_or(true) {
                        report.find("segment-unmanifested", &key, None, "sealed, but no manifest covers it (added, or sealed after the recorder's last manifest)".into());
                    } else {
                        report.open_segments.push(key);
                    }
                    continue;
                };
                let hashed = hash_object(storage, &key, ChainBuilder::default()).await?;
                let Some((builder, _)) = hashed else {
                    continue;
                };
                let chain = builder.finish();
                if hex::encode(chain.head) == entry.chain
                    && chain.leaves.len() as u64 == entry.records
                {
                    report.segments_verified += 1;
                    report.records_verified += entry.records;
                    continue;
                }
                let changes = leaves
                    .as_deref()
                    .map(|l| compare(l, &chain.leaves))
                    .unwrap_or_default();
                if changes.is_empty() {
                    report.find(
                        "segment-edited",
                        &key,
                        None,
                        format!(
                            "its chain head is not the signed one ({} records stored, {} signed)",
                            chain.leaves.len(),
                            entry.records
                        ),
                    );
                }
                for (change, line) in changes {
                    let kind = serde_json::to_value(change)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default();
                    let detail = match change {
                        super::chain::Change::RecordEdited => {
                            "this stored record's bytes are not the signed ones"
                        }
                        super::chain::Change::RecordRemoved => {
                            "a signed record at this line is gone"
                        }
                        super::chain::Change::RecordReordered => {
                            "the records are the signed ones, in another order from this line"
                        }
                        super::chain::Change::RecordAppended => {
                            "this record was added after the segment was sealed"
                        }
                    };
                    report.find(&kind, &key, Some(line), detail.into());
                }
            }
            KeyKind::Session(id) => {
                if !recent(&id) {
                    continue;
                }
                report.sessions += 1;
                let Some(entry) = signed.sessions.get(&key) else {
                    report.find("session-unmanifested", &key, None, "no manifest covers this cast (added, or finished after the recorder's last manifest)".into());
                    continue;
                };
                let Some((hasher, bytes)) = hash_object(storage, &key, Sha256::new()).await? else {
                    continue;
                };
                if hex::encode(hasher.finalize()) == entry.sha256 {
                    report.sessions_verified += 1;
                } else {
                    report.find(
                        "session-edited",
                        &key,
                        None,
                        format!(
                            "its SHA-256 is not the signed one ({} bytes stored, {} signed)",
                            bytes, entry.bytes
                        ),
                    );
                }
            }
        }
    }
    let mut missing: Vec<(String, &'static str)> = Vec::new();
    for key in signed.segments.keys() {
        missing.push((key.clone(), "segment-missing"));
    }
    for key in signed.sessions.keys() {
        missing.push((key.clone(), "session-missing"));
    }
    missing.retain(|(k, _)| !seen.contains(k));
    missing.sort();
    let mut deleted: Vec<Deleted> = signed.deleted.drain().map(|(_, d)| d).collect();
    deleted.sort_by(|a, b| a.object.cmp(&b.object));
    let deleted_keys: HashSet<String> = deleted.iter().map(|d| d.object.clone()).collect();
    missing.retain(|(k, _)| !deleted_keys.contains(k));
    deleted.retain(|d| options.in_day(&d.object));
    report.deleted_by_retention = deleted;
    for (key, kind) in missing {
        let in_scope = match layout::parse_key(&key) {
            Some((_, KeyKind::Batch(_, id) | KeyKind::Session(id))) => recent(&id),
            None => true,
        } && options.in_day(&key);
        if in_scope {
            report.find(
                kind,
                &key,
                None,
                "a manifest names it, storage does not have it".into(),
            );
        }
    }
    Ok(report)
}
