//! Where cast lines go: the [`CastSink`] trait, a byte-bounded channel for the
//! proxy's uploader, and an in-memory sink for tests and tools.
//!
//! A sink is called on the data path, with a lock held, so it must never
//! block: it either takes the line at once or refuses it.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::{mpsc, Notify};

use crate::error::SinkError;

/// Receives the asciicast lines of one session, each a complete line ending in `\n`.
///
/// Implementations must not block or wait: they queue the line or refuse it
/// with [`SinkError::Full`] (the recording gets a gap, reported through
/// [`RecordingStatus`](crate::RecordingStatus)) or [`SinkError::Closed`]
/// (recording stops).
pub trait CastSink: Send {
    /// Queues one line (header or event, with its trailing newline).
    fn write_line(&mut self, line: Bytes) -> Result<(), SinkError>;

    /// Called once when the session is over and no more lines will come.
    fn close(&mut self) {}
}

/// Creates a byte-bounded, non-blocking channel: the recorder writes into the
/// [`ChannelSink`], the proxy's upload task reads from the [`CastLineReceiver`].
///
/// `limit_bytes` bounds the bytes queued and not yet received; a line that
/// would exceed it is refused with [`SinkError::Full`] (a single line larger
/// than the whole limit is still accepted when the queue is empty, so that a
/// large output event never wedges the recording).
pub fn channel_sink(limit_bytes: usize) -> (ChannelSink, CastLineReceiver) {
    let (tx, rx) = mpsc::unbounded_channel();
    let shared = Arc::new(ChannelShared {
        queued: AtomicUsize::new(0),
        limit: limit_bytes,
        receiver_closed: AtomicBool::new(false),
        drained: Notify::new(),
    });
    (
        ChannelSink {
            tx: Some(tx),
            shared: shared.clone(),
        },
        CastLineReceiver { rx, shared },
    )
}

#[derive(Debug)]
struct ChannelShared {
    queued: AtomicUsize,
    limit: usize,
    receiver_closed: AtomicBool,
    /// Woken whenever the receiver takes lines or closes.
    drained: Notify,
}

/// Back-pressure from a [`channel_sink`]: lets the data path wait while the
/// upload is behind, instead of overflowing the queue.
///
/// [`copy_bidirectional_recorded`](crate::copy_bidirectional_recorded) uses it
/// (through [`CopyOptions::backpressure`](crate::CopyOptions::backpressure))
/// to stop reading the API server's output while more than half the queue's
/// limit is waiting: a session whose output outruns the recorder is slowed to
/// the recorder's pace rather than losing its recording (or, fail closed,
/// being ended). The wait ends at once when the upload side closes, so a dead
/// upload still fails the recording immediately.
#[derive(Debug, Clone)]
pub struct SinkPressure {
    shared: Arc<ChannelShared>,
}

impl SinkPressure {
    /// Bytes queued and not yet taken by the upload.
    pub fn queued_bytes(&self) -> usize {
        self.shared.queued.load(Ordering::Acquire)
    }

    /// Waits until at most half the queue's limit is waiting, or the
    /// receiving side has closed.
    pub async fn wait_for_room(&self) {
        let high_water = self.shared.limit / 2;
        loop {
            let drained = self.shared.drained.notified();
            tokio::pin!(drained);
            // Register before checking, so a wake-up between the check and
            // the wait is not lost.
            drained.as_mut().enable();
            if self.shared.queued.load(Ordering::Acquire) <= high_water
                || self.shared.receiver_closed.load(Ordering::Acquire)
            {
                return;
            }
            drained.await;
        }
    }

    /// Waits until the receiving side (the upload) has closed: the recording
    /// has ended for good, even if nothing is written to the sink again.
    pub async fn closed(&self) {
        loop {
            let drained = self.shared.drained.notified();
            tokio::pin!(drained);
            drained.as_mut().enable();
            if self.shared.receiver_closed.load(Ordering::Acquire) {
                return;
            }
            drained.await;
        }
    }
}

/// The sending half of [`channel_sink`].
#[derive(Debug)]
pub struct ChannelSink {
    tx: Option<mpsc::UnboundedSender<Bytes>>,
    shared: Arc<ChannelShared>,
}

impl ChannelSink {
    /// A handle for waiting while the receiver is behind (see [`SinkPressure`]).
    pub fn pressure(&self) -> SinkPressure {
        SinkPressure {
            shared: self.shared.clone(),
        }
    }
}

impl CastSink for ChannelSink {
    fn write_line(&mut self, line: Bytes) -> Result<(), SinkError> {
        let Some(tx) = &self.tx else {
            return Err(SinkError::Closed);
        };
        if self.shared.receiver_closed.load(Ordering::Acquire) {
            return Err(SinkError::Closed);
        }
        let len = line.len();
        let queued = self.shared.queued.load(Ordering::Acquire);
        if queued > 0 && queued.saturating_add(len) > self.shared.limit {
            return Err(SinkError::Full {
                queued_bytes: queued,
                limit_bytes: self.shared.limit,
            });
        }
        self.shared.queued.fetch_add(len, Ordering::AcqRel);
        tx.send(line).map_err(|_| {
            self.shared.queued.fetch_sub(len, Ordering::AcqRel);
            SinkError::Closed
        })
    }

    fn close(&mut self) {
        self.tx = None;
    }
}

/// The receiving half of [`channel_sink`]: the proxy's upload task drains it
/// into the recorder connection.
#[derive(Debug)]
pub struct CastLineReceiver {
    rx: mpsc::UnboundedReceiver<Bytes>,
    shared: Arc<ChannelShared>,
}

impl CastLineReceiver {
    /// The next line, or `None` once the session is over and all lines were received.
    pub async fn recv(&mut self) -> Option<Bytes> {
        let line = self.rx.recv().await?;
        self.shared.queued.fetch_sub(line.len(), Ordering::AcqRel);
        self.shared.drained.notify_waiters();
        Some(line)
    }

    /// The next line if one is queued now.
    pub fn try_recv(&mut self) -> Option<Bytes> {
        let line = self.rx.try_recv().ok()?;
        self.shared.queued.fetch_sub(line.len(), Ordering::AcqRel);
        self.shared.drained.notify_waiters();
        Some(line)
    }

    /// Bytes queued and not yet received.
    pub fn queued_bytes(&self) -> usize {
        self.shared.queued.load(Ordering::Acquire)
    }

    /// Marks the upload as ended: from now on the sink refuses lines with
    /// [`SinkError::Closed`], so the recorder reports the loss at once.
    pub fn close(&mut self) {
        self.shared.receiver_closed.store(true, Ordering::Release);
        self.rx.close();
        self.shared.drained.notify_waiters();
    }
}

impl Drop for CastLineReceiver {
    fn drop(&mut self) {
        self.shared.receiver_closed.store(true, Ordering::Release);
        self.shared.drained.notify_waiters();
    }
}

/// A sink that keeps every line in memory (tests, tools, examples).
///
/// Clones share the same buffer, so a test keeps one clone and hands the
/// other to the recorder. An optional limit on the number of lines makes it
/// refuse further lines with [`SinkError::Full`], to exercise gap handling.
#[derive(Debug, Clone, Default)]
pub struct MemorySink {
    inner: Arc<Mutex<MemoryInner>>,
}

#[derive(Debug, Default)]
struct MemoryInner {
    lines: VecDeque<Bytes>,
    max_lines: Option<usize>,
    closed: bool,
}

impl MemorySink {
    /// An unbounded in-memory sink.
    pub fn new() -> Self {
        Self::default()
    }

    /// An in-memory sink that refuses lines (as full) once it holds `max_lines`.
    pub fn with_max_lines(max_lines: usize) -> Self {
        let sink = Self::default();
        sink.lock().max_lines = Some(max_lines);
        sink
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryInner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// All lines written so far.
    pub fn lines(&self) -> Vec<Bytes> {
        self.lock().lines.iter().cloned().collect()
    }

    /// All lines concatenated: the cast file as the recorder would store it.
    pub fn contents(&self) -> Vec<u8> {
        self.lock()
            .lines
            .iter()
            .flat_map(|line| line.iter().copied())
            .collect()
    }

    /// Whether [`CastSink::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }
}

impl CastSink for MemorySink {
    fn write_line(&mut self, line: Bytes) -> Result<(), SinkError> {
        let mut inner = self.lock();
        if inner.closed {
            return Err(SinkError::Closed);
        }
        if let Some(max) = inner.max_lines {
            if inner.lines.len() >= max {
                let queued_bytes = inner.lines.iter().map(Bytes::len).sum();
                return Err(SinkError::Full {
                    queued_bytes,
                    limit_bytes: queued_bytes,
                });
            }
        }
        inner.lines.push_back(line);
        Ok(())
    }

    fn close(&mut self) {
        self.lock().closed = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn channel_sink_refuses_when_full_and_recovers_after_receive() {
        let (mut sink, mut rx) = channel_sink(10);
        sink.write_line(Bytes::from_static(b"12345\n")).unwrap();
        let err = sink
            .write_line(Bytes::from_static(b"123456\n"))
            .unwrap_err();
        assert_eq!(
            err,
            SinkError::Full {
                queued_bytes: 6,
                limit_bytes: 10
            }
        );
        assert_eq!(rx.recv().await.unwrap(), Bytes::from_static(b"12345\n"));
        assert_eq!(rx.queued_bytes(), 0);
        sink.write_line(Bytes::from_static(b"123456\n")).unwrap();
        sink.close();
        assert_eq!(rx.recv().await.unwrap().len(), 7);
        assert!(rx.recv().await.is_none());
    }

    #[tokio::test]
    async fn oversized_line_is_accepted_into_an_empty_queue() {
        let (mut sink, mut rx) = channel_sink(4);
        sink.write_line(Bytes::from_static(b"0123456789\n"))
            .unwrap();
        assert_eq!(rx.recv().await.unwrap().len(), 11);
    }

    #[test]
    fn channel_sink_reports_closed_after_receiver_drop() {
        let (mut sink, rx) = channel_sink(1024);
        drop(rx);
        assert_eq!(
            sink.write_line(Bytes::from_static(b"x\n")),
            Err(SinkError::Closed)
        );
    }

    #[test]
    fn memory_sink_limit() {
        let mut sink = MemorySink::with_max_lines(1);
        sink.write_line(Bytes::from_static(b"a\n")).unwrap();
        assert!(matches!(
            sink.write_line(Bytes::from_static(b"b\n")),
            Err(SinkError::Full { .. })
        ));
        assert_eq!(sink.contents(), b"a\n");
    }
}
