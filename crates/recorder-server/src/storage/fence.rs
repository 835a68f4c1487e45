//! A recorder's standing on its storage: who it is (the owner named in the
//! session chunks it writes), whether it still holds its lease, and whether
//! it is the leader (the one replica that seals, sweeps, exports and
//! finalises sessions other replicas left behind).
//!
//! Storage one process owns (a locked directory) uses [`Fence::solo`]: it
//! always holds its lease and always leads. Replicas sharing a bucket use
//! [`Fence::leased`], which holds only while the membership loop above
//! the storage layer keeps extending it, so that a replica cut off from the
//! bucket stops acknowledging session bytes before the others may treat its
//! sessions as abandoned (docs/storage.md, "Several recorders on one bucket").

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// The longest owner name ([`Fence::owner`]).
pub const MAX_OWNER_LEN: usize = 63;

/// Whether `owner` is a valid owner name: 1–63 of `[a-z0-9-]`, so that it is
/// safe as one path component of an object key.
pub fn is_valid_owner(owner: &str) -> bool {
    !owner.is_empty()
        && owner.len() <= MAX_OWNER_LEN
        && owner
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// A recorder's standing on its storage (see the module doc).
#[derive(Debug)]
pub struct Fence {
    owner: String,
    /// `None`: the storage is this process's alone (always held, always leading).
    lease: Option<Lease>,
}

#[derive(Debug)]
struct Lease {
    /// Until when this process may act on its lease (its own conservative view).
    until: Mutex<Option<Instant>>,
    /// Whether the leader lease names this process.
    leader: AtomicBool,
}

impl Fence {
    /// Storage this process alone uses: held and leading for good.
    pub fn solo(owner: impl Into<String>) -> Self {
        Self {
            owner: owner.into(),
            lease: None,
        }
    }

    /// Storage shared with other replicas: held only until the time last
    /// given to [`Fence::extend_to`], leading only while also marked leader.
    pub fn leased(owner: impl Into<String>) -> Self {
        Self {
            owner: owner.into(),
            lease: Some(Lease {
                until: Mutex::new(None),
                leader: AtomicBool::new(false),
            }),
        }
    }

    /// The owner name written into this process's session chunks (one path component).
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// Whether the storage is shared with other replicas.
    pub fn is_shared(&self) -> bool {
        self.lease.is_some()
    }

    /// Whether this process may still write as its owner: always for solo
    /// storage; for shared storage, until the time its last renewal allows.
    pub fn holds(&self) -> bool {
        match &self.lease {
            None => true,
            Some(lease) => lease
                .until
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .is_some_and(|until| Instant::now() < until),
        }
    }

    /// Whether this process is the leader and still holds its lease.
    pub fn leads(&self) -> bool {
        match &self.lease {
            None => true,
            Some(lease) => lease.leader.load(Ordering::Acquire) && self.holds(),
        }
    }

    /// Extends the lease to `until` (never shortens it). No effect on solo storage.
    pub fn extend_to(&self, until: Instant) {
        if let Some(lease) = &self.lease {
            let mut held = lease.until.lock().unwrap_or_else(|e| e.into_inner());
            if held.is_none_or(|t| t < until) {
                *held = Some(until);
            }
        }
    }

    /// Gives the lease up at once (shutting down): nothing more is
    /// acknowledged as this owner, and it no longer leads. No effect on solo storage.
    pub fn release(&self) {
        if let Some(lease) = &self.lease {
            *lease.until.lock().unwrap_or_else(|e| e.into_inner()) = None;
            lease.leader.store(false, Ordering::Release);
        }
    }

    /// Marks whether the leader lease names this process. No effect on solo storage.
    pub fn set_leader(&self, leader: bool) {
        if let Some(lease) = &self.lease {
            lease.leader.store(leader, Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn solo_always_holds_and_leads() {
        let fence = Fence::solo("r-1");
        assert!(fence.holds() && fence.leads() && !fence.is_shared());
    }

    #[test]
    fn leased_holds_only_until_extended_time_and_leads_only_while_holding() {
        let fence = Fence::leased("r-1");
        assert!(!fence.holds(), "not held before the first renewal");
        fence.set_leader(true);
        assert!(
            !fence.leads(),
            "a leader that does not hold its lease does not lead"
        );
        fence.extend_to(Instant::now() + Duration::from_secs(60));
        assert!(fence.holds() && fence.leads());
        fence.extend_to(Instant::now());
        assert!(fence.holds(), "never shortened");
        fence.set_leader(false);
        assert!(!fence.leads());
        fence.set_leader(true);
        fence.release();
        assert!(!fence.holds() && !fence.leads(), "released for good");
    }

    #[test]
    fn owner_names_are_one_safe_path_component() {
        assert!(is_valid_owner("recorder-0-1a2b3c4d"));
        for bad in ["", "a/b", "..", "A", "a b", &"x".repeat(64)] {
            assert!(!is_valid_owner(bad), "{bad:?}");
        }
    }
}
