//! Idempotency keys: which keys are stored, under which record id, for a
//! bounded time (`--dedup-window`) and count (`--dedup-max-keys`). Owned by
//! the commit loop; rebuilt from storage at start-up.
//!
//! The index is on the commit loop's path, so it must never pause it for
//! long. A hash map that doubles rehashes every key at once: at a million
//! keys that took the commit loop 100–400 ms, and every caller waiting for a
//! durable acknowledgement waited as long (the tail stalls of fail closed in
//! `cargo xtask bench-proxy`). So the keys are spread over [`SHARDS`] maps,
//! each of which grows on its own (a 64th of the work at a time), and the
//! insertion order is kept in a ring reserved up front for the count bound
//! (up to [`ORDER_RESERVED_MAX`] keys; memory is only touched as keys come).

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Maps the keys are spread over.
const SHARDS: usize = 64;

/// Most insertion-order entries reserved up front (32 bytes each).
const ORDER_RESERVED_MAX: usize = 4 << 20;

/// Remembers which idempotency keys are stored, for a bounded time and count.
#[derive(Debug)]
pub(crate) struct KeyIndex {
    shards: Vec<HashMap<String, String>>,
    spread: RandomState,
    order: VecDeque<(i64, String)>,
    window_ms: i64,
    max_keys: usize,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl KeyIndex {
    /// An empty index keeping keys for `window`, at most `max_keys` of them.
    pub(crate) fn new(window: Duration, max_keys: usize) -> Self {
        let max_keys = max_keys.max(1);
        Self {
            shards: (0..SHARDS).map(|_| HashMap::new()).collect(),
            spread: RandomState::new(),
            order: VecDeque::with_capacity(max_keys.saturating_add(1).min(ORDER_RESERVED_MAX)),
            window_ms: window.as_millis().min(i64::MAX as u128) as i64,
            max_keys,
        }
    }

    fn shard(&self, key: &str) -> usize {
        (self.spread.hash_one(key) % SHARDS as u64) as usize
    }

    /// The window in milliseconds.
    pub(crate) fn window_ms(&self) -> i64 {
        self.window_ms
    }

    /// Records that `key` is stored as `id` at `stored_ms` (Unix ms). Keys
    /// must be inserted in commit order.
    pub(crate) fn insert(&mut self, key: String, id: String, stored_ms: i64) {
        let shard = self.shard(&key);
        if self.shards[shard].insert(key.clone(), id).is_none() {
            self.order.push_back((stored_ms, key));
        }
        self.expire(now_ms());
    }

    /// The id stored under `key`.
    pub(crate) fn get(&self, key: &str) -> Option<&String> {
        self.shards[self.shard(key)].get(key)
    }

    /// How many keys are remembered.
    pub(crate) fn len(&self) -> usize {
        self.order.len()
    }

    fn expire(&mut self, now: i64) {
        while let Some((at, _)) = self.order.front() {
            if self.order.len() > self.max_keys || *at < now - self.window_ms {
                if let Some((_, key)) = self.order.pop_front() {
                    let shard = self.shard(&key);
                    self.shards[shard].remove(&key);
                }
            } else {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_index_is_bounded_by_count() {
        let mut keys = KeyIndex::new(Duration::from_secs(3600), 2);
        let now = now_ms();
        keys.insert("a".into(), "1".into(), now);
        keys.insert("b".into(), "2".into(), now);
        keys.insert("c".into(), "3".into(), now);
        assert_eq!(keys.len(), 2);
        assert!(keys.get("a").is_none());
        assert_eq!(keys.get("c").map(String::as_str), Some("3"));
    }

    #[test]
    fn many_keys_spread_over_the_shards_are_all_found_until_dropped() {
        let mut keys = KeyIndex::new(Duration::from_secs(3600), 10_000);
        let now = now_ms();
        for i in 0..12_000 {
            keys.insert(format!("k{i}"), format!("id{i}"), now);
        }
        assert_eq!(keys.len(), 10_000);
        assert!(keys.get("k1999").is_none(), "the oldest 2,000 are dropped");
        for i in 2_000..12_000 {
            assert_eq!(keys.get(&format!("k{i}")), Some(&format!("id{i}")));
        }
        let used = keys.shards.iter().filter(|s| !s.is_empty()).count();
        assert_eq!(used, SHARDS, "every shard holds some of 10,000 keys");
        // A repeated key is remembered once.
        keys.insert("k11999".into(), "other".into(), now);
        assert_eq!(keys.len(), 10_000);
    }

    #[test]
    fn key_index_expires_by_age() {
        let mut keys = KeyIndex::new(Duration::from_secs(60), 10);
        keys.insert("old".into(), "1".into(), now_ms() - 120_000);
        keys.insert("new".into(), "2".into(), now_ms());
        assert!(keys.get("old").is_none());
        assert!(keys.get("new").is_some());
    }
}
