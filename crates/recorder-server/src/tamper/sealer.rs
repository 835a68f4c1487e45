//! The sealer: writes a signed manifest for every sealed record segment and
//! every finished session cast that no manifest covers yet: at start-up over
//! the whole store (after crash recovery, so what recovery kept is what is
//! sealed), then every `--manifest-interval` over the recent partitions and
//! the segments it saw open. It also runs the retention sweep, which deletes
//! only covered (so sealed) objects, and names them in a manifest first.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::chain::{digest, ChainBuilder, Hash};
use super::manifest::{self, DeletedEntry, Manifest, SealCheck, SegmentEntry, SessionEntry};
use super::store::{get_opt, hash_object, now_rfc3339};
use super::verify::{verify, Report, VerifyOptions};
use crate::config::Retention;
use crate::record::{id_at_millis, new_id, unix_millis, RecordId, RecordKind};
use crate::signing::Signing;
use crate::storage::fence::Fence;
use crate::storage::layout::{self, ExportCursor, KeyKind, EXPORT_CURSORS, LEGAL_HOLD};
use crate::storage::{Storage, StorageError};

/// Which objects a sealing pass looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    /// The whole store (start-up).
    All,
    /// The current and previous hour's partitions, today's and yesterday's
    /// sessions, and the segments seen open before.
    Recent,
}

/// What the sealer remembers of a covered object.
struct Covered {
    /// The last record id of a segment.
    last_id: Option<String>,
    /// The manifest object that covers it.
    manifest: String,
}

struct State {
    /// Keys some manifest already covers.
    covered: HashMap<String, Covered>,
    /// Keys a manifest names as deleted by retention.
    deleted: HashSet<String>,
    /// Objects to look at again: segments seen open (not sealed yet), casts
    /// whose read failed.
    open: HashSet<String>,
    /// SHA-256 (hex) of the newest manifest object.
    prev: Option<String>,
    /// The key of the newest manifest read or written (`""`: none).
    newest: String,
}

/// Writes manifests (see the module doc).
pub(crate) struct Sealer {
    storage: Arc<dyn Storage>,
    signing: Signing,
    /// Seals and sweeps only while this leads.
    fence: Arc<Fence>,
    state: tokio::sync::Mutex<State>,
    /// Objects to look at in the next pass (see [`Sealer::note`]).
    noted: std::sync::Mutex<HashSet<String>>,
    /// Past days' answers; held while a day is checked, so one at a time.
    days: tokio::sync::Mutex<HashMap<time::Date, CachedDay>>,
}

/// A session cast checked against its manifest.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub(crate) struct SessionCheck {
    /// `verified`, `unsigned` (hash matches, no signature), `pending` (no manifest yet) or `failed`.
    pub(crate) state: &'static str,
    /// The manifest object that covers it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) manifest: Option<String>,
    /// A sentence for the reader.
    pub(crate) detail: &'static str,
}

impl SessionCheck {
    fn new(state: &'static str, manifest: Option<String>, detail: &'static str) -> Self {
        Self {
            state,
            manifest,
            detail,
        }
    }
}

/// One UTC day checked against the manifests (the UI's per-day badge,
/// `GET /api/v1/verification?date=…`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub(crate) struct DayCheck {
    /// The day, `YYYY-MM-DD`.
    pub(crate) date: String,
    /// `failed` (a problem), `pending` (nothing covered yet, something to
    /// cover), `empty` (nothing stored that day), `unsigned` (everything
    /// covered matches, some manifest unsigned) or `verified`.
    pub(crate) status: &'static str,
    /// Record segments of the day.
    pub(crate) segments: usize,
    /// Session casts of the day.
    pub(crate) sessions: usize,
    /// Segments and casts matching their signed manifest.
    pub(crate) verified: usize,
    /// Segments still open and objects no manifest covers yet.
    pub(crate) pending: usize,
    /// What was found wrong, a sentence each (at most [`MAX_PROBLEMS`]).
    pub(crate) problems: Vec<String>,
}

/// The most problems a [`DayCheck`] lists (then a count of the rest).
const MAX_PROBLEMS: usize = 50;

/// How long a past day's answer is reused while no manifest is written: a
/// sealed day changes only by retention (which writes a manifest) or by
/// tampering, which this bounds the time to notice.
const DAY_CACHE_MAX_AGE: Duration = Duration::from_secs(60);

/// The most past days whose answers are kept.
const DAY_CACHE_DAYS: usize = 32;

/// A past day's answer, for [`Sealer::check_day`].
struct CachedDay {
    /// The newest manifest's hash when it was computed.
    newest: Option<String>,
    /// When it was computed.
    at: std::time::Instant,
    /// The answer.
    check: DayCheck,
}

impl DayCheck {
    /// The day's answer from `report` (a [`verify`] scoped to the day), with
    /// `own` the recorder's public key (`None`: `--unsigned`) and
    /// `unexpected` the uncovered objects the sealer does not expect to cover
    /// (see [`Sealer::expects`]).
    fn of(
        date: time::Date,
        report: &Report,
        own: Option<&str>,
        unexpected: &HashSet<String>,
    ) -> Self {
        let mut pending = report.open_segments.len();
        let mut problems = Vec::new();
        for f in &report.findings {
            match f.kind.as_str() {
                "segment-unmanifested" | "session-unmanifested"
                    if unexpected.contains(&f.object) =>
                {
                    problems.push(format!(
                        "{}: {}: no manifest covers it, and the recorder does not expect to cover it (added to storage, or the manifest that covered it was removed)",
                        f.kind, f.object
                    ));
                }
                // Sealed or finished after the newest manifest: the next pass covers it.
                "segment-unmanifested" | "session-unmanifested" => pending += 1,
                _ => {
                    let line = f
                        .line
                        .map(|l| format!(" line {}", l + 1))
                        .unwrap_or_default();
                    problems.push(format!("{}: {}{}: {}", f.kind, f.object, line, f.detail));
                }
            }
        }
        for signer in &report.signers {
            if own != Some(signer.as_str()) {
                problems.push(format!(
                    "manifest-wrong-key: a manifest of this day is signed by {signer}, not by this recorder's key"
                ));
            }
        }
        if problems.len() > MAX_PROBLEMS {
            let more = problems.len() - MAX_PROBLEMS;
            problems.truncate(MAX_PROBLEMS);
            problems.push(format!(
                "… and {more} more (run `kubescribe-recorder verify`)"
            ));
        }
        let verified = report.segments_verified + report.sessions_verified;
        let status = if !problems.is_empty() {
            "failed"
        } else if verified == 0 && pending > 0 {
            "pending"
        } else if report.segments + report.sessions == 0 {
            "empty"
        } else if report.unsigned_manifests > 0 {
            "unsigned"
        } else {
            "verified"
        };
        Self {
            date: format!(
                "{:04}-{:02}-{:02}",
                date.year(),
                u8::from(date.month()),
                date.day()
            ),
            status,
            segments: report.segments,
            sessions: report.sessions,
            verified,
            pending,
            problems,
        }
    }
}

const HOUR_MS: i64 = 3_600_000;

/// A UUIDv7 at `secs_ago` seconds before now (to name a partition).
fn id_ago(secs_ago: u64) -> Uuid {
    let ago_ms = i64::try_from(secs_ago.saturating_mul(1000)).unwrap_or(i64::MAX);
    id_at_millis(unix_millis(&new_id()).saturating_sub(ago_ms))
}

impl Sealer {
    /// Reads the manifests in `storage` to learn what is covered. It seals
    /// and sweeps only while `fence` leads (replicas sharing a bucket elect
    /// one leader, so that their manifests form one chain).
    pub(crate) async fn open(
        storage: Arc<dyn Storage>,
        signing: Signing,
        fence: Arc<Fence>,
    ) -> Result<Self, StorageError> {
        let sealer = Self {
            storage,
            signing,
            fence,
            noted: std::sync::Mutex::new(HashSet::new()),
            days: tokio::sync::Mutex::new(HashMap::new()),
            state: tokio::sync::Mutex::new(State {
                covered: HashMap::new(),
                deleted: HashSet::new(),
                open: HashSet::new(),
                prev: None,
                newest: String::new(),
            }),
        };
        sealer.refresh().await?;
        Ok(sealer)
    }

    /// Learns what the manifests written since the newest one read cover
    /// (another replica's, while this one does not lead).
    pub(crate) async fn refresh(&self) -> Result<(), StorageError> {
        let mut state = self.state.lock().await;
        let mut listed: Vec<(Uuid, String)> = self
            .storage
            .list_after(layout::MANIFESTS, &state.newest)
            .await?
            .into_iter()
            .filter_map(|info| match layout::parse_manifest_key(&info.key) {
                Some((id, false)) => Some((id, info.key)),
                _ => None,
            })
            .collect();
        listed.sort();
        for (_, key) in listed {
            let Some(data) = get_opt(&*self.storage, &key).await? else {
                continue;
            };
            state.prev = Some(hex::encode(digest(&data)));
            match manifest::decode(&data) {
                Some((m, _)) => {
                    let at = |last_id| Covered {
                        last_id,
                        manifest: key.clone(),
                    };
                    for s in m.segments {
                        state.open.remove(&s.key);
                        state.covered.insert(s.key, at(s.last_id));
                    }
                    for s in m.sessions {
                        state.open.remove(&s.key);
                        state.covered.insert(s.key, at(None));
                    }
                    for d in m.deleted {
                        state.covered.remove(&d.key);
                        state.deleted.insert(d.key);
                    }
                }
                None => {
                    tracing::warn!(%key, "a manifest does not parse (run `kubescribe-recorder verify`)")
                }
            }
            state.newest = key;
        }
        Ok(())
    }

    /// The prefixes a pass of `scope` lists.
    fn prefixes(scope: Scope) -> Vec<String> {
        match scope {
            Scope::All => vec![
                layout::folder(RecordKind::Event).to_owned(),
                layout::folder(RecordKind::Response).to_owned(),
                layout::SESSIONS.to_owned(),
            ],
            Scope::Recent => {
                let mut out = Vec::new();
                for ago in [0, 3600] {
                    let id = id_ago(ago);
                    for kind in [RecordKind::Event, RecordKind::Response] {
                        out.push(layout::partition(kind, &id));
                    }
                }
                for ago in [0, 86_400] {
                    out.push(layout::session_folder(&id_ago(ago)));
                }
                out.dedup();
                out
            }
        }
    }

    /// Writes one manifest for everything sealed and not yet covered in
    /// `scope`; returns how many objects it covered (0: no manifest written).
    pub(crate) async fn seal(&self, scope: Scope) -> Result<usize, StorageError> {
        if !self.fence.leads() {
            return Ok(0);
        }
        let mut state = self.state.lock().await;
        let mut keys: Vec<String> = state.open.iter().cloned().collect();
        if let Ok(mut noted) = self.noted.lock() {
            keys.extend(noted.drain());
        }
        for prefix in Self::prefixes(scope) {
            for info in self.storage.list(&prefix).await? {
                keys.push(info.key);
            }
        }
        keys.sort();
        keys.dedup();
        let mut segments = Vec::new();
        let mut chains = Vec::new();
        let mut sessions = Vec::new();
        for key in keys {
            if state.covered.contains_key(&key) || state.deleted.contains(&key) {
                continue;
            }
            let Some((_, kind)) = layout::parse_key(&key) else {
                continue;
            };
            if let KeyKind::Batch(..) = kind {
                match self.storage.is_sealed(&key).await {
                    Ok(true) => {}
                    Ok(false) => {
                        state.open.insert(key);
                        continue;
                    }
                    Err(StorageError::NotFound(_)) => {
                        state.open.remove(&key);
                        continue;
                    }
                    Err(e) => return Err(e),
                }
            }
            match kind {
                KeyKind::Batch(..) => {
                    let hashed = hash_object(&*self.storage, &key, ChainBuilder::default()).await?;
                    let Some((builder, bytes)) = hashed else {
                        state.open.remove(&key);
                        continue;
                    };
                    let chain = builder.finish();
                    segments.push(SegmentEntry {
                        key: key.clone(),
                        records: chain.leaves.len() as u64,
                        bytes,
                        first_id: chain.first_id,
                        last_id: chain.last_id,
                        chain: hex::encode(chain.head),
                    });
                    chains.push((key.clone(), chain.leaves));
                }
                KeyKind::Session(_) => {
                    let Some((hasher, bytes)) =
                        hash_object(&*self.storage, &key, Sha256::new()).await?
                    else {
                        state.open.remove(&key);
                        continue;
                    };
                    sessions.push(SessionEntry {
                        key: key.clone(),
                        bytes,
                        sha256: hex::encode(hasher.finalize()),
                    });
                }
            }
        }
        let count = segments.len() + sessions.len();
        tracing::debug!(?scope, uncovered = count, "sealing pass");
        if count == 0 {
            return Ok(0);
        }
        self.write(&mut state, segments, chains, sessions, Vec::new())
            .await?;
        Ok(count)
    }

    /// Writes the chains object (if any) and the manifest, linked to the
    /// previous one, and records what it covers.
    async fn write(
        &self,
        state: &mut State,
        segments: Vec<SegmentEntry>,
        chains: Vec<(String, Vec<Hash>)>,
        sessions: Vec<SessionEntry>,
        deleted: Vec<DeletedEntry>,
    ) -> Result<(), StorageError> {
        let id = new_id();
        let chains_hash = if chains.is_empty() {
            None
        } else {
            let body = manifest::encode_chains(&chains);
            let hash = hex::encode(digest(&body));
            self.storage
                .put(&layout::chains_key(&id), Bytes::from(body))
                .await?;
            Some(hash)
        };
        let m = Manifest {
            version: 2,
            id: id.simple().to_string(),
            time: now_rfc3339(),
            prev: state.prev.clone(),
            chains: chains_hash,
            segments,
            sessions,
            deleted,
        };
        let bytes = manifest::encode(&m, &self.signing);
        let hash = hex::encode(digest(&bytes));
        if !self.fence.leads() {
            return Err(StorageError::LeaseLost {
                owner: self.fence.owner().to_owned(),
            });
        }
        self.storage
            .put(&layout::manifest_key(&id), Bytes::from(bytes))
            .await?;
        let manifest_key = layout::manifest_key(&id).to_string();
        for s in &m.segments {
            state.open.remove(&s.key);
            let covered = Covered {
                last_id: s.last_id.clone(),
                manifest: manifest_key.clone(),
            };
            state.covered.insert(s.key.clone(), covered);
        }
        for s in &m.sessions {
            state.open.remove(&s.key);
            let covered = Covered {
                last_id: None,
                manifest: manifest_key.clone(),
            };
            state.covered.insert(s.key.clone(), covered);
        }
        for d in &m.deleted {
            state.covered.remove(&d.key);
            state.deleted.insert(d.key.clone());
        }
        state.prev = Some(hash);
        state.newest = manifest_key;
        tracing::debug!(manifest = %m.id, segments = m.segments.len(), sessions = m.sessions.len(), deleted = m.deleted.len(), "wrote a manifest");
        Ok(())
    }

    /// The lowest export cursor (`_kubescribe/export/<sink>/cursor`, `{"after":"<record id>"}`)
    /// as (batch, line); `Ok(None)` when there is none, `Err` (a reason) when one cannot be read:
    /// then nothing may be deleted.
    async fn export_floor(&self) -> Result<Option<(u128, usize)>, String> {
        let listed = self
            .storage
            .list(EXPORT_CURSORS)
            .await
            .map_err(|e| e.to_string())?;
        let mut floor: Option<(u128, usize)> = None;
        for info in listed {
            if !info.key.ends_with("/cursor") {
                continue;
            }
            let data = self
                .storage
                .get(&info.key)
                .await
                .map_err(|e| e.to_string())?;
            let at = ExportCursor::parse(&data)
                .map(|id| (id.batch.as_u128(), id.line))
                .map_err(|why| format!("{}: {why}", info.key))?;
            floor = Some(floor.map_or(at, |f| f.min(at)));
        }
        Ok(floor)
    }

    /// One retention sweep (docs/storage.md, "Retention"): deletes covered
    /// segments and sessions past `retention`, never one holding a record an
    /// export cursor has not passed, nothing under legal hold; names them in
    /// a manifest before deleting them. Returns how many it deleted.
    pub(crate) async fn sweep(&self, retention: &Retention) -> Result<usize, StorageError> {
        if retention.events_days.is_none() && retention.sessions_days.is_none() {
            return Ok(0);
        }
        if !self.fence.leads() {
            return Ok(0);
        }
        if retention.legal_hold {
            tracing::info!("legal hold (--legal-hold): retention deletes nothing");
            return Ok(0);
        }
        if get_opt(&*self.storage, LEGAL_HOLD).await?.is_some() {
            tracing::warn!(
                marker = LEGAL_HOLD,
                "legal hold: retention deletes nothing while the marker exists"
            );
            return Ok(0);
        }
        let floor = match self.export_floor().await {
            Ok(floor) => floor,
            Err(reason) => {
                tracing::warn!(%reason, "an export cursor cannot be read: retention deletes nothing");
                return Ok(0);
            }
        };
        let now_ms = unix_millis(&new_id());
        let day_ms = 86_400_000i64;
        let mut state = self.state.lock().await;
        let mut doomed = Vec::new();
        for (key, Covered { last_id, .. }) in &state.covered {
            let Some((_, kind)) = layout::parse_key(key) else {
                continue;
            };
            let reason = match kind {
                KeyKind::Batch(_, id) => {
                    let Some(days) = retention.events_days else {
                        continue;
                    };
                    // Every record in a segment is from its name's hour.
                    let hour_end = unix_millis(&id) / HOUR_MS * HOUR_MS + HOUR_MS;
                    if hour_end > now_ms - i64::from(days) * day_ms {
                        continue;
                    }
                    let exported = match (floor, last_id.as_deref().and_then(RecordId::parse)) {
                        (None, _) => true,
                        (Some(_), None) => last_id.is_none(),
                        (Some(f), Some(last)) => (last.batch.as_u128(), last.line) <= f,
                    };
                    if !exported {
                        continue;
                    }
                    format!("retention: records older than {days} days (--retain-events-days)")
                }
                KeyKind::Session(id) => {
                    let Some(days) = retention.sessions_days else {
                        continue;
                    };
                    if unix_millis(&id) > now_ms - i64::from(days) * day_ms {
                        continue;
                    }
                    format!("retention: session older than {days} days (--retain-sessions-days)")
                }
            };
            doomed.push(DeletedEntry {
                key: key.clone(),
                reason,
            });
        }
        if doomed.is_empty() {
            return Ok(0);
        }
        doomed.sort_by(|a, b| a.key.cmp(&b.key));
        let keys: Vec<String> = doomed.iter().map(|d| d.key.clone()).collect();
        self.write(&mut state, Vec::new(), Vec::new(), Vec::new(), doomed)
            .await?;
        for key in &keys {
            self.storage.delete(key).await?;
        }
        tracing::info!(
            objects = keys.len(),
            "retention deleted sealed objects past their retention (named in a manifest)"
        );
        Ok(keys.len())
    }

    /// Makes the next pass look at object `key` (a session cast that just
    /// ended, whatever the partition of its start).
    pub(crate) fn note(&self, key: &str) {
        // Not the state's lock: a pass may hold that for a while.
        if let Ok(mut noted) = self.noted.lock() {
            noted.insert(key.to_owned());
        }
    }

    /// Checks session cast `key` against the manifest that covers it (the
    /// UI's "verified" badge).
    pub(crate) async fn check_session(&self, key: &str) -> Result<SessionCheck, StorageError> {
        let manifest_key = match self.state.lock().await.covered.get(key) {
            Some(c) => c.manifest.clone(),
            None => {
                return Ok(SessionCheck::new(
                    "pending",
                    None,
                    "no manifest covers it yet",
                ))
            }
        };
        let at = Some(manifest_key.clone());
        let Some(data) = get_opt(&*self.storage, &manifest_key).await? else {
            return Ok(SessionCheck::new("failed", at, "its manifest is missing"));
        };
        let Some((m, seal)) = manifest::decode(&data) else {
            return Ok(SessionCheck::new(
                "failed",
                at,
                "its manifest does not parse",
            ));
        };
        let signed = match (seal, self.signing.public_key_hex()) {
            (SealCheck::Signed(by), Some(own)) if by == own => true,
            (SealCheck::Signed(_), _) => {
                return Ok(SessionCheck::new(
                    "failed",
                    at,
                    "its manifest is signed by another key",
                ))
            }
            (SealCheck::Unsigned, _) => false,
            (SealCheck::BadSignature, _) => {
                return Ok(SessionCheck::new(
                    "failed",
                    at,
                    "its manifest's signature does not match",
                ))
            }
        };
        let Some(entry) = m.sessions.iter().find(|s| s.key == key) else {
            return Ok(SessionCheck::new(
                "failed",
                at,
                "its manifest does not name it",
            ));
        };
        let Some((cast, _)) = hash_object(&*self.storage, key, Sha256::new()).await? else {
            return Ok(SessionCheck::new("failed", at, "the cast is missing"));
        };
        Ok(if hex::encode(cast.finalize()) != entry.sha256 {
            SessionCheck::new("failed", at, "the cast is not the one its manifest hashed")
        } else if signed {
            SessionCheck::new("verified", at, "the cast matches its signed manifest")
        } else {
            SessionCheck::new(
                "unsigned",
                at,
                "the cast matches its manifest, which is unsigned (--unsigned)",
            )
        })
    }

    /// Whether object `key`, which no stored manifest covers, is one a coming
    /// pass will cover: a segment seen open, a cast noted as ended, or an
    /// object of the last two hours (not yet seen by a pass). Not so for one
    /// the sealer believes covered (its manifest was removed or changed) nor
    /// for an older one it never saw (added to storage by someone).
    fn expects(state: &State, noted: &HashSet<String>, key: &str, now_ms: i64) -> bool {
        if state.covered.contains_key(key) {
            return false;
        }
        if state.open.contains(key) || noted.contains(key) {
            return true;
        }
        match layout::parse_key(key) {
            Some((_, KeyKind::Batch(_, id) | KeyKind::Session(id))) => {
                unix_millis(&id) >= now_ms - 2 * HOUR_MS
            }
            None => false,
        }
    }

    /// Checks UTC day `date`'s segments and casts against the manifests
    /// (`verify` scoped to the day), one day at a time; a past day's answer
    /// is reused while no manifest is written, for up to
    /// [`DAY_CACHE_MAX_AGE`].
    pub(crate) async fn check_day(&self, date: time::Date) -> Result<DayCheck, StorageError> {
        let mut days = self.days.lock().await;
        let newest = self.state.lock().await.prev.clone();
        let past = date < time::OffsetDateTime::now_utc().date();
        if let Some(c) = days.get(&date) {
            if past && c.newest == newest && c.at.elapsed() < DAY_CACHE_MAX_AGE {
                return Ok(c.check.clone());
            }
        }
        let options = VerifyOptions {
            public_key: None,
            since_ms: None,
            day: Some(date),
        };
        let report = verify(&*self.storage, &options).await?;
        let unexpected = {
            let state = self.state.lock().await;
            // A manifest written meanwhile may cover what `verify` found uncovered.
            if state.prev == newest {
                let noted = self.noted.lock().map(|n| n.clone()).unwrap_or_default();
                let now_ms = unix_millis(&new_id());
                report
                    .findings
                    .iter()
                    .filter(|f| f.kind.ends_with("-unmanifested"))
                    .filter(|f| !Self::expects(&state, &noted, &f.object, now_ms))
                    .map(|f| f.object.clone())
                    .collect()
            } else {
                HashSet::new()
            }
        };
        let own = self.signing.public_key_hex();
        let check = DayCheck::of(date, &report, own.as_deref(), &unexpected);
        if past {
            if days.len() >= DAY_CACHE_DAYS {
                days.clear();
            }
            days.insert(
                date,
                CachedDay {
                    newest,
                    at: std::time::Instant::now(),
                    check: check.clone(),
                },
            );
        }
        Ok(check)
    }

    /// Runs a retention sweep every `retention.interval`, in the background.
    pub(crate) fn spawn_sweeper(self: Arc<Self>, retention: Retention) {
        if retention.events_days.is_none() && retention.sessions_days.is_none() {
            return;
        }
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(retention.interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                if !self.fence.leads() {
                    continue;
                }
                if let Err(e) = self.sweep(&retention).await {
                    tracing::warn!(error = %e, "retention sweep failed (retrying at the next interval)");
                }
            }
        });
    }

    /// Runs a [`Scope::Recent`] pass every `interval`, in the background,
    /// while this replica leads. While it does not, it reads the leader's
    /// new manifests instead; when it comes to lead, it reads them once more
    /// and seals the whole store ([`Scope::All`]).
    pub(crate) fn spawn_periodic(self: Arc<Self>, interval: Duration) {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            let mut following = !self.fence.leads();
            loop {
                tick.tick().await;
                let result = if !self.fence.leads() {
                    following = true;
                    // What is noted here the leader finds in its own passes.
                    self.noted.lock().unwrap_or_else(|e| e.into_inner()).clear();
                    self.refresh().await.map(|()| 0)
                } else if following {
                    following = false;
                    tracing::info!("this replica now leads: sealing what no manifest covers");
                    match self.refresh().await {
                        Ok(()) => self.seal(Scope::All).await,
                        Err(e) => Err(e),
                    }
                } else {
                    self.seal(Scope::Recent).await
                };
                if let Err(e) = result {
                    tracing::warn!(error = %e, "could not write or read manifests (retrying at the next interval)");
                }
            }
        });
    }
}
