//! [`RecorderClient`]: the handle the proxy keeps for the life of the process.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use event_model::{Event, ResponseRecord};
use prometheus_client::registry::Registry;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use crate::cause::Cause;
use crate::config::{ClientConfig, FailOpenDelivery};
use crate::error::{AttemptError, ConnectError, DeliveryError, StartError};
use crate::events::sender::{Outgoing, Route, Sender};
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
    /// Woken when a record is spooled.
    notify: Arc<Notify>,
    metrics: Metrics,
    cfg: ClientConfig,
    shutdown: watch::Sender<bool>,
    /// Set by [`RecorderClient::shutdown`] (not by a drop): the redelivery
    /// task drains the spool before it stops.
    drain_at_shutdown: Arc<AtomicBool>,
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
        if cfg.breaker.enabled
            && (cfg.breaker.probe_interval.is_zero()
                || cfg.breaker.probe_interval_max < cfg.breaker.probe_interval)
        {
            return Err(StartError::Config(
                "breaker.probe_interval must be positive and at most breaker.probe_interval_max"
                    .into(),
            ));
        }
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| StartError::NoRuntime)?;
        cfg.session.metrics = Some(metrics.clone());
        cfg.session.dialer = cfg.dialer.clone();
        let spool = match &cfg.spool {
            Some(sc) => Some(Arc::new(Spool::open(sc.clone(), metrics.clone()).map_err(
                |source| StartError::Spool {
                    path: sc.dir.clone(),
                    source,
                },
            )?)),
            None => None,
        };
        let notify = Arc::new(Notify::new());
        let available = Arc::new(Notify::new());
        let (shutdown, shutdown_rx) = watch::channel(false);
        let drain_at_shutdown = Arc::new(AtomicBool::new(false));
        let sender = Arc::new(Sender::new(
            &cfg,
            metrics.clone(),
            available.clone(),
            shutdown_rx.clone(),
        ));
        let redeliver = spool.as_ref().map(|spool| {
            runtime.spawn(redeliver::run(
                spool.clone(),
                sender.clone(),
                notify.clone(),
                available,
                metrics.clone(),
                shutdown_rx,
                drain_at_shutdown.clone(),
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
                drain_at_shutdown,
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
    /// counted. With [`FailOpenDelivery::Queued`] a fail-open event is not
    /// waited for at all: it is queued ([`Outcome::Queued`]) and delivered in
    /// the background like a response record.
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
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "cannot serialise event");
                let why = DropReason::Io(e.to_string());
                return policy.event_not_delivered(serialise_failed(recorders, e), Err(why));
            }
        };
        if policy == FailurePolicy::FailOpen && self.inner.cfg.fail_open == FailOpenDelivery::Queued
        {
            let key = event.key().unwrap_or("");
            self.send_in_background(RecordKind::Event, recorders, key, Ok(body));
            return Outcome::Queued;
        }
        let body = Bytes::from(body);
        let m = &self.inner.metrics;
        m.attempted(RecordKind::Event.label());
        let record = Outgoing {
            kind: RecordKind::Event,
            body: body.clone(),
        };
        match self
            .inner
            .sender
            .deliver(recorders, std::slice::from_ref(&record), Route::Live)
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
                    Outcome::Forward | Outcome::Queued => {}
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
        let record = Outgoing {
            kind: RecordKind::Event,
            body: Bytes::from(body),
        };
        self.inner
            .sender
            .deliver(recorders, &[record], Route::Live)
            .await
    }

    /// Sends a response record in the background (never on the request's
    /// critical path). Only kubescribe recorders receive it; if none among
    /// `recorders` takes it now, it is spooled like an event (and dropped,
    /// counted, without a spool or when no address is a kubescribe recorder
    /// at all). With [`FailOpenDelivery::Queued`] and a spool it is written
    /// to the spool first and delivered from there, in order with queued
    /// events, in batches.
    pub fn send_response_record(&self, recorders: &[SocketAddr], record: &ResponseRecord) {
        let body = event_model::to_go_json(record);
        self.send_in_background(RecordKind::Response, recorders, &record.key, body);
    }

    /// Sends, in the background, the event of a request that was refused
    /// after [`record_event`](Self::record_event) could not deliver it: the
    /// same event, with the refusal in `kubescribe.decision`. Like a
    /// response record it goes to kubescribe recorders only (a Tailscale
    /// recorder would store it as an ordinary event of a request that never
    /// reached the API server), and is spooled when none takes it now. A
    /// recorder that stored the first copy after all keeps that one (same
    /// key); the request's response record then carries the decision.
    pub fn send_refused_event(&self, recorders: &[SocketAddr], event: &Event) {
        let body = event_model::to_go_json(event);
        self.send_in_background(
            RecordKind::RefusedEvent,
            recorders,
            event.key().unwrap_or(""),
            body,
        );
    }

    fn send_in_background(
        &self,
        kind: RecordKind,
        recorders: &[SocketAddr],
        key: &str,
        body: Result<Vec<u8>, serde_json::Error>,
    ) {
        let m = &self.inner.metrics;
        m.attempted(kind.label());
        if recorders.is_empty() {
            m.dropped(kind.label(), "no_recorders", 1);
            return;
        }
        let body = match body {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, kind = kind.label(), "cannot serialise record");
                m.dropped(kind.label(), "serialise", 1);
                return;
            }
        };
        let queued = self.inner.cfg.fail_open == FailOpenDelivery::Queued;
        if let Some(spool) = self.inner.spool.as_ref().filter(|_| queued) {
            let record = SpoolRecord {
                kind,
                addrs: recorders.to_vec(),
                key: key.to_owned(),
                body,
            };
            match spool.queue(&record) {
                Ok(()) => {
                    m.spooled(kind.label());
                    self.inner.notify.notify_one();
                    return;
                }
                Err(why) => {
                    // Sent from memory below, and dropped if no recorder takes it now.
                    tracing::warn!(%why, kind = kind.label(), "cannot queue a record in the spool; sending it directly");
                }
            }
            self.send_from_memory(kind, recorders, record.key, Bytes::from(record.body));
            return;
        }
        self.send_from_memory(kind, recorders, key.to_owned(), Bytes::from(body));
    }

    /// Sends a record in the background from memory: one live attempt, then
    /// the spool if it has room (counted dropped otherwise).
    fn send_from_memory(
        &self,
        kind: RecordKind,
        recorders: &[SocketAddr],
        key: String,
        body: Bytes,
    ) {
        let this = self.clone();
        let recorders = recorders.to_vec();
        self.inner
            .inflight
            .count
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        let guard = InFlightGuard(self.inner.clone());
        tokio::spawn(async move {
            let _guard = guard;
            let record = Outgoing {
                kind,
                body: body.clone(),
            };
            let result = this
                .inner
                .sender
                .deliver(&recorders, std::slice::from_ref(&record), Route::Live)
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
                        tracing::warn!(error = %err, %why, kind = kind.label(), "record lost");
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
    /// stops redelivery and waits for the task to end: it first goes on
    /// delivering what the spool holds for up to
    /// [`SpoolConfig::shutdown_drain`](crate::SpoolConfig::shutdown_drain),
    /// until a delivery fails. Spooled records left stay on disk for the next
    /// start. Other clones stop redelivering too.
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
        self.inner.drain_at_shutdown.store(true, Ordering::SeqCst);
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
