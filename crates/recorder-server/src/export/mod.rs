//! Export: stored events as `audit.k8s.io/v1` Events, delivered in record-id
//! (commit) order from a durable cursor per sink, at least once, to an audit
//! webhook (kube-apiserver's audit-webhook format) and/or JSON lines files.
//! The mapping and the guarantees are `docs/export.md`.
//!
//! Bottom to top:
//! * [`audit`]: the `audit.k8s.io/v1` wire types.
//! * `convert`: a stored event and its response record as an audit Event.
//! * `cursor`: a sink's position, `_kubescribe/export/<sink>/cursor`.
//! * `source`: stored events after a cursor, in order, with their responses.
//! * `jsonl`, `webhook`: the two sinks.
//! * this module: one task per sink: read, convert, deliver (retrying with
//!   exponential back-off), then advance the cursor.

pub mod audit;
mod convert;
mod cursor;
mod jsonl;
mod source;
mod webhook;

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::cluster::Membership;
use crate::config::Export;
use crate::metrics::{Metrics, SinkMetrics};
use crate::pipeline::commit::CommitWatermark;
use crate::record::{new_id, unix_millis, OrderKey};
use crate::storage::{Storage, StorageError};
use convert::{to_audit_event, Response};
use cursor::Cursor;
use jsonl::{JsonlSink, JsonlTarget};
use source::Source;
use webhook::WebhookSink;

/// The longest back-off between two attempts at a batch.
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// Why export could not start, worded for the operator.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The webhook's kubeconfig-style file is unusable.
    #[error("--export-webhook-config {path}: {why}")]
    WebhookConfig {
        /// The file.
        path: String,
        /// What is wrong.
        why: String,
    },
    /// A stored cursor does not parse.
    #[error("export cursor {key} is damaged ({why}); fix or remove it (removing it exports every stored event again)")]
    BadCursor {
        /// Its storage key.
        key: String,
        /// What is wrong.
        why: String,
    },
    /// Storage failed.
    #[error("export: {0}")]
    Storage(#[source] StorageError),
    /// A sink name that is not a valid storage key part (a bug).
    #[error("export sink name {0:?} is invalid")]
    SinkName(&'static str),
}

/// Why a batch was not delivered (retried).
#[derive(Debug, thiserror::Error)]
pub(crate) enum SinkError {
    /// A file operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The webhook did not acknowledge the batch.
    #[error("webhook: {0}")]
    Webhook(String),
    /// A blocking file task failed.
    #[error("export worker failed: {0}")]
    Worker(#[source] tokio::task::JoinError),
}

/// Where one exporter delivers.
enum Target {
    Webhook(WebhookSink),
    Jsonl(Arc<std::sync::Mutex<JsonlSink>>),
}

impl Target {
    fn name(&self) -> &'static str {
        match self {
            Target::Webhook(_) => "webhook",
            Target::Jsonl(_) => "jsonl",
        }
    }

    async fn deliver(&mut self, events: &[audit::Event]) -> Result<(), SinkError> {
        match self {
            Target::Webhook(sink) => {
                let body = serde_json::to_vec(&audit::EventList::new(events.to_vec()))
                    .map_err(|e| SinkError::Webhook(e.to_string()))?;
                sink.post(body).await
            }
            Target::Jsonl(sink) => {
                let mut lines = Vec::new();
                for event in events {
                    // Serialising these types cannot fail (string keys only).
                    if serde_json::to_writer(&mut lines, event).is_ok() {
                        lines.push(b'\n');
                    }
                }
                let sink = sink.clone();
                tokio::task::spawn_blocking(move || {
                    let mut sink = sink.lock().unwrap_or_else(|e| e.into_inner());
                    sink.append(&lines)
                })
                .await
                .map_err(SinkError::Worker)?
            }
        }
    }
}

/// The exporters the configuration asks for, loaded and checked, not yet running.
pub(crate) struct Exporters {
    targets: Vec<Target>,
    settings: Export,
}

impl Exporters {
    /// Loads the configured sinks (the webhook file is read now, so that a
    /// bad one fails at start-up).
    pub(crate) fn load(settings: &Export) -> Result<Self, ExportError> {
        let mut targets = Vec::new();
        if let Some(path) = &settings.webhook_config {
            targets.push(Target::Webhook(WebhookSink::load(path)?));
        }
        if let Some(dir) = &settings.jsonl_dir {
            targets.push(Target::Jsonl(Arc::new(std::sync::Mutex::new(
                JsonlSink::new(JsonlTarget {
                    dir: dir.clone(),
                    max_file_bytes: settings.jsonl_max_file_bytes,
                }),
            ))));
        }
        Ok(Self {
            targets,
            settings: settings.clone(),
        })
    }

    /// Starts one task per sink, each from its stored cursor. A task exports
    /// only while this replica leads (one replica of a shared bucket
    /// exports), and waits longer before it passes a batch while other
    /// replicas commit ([`Source::settling`]).
    pub(crate) async fn start(
        self,
        storage: Arc<dyn Storage>,
        watermark: CommitWatermark,
        metrics: &Metrics,
        membership: Arc<Membership>,
    ) -> Result<(), ExportError> {
        for target in self.targets {
            let name = target.name();
            let cursor = Cursor::new(storage.clone(), name)?;
            let after = cursor.load().await?;
            let where_to = match &target {
                Target::Webhook(sink) => sink.server().to_owned(),
                Target::Jsonl(_) => self
                    .settings
                    .jsonl_dir
                    .as_ref()
                    .map(|d| d.display().to_string())
                    .unwrap_or_default(),
            };
            tracing::info!(
                sink = name,
                to = %where_to,
                after = after.as_ref().map_or("(start of storage)", |(id, _)| id.as_str()),
                batch_max_size = self.settings.batch_max_size,
                batch_max_wait = ?self.settings.batch_max_wait,
                response_wait = ?self.settings.response_wait,
                "exporting stored events as audit.k8s.io/v1 Events"
            );
            let source = Source::new(
                storage.clone(),
                Some(watermark.clone()),
                self.settings.response_wait,
                after.map(|(_, order)| order),
            )
            .settling(membership.clone());
            let task = Task {
                target,
                cursor,
                source,
                settings: self.settings.clone(),
                metrics: metrics.sink(name),
                reopen: Reopen {
                    storage: storage.clone(),
                    watermark: watermark.clone(),
                    membership: membership.clone(),
                },
            };
            tokio::spawn(task.run());
        }
        Ok(())
    }
}

/// One sink's exporter.
struct Task {
    target: Target,
    cursor: Cursor,
    source: Source,
    settings: Export,
    metrics: SinkMetrics,
    /// What a new [`Source`] needs when this replica comes to lead again.
    reopen: Reopen,
}

/// What a task needs to read from its cursor again.
struct Reopen {
    storage: Arc<dyn Storage>,
    watermark: CommitWatermark,
    /// Exports only while this replica leads.
    membership: Arc<Membership>,
}

impl Task {
    async fn run(mut self) {
        let name = self.target.name();
        let poll = self
            .settings
            .batch_max_wait
            .clamp(Duration::from_millis(50), Duration::from_secs(1));
        let mut backoff = self.settings.initial_backoff;
        let mut first_ready: Option<Instant> = None;
        let mut unsaved: Option<String> = None;
        let mut following = false;
        loop {
            if !self.reopen.membership.fence().leads() {
                // Another replica of the bucket exports; when this one leads
                // again, it goes on from the cursor that one stored.
                following = true;
                unsaved = None;
                first_ready = None;
                tokio::time::sleep(poll.max(Duration::from_secs(1))).await;
                continue;
            }
            if following {
                match self.cursor.load().await {
                    Ok(after) => {
                        self.source = Source::new(
                            self.reopen.storage.clone(),
                            Some(self.reopen.watermark.clone()),
                            self.settings.response_wait,
                            after.map(|(_, order)| order),
                        )
                        .settling(self.reopen.membership.clone());
                        following = false;
                    }
                    Err(e) => {
                        tracing::warn!(sink = name, error = %e, "export: cannot read the cursor; retrying");
                        tokio::time::sleep(backoff).await;
                        continue;
                    }
                }
            }
            if let Some(after) = unsaved.take() {
                if let Err(e) = self.cursor.store(&after).await {
                    tracing::warn!(sink = name, error = %e, "export: cannot store the cursor; retrying (a restart now would deliver the last batch again)");
                    unsaved = Some(after);
                }
            }
            let ready = match self.source.poll(self.settings.batch_max_size).await {
                Ok(ready) => ready,
                Err(e) => {
                    tracing::warn!(sink = name, error = %e, "export: cannot read storage; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            };
            self.update_lag();
            let Some(last) = ready.last() else {
                first_ready = None;
                tokio::time::sleep(poll).await;
                continue;
            };
            let since = *first_ready.get_or_insert_with(Instant::now);
            if ready.len() < self.settings.batch_max_size
                && since.elapsed() < self.settings.batch_max_wait
            {
                tokio::time::sleep(poll).await;
                continue;
            }
            let through: OrderKey = last.order;
            let through_id = last.event.id.clone();
            let events: Vec<audit::Event> = ready
                .iter()
                .map(|r| {
                    let response = match (&r.response, r.event.key()) {
                        (Some(found), _) => Response::Found(found),
                        (None, Some(_)) => Response::Missing {
                            waited: self.settings.response_wait,
                        },
                        (None, None) => Response::NoKey,
                    };
                    to_audit_event(&r.event, response)
                })
                .collect();
            match self.target.deliver(&events).await {
                Ok(()) => {
                    backoff = self.settings.initial_backoff;
                    first_ready = None;
                    self.metrics.exported.inc_by(events.len() as u64);
                    self.source.delivered(through);
                    if let Err(e) = self.cursor.store(&through_id).await {
                        tracing::warn!(sink = name, error = %e, "export: cannot store the cursor; retrying (a restart now would deliver the last batch again)");
                        unsaved = Some(through_id);
                    }
                    self.update_lag();
                }
                Err(e) => {
                    self.metrics.failures.inc();
                    tracing::warn!(sink = name, events = events.len(), error = %e, retry_in = ?backoff, "export: batch not delivered; will send it again");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    fn update_lag(&self) {
        self.metrics.lag_records.set(self.source.backlog() as i64);
        let now_ms = unix_millis(&new_id());
        let lag = self
            .source
            .oldest_pending_ms()
            .map_or(0.0, |ms| (now_ms - ms).max(0) as f64 / 1000.0);
        self.metrics.lag_seconds.set(lag);
    }
}
