//! Putting the recorder together: storage, start-up recovery and index
//! rebuild, the commit loop, authentication, and the listener.

use std::net::SocketAddr;
use std::sync::Arc;

use identity::{IdentityFileWhoIs, LocalApiWhoIs, ReloadOptions, WhoIs};
use tokio::sync::Semaphore;

use crate::auth::Auth;
use crate::commit::{Committer, KeyIndex};
use crate::config::{Config, Destination, IdentitySource};
use crate::metrics::Metrics;
use crate::query::rebuild::{rebuild, RebuildReport};
use crate::query::{QueryIndex, SessionIndex};
use crate::server::{tls, Listener};
use crate::storage::disk::DiskStorage;
use crate::storage::s3::{S3Config, S3Storage};
use crate::storage::{Storage, StorageError};

/// Why the recorder could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Storage is unusable.
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    /// The identity source could not be set up.
    #[error("identity: {0}")]
    Identity(String),
    /// TLS files are unusable.
    #[error("tls: {0}")]
    Tls(#[from] tls::TlsError),
    /// The listen address could not be bound.
    #[error("--listen {addr}: cannot listen: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
}

/// The running recorder's shared state.
pub struct App {
    /// The validated configuration.
    pub config: Config,
    /// Where records go.
    pub storage: Arc<dyn Storage>,
    /// The group-commit loop.
    pub committer: Committer,
    /// Recent events for the query API.
    pub index: Arc<QueryIndex>,
    /// All sessions.
    pub sessions: Arc<SessionIndex>,
    /// Who may upload and read.
    pub auth: Auth,
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
    /// Session upload slots (`--max-concurrent-uploads`).
    pub upload_slots: Arc<Semaphore>,
    /// In-flight event/batch body budget in KiB (`--max-inflight-bytes`).
    pub body_budget: Arc<Semaphore>,
}

/// Opens the configured storage back end and checks it.
pub async fn open_storage(destination: &Destination) -> Result<Arc<dyn Storage>, StorageError> {
    let storage: Arc<dyn Storage> = match destination {
        Destination::Disk(path) => Arc::new(DiskStorage::open(path)?),
        Destination::S3 {
            endpoint,
            bucket,
            region,
            allow_http,
        } => Arc::new(S3Storage::new(S3Config {
            endpoint: endpoint.clone(),
            bucket: bucket.clone(),
            region: region.clone(),
            allow_http: *allow_http,
            credentials: None,
        })?),
    };
    storage.check().await?;
    Ok(storage)
}

fn whois_source(source: &IdentitySource) -> Result<Option<Arc<dyn WhoIs>>, StartError> {
    Ok(match source {
        IdentitySource::None => None,
        IdentitySource::LocalApi(path) => Some(Arc::new(LocalApiWhoIs::with_socket(path.clone()))),
        IdentitySource::File(path) => Some(Arc::new(
            IdentityFileWhoIs::watch(path.clone(), ReloadOptions::default())
                .map_err(|e| StartError::Identity(e.to_string()))?,
        )),
    })
}

impl App {
    /// Builds the recorder on `storage`: recovers interrupted sessions,
    /// rebuilds the indexes and starts the commit loop.
    pub async fn with_storage(
        config: Config,
        storage: Arc<dyn Storage>,
    ) -> Result<(Arc<App>, RebuildReport), StartError> {
        let metrics = Arc::new(Metrics::new());
        let index = Arc::new(QueryIndex::new(config.index_max_bytes));
        let sessions = Arc::new(SessionIndex::new());
        let mut keys = KeyIndex::new(config.dedup_window, config.dedup_max_keys);
        let report = rebuild(&storage, &mut keys, &index, &sessions).await?;
        let committer = Committer::start(
            storage.clone(),
            keys,
            index.clone(),
            metrics.clone(),
            config.commit_max_records,
        );
        let auth = Auth::new(
            whois_source(&config.identity)?,
            config.allow_uploaders.clone(),
            config.allow_readers.clone(),
            config.upload_token.clone(),
            config.read_token.clone(),
            config.insecure_allow_any_uploader,
        );
        let upload_slots = Arc::new(Semaphore::new(config.limits.max_concurrent_uploads));
        let body_budget = Arc::new(Semaphore::new(
            (config.limits.max_inflight_bytes / 1024).min(Semaphore::MAX_PERMITS),
        ));
        let app = Arc::new(App {
            config,
            storage,
            committer,
            index,
            sessions,
            auth,
            metrics,
            upload_slots,
            body_budget,
        });
        Ok((app, report))
    }
}

/// Builds the recorder on `storage`, binds `config.listen` and serves in the
/// background; returns the bound address (used by tests and benchmarks).
pub async fn spawn(
    config: Config,
    storage: Arc<dyn Storage>,
) -> Result<(SocketAddr, Arc<App>), StartError> {
    let listen = config.listen;
    let (app, _) = App::with_storage(config, storage).await?;
    let listener = Listener::bind(listen, None)
        .await
        .map_err(|source| StartError::Bind {
            addr: listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| StartError::Bind {
        addr: listen,
        source,
    })?;
    tokio::spawn(crate::server::serve(listener, app.clone()));
    Ok((addr, app))
}

/// Opens storage, builds the recorder and serves until the process ends.
pub async fn run(config: Config) -> Result<(), StartError> {
    let storage = open_storage(&config.destination).await?;
    tracing::info!(storage = %storage.describe(), "storage checked (write, read, delete)");
    let tls = match &config.tls {
        Some((cert, key)) => Some(tls::acceptor(cert, key)?),
        None => None,
    };
    let listen = config.listen;
    let (app, report) = App::with_storage(config, storage).await?;
    tracing::info!(
        recovered_sessions = report.recovered_sessions,
        repaired_segments = report.repaired_segments,
        batches = report.batches_read,
        indexed_events = report.indexed_events,
        idempotency_keys = report.keys,
        sessions = report.sessions,
        bad_lines = report.bad_lines,
        "indexes rebuilt from storage"
    );
    let listener = Listener::bind(listen, tls)
        .await
        .map_err(|source| StartError::Bind {
            addr: listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| StartError::Bind {
        addr: listen,
        source,
    })?;
    tracing::info!(
        %addr,
        protocols = if listener.is_tls() { "HTTPS (TLS, ALPN h2 + http/1.1)" } else { "HTTP/1.1 + h2c (prior knowledge)" },
        ui = app.config.ui,
        auth = %app.auth.describe(),
        "kubescribe-recorder listening: /v2/event /v2/events /v2/record /record /api/v1 /metrics"
    );
    if app.config.insecure_allow_any_uploader {
        tracing::warn!(
            "--insecure-allow-any-uploader: ANYONE who can reach {addr} can upload recordings"
        );
    }
    crate::server::serve(listener, app).await;
    Ok(())
}
