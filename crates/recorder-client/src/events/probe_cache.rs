//! Per-recorder memory of the `HEAD /v2/event` probe, so that a probe is not
//! sent before every event (upstream does). A recorder that failed is
//! remembered by its circuit breaker (`breaker`), not here.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What a recorder's probe said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Support {
    /// `200`: `/v2/event` works. `kubescribe` when it sent
    /// `X-Kubescribe-Recorder: 1` (batches and response records allowed).
    Supported {
        /// Whether the recorder is a kubescribe recorder.
        kubescribe: bool,
    },
    /// `404`: no `/v2/event` endpoint.
    NotSupported,
}

#[derive(Debug, Default)]
struct Entry {
    probe: Option<(Support, Instant)>,
}

/// The cache. Entries expire after the TTL; any delivery error clears the
/// probe result so the next attempt probes again.
#[derive(Debug)]
pub(crate) struct ProbeCache {
    ttl: Duration,
    entries: Mutex<HashMap<SocketAddr, Entry>>,
}

impl ProbeCache {
    pub(crate) fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut HashMap<SocketAddr, Entry>) -> R) -> R {
        let mut guard = self
            .entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&mut guard)
    }

    /// The cached probe result, if fresh.
    pub(crate) fn get(&self, addr: SocketAddr) -> Option<Support> {
        let now = Instant::now();
        self.with(|m| {
            m.get(&addr)
                .and_then(|e| e.probe)
                .filter(|(_, at)| now.duration_since(*at) < self.ttl)
                .map(|(s, _)| s)
        })
    }

    /// Stores a probe result.
    pub(crate) fn put(&self, addr: SocketAddr, support: Support) {
        self.with(|m| m.entry(addr).or_default().probe = Some((support, Instant::now())));
    }

    /// Forgets the probe result after a failure, so the next attempt probes again.
    pub(crate) fn failed(&self, addr: SocketAddr) {
        self.with(|m| {
            if let Some(e) = m.get_mut(&addr) {
                e.probe = None;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_expires_and_failure_clears_it() {
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let cache = ProbeCache::new(Duration::from_secs(60));
        assert_eq!(cache.get(addr), None);
        cache.put(addr, Support::Supported { kubescribe: true });
        assert_eq!(
            cache.get(addr),
            Some(Support::Supported { kubescribe: true })
        );
        cache.failed(addr);
        assert_eq!(cache.get(addr), None);

        let expired = ProbeCache::new(Duration::ZERO);
        expired.put(addr, Support::NotSupported);
        assert_eq!(expired.get(addr), None);
    }
}
