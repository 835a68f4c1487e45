//! Putting the recorder together: storage, the start-up recovery and
//! rebuild ([`rebuild`]), the commit loop, who may upload and read, the
//! route groups with their narrow state, and the listener.

pub(crate) mod commands;
mod peers;
mod rebuild;

use std::net::SocketAddr;
use std::sync::Arc;

use identity::IdentityFileError;

use crate::access::{ReadAccess, UploadAccess};
use crate::cluster::Membership;
use crate::config::{Config, Destination};
use crate::export::{ExportError, Exporters};
use crate::http::admin::Admin;
use crate::http::api::QueryApi;
use crate::http::ingest::Ingest;
use crate::http::listener::{serve, serve_admin};
use crate::http::router::Routes;
use crate::http::ui::WebUi;
use crate::index::{EventIndex, SessionIndex};
use crate::metrics::Metrics;
use crate::pipeline::cast::CastIntake;
use crate::pipeline::commit::Committer;
use crate::pipeline::keys::KeyIndex;
use crate::storage::batched::{BatchOptions, BatchedStorage};
use crate::storage::disk::DiskStorage;
use crate::storage::s3::{S3Config, S3Storage};
use crate::storage::{Storage, StorageError};
use crate::tamper::sealer::{Scope, Sealer};
use peers::PeerReader;
use rebuild::{rebuild, RebuildReport};
use service::conn::{ConnectionLimits, Listener, ListenerOptions};
use service::tls::{server_config, Alpn};
use service::TlsError;

/// Why the recorder could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Storage is unusable.
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    /// The identity file could not be read.
    #[error("identity: {0}")]
    Identity(#[source] IdentityFileError),
    /// The TLS files are unusable.
    #[error("tls: {0}")]
    Tls(#[from] TlsError),
    /// An export sink is misconfigured, or its cursor unreadable.
    #[error("{0}")]
    Export(#[from] ExportError),
    /// A listen address could not be bound.
    #[error("{flag} {addr}: cannot listen: {source}")]
    Bind {
        /// The flag that named the address.
        flag: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
}

/// A recorder started by [`spawn`], for its tests and benchmarks to look at.
pub struct RecorderHandle {
    metrics: Arc<Metrics>,
    events: Arc<EventIndex>,
    admin: Option<SocketAddr>,
}

impl RecorderHandle {
    /// Where the admin endpoints (`/metrics`, `/healthz`, `/readyz`) listen, if anywhere.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin
    }

    /// The metrics, as `GET /metrics` serves them (Prometheus text format).
    pub fn metrics_text(&self) -> String {
        self.metrics.encode()
    }

    /// How many events the query index holds.
    pub fn indexed_events(&self) -> usize {
        self.events.len()
    }
}

/// Opens the storage back end `destination` names and checks it (write,
/// read, delete a probe), so that bad credentials fail at start-up. A local
/// directory is locked for this process: a second recorder on it is refused.
pub async fn open_storage(destination: &Destination) -> Result<Arc<dyn Storage>, StorageError> {
    let storage: Arc<dyn Storage> = match destination {
        Destination::Disk(path) => Arc::new(DiskStorage::open_exclusive(path)?),
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

/// Opens the storage `config` names, like [`open_storage`]; with `--s3-batch-dir`, records go
/// through the local log ([`BatchedStorage`]), which is recovered and starts shipping.
async fn open_configured_storage(config: &Config) -> Result<Arc<dyn Storage>, StorageError> {
    let (
        Some(batch),
        Destination::S3 {
            endpoint,
            bucket,
            region,
            allow_http,
        },
    ) = (&config.s3_batch, &config.destination)
    else {
        return open_storage(&config.destination).await;
    };
    let s3 = S3Storage::new(S3Config {
        endpoint: endpoint.clone(),
        bucket: bucket.clone(),
        region: region.clone(),
        allow_http: *allow_http,
        credentials: None,
    })?;
    let options = BatchOptions {
        dir: batch.dir.clone(),
        max_bytes: batch.max_bytes,
        max_age: batch.max_age,
    };
    let storage: Arc<dyn Storage> = Arc::new(BatchedStorage::open(s3, options).await?);
    storage.check().await?;
    Ok(storage)
}

/// A recorder built on its storage, ready to serve.
struct Assembled {
    routes: Arc<Routes>,
    /// This replica on its bucket (left at shutdown).
    membership: Arc<Membership>,
    metrics: Arc<Metrics>,
    handle: RecorderHandle,
    report: RebuildReport,
    /// Who may upload and read, for the start-up log.
    access: String,
}

/// Builds the recorder on `storage`: recovers interrupted sessions and torn
/// segments, rebuilds the indexes, starts the commit loop, and gives each
/// route group what it needs.
async fn assemble(config: &Config, storage: Arc<dyn Storage>) -> Result<Assembled, StartError> {
    let mut metrics = Metrics::new();
    storage.register_metrics(metrics.registry_mut());
    let metrics = Arc::new(metrics);
    let exporters = Exporters::load(&config.export)?;
    let events = Arc::new(EventIndex::new(config.index_max_bytes));
    let sessions = Arc::new(SessionIndex::new());
    let mut keys = KeyIndex::new(config.dedup_window, config.dedup_max_keys);
    let membership = Membership::join(
        storage.clone(),
        &config.replicas.name,
        config.replicas.lease_ttl,
    )
    .await?;
    let fence = membership.fence().clone();
    if fence.is_shared() {
        tracing::info!(
            owner = fence.owner(),
            leads = fence.leads(),
            replicas = membership.live_replicas(),
            lease_ttl = ?config.replicas.lease_ttl,
            "sharing the bucket with other replicas: sessions are finalised by the leader once their recorder's lease expires; the leader seals, sweeps and exports"
        );
    }
    let may_recover = {
        let membership = membership.clone();
        move |owner: Option<&str>| membership.may_recover(owner)
    };
    let report = rebuild(&storage, &may_recover, &mut keys, &events, &sessions).await?;
    // After crash recovery: what recovery kept is what gets sealed.
    let sealer =
        Arc::new(Sealer::open(storage.clone(), config.signing.clone(), fence.clone()).await?);
    let sealed = sealer.seal(Scope::All).await?;
    if sealed > 0 {
        tracing::info!(
            objects = sealed,
            "wrote a manifest for sealed segments and sessions no manifest covered"
        );
    }
    if let Err(e) = sealer.sweep(&config.retention).await {
        tracing::warn!(error = %e, "retention sweep at start-up failed (retrying at the next interval)");
    }
    sealer.clone().spawn_sweeper(config.retention.clone());
    sealer.clone().spawn_periodic(config.manifest_interval);
    let committer = Committer::start(
        storage.clone(),
        keys,
        events.clone(),
        metrics.clone(),
        config.commit_max_records,
    );
    exporters
        .start(
            storage.clone(),
            committer.watermark(),
            &metrics,
            membership.clone(),
        )
        .await?;
    if fence.is_shared() {
        PeerReader::new(
            storage.clone(),
            membership.clone(),
            events.clone(),
            sessions.clone(),
            sealer.clone(),
        )
        .spawn(config.replicas.peer_sync_interval);
    }
    let whois = config
        .identity
        .as_ref()
        .map(|source| source.open_watched())
        .transpose()
        .map_err(StartError::Identity)?;
    let uploads = UploadAccess {
        whois: whois.clone(),
        uploaders: config.allow_uploaders.clone(),
        token: config.upload_token.clone(),
        anyone: config.insecure_allow_any_uploader,
    };
    let reads = Arc::new(ReadAccess {
        whois,
        readers: config.allow_readers.clone(),
        token: config.read_token.clone(),
    });
    let access = format!(
        "uploads: {}; reads: {}",
        uploads.describe(),
        reads.describe()
    );
    let casts = Arc::new(CastIntake {
        storage: storage.clone(),
        sessions: sessions.clone(),
        metrics: metrics.clone(),
        max_session_bytes: config.limits.max_session_bytes,
        max_line_bytes: config.limits.max_event_bytes,
        sealer: sealer.clone(),
        fence,
    });
    let routes = Routes {
        ingest: Ingest::new(
            uploads,
            committer.clone(),
            casts,
            config.limits.clone(),
            metrics.clone(),
        ),
        api: QueryApi::new(
            reads.clone(),
            events.clone(),
            sessions,
            storage,
            committer,
            sealer,
        ),
        ui: config.ui.then(|| WebUi::new(reads)),
        signing_key: config.signing.public_key_hex(),
    };
    Ok(Assembled {
        routes: Arc::new(routes),
        membership,
        metrics: metrics.clone(),
        handle: RecorderHandle {
            metrics,
            events,
            admin: None,
        },
        report,
        access,
    })
}

/// Binds the upload and query listener: `config.listen` with its connection limits, PROXY
/// protocol and `tls`.
async fn listen(
    config: &Config,
    metrics: &Metrics,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> Result<Listener, StartError> {
    let options = ListenerOptions {
        name: "recorder",
        limits: config.connections,
        proxy_protocol: config.proxy_protocol,
        tls,
        metrics: metrics.connections.clone(),
    };
    Listener::bind(config.listen, options)
        .await
        .map_err(|source| StartError::Bind {
            flag: "--listen",
            addr: config.listen,
            source,
        })
}

/// Binds `config.admin_listen` (when set) and serves `/metrics`, `/healthz` and `/readyz` there in
/// the background; returns the bound address.
async fn start_admin(
    config: &Config,
    metrics: &Arc<Metrics>,
) -> Result<Option<SocketAddr>, StartError> {
    let Some(addr) = config.admin_listen else {
        return Ok(None);
    };
    let admin = Listener::bind(
        addr,
        ListenerOptions {
            name: "admin",
            limits: ConnectionLimits::admin(),
            proxy_protocol: false,
            tls: None,
            metrics: metrics.connections.clone(),
        },
    )
    .await
    .map_err(|source| StartError::Bind {
        flag: "--admin-listen",
        addr,
        source,
    })?;
    let bound = admin.local_addr();
    tracing::info!(addr = %bound, "admin listening: /metrics /healthz /readyz");
    tokio::spawn(serve_admin(
        admin,
        Arc::new(Admin {
            metrics: metrics.clone(),
        }),
    ));
    Ok(Some(bound))
}

/// Builds the recorder on `storage`, binds `config.listen` and serves in the
/// background (no TLS); returns the bound address and a handle to look at
/// the running recorder (used by tests and benchmarks).
pub async fn spawn(
    config: Config,
    storage: Arc<dyn Storage>,
) -> Result<(SocketAddr, RecorderHandle), StartError> {
    let mut recorder = assemble(&config, storage).await?;
    let listener = listen(&config, &recorder.metrics, None).await?;
    let addr = listener.local_addr();
    recorder.handle.admin = start_admin(&config, &recorder.metrics).await?;
    tokio::spawn(serve(listener, recorder.routes));
    Ok((addr, recorder.handle))
}

/// Opens and checks the configured storage, builds the recorder and serves
/// until the process ends or is told to stop (SIGTERM, Ctrl-C): then a
/// replica on a shared bucket leaves it (see `cluster`).
pub async fn run(config: Config) -> Result<(), StartError> {
    let storage = open_configured_storage(&config).await?;
    tracing::info!(storage = %storage.describe(), "storage checked (write, read, delete)");
    let tls = match &config.tls {
        Some(files) => Some(server_config(files, Alpn::H2AndHttp1)?),
        None => None,
    };
    match config.signing.public_key_hex() {
        Some(key) => {
            tracing::info!(public_key = %key, "manifests are signed (Ed25519; GET /api/v1/signing-key)")
        }
        None => tracing::warn!("--unsigned: manifests carry hashes but no signature"),
    }
    let recorder = assemble(&config, storage).await?;
    let report = &recorder.report;
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
    let listener = listen(&config, &recorder.metrics, tls).await?;
    let addr = listener.local_addr();
    let limits = config.connections;
    tracing::info!(
        %addr,
        protocols = if listener.is_tls() { "HTTPS (TLS, ALPN h2 + http/1.1)" } else { "HTTP/1.1 + h2c (prior knowledge)" },
        proxy_protocol = config.proxy_protocol,
        ui = config.ui,
        auth = %recorder.access,
        max_connections = limits.max_connections,
        max_connections_per_source = limits.max_connections_per_source,
        handshake_timeout = ?limits.handshake_timeout,
        idle_timeout = ?limits.idle_timeout,
        "kubescribe-recorder listening: /v2/event /v2/events /v2/record /record /api/v1 /healthz"
    );
    start_admin(&config, &recorder.metrics).await?;
    if config.insecure_allow_any_uploader {
        tracing::warn!(
            "--insecure-allow-any-uploader: ANYONE who can reach {addr} can upload recordings"
        );
    }
    tokio::select! {
        () = serve(listener, recorder.routes) => {}
        () = service::shutdown::signal() => {
            tracing::info!("shutting down (everything acknowledged is stored; live sessions are finalised at the next start, or by another replica of the bucket)");
            recorder.membership.leave().await;
        }
    }
    Ok(())
}
