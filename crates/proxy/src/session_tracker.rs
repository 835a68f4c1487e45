//! Counting upgraded sessions (exec, attach, port-forward) so that graceful
//! shutdown can wait for them as it waits for in-flight requests: once
//! upgraded, a connection has left the HTTP server's own tracking.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;

/// The set of sessions relaying now. Cheap to clone (shared).
#[derive(Debug, Clone, Default)]
pub(crate) struct SessionTracker {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    active: AtomicUsize,
    idle: Notify,
}

/// One tracked session; dropping it ends the session's count.
#[derive(Debug)]
pub(crate) struct SessionGuard {
    inner: Arc<Inner>,
}

impl SessionTracker {
    /// An empty tracker.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Counts a session until the returned guard is dropped.
    pub(crate) fn track(&self) -> SessionGuard {
        self.inner.active.fetch_add(1, Ordering::AcqRel);
        SessionGuard {
            inner: self.inner.clone(),
        }
    }

    /// Sessions relaying now.
    pub(crate) fn active(&self) -> usize {
        self.inner.active.load(Ordering::Acquire)
    }

    /// Returns once no session is relaying.
    pub(crate) async fn wait_idle(&self) {
        loop {
            let idle = self.inner.idle.notified();
            tokio::pin!(idle);
            // Register before checking, so a wake-up between the two is not lost.
            idle.as_mut().enable();
            if self.active() == 0 {
                return;
            }
            idle.await;
        }
    }
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        if self.inner.active.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.inner.idle.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn wait_idle_returns_once_every_guard_is_dropped() {
        let tracker = SessionTracker::new();
        tracker.wait_idle().await;
        let a = tracker.track();
        let b = tracker.track();
        assert_eq!(tracker.active(), 2);
        let waiter = tokio::spawn({
            let tracker = tracker.clone();
            async move { tracker.wait_idle().await }
        });
        drop(a);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "one session is still relaying");
        drop(b);
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("wait_idle returns when the last session ends")
            .unwrap();
        assert_eq!(tracker.active(), 0);
    }
}
