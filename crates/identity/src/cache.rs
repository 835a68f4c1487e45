//! A small, bounded, short-lived cache of successful WhoIs answers keyed by peer address.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::caller::Caller;

/// Successful lookups kept for `ttl`; at most `capacity` entries (expired entries are dropped
/// first, then the oldest). Errors are never cached.
#[derive(Debug)]
pub(crate) struct WhoIsCache {
    ttl: Duration,
    capacity: usize,
    entries: Mutex<HashMap<SocketAddr, (Instant, Caller)>>,
}

impl WhoIsCache {
    /// A cache; `ttl == 0` or `capacity == 0` disables it.
    pub(crate) fn new(ttl: Duration, capacity: usize) -> Self {
        WhoIsCache {
            ttl,
            capacity,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn enabled(&self) -> bool {
        !self.ttl.is_zero() && self.capacity > 0
    }

    /// The cached answer for `peer`, if still fresh.
    pub(crate) fn get(&self, peer: SocketAddr) -> Option<Caller> {
        if !self.enabled() {
            return None;
        }
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        match entries.get(&peer) {
            Some((at, caller)) if at.elapsed() < self.ttl => Some(caller.clone()),
            Some(_) => {
                entries.remove(&peer);
                None
            }
            None => None,
        }
    }

    /// Remembers a successful answer, evicting to stay within capacity.
    pub(crate) fn put(&self, peer: SocketAddr, caller: &Caller) {
        if !self.enabled() {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= self.capacity && !entries.contains_key(&peer) {
            let ttl = self.ttl;
            entries.retain(|_, (at, _)| at.elapsed() < ttl);
            while entries.len() >= self.capacity {
                let oldest = entries
                    .iter()
                    .min_by_key(|(_, (at, _))| *at)
                    .map(|(addr, _)| *addr);
                match oldest {
                    Some(addr) => entries.remove(&addr),
                    None => break,
                };
            }
        }
        entries.insert(peer, (Instant::now(), caller.clone()));
    }

    /// Number of entries held (fresh or not yet purged).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(name: &str) -> Caller {
        let mut c = Caller::default();
        c.identity.node_name = name.to_owned();
        c
    }

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([100, 64, 0, 1], port))
    }

    #[test]
    fn stays_within_capacity_and_evicts_oldest() {
        let cache = WhoIsCache::new(Duration::from_secs(3600), 3);
        for port in 1..=10 {
            cache.put(addr(port), &caller(&format!("n{port}")));
            assert!(cache.len() <= 3);
        }
        assert!(cache.get(addr(1)).is_none());
        assert_eq!(
            cache.get(addr(10)).map(|c| c.identity.node_name),
            Some("n10".to_owned())
        );
    }

    #[test]
    fn expired_entries_are_not_returned() {
        let cache = WhoIsCache::new(Duration::from_nanos(1), 3);
        cache.put(addr(1), &caller("a"));
        std::thread::sleep(Duration::from_millis(2));
        assert!(cache.get(addr(1)).is_none());
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn zero_capacity_disables() {
        let cache = WhoIsCache::new(Duration::from_secs(5), 0);
        cache.put(addr(1), &caller("a"));
        assert!(cache.get(addr(1)).is_none());
    }
}
