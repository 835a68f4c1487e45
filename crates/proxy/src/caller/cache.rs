//! A short-lived memory of resolved callers, keyed by the caller's address.
//!
//! Without it every request costs a WhoIs (a LocalAPI round trip to
//! tailscaled) and a parse of the caller's grants. A keep-alive connection
//! sends many requests from one address, so the answer is kept for a few
//! seconds (`--whois-cache-ttl`): a change of grants or of who holds an
//! address takes effect for new requests within that time. Failures are
//! never kept.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Addresses remembered at most; beyond it, expired entries are dropped and,
/// if that is not enough, everything is.
pub(crate) const MAX_ENTRIES: usize = 4096;

/// Answers by caller address (for the proxy, resolved callers), each for at
/// most `ttl`.
#[derive(Debug)]
pub(crate) struct AddressCache<T> {
    ttl: Duration,
    entries: Mutex<HashMap<SocketAddr, (Instant, T)>>,
}

impl<T: Clone> AddressCache<T> {
    /// A cache keeping answers for `ttl` (zero: keeps nothing).
    pub(crate) fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The answer for `addr`, if stored less than `ttl` ago.
    pub(crate) fn get(&self, addr: SocketAddr) -> Option<T> {
        if self.ttl.is_zero() {
            return None;
        }
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .get(&addr)
            .filter(|(at, _)| at.elapsed() < self.ttl)
            .map(|(_, info)| info.clone())
    }

    /// Remembers the answer for `addr`.
    pub(crate) fn insert(&self, addr: SocketAddr, info: T) {
        if self.ttl.is_zero() {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= MAX_ENTRIES && !entries.contains_key(&addr) {
            let ttl = self.ttl;
            entries.retain(|_, (at, _)| at.elapsed() < ttl);
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
        }
        entries.insert(addr, (Instant::now(), info));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(login: &str) -> String {
        login.to_owned()
    }

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([100, 64, 0, 1], port))
    }

    #[test]
    fn remembers_by_address_until_the_ttl_passes() {
        let cache = AddressCache::<String>::new(Duration::from_millis(50));
        cache.insert(addr(1), info("alice"));
        assert_eq!(cache.get(addr(1)).unwrap(), "alice");
        assert!(
            cache.get(addr(2)).is_none(),
            "another address is another caller"
        );
        std::thread::sleep(Duration::from_millis(60));
        assert!(cache.get(addr(1)).is_none(), "expired");
    }

    #[test]
    fn zero_ttl_keeps_nothing() {
        let cache = AddressCache::<String>::new(Duration::ZERO);
        cache.insert(addr(1), info("alice"));
        assert!(cache.get(addr(1)).is_none());
    }

    #[test]
    fn stays_bounded() {
        let cache = AddressCache::<String>::new(Duration::from_secs(60));
        for port in 0..(MAX_ENTRIES as u16 + 10) {
            cache.insert(addr(port), info("x"));
        }
        let len = cache.entries.lock().unwrap().len();
        assert!(len <= MAX_ENTRIES, "{len} entries");
        assert!(
            cache.get(addr(MAX_ENTRIES as u16 + 9)).is_some(),
            "the newest is kept"
        );
    }
}
