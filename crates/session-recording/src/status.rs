//! The live health of one session's recording, shared with the proxy.
//!
//! The proxy applies its failure policy from here: in fail-closed mode it
//! awaits [`RecordingStatus::failed`] and ends the session; in fail-open mode
//! it logs the error and counts [`RecordingStatus::lines_dropped`] as a gap.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use crate::error::RecordingError;
use crate::exec_status::ExecStatus;

/// A cheap, cloneable handle on a recording's state. All methods are non-blocking
/// except the `async` [`failed`](Self::failed).
#[derive(Debug, Clone)]
pub struct RecordingStatus {
    inner: Arc<StatusInner>,
}

#[derive(Debug)]
struct StatusInner {
    failure: watch::Sender<Option<RecordingError>>,
    lines_written: AtomicU64,
    lines_dropped: AtomicU64,
    output_bytes: AtomicU64,
    exec_status: Mutex<Option<ExecStatus>>,
}

impl Default for RecordingStatus {
    fn default() -> Self {
        Self::new()
    }
}

impl RecordingStatus {
    /// A fresh status: recording, no failure.
    pub fn new() -> Self {
        let (failure, _) = watch::channel(None);
        Self {
            inner: Arc::new(StatusInner {
                failure,
                lines_written: AtomicU64::new(0),
                lines_dropped: AtomicU64::new(0),
                output_bytes: AtomicU64::new(0),
                exec_status: Mutex::new(None),
            }),
        }
    }

    /// The first error the recording hit, if any.
    pub fn failure(&self) -> Option<RecordingError> {
        self.inner.failure.borrow().clone()
    }

    /// Waits until the recording hits its first error and returns it
    /// (for fail-closed sessions: end the session when this resolves).
    pub async fn failed(&self) -> RecordingError {
        let mut rx = self.inner.failure.subscribe();
        loop {
            if let Some(err) = rx.borrow_and_update().clone() {
                return err;
            }
            if rx.changed().await.is_err() {
                // The sender lives inside `self`, so this cannot happen; wait forever
                // rather than invent an error.
                std::future::pending::<()>().await;
            }
        }
    }

    /// Cast lines (header included) the sink accepted.
    pub fn lines_written(&self) -> u64 {
        self.inner.lines_written.load(Ordering::Relaxed)
    }

    /// Cast lines the sink refused: the size of the recording's gap.
    pub fn lines_dropped(&self) -> u64 {
        self.inner.lines_dropped.load(Ordering::Relaxed)
    }

    /// stdout/stderr payload bytes seen (recorded or not).
    pub fn output_bytes(&self) -> u64 {
        self.inner.output_bytes.load(Ordering::Relaxed)
    }

    /// The final `Status` the server sent on the error channel, once seen
    /// (carries the command's exit code).
    pub fn exec_status(&self) -> Option<ExecStatus> {
        self.inner
            .exec_status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(crate) fn fail(&self, err: RecordingError) {
        self.inner.failure.send_if_modified(|slot| {
            if slot.is_none() {
                *slot = Some(err);
                true
            } else {
                false
            }
        });
    }

    pub(crate) fn count_written(&self) {
        self.inner.lines_written.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_dropped(&self) {
        self.inner.lines_dropped.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_output(&self, bytes: usize) {
        self.inner
            .output_bytes
            .fetch_add(bytes as u64, Ordering::Relaxed);
    }

    pub(crate) fn set_exec_status(&self, status: ExecStatus) {
        *self
            .inner
            .exec_status
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(status);
    }
}
