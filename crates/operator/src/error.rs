//! What can go wrong, by where: starting the operator ([`Error`]) and one reconcile
//! ([`ReconcileError`], retried with back-off).

/// Why the operator could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The kubeconfig (or in-cluster configuration) could not be loaded.
    #[error("loading the Kubernetes client configuration: {0}")]
    Config(String),
    /// The Kubernetes client could not be built.
    #[error("building the Kubernetes client: {0}")]
    Client(#[source] kube::Error),
    /// `--metrics-addr` could not be bound.
    #[error("binding --metrics-addr {addr}: {source}")]
    MetricsListen {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Leader election failed to start (the Lease could not be read or created).
    #[error("leader election on Lease {namespace}/{name}: {source}")]
    Lease {
        /// The Lease's namespace.
        namespace: String,
        /// The Lease's name.
        name: String,
        /// Why.
        #[source]
        source: kube_lease_manager::LeaseManagerError,
    },
    /// The --proxy-arg flags are not flags `kubescribe-proxy` accepts.
    #[error("--proxy-arg: {0}")]
    ProxyArgs(String),
    /// The in-process proxy (--proxy-in-process) stopped before the operator was told to.
    #[error("the in-process proxy stopped ({0:?}); the operator stops with it")]
    InProcessProxy(std::process::ExitCode),
    /// The CRDs could not be rendered as YAML.
    #[error("rendering the CRDs as YAML: {0}")]
    Yaml(#[from] serde_yaml_ng::Error),
    /// Writing the CRDs failed.
    #[error("writing the CRDs: {0}")]
    Io(#[from] std::io::Error),
}

/// Why one reconcile failed; the controller retries it with exponential back-off.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// A Kubernetes API call failed.
    #[error("{action}: {source}")]
    Kube {
        /// What was being done (`applying Service x`).
        action: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// The object has no namespace or UID (never true of one read from the API server).
    #[error("the object has no namespace or uid")]
    Incomplete,
}

impl ReconcileError {
    /// A Kubernetes API error while doing `action`.
    pub(crate) fn kube(action: impl Into<String>) -> impl FnOnce(kube::Error) -> Self {
        let action = action.into();
        move |source| ReconcileError::Kube { action, source }
    }
}
