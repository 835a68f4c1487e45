//! Starting and stopping a simulator: [`KubeSim::start`] → [`RunningSim`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::auth::{Authenticator, TokenEntry};
use crate::kubeconfig::{self, Credentials};
use crate::request_log::{RecordedRequest, RequestLog};
use crate::server::{self, TlsSetup};
use crate::state::SimState;
use crate::store::Store;
use crate::tls::{CertificateAuthority, TlsError};

/// Simulator configuration.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Listen address (`127.0.0.1:0` picks a free port).
    pub listen: SocketAddr,
    /// Serve HTTPS with a generated CA (else plain HTTP).
    pub tls: bool,
    /// Directory under which each pod gets a sandbox (`<dir>/<namespace>/<pod>`) that
    /// exec sessions run in. `None`: a fresh directory under the system temp dir,
    /// removed again by [`RunningSim::shutdown`].
    pub sandbox: Option<PathBuf>,
    /// Allowed bearer tokens; `None` disables authentication (every request is
    /// `kube-sim-admin` in `system:masters`).
    pub tokens: Option<Vec<TokenEntry>>,
    /// Users allowed to impersonate (members of `system:masters` always may).
    pub impersonators: Vec<String>,
    /// Create the default namespaces, a node and the pod `default/demo`.
    pub seed: bool,
    /// A followed pod log grows one line per interval.
    pub log_interval: Duration,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            tls: true,
            sandbox: None,
            tokens: None,
            impersonators: Vec::new(),
            seed: true,
            log_interval: Duration::from_secs(1),
        }
    }
}

/// Start-up errors.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The sandbox directory could not be created.
    #[error("cannot create the sandbox directory {path}: {source}")]
    Sandbox {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// TLS set-up failed.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// Seeding failed (a bug).
    #[error("cannot seed the store: {0}")]
    Seed(String),
    /// Client certificates need TLS.
    #[error("client certificates need a TLS simulator (start it with tls = true)")]
    NoTls,
    /// Writing a kubeconfig failed.
    #[error("cannot write kubeconfig {path}: {source}")]
    Kubeconfig {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Entry point.
pub struct KubeSim;

impl KubeSim {
    /// Binds, seeds and starts serving in the background.
    pub async fn start(config: SimConfig) -> Result<RunningSim, SimError> {
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|source| SimError::Bind {
                addr: config.listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| SimError::Bind {
            addr: config.listen,
            source,
        })?;
        let owned_sandbox = config.sandbox.is_none();
        let sandbox = match config.sandbox.clone() {
            Some(dir) => dir,
            None => std::env::temp_dir().join(format!(
                "kube-sim-{}-{}",
                std::process::id(),
                uuid::Uuid::new_v4().simple()
            )),
        };
        std::fs::create_dir_all(&sandbox).map_err(|source| SimError::Sandbox {
            path: sandbox.clone(),
            source,
        })?;
        let sandbox = sandbox.canonicalize().unwrap_or(sandbox);
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let state = Arc::new(SimState {
            store: Store::new(),
            log: RequestLog::default(),
            auth: Authenticator::new(config.tokens.as_deref(), config.impersonators.clone()),
            sandbox: sandbox.clone(),
            log_interval: config.log_interval,
            server_address: addr.to_string(),
            shutdown: shutdown_rx.clone(),
            attach: Arc::default(),
        });
        if config.seed {
            crate::seed::seed(&state.store).map_err(|e| SimError::Seed(e.message))?;
        }
        let (ca, tls) = if config.tls {
            let ca = Arc::new(CertificateAuthority::generate()?);
            let acceptor = tokio_rustls::TlsAcceptor::from(ca.server_config(&[])?);
            (Some(ca.clone()), Some(TlsSetup { acceptor, ca }))
        } else {
            (None, None)
        };
        let task = tokio::spawn(server::serve(listener, tls, state.clone(), shutdown_rx));
        let scheme = if config.tls { "https" } else { "http" };
        tracing::info!(
            url = %format!("{scheme}://{addr}"),
            auth = if config.tokens.is_some() { "bearer tokens" } else { "none (everyone is kube-sim-admin)" },
            sandbox = %sandbox.display(),
            "kube-sim listening"
        );
        Ok(RunningSim {
            addr,
            scheme,
            ca,
            state,
            shutdown: shutdown_tx,
            task,
            owned_sandbox,
        })
    }
}

/// A running simulator. Dropping it without [`RunningSim::shutdown`] leaves the server
/// running until the runtime stops.
pub struct RunningSim {
    addr: SocketAddr,
    scheme: &'static str,
    ca: Option<Arc<CertificateAuthority>>,
    state: Arc<SimState>,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
    owned_sandbox: bool,
}

impl RunningSim {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `https://127.0.0.1:PORT` (or `http://…`).
    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme, self.addr)
    }

    /// The CA certificate (PEM), with TLS.
    pub fn ca_pem(&self) -> Option<String> {
        self.ca.as_ref().map(|ca| ca.ca_pem())
    }

    /// Where pod sandboxes live.
    pub fn sandbox(&self) -> &Path {
        &self.state.sandbox
    }

    /// The object store (to seed or inspect objects directly).
    pub fn store(&self) -> &Store {
        &self.state.store
    }

    /// Issues a client certificate (CN = user, O = groups) for a kubeconfig.
    pub fn client_certificate(
        &self,
        user: &str,
        groups: &[String],
    ) -> Result<Credentials, SimError> {
        let ca = self.ca.as_ref().ok_or(SimError::NoTls)?;
        Ok(Credentials::ClientCertificate(
            ca.issue_client(user, groups)?,
        ))
    }

    /// A kubeconfig (YAML) for this simulator.
    pub fn kubeconfig(&self, credentials: &Credentials) -> String {
        kubeconfig::render(
            &self.url(),
            self.ca_pem().as_deref(),
            credentials,
            "default",
        )
    }

    /// Writes a kubeconfig (mode 0600).
    pub fn write_kubeconfig(&self, path: &Path, credentials: &Credentials) -> Result<(), SimError> {
        kubeconfig::write(path, &self.kubeconfig(credentials)).map_err(|source| {
            SimError::Kubeconfig {
                path: path.to_path_buf(),
                source,
            }
        })
    }

    /// Every request received so far (oldest first).
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state.log.snapshot()
    }

    /// Forgets the received requests.
    pub fn clear_requests(&self) {
        self.state.log.clear();
    }

    /// Stops accepting, ends watches, log streams and exec sessions, waits for the
    /// server task, and removes the sandbox if the simulator created it.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
        self.state.attach.clear();
        if self.owned_sandbox {
            let _ = std::fs::remove_dir_all(&self.state.sandbox);
        }
    }
}
