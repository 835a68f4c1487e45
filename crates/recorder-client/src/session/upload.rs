//! [`SessionUpload`], the handle the data path pushes cast lines into, and
//! what both wire versions share: the streaming request body, the state it
//! shares with the handle, and the final accounting of an upload.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::cause::Cause;
use crate::error::{PushError, UploadError};
use crate::metrics::Metrics;

/// Which recorder protocol an upload uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionProtocol {
    /// `POST /v2/record` over h2c, with ack frames.
    V2,
    /// `POST /record` over HTTP/1.1 with `Expect: 100-continue` (legacy; no acks).
    V1,
}

/// Where an upload stands; watch it with [`SessionUpload::status`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UploadStatus {
    /// Connected and streaming.
    Running,
    /// The recorder confirmed the end of the upload.
    Finished,
    /// The upload failed; under fail closed the proxy ends the session.
    Failed(UploadError),
}

/// The result of a completed upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadSummary {
    /// The recorder that took the upload.
    pub recorder: SocketAddr,
    /// The protocol used.
    pub protocol: SessionProtocol,
    /// Body bytes handed to the connection.
    pub bytes_sent: u64,
    /// The highest byte count the recorder acknowledged (v2 only).
    pub bytes_acked: Option<u64>,
}

/// State shared between the handle, the request body and the monitor task.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    /// Bytes the connection has taken from the channel.
    pub(crate) sent: AtomicU64,
    /// Set by [`SessionUpload::finish`]: the end of the body is intended.
    pub(crate) finishing: AtomicBool,
}

/// A running session upload. Push cast lines with [`SessionUpload::push`]
/// (never blocks), watch [`SessionUpload::status`] for mid-session failure,
/// and call [`SessionUpload::finish`] when the session ends. Dropping it
/// without `finish` ends the body the same way, in the background.
#[derive(Debug)]
pub struct SessionUpload {
    recorder: SocketAddr,
    protocol: SessionProtocol,
    tx: Option<mpsc::Sender<Bytes>>,
    capacity: usize,
    shared: Arc<Shared>,
    status: watch::Receiver<UploadStatus>,
    task: Option<JoinHandle<Result<UploadSummary, UploadError>>>,
}

impl SessionUpload {
    pub(crate) fn new(
        recorder: SocketAddr,
        protocol: SessionProtocol,
        tx: mpsc::Sender<Bytes>,
        capacity: usize,
        shared: Arc<Shared>,
        status: watch::Receiver<UploadStatus>,
        task: JoinHandle<Result<UploadSummary, UploadError>>,
    ) -> Self {
        Self {
            recorder,
            protocol,
            tx: Some(tx),
            capacity,
            shared,
            status,
            task: Some(task),
        }
    }

    /// The recorder address that accepted the upload.
    pub fn recorder(&self) -> SocketAddr {
        self.recorder
    }

    /// The protocol in use.
    pub fn protocol(&self) -> SessionProtocol {
        self.protocol
    }

    /// Bytes handed to the connection so far.
    pub fn bytes_sent(&self) -> u64 {
        self.shared.sent.load(Ordering::Relaxed)
    }

    /// Queues `data` for upload without waiting. Errors if the upload has
    /// failed, or if the channel is full (the recorder is not keeping up):
    /// the caller decides what that means under its failure policy.
    pub fn push(&self, data: Bytes) -> Result<(), PushError> {
        if let UploadStatus::Failed(e) = &*self.status.borrow() {
            return Err(PushError::Failed(e.clone()));
        }
        let tx = self.tx.as_ref().ok_or(PushError::Finished)?;
        match tx.try_send(data) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => Err(PushError::Full {
                capacity: self.capacity,
            }),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(self.closed_error()),
        }
    }

    /// Queues `data`, waiting for room in the channel (for callers that
    /// prefer back-pressure to an error).
    pub async fn send(&self, data: Bytes) -> Result<(), PushError> {
        if let UploadStatus::Failed(e) = &*self.status.borrow() {
            return Err(PushError::Failed(e.clone()));
        }
        let tx = self.tx.as_ref().ok_or(PushError::Finished)?;
        tx.send(data).await.map_err(|_| self.closed_error())
    }

    fn closed_error(&self) -> PushError {
        match &*self.status.borrow() {
            UploadStatus::Failed(e) => PushError::Failed(e.clone()),
            _ => PushError::Failed(UploadError::Transport(Cause::msg(
                "the recorder connection closed",
            ))),
        }
    }

    /// A receiver of the upload's status: `changed().await` wakes on failure
    /// (or on completion), so the proxy can end a fail-closed session.
    pub fn status(&self) -> watch::Receiver<UploadStatus> {
        self.status.clone()
    }

    /// Resolves with the error if the upload fails, or with `None` once it
    /// has finished successfully.
    pub async fn failed(&self) -> Option<UploadError> {
        let mut rx = self.status.clone();
        let result = rx
            .wait_for(|s| !matches!(s, UploadStatus::Running))
            .await
            .map(|s| s.clone());
        match result {
            Ok(UploadStatus::Failed(e)) => Some(e),
            Ok(_) => None,
            Err(_) => Some(UploadError::Transport(Cause::msg("upload task ended"))),
        }
    }

    /// Ends the body and waits (bounded by the ack window) for the
    /// recorder's final answer.
    pub async fn finish(mut self) -> Result<UploadSummary, UploadError> {
        self.shared.finishing.store(true, Ordering::Release);
        self.tx = None;
        match self.task.take() {
            Some(task) => task
                .await
                .unwrap_or_else(|e| Err(UploadError::Transport(Cause::new(TaskFailed(e))))),
            None => Err(UploadError::Transport(Cause::msg(
                "upload already finished",
            ))),
        }
    }
}

impl Drop for SessionUpload {
    fn drop(&mut self) {
        // Dropping the sender ends the body; the monitor task completes the
        // upload and counts it.
        self.shared.finishing.store(true, Ordering::Release);
    }
}

/// The task supervising an upload panicked or was cancelled.
#[derive(Debug, thiserror::Error)]
#[error("upload task failed: {0}")]
struct TaskFailed(#[source] tokio::task::JoinError);

/// The streaming request body: whatever the data path pushes, until the
/// sender is dropped.
pub(crate) struct ChannelBody {
    rx: mpsc::Receiver<Bytes>,
    shared: Arc<Shared>,
}

impl ChannelBody {
    pub(crate) fn new(rx: mpsc::Receiver<Bytes>, shared: Arc<Shared>) -> Self {
        Self { rx, shared }
    }

    /// A body with no data (for the probe).
    pub(crate) fn empty() -> Self {
        let (_tx, rx) = mpsc::channel(1);
        ChannelBody::new(rx, Arc::new(Shared::default()))
    }
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(data)) => {
                self.shared
                    .sent
                    .fetch_add(data.len() as u64, Ordering::Relaxed);
                Poll::Ready(Some(Ok(Frame::data(data))))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Publishes the final status and counts the outcome.
pub(crate) fn conclude(
    result: Result<UploadSummary, UploadError>,
    status: &watch::Sender<UploadStatus>,
    metrics: Option<&Metrics>,
    recorder: SocketAddr,
) -> Result<UploadSummary, UploadError> {
    match &result {
        Ok(summary) => {
            tracing::info!(%recorder, bytes = summary.bytes_sent, "session upload finished");
            let _ = status.send(UploadStatus::Finished);
            if let Some(m) = metrics {
                m.session_finished();
            }
        }
        Err(e) => {
            tracing::warn!(%recorder, error = %e, "session upload failed");
            let _ = status.send(UploadStatus::Failed(e.clone()));
            if let Some(m) = metrics {
                m.session_failed(e.reason());
            }
        }
    }
    result
}
