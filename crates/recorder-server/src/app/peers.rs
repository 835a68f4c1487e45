//! What the other replicas on a shared bucket stored, brought into this
//! replica's indexes (docs/storage.md, "Several recorders on one bucket"),
//! and, on the leader, the sessions of replicas whose lease expired
//! finalised.
//!
//! Every `--peer-sync-interval`, each replica lists the record objects
//! committed in the last [`LOOKBACK`] (a listing that starts after the key
//! of that moment: record keys sort by time) and reads those no commit of
//! its own made; then the finished session casts of today and yesterday it
//! has not indexed. A commit whose write takes longer than [`LOOKBACK`] to
//! land on another replica is seen at this replica's next start.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::rebuild::{index_session, parse_batch};
use crate::cluster::{Membership, PEER_COMMIT_WINDOW};
use crate::index::{EventIndex, SessionIndex};
use crate::record::{id_at_millis, new_id, unix_millis, RecordKind};
use crate::storage::layout::{self, KeyKind};
use crate::storage::{Storage, StorageError};
use crate::tamper::sealer::Sealer;

/// Reads the peers' records and sessions into the indexes (see the module doc).
pub(crate) struct PeerReader {
    pub(crate) storage: Arc<dyn Storage>,
    pub(crate) membership: Arc<Membership>,
    pub(crate) events: Arc<EventIndex>,
    pub(crate) sessions: Arc<SessionIndex>,
    pub(crate) sealer: Arc<Sealer>,
    /// Record objects read (or found to be this replica's own), by key, with
    /// their batch's time (Unix ms), forgotten once out of the lookback.
    seen: HashMap<String, i64>,
    /// The gone replicas whose sessions the last recovery (as leader) finalised.
    recovered_for: BTreeSet<String>,
    /// When that was: recovery runs again when a replica is newly gone, on
    /// taking the lead, and every lease TTL.
    last_recovery: Option<Instant>,
}

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PassReport {
    /// Record objects of other replicas read.
    pub(crate) objects: usize,
    /// Sessions of other replicas indexed.
    pub(crate) sessions: usize,
    /// Interrupted sessions finalised (leader only).
    pub(crate) recovered: usize,
}

impl PeerReader {
    /// A reader of `storage` into `events` and `sessions`.
    pub(crate) fn new(
        storage: Arc<dyn Storage>,
        membership: Arc<Membership>,
        events: Arc<EventIndex>,
        sessions: Arc<SessionIndex>,
        sealer: Arc<Sealer>,
    ) -> Self {
        Self {
            storage,
            membership,
            events,
            sessions,
            sealer,
            seen: HashMap::new(),
            recovered_for: BTreeSet::new(),
            last_recovery: None,
        }
    }

    /// Runs a pass every `interval`, in the background.
    pub(crate) fn spawn(mut self, interval: Duration) {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                match self.pass().await {
                    Ok(r) if r != PassReport::default() => {
                        tracing::debug!(
                            objects = r.objects,
                            sessions = r.sessions,
                            recovered = r.recovered,
                            "read what other replicas stored"
                        )
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "could not read what other replicas stored (retrying)")
                    }
                }
            }
        });
    }

    /// One pass: finalise abandoned sessions (leader), read new records and sessions.
    pub(crate) async fn pass(&mut self) -> Result<PassReport, StorageError> {
        let mut report = PassReport::default();
        let mut recovered_keys = HashSet::new();
        let led = self.membership.fence().leads();
        if self.membership.fence().holds() {
            self.membership.watch_leader().await?;
        }
        if self.membership.fence().leads() {
            if !led {
                // Just took the lead (perhaps handed over by a replica that
                // left and deleted its lease): see who is gone now.
                self.membership.refresh_replicas().await?;
            }
            let gone: BTreeSet<String> = self.membership.gone_replicas().into_iter().collect();
            let due = self
                .last_recovery
                .is_none_or(|at| at.elapsed() >= self.membership.renew_every() * 3);
            if !led || due || gone != self.recovered_for {
                let membership = self.membership.clone();
                let may = move |owner: Option<&str>| membership.may_recover(owner);
                for r in self.storage.recover_sessions(&may).await? {
                    tracing::warn!(key = %r.key, bytes = r.size, "finalised a session whose recorder stopped renewing its lease (everything acknowledged is kept)");
                    self.sealer.note(r.key.as_str());
                    recovered_keys.insert(r.key.to_string());
                    report.recovered += 1;
                }
                self.recovered_for = gone;
                self.last_recovery = Some(Instant::now());
            }
        }
        // Alone on the bucket, there is nothing of others to read (what a
        // replica gone less than a lease ago stored is still read).
        if self.membership.has_live_peers() {
            report.objects = self.read_records().await?;
        }
        if self.membership.has_live_peers() || !recovered_keys.is_empty() {
            report.sessions = self.read_sessions(&recovered_keys).await?;
        }
        Ok(report)
    }

    async fn read_records(&mut self) -> Result<usize, StorageError> {
        let now_ms = unix_millis(&new_id());
        // How far back: the longest a commit takes to land, and the longest a
        // record may wait in a replica's log before it is shipped.
        let lookback = PEER_COMMIT_WINDOW + self.storage.visibility_delay();
        let from_ms = now_ms - i64::try_from(lookback.as_millis()).unwrap_or(i64::MAX);
        self.seen.retain(|_, ms| *ms >= from_ms);
        let from = id_at_millis(from_ms);
        let mut read = 0;
        for kind in [RecordKind::Event, RecordKind::Response] {
            let mut partitions = vec![layout::partition(kind, &from)];
            let current = layout::partition(kind, &new_id());
            if partitions[0] != current {
                partitions.push(current);
            }
            let after = layout::batch_key(kind, &from);
            for partition in partitions {
                for info in self.storage.list_after(&partition, after.as_str()).await? {
                    let Some((key, KeyKind::Batch(_, batch))) = layout::parse_key(&info.key) else {
                        continue;
                    };
                    if self.seen.contains_key(key.as_str()) {
                        continue;
                    }
                    self.seen.insert(key.to_string(), unix_millis(&batch));
                    if self.events.has_batch(batch.as_u128()) {
                        continue;
                    }
                    let data = match self.storage.get(key.as_str()).await {
                        Ok(data) => data,
                        Err(StorageError::NotFound(_)) => continue,
                        Err(e) => {
                            self.seen.remove(key.as_str());
                            return Err(e);
                        }
                    };
                    let mut bad = 0;
                    let lines = parse_batch(key.as_str(), &data, true, &mut bad);
                    self.events.insert_all(
                        lines
                            .into_iter()
                            .filter_map(|l| l.indexed.map(|(line, summary)| (l.id, line, summary))),
                    );
                    read += 1;
                }
            }
        }
        Ok(read)
    }

    async fn read_sessions(&self, recovered: &HashSet<String>) -> Result<usize, StorageError> {
        let now = new_id();
        let yesterday = id_at_millis(unix_millis(&now) - 86_400_000);
        let mut days = vec![layout::session_folder(&yesterday)];
        let today = layout::session_folder(&now);
        if days[0] != today {
            days.push(today);
        }
        let mut indexed = 0;
        for day in days {
            for info in self.storage.list(&day).await? {
                let Some((key, KeyKind::Session(id))) = layout::parse_key(&info.key) else {
                    continue;
                };
                // An entry here is this replica's own upload or one indexed
                // before, unless recovery just finalised it.
                if self.sessions.get(&id).is_some() && !recovered.contains(key.as_str()) {
                    continue;
                }
                if index_session(&*self.storage, &self.sessions, &info, recovered).await? {
                    indexed += 1;
                }
            }
        }
        Ok(indexed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_at_a_time_sort_where_that_time_does() {
        let a = id_at_millis(1_767_225_600_000);
        let b = id_at_millis(1_767_225_600_001);
        assert!(a.simple().to_string() < b.simple().to_string());
        assert_eq!(unix_millis(&a), 1_767_225_600_000);
    }
}
