//! What every request handler shares.

use std::path::PathBuf;
use std::time::Duration;

use std::sync::Arc;

use tokio::sync::watch;

use crate::containers::attach::AttachRegistry;

use crate::auth::Authenticator;
use crate::request_log::RequestLog;
use crate::store::Store;

/// Shared simulator state.
pub struct SimState {
    /// The objects.
    pub store: Store,
    /// Every request received.
    pub log: RequestLog,
    /// Tokens and impersonation rules.
    pub auth: Authenticator,
    /// Root of the per-pod sandbox directories exec sessions run in.
    pub sandbox: PathBuf,
    /// How often a followed pod log grows by one line.
    pub log_interval: Duration,
    /// `host:port` the server listens on (for `/api`'s serverAddressByClientCIDRs).
    pub server_address: String,
    /// Flips to `true` when the simulator shuts down; long-running streams end.
    pub shutdown: watch::Receiver<bool>,
    /// The containers' main processes that `attach` connects to.
    pub attach: Arc<AttachRegistry>,
}
