//! [`RecorderClient`]: the handle the proxy keeps for the life of the process.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use event_model::{Event, ResponseRecord};
use prometheus_client::registry::Registry;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use crate::cause::Cause;
use crate::config::ClientConfig;
use crate::error::{AttemptError, ConnectError, DeliveryError, StartError};
use crate::events::sender::{Sender, SkipDown};
use crate::events::{redeliver, Delivered};
use crate::metrics::Metrics;
use crate::policy::{DropReason, FailurePolicy, Outcome};
use crate::session::connect::connect_session;
use crate::session::SessionUpload;
use crate::spool::{RecordKind, Spool, SpoolRecord};

/// Delivers events and response records to recorders and opens session
/// uploads. Cheap to clone; all clones share connections, caches and the spool.
#[derive(Clone)]
pub struct RecorderClient {
    inner: Arc<Inner>,
}

struct Inner {
    sender: Arc<Sender>,
    spool: Option<Arc<Spool>>,
    notify: Arc<Notify>,
    metrics: Metrics,
    cfg: ClientConfig,
    shutdown: watch::Sender<bool>,
    redeliver: Mutex<Option<JoinHandle<()>>>,
    /// Response records being sent in the background.
    inflight: InFlight,
}

/// Counts background sends so that shutdown can wait for them.
#[derive(Default)]
struct InFlight {
    count: std::sync::atomic::AtomicUsize,
    idle: Notify,
}

/// Decrements [`InFlight`] when a background send ends, however it ends.
struct InFlightGuard(Arc<Inner>);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        let f = &self.0.inflight;
        if f.count.fetch_sub(1, std::sync::atomic::Ordering::AcqRel) == 1 {
            f.idle.notify_waiters();
        }
    }
}

impl std::fmt::Debug for RecorderClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecorderClient")
            .field("cfg", &self.inner.cfg)
            .finish_non_exhaustive()
    }
}

impl RecorderClient {
    /// Starts the client: registers its metrics in `registry`, opens (and
    /// recovers) the spool if configured, and starts redelivering whatever
    /// it holds. Must be called inside a Tokio runtime.
    pub fn start(cfg: ClientConfig, registry: &mut Registry) -> Result<Self, StartError> {
        Self::with_metrics(cfg, Metrics::register(registry))
    }

    /// Like [`RecorderClient::start`], with metrics the caller registered (or
    /// [`Metrics::default`] to keep them unregistered).
    pub fn with_metrics(mut cfg: ClientConfig, metrics: Metrics) -> Result<Self, StartError> {
        if cfg.attempt_timeout.is_zero() {
            return Err(StartError::Config(
                "attempt_timeout must be positive".into(),
            ));
        }
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| StartError::NoRuntime)?;
        cfg.session.metrics = Some(metrics.clone());
        let spool = match &cfg.spool {
            Some(sc) => Some(Arc::new(Spool::open(sc.clone(), metrics.clone()).map_err(
                |source| StartError::Spool {
                    path: sc.dir.clone(),
                    source,
                },
            )?)),
            None => None,
        };
        let sender = Arc::new(Sender::new(&cfg, metrics.clone()));
        let notify = Arc::new(Notify::new());
        let (shutdown, shutdown_rx) = watch::channel(false);
        let redeliver = spool.as_ref().map(|spool| {
            runtime.spawn(redeliver::run(
                spool.clone(),
                sender.clone(),
                notify.clone(),
                metrics.clone(),
                shutdown_rx,
            ))
        });
        Ok(Self {
            inner: Arc::new(Inner {
                sender,
                spool,
                notify,
                metrics,
                cfg,
                shutdown,
                redeliver: Mutex::new(redeliver),
                inflight: InFlight::default(),
            }),
        })
    }

    /// Records one API request event and says what the proxy must do with
    /// the request: the whole fail-open / fail-closed decision (see
    /// [`FailurePolicy`]).
    ///
    /// `recorders` are the caller's recorder addresses in order; `url` is the
    /// request target as received (quoted in the 403 message). Under fail
    /// open an event no recorder took is spooled for redelivery when a spool
    /// is configured ([`ClientConfig::spool`]); without one it is dropped and
    /// counted.
    #[tracing::instrument(level = "debug", skip_all, fields(policy = %policy, key = event.key().unwrap_or("")))]
    pub async fn record_event(
        &self,
        recorders: &[SocketAddr],
        policy: FailurePolicy,
        event: &Event,
        url: &str,
    ) -> Outcome {
        if recorders.is_empty() {
            return policy.no_recorders_for_request(url);
        }
        let body = match event_model::to_go_json(event) {
            Ok(b) => Bytes::from(b),
            Err(e) => {
                tracing::error!(error = %e, "cannot serialise event");
                let why = DropReason::Io(e.to_string());
                return policy.event_not_delivered(serialise_failed(recorders, e), Err(why));
            }
        };
        let m = &self.inner.metrics;
        m.attempted(RecordKind::Event.label());
        match self
            .inner
            .sender
            .deliver(
                recorders,
                RecordKind::Event,
                std::slice::from_ref(&body),
                match policy {
                    FailurePolicy::FailOpen => SkipDown::Always,
                    FailurePolicy::FailClosed => SkipDown::WhenAnotherIsUp,
                },
            )
            .await
        {
            Ok(_) => {
                m.delivered(RecordKind::Event.label(), 1);
                Outcome::Forward
            }
            Err(error) => {
                let spooled = match policy {
                    FailurePolicy::FailClosed => Ok(()),
                    FailurePolicy::FailOpen => {
                        self.spool(
                            RecordKind::Event,
                            recorders,
                            event.key().unwrap_or(""),
                            body,
                        )
                        .await
                    }
                };
                let outcome = policy.event_not_delivered(error, spooled);
                match &outcome {
                    Outcome::ForwardUnrecorded { reason } => tracing::warn!(
                        "{reason}; failure mode is 'fail open'; continuing request without recording."
                    ),
                    Outcome::Refuse(refusal) => tracing::warn!(
                        "{refusal}; failure mode is 'fail closed'; refusing request."
                    ),
                    Outcome::Forward => {}
                }
                outcome
            }
        }
    }

    /// Delivers one event without a policy decision and without spooling:
    /// the raw first-success-wins loop over `recorders`.
    pub async fn send_event(
        &self,
        recorders: &[SocketAddr],
        event: &Event,
    ) -> Result<Delivered, DeliveryError> {
        let body = event_model::to_go_json(event).map_err(|e| serialise_failed(recorders, e))?;
        self.inner
            .sender
            .deliver(
                recorders,
                RecordKind::Event,
                &[Bytes::from(body)],
                SkipDown::WhenAnotherIsUp,
            )
            .await
    }

    /// Sends a response record in the background (never on the request's
    /// critical path). Only kubescribe recorders receive it; if none among
    /// `recorders` takes it now, it is spooled like an event (and dropped,
    /// counted, without a spool or when no address is a kubescribe recorder
    /// at all).
    pub fn send_response_record(&self, recorders: &[SocketAddr], record: &ResponseRecord) {
        let m = &self.inner.metrics;
        m.attempted(RecordKind::Response.label());
        if recorders.is_empty() {
            m.dropped(RecordKind::Response.label(), "no_recorders", 1);
            return;
        }
        let body = match event_model::to_go_json(record) {
            Ok(b) => Bytes::from(b),
            Err(e) => {
                tracing::error!(error = %e, "cannot serialise response record");
                m.dropped(RecordKind::Response.label(), "serialise", 1);
                return;
            }
        };
        let this = self.clone();
        let recorders = recorders.to_vec();
        let key = record.key.clone();
        self.inner
            .inflight
            .count
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        let guard = InFlightGuard(self.inner.clone());
        tokio::spawn(async move {
            let _guard = guard;
            let kind = RecordKind::Response;
            let result = this
                .inner
                .sender
                .deliver(
                    &recorders,
                    kind,
                    std::slice::from_ref(&body),
                    SkipDown::Always,
                )
                .await;
            match result {
                Ok(_) => this.inner.metrics.delivered(kind.label(), 1),
                Err(err)
                    if err
                        .attempts
                        .iter()
                        .all(|(_, e)| matches!(e, AttemptError::NotKubescribe(_))) =>
                {
                    this.inner
                        .metrics
                        .dropped(kind.label(), "not_kubescribe", 1);
                }
                Err(err) => {
                    if let Err(why) = this.spool(kind, &recorders, &key, body).await {
                        tracing::warn!(error = %err, %why, "response record lost");
                    }
                }
            }
        });
    }

    /// Opens a session upload to the first of `recorders` that accepts it,
    /// with this client's [`SessionOptions`](crate::SessionOptions).
    pub async fn connect_session(
        &self,
        recorders: &[SocketAddr],
    ) -> Result<SessionUpload, ConnectError> {
        connect_session(recorders, &self.inner.cfg.session).await
    }

    /// The client's counters.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// Records waiting in the spool (`None` without a spool).
    pub fn spool_pending(&self) -> Option<u64> {
        self.inner.spool.as_ref().map(|s| s.pending())
    }

    /// Waits (up to `attempt_timeout` × 4) for response records still
    /// being sent in the background (each ends delivered or spooled), then
    /// stops redelivery and waits for the task to end. Spooled records stay
    /// on disk for the next start. Other clones stop redelivering too.
    pub async fn shutdown(&self) {
        let f = &self.inner.inflight;
        let drained = async {
            loop {
                let idle = f.idle.notified();
                if f.count.load(std::sync::atomic::Ordering::Acquire) == 0 {
                    return;
                }
                idle.await;
            }
        };
        if tokio::time::timeout(self.inner.cfg.attempt_timeout * 4, drained)
            .await
            .is_err()
        {
            tracing::warn!("shutdown: response records still being sent were abandoned");
        }
        let _ = self.inner.shutdown.send(true);
        let handle = self
            .inner
            .redeliver
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(handle) = handle {
            let _ = handle.await;
        }
    }

    async fn spool(
        &self,
        kind: RecordKind,
        recorders: &[SocketAddr],
        key: &str,
        body: Bytes,
    ) -> Result<(), DropReason> {
        let m = &self.inner.metrics;
        let Some(spool) = self.inner.spool.clone() else {
            m.dropped(kind.label(), DropReason::NoSpool.reason(), 1);
            return Err(DropReason::NoSpool);
        };
        let record = SpoolRecord {
            kind,
            addrs: recorders.to_vec(),
            key: key.to_owned(),
            body: body.to_vec(),
        };
        let result = tokio::task::spawn_blocking(move || spool.append(&record))
            .await
            .unwrap_or_else(|e| Err(DropReason::Io(e.to_string())));
        match &result {
            Ok(()) => {
                m.spooled(kind.label());
                self.inner.notify.notify_one();
            }
            Err(why) => m.dropped(kind.label(), why.reason(), 1),
        }
        result
    }
}

/// An event that could not even be serialised, reported as a failed attempt
/// on the first recorder address (none when there is none).
fn serialise_failed(recorders: &[SocketAddr], error: serde_json::Error) -> DeliveryError {
    let error = Cause::new(SerialiseEvent(error));
    DeliveryError {
        attempts: recorders
            .first()
            .map(|addr| (*addr, AttemptError::Transport(error)))
            .into_iter()
            .collect(),
    }
}

/// Serialising an event failed (the message keeps the event out of the log).
#[derive(Debug, thiserror::Error)]
#[error("cannot serialise event: {0}")]
struct SerialiseEvent(#[source] serde_json::Error);

impl Drop for Inner {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}
