//! Per-recorder memory of the `HEAD /v2/event` probe and of recent failures,
//! so that a probe is not sent before every event (upstream does) and a dead
//! recorder is not waited on by every request.

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
    down: Option<(Instant, String)>,
}

/// The cache. Entries expire after the TTL; any delivery error clears the
/// probe result so the next attempt probes again.
#[derive(Debug)]
pub(crate) struct ProbeCache {
    ttl: Duration,
    down_backoff: Duration,
    entries: Mutex<HashMap<SocketAddr, Entry>>,
}

impl ProbeCache {
    pub(crate) fn new(ttl: Duration, down_backoff: Duration) -> Self {
        Self {
            ttl,
            down_backoff,
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

    /// Records a failure: the probe result is dropped, and when the failure
    /// means the recorder is unhealthy it is skipped for the back-off.
    pub(crate) fn failed(&self, addr: SocketAddr, unhealthy: Option<String>) {
        self.with(|m| {
            let e = m.entry(addr).or_default();
            e.probe = None;
            if let Some(why) = unhealthy {
                if !self.down_backoff.is_zero() {
                    e.down = Some((Instant::now(), why));
                }
            }
        });
    }

    /// A success clears any back-off.
    pub(crate) fn succeeded(&self, addr: SocketAddr) {
        self.with(|m| {
            if let Some(e) = m.get_mut(&addr) {
                e.down = None;
            }
        });
    }

    /// If the recorder failed within the back-off: how long ago and why.
    pub(crate) fn recently_failed(&self, addr: SocketAddr) -> Option<(Duration, String)> {
        let now = Instant::now();
        self.with(|m| {
            m.get(&addr)
                .and_then(|e| e.down.as_ref())
                .and_then(|(at, why)| {
                    let ago = now.duration_since(*at);
                    (ago < self.down_backoff).then(|| (ago, why.clone()))
                })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_expires_and_failure_clears_it() {
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let cache = ProbeCache::new(Duration::from_secs(60), Duration::from_secs(60));
        assert_eq!(cache.get(addr), None);
        cache.put(addr, Support::Supported { kubescribe: true });
        assert_eq!(
            cache.get(addr),
            Some(Support::Supported { kubescribe: true })
        );
        cache.failed(addr, None);
        assert_eq!(cache.get(addr), None);
        assert!(cache.recently_failed(addr).is_none());
        cache.failed(addr, Some("refused".into()));
        assert_eq!(
            cache.recently_failed(addr).map(|(_, w)| w),
            Some("refused".into())
        );
        cache.succeeded(addr);
        assert!(cache.recently_failed(addr).is_none());

        let expired = ProbeCache::new(Duration::ZERO, Duration::ZERO);
        expired.put(addr, Support::NotSupported);
        assert_eq!(expired.get(addr), None);
        expired.failed(addr, Some("refused".into()));
        assert!(expired.recently_failed(addr).is_none());
    }
}
