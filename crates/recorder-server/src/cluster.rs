//! Replicas sharing one bucket (docs/storage.md, "Several recorders on one
//! bucket"): each replica's lease, the leader lease, and which interrupted
//! sessions may be finalised.
//!
//! * Every replica rewrites its own lease object
//!   (`_kubescribe/leases/replicas/<owner>`) every third of `--lease-ttl`;
//!   the store's modification time of that object is the lease. A replica
//!   is alive while that time is less than `--lease-ttl` old, measured by the
//!   store's clock (the modification time of this replica's own latest
//!   renewal), so replicas never compare their own clocks.
//! * A replica acts on its own lease ([`Fence::holds`]) only until a third
//!   of the TTL before the others may count it as gone (measured from before
//!   its renewal request was sent): a replica cut off from the bucket stops
//!   acknowledging session bytes before any other replica may finalise its
//!   sessions.
//! * The leader lease (`_kubescribe/leases/leader`) names one replica; it is
//!   taken only by a conditional write (`If-None-Match: *` when absent,
//!   `If-Match` on the entity tag read when its holder's lease expired), so
//!   two replicas never both take it. The leader seals, sweeps, exports and
//!   finalises the sessions of replicas whose lease expired.
//!
//! Storage one process owns (a directory) has no leases: its [`Fence`] is
//! solo, always held and leading, and every interrupted session is its own.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::record::new_id;
use crate::storage::fence::{is_valid_owner, Fence};
use crate::storage::layout::{self, LEASES};
use crate::storage::{LeaseStore, PutCondition, Storage, StorageError};

/// The longest a commit of one replica may take to land in the bucket (the
/// S3 client's request timeout is 60 s, its retries 20 s), with a margin:
/// how far back a replica looks for what others committed, and how long the
/// exporter waits before it passes a batch while other replicas commit.
pub(crate) const PEER_COMMIT_WINDOW: Duration = Duration::from_secs(90);

/// How long leases of replicas gone for this many TTLs are kept before the
/// leader deletes them.
const FORGET_AFTER_TTLS: i64 = 20;

/// The leader lease's content.
#[derive(Debug, Serialize, Deserialize)]
struct LeaderLease {
    holder: String,
}

/// A replica lease's content (for operators reading the bucket; the lease is
/// the object's modification time).
#[derive(Debug, Serialize)]
struct ReplicaLease<'a> {
    owner: &'a str,
    replica: &'a str,
    #[serde(rename = "ttlSeconds")]
    ttl_seconds: u64,
}

/// What this replica last learnt from the bucket.
#[derive(Debug, Default)]
struct View {
    /// The store's clock at this replica's latest renewal, and when (here) that was.
    store_now: Option<(i64, Instant)>,
    /// Every replica lease: owner → its modification time (store clock, ms).
    replicas: HashMap<String, i64>,
    /// The leader lease's holder, as last read.
    leader: Option<String>,
}

/// This replica's membership among the replicas of one bucket.
pub(crate) struct Membership {
    storage: Arc<dyn Storage>,
    fence: Arc<Fence>,
    replica: String,
    ttl: Duration,
    view: Mutex<View>,
}

/// The owner name of a new process: `<replica>-<8 random hex digits>`, with
/// `replica` cut to fit and reduced to `[a-z0-9-]`.
pub(crate) fn owner_name(replica: &str) -> String {
    let mut base: String = replica
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    base.truncate(crate::storage::fence::MAX_OWNER_LEN - 9);
    let base = base.trim_matches('-');
    let random = &new_id().simple().to_string()[24..];
    if base.is_empty() {
        format!("recorder-{random}")
    } else {
        format!("{base}-{random}")
    }
}

/// The replica name in an owner name (`<replica>-<8 hex digits>`).
fn replica_of(owner: &str) -> &str {
    owner.rsplit_once('-').map_or(owner, |(replica, _)| replica)
}

impl Membership {
    /// Joins the replicas of `storage` as `replica` (renewing the first lease
    /// before it returns), or stands alone on storage without leases.
    pub(crate) async fn join(
        storage: Arc<dyn Storage>,
        replica: &str,
        ttl: Duration,
    ) -> Result<Arc<Self>, StorageError> {
        let owner = owner_name(replica);
        debug_assert!(is_valid_owner(&owner));
        let fence = if storage.leases().is_some() {
            Fence::leased(owner)
        } else {
            Fence::solo(owner)
        };
        let me = Arc::new(Self {
            storage,
            fence: Arc::new(fence),
            replica: replica.to_owned(),
            ttl: ttl.max(Duration::from_secs(3)),
            view: Mutex::new(View::default()),
        });
        if me.fence.is_shared() {
            me.tick().await?;
            let leader = me
                .view
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .leader
                .clone();
            let other_live_leader = leader.is_some_and(|l| {
                l != me.fence.owner()
                    && me.alive(&l)
                    && replica_of(&l) != replica_of(me.fence.owner())
            });
            if other_live_leader {
                // Let a live leader see this replica's lease before it commits
                // anything (its exporter waits longer while other replicas
                // live). A leader of this replica's own name is this
                // replica's previous process (a restart), which exports
                // nothing any more.
                tokio::time::sleep(me.renew_every() + Duration::from_secs(1)).await;
                me.tick().await?;
            }
            let looping = me.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(looping.renew_every());
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                tick.tick().await;
                loop {
                    tick.tick().await;
                    if let Err(e) = looping.tick().await {
                        tracing::warn!(error = %e, holds = looping.fence.holds(), "could not renew this replica's lease on the bucket (retrying)");
                    }
                }
            });
        }
        Ok(me)
    }

    /// This replica's standing (shared with storage writers and the sealer).
    pub(crate) fn fence(&self) -> &Arc<Fence> {
        &self.fence
    }

    /// How often leases are renewed: a third of the TTL.
    pub(crate) fn renew_every(&self) -> Duration {
        self.ttl / 3
    }

    fn leases(&self) -> Result<&dyn LeaseStore, StorageError> {
        self.storage.leases().ok_or_else(|| {
            StorageError::Unusable(format!("{} keeps no leases", self.storage.describe()))
        })
    }

    /// One round: renew this replica's lease, read the others', and take or
    /// keep the leader lease.
    pub(crate) async fn tick(&self) -> Result<(), StorageError> {
        let leases = self.leases()?;
        let owner = self.fence.owner();
        let key = layout::replica_lease_key(owner)
            .ok_or_else(|| StorageError::Unusable(format!("invalid replica name {owner:?}")))?;
        let body = serde_json::to_vec(&ReplicaLease {
            owner,
            replica: &self.replica,
            ttl_seconds: self.ttl.as_secs(),
        })
        .unwrap_or_default();
        let sent = Instant::now();
        leases
            .put_if(&key, Bytes::from(body), PutCondition::Always)
            .await?;
        let replicas = Self::list_replicas(leases).await?;
        let Some(&mine) = replicas.get(owner) else {
            return Err(StorageError::NotFound(key.to_string()));
        };
        // Others count this lease from `mine` (no earlier than `sent`, by the
        // store's clock); this replica stops a third earlier.
        self.fence.extend_to(sent + self.ttl - self.renew_every());
        {
            let mut view = self.view.lock().unwrap_or_else(|e| e.into_inner());
            view.store_now = Some((mine, sent));
            view.replicas = replicas;
        }
        let leads = self.watch_leader().await?;
        tracing::debug!(
            owner,
            leads,
            replicas = self.live_replicas(),
            "lease renewed"
        );
        if leads {
            self.forget_long_gone().await;
        }
        Ok(())
    }

    /// Every replica lease: owner → its modification time (store clock, ms).
    async fn list_replicas(leases: &dyn LeaseStore) -> Result<HashMap<String, i64>, StorageError> {
        let mut replicas = HashMap::new();
        for (listed, modified) in leases.list_modified(&format!("{LEASES}/replicas/")).await? {
            if let Some(o) = layout::replica_lease_owner(&listed) {
                replicas.insert(o.to_owned(), modified);
            }
        }
        Ok(replicas)
    }

    /// Lists the replica leases again (the leader, before it finalises
    /// sessions: a replica that left deleted its lease, and its sessions are
    /// then finalised at once). This replica's own entry is kept as renewed.
    pub(crate) async fn refresh_replicas(&self) -> Result<(), StorageError> {
        let mut replicas = Self::list_replicas(self.leases()?).await?;
        let mut view = self.view.lock().unwrap_or_else(|e| e.into_inner());
        let owner = self.fence.owner();
        if let Some(mine) = view.replicas.get(owner).copied() {
            replicas.insert(owner.to_owned(), mine);
        }
        view.replicas = replicas;
        Ok(())
    }

    /// Reads the leader lease and takes it when it names no live replica
    /// (absent, handed to nobody by a replica that left, or its holder's
    /// lease expired). Returns whether this replica leads. Cheap (a GET, and
    /// a conditional PUT only to take it): run at every peer pass too, so
    /// that a lead handed over is taken within a pass.
    pub(crate) async fn watch_leader(&self) -> Result<bool, StorageError> {
        let leases = self.leases()?;
        let owner = self.fence.owner();
        let leader = self.take_or_keep_leader(leases).await?;
        let leads = leader.as_deref() == Some(owner);
        let was = self.fence.leads();
        self.fence.set_leader(leads);
        if leads != was && self.fence.holds() {
            tracing::info!(
                owner,
                leads,
                "leader lease {}",
                if leads {
                    "taken"
                } else {
                    "held by another replica"
                }
            );
        }
        self.view.lock().unwrap_or_else(|e| e.into_inner()).leader = leader;
        Ok(leads && self.fence.holds())
    }

    /// Leaves the bucket (shutting down): stops acknowledging as this owner,
    /// lets writes in flight end (unacknowledged), then deletes this
    /// replica's lease and, when it leads, hands the leader lease to nobody,
    /// so that the other replicas finalise its sessions and one of them
    /// leads within a pass instead of a lease TTL. Best effort: what fails
    /// here expires anyway.
    pub(crate) async fn leave(&self) {
        if !self.fence.is_shared() {
            return;
        }
        let led = self.fence.leads();
        self.fence.release();
        tokio::time::sleep(Duration::from_secs(1)).await;
        let Ok(leases) = self.leases() else {
            return;
        };
        let owner = self.fence.owner();
        if led {
            let key = layout::leader_lease_key();
            if let Ok(Some(current)) = leases.read_versioned(&key).await {
                let holder = serde_json::from_slice::<LeaderLease>(&current.data)
                    .ok()
                    .map(|l| l.holder);
                if holder.as_deref() == Some(owner) {
                    let nobody = serde_json::to_vec(&LeaderLease {
                        holder: String::new(),
                    })
                    .unwrap_or_default();
                    let handed = leases
                        .put_if(
                            &key,
                            Bytes::from(nobody),
                            PutCondition::Matches(current.etag),
                        )
                        .await;
                    if let Err(e) = handed {
                        tracing::warn!(error = %e, "could not hand the leader lease over (it expires within --lease-ttl)");
                    }
                }
            }
        }
        if let Some(key) = layout::replica_lease_key(owner) {
            match self.storage.delete(key.as_str()).await {
                Ok(()) => tracing::info!(
                    owner,
                    "left the bucket: the other replicas take over this one's sessions now"
                ),
                Err(e) => {
                    tracing::warn!(owner, error = %e, "could not delete this replica's lease (it expires within --lease-ttl)")
                }
            }
        }
    }

    /// Reads the leader lease; takes it when absent or when its holder's
    /// lease expired. Returns the holder.
    async fn take_or_keep_leader(
        &self,
        leases: &dyn LeaseStore,
    ) -> Result<Option<String>, StorageError> {
        let key = layout::leader_lease_key();
        let owner = self.fence.owner();
        let mine = Bytes::from(
            serde_json::to_vec(&LeaderLease {
                holder: owner.to_owned(),
            })
            .unwrap_or_default(),
        );
        let condition = match leases.read_versioned(&key).await? {
            None => PutCondition::Absent,
            Some(current) => {
                let holder = serde_json::from_slice::<LeaderLease>(&current.data)
                    .ok()
                    .map(|l| l.holder);
                match holder {
                    Some(h) if h == owner || self.alive(&h) => return Ok(Some(h)),
                    _ => PutCondition::Matches(current.etag),
                }
            }
        };
        if leases.put_if(&key, mine, condition).await? {
            Ok(Some(owner.to_owned()))
        } else {
            // Another replica took it first: read who.
            Ok(leases
                .read_versioned(&key)
                .await?
                .and_then(|l| serde_json::from_slice::<LeaderLease>(&l.data).ok())
                .map(|l| l.holder))
        }
    }

    /// The store's clock now, estimated from this replica's latest renewal.
    fn store_now(view: &View) -> Option<i64> {
        view.store_now.map(|(ms, at)| {
            ms.saturating_add(i64::try_from(at.elapsed().as_millis()).unwrap_or(i64::MAX))
        })
    }

    /// Whether replica `owner`'s lease is less than the TTL old (this
    /// replica is alive while it holds its own).
    pub(crate) fn alive(&self, owner: &str) -> bool {
        if owner == self.fence.owner() {
            return self.fence.holds();
        }
        let view = self.view.lock().unwrap_or_else(|e| e.into_inner());
        let ttl_ms = i64::try_from(self.ttl.as_millis()).unwrap_or(i64::MAX);
        match (view.replicas.get(owner), Self::store_now(&view)) {
            (Some(modified), Some(now)) => now < modified.saturating_add(ttl_ms),
            // Never seen, or this replica has not reached the bucket yet:
            // gone in the first case; in the second nothing may be decided,
            // and `may_recover` asks for leadership first.
            _ => false,
        }
    }

    /// Whether this replica may finalise an interrupted session whose chunks
    /// name `owner`: on solo storage always; on a shared bucket only the
    /// leader, and only sessions of a replica whose lease expired (or that
    /// name no owner).
    pub(crate) fn may_recover(&self, owner: Option<&str>) -> bool {
        if !self.fence.is_shared() {
            return true;
        }
        self.fence.leads() && owner.is_none_or(|o| o != self.fence.owner() && !self.alive(o))
    }

    /// Whether another replica's lease is current, so that its commits may
    /// still be landing (a replica whose lease expired sent its last request
    /// before then).
    pub(crate) fn has_live_peers(&self) -> bool {
        self.other_replicas().iter().any(|o| self.alive(o))
    }

    /// Every other replica with a lease in the bucket, as last listed.
    fn other_replicas(&self) -> Vec<String> {
        self.view
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .replicas
            .keys()
            .filter(|o| o.as_str() != self.fence.owner())
            .cloned()
            .collect()
    }

    /// Other replicas whose lease expired (their leases are deleted by the
    /// leader after a while).
    pub(crate) fn gone_replicas(&self) -> Vec<String> {
        self.other_replicas()
            .into_iter()
            .filter(|o| !self.alive(o))
            .collect()
    }

    /// Replicas whose lease is current, this one included.
    pub(crate) fn live_replicas(&self) -> usize {
        let owners: Vec<String> = self
            .view
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .replicas
            .keys()
            .cloned()
            .collect();
        owners.iter().filter(|o| self.alive(o)).count()
    }

    /// Deletes the leases of replicas gone for [`FORGET_AFTER_TTLS`] TTLs
    /// (their sessions were finalised long before).
    async fn forget_long_gone(&self) {
        let gone: Vec<String> = {
            let view = self.view.lock().unwrap_or_else(|e| e.into_inner());
            let Some(now) = Self::store_now(&view) else {
                return;
            };
            let horizon = i64::try_from(self.ttl.as_millis())
                .unwrap_or(i64::MAX)
                .saturating_mul(FORGET_AFTER_TTLS);
            view.replicas
                .iter()
                .filter(|(_, modified)| now > modified.saturating_add(horizon))
                .map(|(owner, _)| owner.clone())
                .collect()
        };
        for owner in gone {
            let Some(key) = layout::replica_lease_key(&owner) else {
                continue;
            };
            if let Err(e) = self.storage.delete(key.as_str()).await {
                tracing::debug!(%owner, error = %e, "could not delete a long-gone replica's lease");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_names_are_valid_and_distinct() {
        for replica in [
            "recorder-0",
            "Recorder_0.example",
            "",
            "---",
            &"x".repeat(200),
        ] {
            let a = owner_name(replica);
            let b = owner_name(replica);
            assert!(is_valid_owner(&a), "{replica:?} -> {a:?}");
            assert_ne!(a, b, "each process is a new owner");
        }
        assert!(owner_name("recorder-0").starts_with("recorder-0-"));
        assert_eq!(replica_of(&owner_name("recorder-0")), "recorder-0");
    }
}
