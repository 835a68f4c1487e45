//! Assembly: from a validated [`Config`] (plus the identity source, the event
//! sink and the session hook) to running listeners, with start-up logs and
//! graceful shutdown.

use std::net::SocketAddr;
use std::sync::Arc;

use identity::WhoIs;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::admin::{self, Readiness};
use crate::caller::CallerResolver;
use crate::config::{Config, IdentitySource, Mode};
use crate::forward::Forwarder;
use crate::listener::{self, ListenerOptions};
use crate::metrics::Metrics;
use crate::proxy::{Proxy, ProxyOptions};
use crate::recorder::EventSink;
use crate::session_hook::SessionHook;
use crate::session_recorder::RecordingHook;
use crate::session_tracker::SessionTracker;
use crate::upstream::{Upstream, UpstreamError, UpstreamSpec};

/// Start-up failed.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// Upstream configuration.
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    /// TLS files.
    #[error(transparent)]
    Tls(#[from] crate::listener::tls::TlsConfigError),
    /// Identity source.
    #[error("identity source: {0}")]
    Identity(String),
    /// Recorder client.
    #[error("recorder client: {0}")]
    Recorder(String),
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

/// Build the identity source named in the configuration (an identity file is read once).
pub fn whois_from_config(source: &IdentitySource) -> Result<Arc<dyn WhoIs>, AppError> {
    Ok(match source {
        IdentitySource::LocalApi(p) => Arc::new(identity::LocalApiWhoIs::with_socket(p.clone())),
        IdentitySource::File(p) => Arc::new(
            identity::IdentityFileWhoIs::load(p.clone())
                .map_err(|e| AppError::Identity(e.to_string()))?,
        ),
    })
}

/// Build everything from the configuration: identity source, recorder
/// client (registered in `registry`), the session-recording hook, upstream.
pub fn components_from_config(
    config: &Config,
    registry: &mut Registry,
) -> Result<Components, AppError> {
    // When serving, an identity file is kept current (re-read when it changes and on SIGHUP).
    let whois: Arc<dyn WhoIs> = match &config.identity {
        IdentitySource::File(p) => Arc::new(
            identity::IdentityFileWhoIs::watch(p.clone(), identity::ReloadOptions::default())
                .map_err(|e| AppError::Identity(e.to_string()))?,
        ),
        other => whois_from_config(other)?,
    };
    let mut client_config = recorder_client::ClientConfig::default();
    if let Some(dir) = &config.spool_dir {
        client_config.spool = Some(recorder_client::SpoolConfig::new(dir.clone()));
    }
    let client = recorder_client::RecorderClient::start(client_config, registry)
        .map_err(|e| AppError::Recorder(e.to_string()))?;
    Ok(Components {
        whois,
        hook: Arc::new(RecordingHook::new(client.clone())),
        sink: Arc::new(client),
        upstream: UpstreamSpec::load(&config.upstream)?,
    })
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

/// Bind the listeners and start serving.
pub async fn start(
    config: &Config,
    components: Components,
    mut registry: Registry,
) -> Result<RunningProxy, AppError> {
    let metrics = Metrics::register(&mut registry);
    let registry = Arc::new(registry);
    let upstream = Arc::new(Upstream::build(components.upstream, config.mode)?);
    let tls = match &config.tls {
        Some(files) => Some(listener::tls::server_config(&files.cert, &files.key)?),
        None => None,
    };
    let sessions = SessionTracker::new();
    let proxy = Arc::new(Proxy::new(
        CallerResolver::new(
            components.whois,
            config.mode,
            config.trust_forwarded_for,
            config.whois_cache_ttl,
        ),
        components.sink,
        Forwarder::new(
            upstream.clone(),
            config.mode,
            components.hook,
            sessions.clone(),
        ),
        metrics,
        ProxyOptions {
            mode: config.mode,
            max_body_capture: config.max_body_capture,
            events_for_all_callers: config.events_for_all_callers,
        },
    ));

    let api = TcpListener::bind(config.listen)
        .await
        .map_err(|source| AppError::Bind {
            what: "--listen",
            addr: config.listen,
            source,
        })?;
    let admin_l = TcpListener::bind(config.admin_listen)
        .await
        .map_err(|source| AppError::Bind {
            what: "--admin-listen",
            addr: config.admin_listen,
            source,
        })?;
    let addr = api.local_addr().map_err(|source| AppError::Bind {
        what: "--listen",
        addr: config.listen,
        source,
    })?;
    let admin_addr = admin_l.local_addr().map_err(|source| AppError::Bind {
        what: "--admin-listen",
        addr: config.admin_listen,
        source,
    })?;

    let scheme = if tls.is_some() { "https" } else { "http" };
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
    if config.tls.is_none() && !config.proxy_protocol {
        tracing::warn!("plain HTTP without PROXY protocol: the caller is the TCP peer address; use only behind a trusted local forwarder");
    }

    let (tx, rx) = watch::channel(false);
    let ready = Readiness::default();
    let opts = ListenerOptions {
        tls,
        proxy_protocol: config.proxy_protocol,
        max_header_bytes: config.max_header_bytes,
    };
    let stop = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|v| *v).await;
    };
    let p = proxy.clone();
    let api_task = tokio::spawn(listener::serve(
        api,
        opts,
        move |conn, req| p.clone().handle(conn, req),
        stop(rx.clone()),
        config.shutdown_grace,
        sessions,
    ));
    let admin_task = tokio::spawn(admin::serve(
        admin_l,
        registry,
        ready.clone(),
        stop(rx.clone()),
    ));
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

/// A future that resolves on SIGTERM or ctrl-c. The handlers are installed
/// when this is called, so no signal is missed once it returns.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    let ctrl_c = tokio::signal::ctrl_c();
    async move {
        #[cfg(unix)]
        if let Some(mut term) = term {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM received"),
                _ = ctrl_c => tracing::info!("interrupt received"),
            }
            return;
        }
        let _ = ctrl_c.await;
        tracing::info!("interrupt received");
    }
}
