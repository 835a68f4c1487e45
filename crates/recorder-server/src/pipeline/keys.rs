//! Idempotency keys: which keys are stored, under which record id, for a
//! bounded time (`--dedup-window`) and count (`--dedup-max-keys`). Owned by
//! the commit loop; rebuilt from storage at start-up.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Remembers which idempotency keys are stored, for a bounded time and count.
#[derive(Debug)]
pub(crate) struct KeyIndex {
    ids: HashMap<String, String>,
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
        Self {
            ids: HashMap::new(),
            order: VecDeque::new(),
            window_ms: window.as_millis().min(i64::MAX as u128) as i64,
            max_keys: max_keys.max(1),
        }
    }

    /// The window in milliseconds.
    pub(crate) fn window_ms(&self) -> i64 {
        self.window_ms
    }

    /// Records that `key` is stored as `id` at `stored_ms` (Unix ms). Keys
    /// must be inserted in commit order.
    pub(crate) fn insert(&mut self, key: String, id: String, stored_ms: i64) {
        if self.ids.insert(key.clone(), id).is_none() {
            self.order.push_back((stored_ms, key));
        }
        self.expire(now_ms());
    }

    /// The id stored under `key`.
    pub(crate) fn get(&self, key: &str) -> Option<&String> {
        self.ids.get(key)
    }

    /// How many keys are remembered.
    pub(crate) fn len(&self) -> usize {
        self.ids.len()
    }

    fn expire(&mut self, now: i64) {
        while let Some((at, _)) = self.order.front() {
            if self.order.len() > self.max_keys || *at < now - self.window_ms {
                if let Some((_, key)) = self.order.pop_front() {
                    self.ids.remove(&key);
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
    fn key_index_expires_by_age() {
        let mut keys = KeyIndex::new(Duration::from_secs(60), 10);
        keys.insert("old".into(), "1".into(), now_ms() - 120_000);
        keys.insert("new".into(), "2".into(), now_ms());
        assert!(keys.get("old").is_none());
        assert!(keys.get("new").is_some());
    }
}
