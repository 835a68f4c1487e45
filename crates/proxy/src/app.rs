//! Assembly: from a validated [`Config`] (plus the identity source, the event
//! sink and the session hook) to running listeners, with start-up logs and
//! graceful shutdown; and [`serve`], the binary's serving command.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use audit_policy::Policy;
use identity::WhoIs;
use prometheus_client::registry::Registry;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::admin::{self, Readiness};
use crate::audit::{self, PolicyInForce};
use crate::caller::CallerResolver;
use crate::config::{Config, ServeArgs, SpoolDir, SpoolOptions};
use crate::event_sink::EventSink;
use crate::forward::Forwarder;
use crate::listener;
use crate::metrics::Metrics;
use crate::mode::Mode;
use crate::pipeline::{Proxy, ProxyOptions};
use crate::recorder_dial::{self, RecorderDial};
use crate::recording_hook::RecordingHook;
use crate::session_hook::SessionHook;
use crate::session_tracker::SessionTracker;
use crate::upstream::{self, Upstream, UpstreamError, UpstreamSpec};
use service::conn::{ConnectionLimits, Listener, ListenerOptions};

/// Start-up failed.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Upstream configuration.
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    /// TLS files of the API listener.
    #[error(transparent)]
    Tls(#[from] service::TlsError),
    /// Identity source.
    #[error(transparent)]
    Identity(#[from] identity::IdentityFileError),
    /// Recorder client.
    #[error("recorder client: {0}")]
    Recorder(#[from] recorder_client::StartError),
    /// The spool directory cannot be created, opened or written.
    #[error("cannot use the spool directory {path} ({flag}): {source}; pass a writable {flag}, or --spool-dir none to run without a spool (records no recorder takes are then dropped)")]
    Spool {
        /// The flag that chose the directory.
        flag: &'static str,
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// No default state directory can be created and written.
    #[error("no writable state directory for the spool ({tried}); pass --state-dir DIR or --spool-dir DIR with a writable directory, or --spool-dir none to run without a spool")]
    NoStateDir {
        /// Each directory tried, with why it failed.
        tried: String,
    },
    /// A listener could not bind.
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind {
        /// Which listener.
        what: &'static str,
        /// Address.
        addr: SocketAddr,
        /// Cause.
        source: std::io::Error,
    },
}

/// The pluggable parts of a proxy.
pub struct Components {
    /// Where identities come from.
    pub whois: Arc<dyn WhoIs>,
    /// Where events go.
    pub sink: Arc<dyn EventSink>,
    /// What happens to upgraded sessions.
    pub hook: Arc<dyn SessionHook>,
    /// The upstream API server.
    pub upstream: UpstreamSpec,
}

/// Build everything from the configuration: identity source (an identity
/// file is kept current), recorder client (registered in `registry`; also
/// returned, for shutdown), the session-recording hook, upstream.
fn components_from_config(
    config: &Config,
    registry: &mut Registry,
) -> Result<(Components, recorder_client::RecorderClient), StartError> {
    let whois = config.identity.open_watched()?;
    // Configuration errors first, before any directory is created.
    let upstream = UpstreamSpec::load(&config.upstream)?;
    let mut client_config = recorder_client::ClientConfig::default();
    let (dialer, why) = recorder_dial::choose(
        &config.recorder_dial,
        &config.identity,
        recorder_dial::tailnet_interface().as_ref(),
    );
    tracing::info!("recorders are dialed through {dialer} ({why})");
    client_config.dialer = dialer;
    client_config.fail_open = config.fail_open_delivery;
    let spool = spool_dir(&config.spool.dir, config.state_dir.as_deref())?;
    client_config.spool = spool
        .as_ref()
        .map(|(dir, _)| spool_config(dir, &config.spool, config.shutdown_grace));
    if let Some((dir, _)) = &spool {
        tracing::info!(
            "spool: {} (records no recorder takes wait here for redelivery; at most {} bytes; when full: {})",
            dir.display(),
            config.spool.max_bytes,
            match config.spool.full_policy {
                recorder_client::SpoolFullPolicy::DropOldest =>
                    "the oldest records are dropped, --spool-full-policy drop-oldest",
                recorder_client::SpoolFullPolicy::Refuse =>
                    "new records are dropped, --spool-full-policy refuse",
            }
        );
    }
    tracing::info!(
        "fail-open requests {} (--fail-open-delivery {})",
        match (config.fail_open_delivery, spool.is_some()) {
            (recorder_client::FailOpenDelivery::Acknowledged, _) =>
                "wait for a recorder's acknowledgement of their event, or its spooling",
            (recorder_client::FailOpenDelivery::Queued, true) =>
                "are forwarded at once; their events are written to the spool and delivered from there",
            (recorder_client::FailOpenDelivery::Queued, false) =>
                "are forwarded at once; their events are sent from memory, lost if no recorder takes them (no spool)",
        },
        config.fail_open_delivery.as_str()
    );
    let client = recorder_client::RecorderClient::start(client_config, registry).map_err(
        |error| match (error, spool) {
            (recorder_client::StartError::Spool { path, source }, Some((_, flag))) => {
                StartError::Spool { flag, path, source }
            }
            (error, _) => StartError::Recorder(error),
        },
    )?;
    Ok((
        Components {
            whois,
            hook: Arc::new(RecordingHook::new(client.clone())),
            sink: Arc::new(client.clone()),
            upstream,
        },
        client,
    ))
}

/// How long tailscaled's status (the netmap recorder tags are resolved in) is reused.
const NETMAP_TTL: std::time::Duration = std::time::Duration::from_secs(3);

/// The tailscaled whose netmap resolves grants' `recorder` tags when control did not: the one
/// WhoIs asks, else the one `--recorder-dial localapi` dials through; none with an identity file.
fn netmap(config: &Config) -> Option<Arc<localapi::StatusCache>> {
    let socket = match (&config.identity, &config.recorder_dial) {
        (identity::IdentitySource::LocalApi(socket), _) => socket.clone(),
        (identity::IdentitySource::File(_), RecorderDial::LocalApi) => {
            localapi::DEFAULT_TAILSCALED_SOCKET.into()
        }
        (identity::IdentitySource::File(_), _) => return None,
    };
    Some(Arc::new(localapi::StatusCache::new(
        localapi::LocalApi::new(socket),
        NETMAP_TTL,
    )))
}

/// The state directory when `--state-dir` is not given and it can be used.
const DEFAULT_STATE_DIR: &str = "/var/lib/kubescribe-proxy";

/// Where the spool goes, and the flag that decided it (for errors); `None`
/// with `--spool-dir none`, which is logged loudly.
fn spool_dir(
    spool: &SpoolDir,
    state_dir: Option<&Path>,
) -> Result<Option<(PathBuf, &'static str)>, StartError> {
    let state = match (spool, state_dir) {
        (SpoolDir::Off, _) => {
            tracing::warn!("--spool-dir none: NO SPOOL. Events and response records that no recorder takes are dropped (counted in kubescribe_recorder_client_records_dropped_total{{reason=\"no_spool\"}}): fail-open requests then go through unrecorded for good");
            return Ok(None);
        }
        (SpoolDir::Dir(dir), _) => return Ok(Some((dir.clone(), "--spool-dir"))),
        (SpoolDir::InStateDir, Some(dir)) => {
            writable(dir).map_err(|source| StartError::Spool {
                flag: "--state-dir",
                path: dir.to_path_buf(),
                source,
            })?;
            dir.to_path_buf()
        }
        (SpoolDir::InStateDir, None) => default_state_dir()?,
    };
    Ok(Some((state.join("spool"), "--state-dir")))
}

/// The default state directory: `/var/lib/kubescribe-proxy`, or, when it
/// cannot be created or written (not root), `$XDG_STATE_HOME/kubescribe-proxy`
/// (`$HOME/.local/state/kubescribe-proxy` without it). The choice is logged.
fn default_state_dir() -> Result<PathBuf, StartError> {
    let mut candidates = vec![PathBuf::from(DEFAULT_STATE_DIR)];
    match (
        std::env::var_os("XDG_STATE_HOME").filter(|v| !v.is_empty()),
        std::env::var_os("HOME").filter(|v| !v.is_empty()),
    ) {
        (Some(xdg), _) => candidates.push(PathBuf::from(xdg).join("kubescribe-proxy")),
        (None, Some(home)) => {
            candidates.push(PathBuf::from(home).join(".local/state/kubescribe-proxy"))
        }
        (None, None) => {}
    }
    first_writable(candidates)
}

/// The first of `candidates` that can be created and written; the error
/// lists why each failed.
fn first_writable(candidates: Vec<PathBuf>) -> Result<PathBuf, StartError> {
    let mut tried = Vec::new();
    for dir in candidates {
        match writable(&dir) {
            Ok(()) => {
                if !tried.is_empty() {
                    tracing::info!(
                        "state directory: {} ({}; pass --state-dir to choose)",
                        dir.display(),
                        tried.join("; ")
                    );
                }
                return Ok(dir);
            }
            Err(e) => tried.push(format!("{}: {e}", dir.display())),
        }
    }
    Err(StartError::NoStateDir {
        tried: tried.join("; "),
    })
}

/// Creates `dir` if needed and checks that a file can be created in it.
fn writable(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let probe = dir.join(format!(".kubescribe-write-test-{}", std::process::id()));
    std::fs::write(&probe, b"")?;
    std::fs::remove_file(&probe)
}

/// The recorder client's spool settings for `dir`; at shutdown the spool is drained for up to
/// `shutdown_grace` (after the requests in flight had as long).
fn spool_config(
    dir: &Path,
    options: &SpoolOptions,
    shutdown_grace: std::time::Duration,
) -> recorder_client::SpoolConfig {
    let mut spool = recorder_client::SpoolConfig::new(dir);
    spool.shutdown_drain = shutdown_grace;
    spool.max_bytes = options.max_bytes;
    // Drop-oldest works a segment at a time: keep at least eight of them.
    spool.segment_bytes = spool.segment_bytes.min(options.max_bytes / 8);
    spool.full_policy = options.full_policy;
    spool
}

/// A running proxy.
#[derive(Debug)]
pub struct RunningProxy {
    /// Where the API listener listens.
    pub addr: SocketAddr,
    /// Where the admin listener listens.
    pub admin_addr: SocketAddr,
    /// Readiness (true once listening).
    pub ready: Readiness,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl RunningProxy {
    /// Begin graceful shutdown and wait for it (bounded by the grace period).
    pub async fn shutdown(self) {
        self.ready.set(false);
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }

    /// Wait until the proxy stops by itself (it does not, unless shut down).
    pub async fn wait(self) {
        for t in self.tasks {
            let _ = t.await;
        }
    }

    /// A handle to trigger shutdown from elsewhere (signals).
    pub fn shutdown_trigger(&self) -> watch::Sender<bool> {
        self.shutdown.clone()
    }
}

/// Binds the listener for the flag `what`; returns it with the address it got.
async fn bind(
    what: &'static str,
    addr: SocketAddr,
    options: ListenerOptions,
) -> Result<(Listener, SocketAddr), StartError> {
    let listener = Listener::bind(addr, options)
        .await
        .map_err(|source| StartError::Bind { what, addr, source })?;
    let local = listener.local_addr();
    Ok((listener, local))
}

/// Bind the listeners and start serving.
pub async fn start(
    config: &Config,
    components: Components,
    mut registry: Registry,
) -> Result<RunningProxy, StartError> {
    let metrics = Metrics::register(&mut registry);
    let connection_metrics = metrics.connections.clone();
    let registry = Arc::new(registry);
    let upstream = Arc::new(Upstream::build(components.upstream, config.mode)?);
    let tls = match &config.tls {
        Some(files) => Some(service::tls::server_config(
            files,
            service::tls::Alpn::Http1,
        )?),
        None => None,
    };
    let sessions = SessionTracker::new();
    let audit = Arc::new(match &config.audit_policy {
        Some((path, policy)) => PolicyInForce::new(policy.clone(), Some(path.clone())),
        None => PolicyInForce::new(Policy::request_level_for_all(), None),
    });
    let audit_metrics = metrics.clone();
    let proxy = Arc::new(Proxy::new(
        CallerResolver::new(
            components.whois,
            config.mode,
            config.trust_forwarded_for,
            config.whois_cache_ttl,
        )
        .with_netmap(netmap(config)),
        components.sink,
        Forwarder::new(
            upstream.clone(),
            config.mode,
            components.hook,
            sessions.clone(),
        ),
        metrics,
        ProxyOptions {
            max_body_capture: config.max_body_capture,
            events_for_all_callers: config.events_for_all_callers,
            mode: config.mode,
            redactor: config.redactor.clone(),
            audit: audit.clone(),
        },
    ));

    let api_options = ListenerOptions {
        name: "api",
        limits: config.connections,
        proxy_protocol: config.proxy_protocol,
        tls,
        metrics: connection_metrics.clone(),
    };
    let admin_options = ListenerOptions {
        name: "admin",
        limits: ConnectionLimits::admin(),
        proxy_protocol: false,
        tls: None,
        metrics: connection_metrics.clone(),
    };
    let (api, addr) = bind("--listen", config.listen, api_options).await?;
    let (admin_listener, admin_addr) =
        bind("--admin-listen", config.admin_listen, admin_options).await?;
    log_start_up(config, addr, admin_addr, &upstream);

    let (tx, rx) = watch::channel(false);
    let ready = Readiness::default();
    let stop = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|v| *v).await;
    };
    let api_task = tokio::spawn(listener::serve(
        api,
        config.max_header_bytes,
        // Boxed where it is made: the request's future is several KiB, and every move of it on
        // its way into the connection's task would be a copy of all of it.
        move |conn, req| Box::pin(proxy.clone().handle(conn, req)),
        stop(rx.clone()),
        config.shutdown_grace,
        sessions,
    ));
    let admin_task = tokio::spawn(admin::serve(
        admin_listener,
        registry,
        ready.clone(),
        stop(rx.clone()),
    ));
    tokio::spawn(audit::watch(audit, audit_metrics, stop(rx.clone())));
    ready.set(true);
    let unready = ready.clone();
    tokio::spawn(async move {
        stop(rx).await;
        unready.set(false);
    });
    Ok(RunningProxy {
        addr,
        admin_addr,
        ready,
        shutdown: tx,
        tasks: vec![api_task, admin_task],
    })
}

/// What the proxy is about to do, for the operator reading the start-up log.
fn log_start_up(config: &Config, addr: SocketAddr, admin_addr: SocketAddr, upstream: &Upstream) {
    let scheme = if config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    tracing::info!(
        "API server proxy listening on {scheme}://{addr} (PROXY protocol: {}; ALPN http/1.1)",
        if config.proxy_protocol {
            "required, v2 (v1 accepted), 10 s header timeout"
        } else {
            "off"
        }
    );
    tracing::info!("admin endpoints on http://{admin_addr} (/metrics, /healthz, /readyz)");
    tracing::info!(
        "mode: {} ({})",
        config.mode.as_str(),
        match config.mode {
            Mode::Auth =>
                "caller credentials stripped, caller impersonated, proxy credentials upstream",
            Mode::Noauth => "no proxy credentials; caller's Authorization passes through",
        }
    );
    tracing::info!(
        "identity source: {} ({})",
        config.identity,
        if config.whois_cache_ttl.is_zero() {
            "asked on every request".to_owned()
        } else {
            format!(
                "answers reused for {} s per caller address, --whois-cache-ttl",
                config.whois_cache_ttl.as_secs()
            )
        }
    );
    tracing::info!("upstream: {}", upstream.description());
    tracing::info!(
        "event policy: per caller grant (recorderAddrs, enforceRecorder → fail closed, enableEvents){}; request bodies captured up to {} bytes",
        if config.events_for_all_callers { "; TS_EXPERIMENTAL_KUBE_API_EVENTS=true: events for every caller with recorders" } else { "" },
        config.max_body_capture
    );
    match &config.audit_policy {
        Some((path, policy)) => tracing::info!(
            "audit policy: {} ({} rules; reloaded on SIGHUP and when the file changes)",
            path.display(),
            policy.rules().len()
        ),
        None => tracing::info!(
            "audit policy: none given (--audit-policy): every request at level Request"
        ),
    }
    tracing::info!(
        "request bodies never recorded: core secrets, bodies naming a Secret{}",
        config
            .redactor
            .resources()
            .iter()
            .map(|r| format!(", {r} (--redact-resource)"))
            .collect::<String>()
    );
    if config.tls.is_none() && !config.proxy_protocol {
        tracing::warn!("plain HTTP without PROXY protocol: the caller is the TCP peer address; use only behind a trusted local forwarder");
    }
}

/// The serving command: logging, validated configuration (exit code 2 when
/// invalid), components, listeners; runs until SIGTERM or ctrl-c, then shuts
/// down gracefully. Exit code 1 when the proxy cannot start.
pub async fn serve(args: ServeArgs) -> ExitCode {
    service::logging::init(args.log_format);
    let config = match args.validate(upstream::in_cluster_available()) {
        Ok(config) => config,
        Err(e) => {
            tracing::error!("invalid configuration: {e}");
            return ExitCode::from(2);
        }
    };
    let signal = service::shutdown::signal();
    let mut registry = Registry::default();
    let started = match components_from_config(&config, &mut registry) {
        Ok((components, client)) => start(&config, components, registry)
            .await
            .map(|running| (running, client)),
        Err(e) => Err(e),
    };
    let (running, client) = match started {
        Ok(started) => started,
        Err(e) => {
            tracing::error!("cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    let trigger = running.shutdown_trigger();
    tokio::spawn(async move {
        signal.await;
        let _ = trigger.send(true);
    });
    running.wait().await;
    // Records still being sent in the background end delivered or spooled.
    client.shutdown().await;
    tracing::info!("stopped");
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_writable_state_dir_wins_and_none_is_an_error_naming_the_flags() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a-file");
        std::fs::write(&file, b"").unwrap();
        let unusable = file.join("state");
        let usable = dir.path().join("state");
        assert_eq!(
            first_writable(vec![unusable.clone(), usable.clone()]).unwrap(),
            usable
        );
        assert!(usable.is_dir());
        let err = first_writable(vec![unusable.clone()])
            .unwrap_err()
            .to_string();
        assert!(err.contains(&unusable.display().to_string()), "{err}");
        assert!(
            err.contains("--state-dir") && err.contains("--spool-dir none"),
            "{err}"
        );
    }

    #[test]
    fn the_spool_goes_where_the_flags_say() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(spool_dir(&SpoolDir::Off, Some(dir.path())).unwrap(), None);
        assert_eq!(
            spool_dir(&SpoolDir::Dir("/s".into()), None).unwrap(),
            Some(("/s".into(), "--spool-dir"))
        );
        assert_eq!(
            spool_dir(&SpoolDir::InStateDir, Some(dir.path())).unwrap(),
            Some((dir.path().join("spool"), "--state-dir"))
        );
        let file = dir.path().join("a-file");
        std::fs::write(&file, b"").unwrap();
        let err = spool_dir(&SpoolDir::InStateDir, Some(&file.join("x")))
            .unwrap_err()
            .to_string();
        assert!(err.contains("(--state-dir)"), "{err}");
    }
}
