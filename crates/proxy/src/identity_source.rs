//! Where caller identities come from: tailscaled's LocalAPI (WhoIs over its
//! unix socket, the tailnet deployment) or a static identity file (the
//! standalone deployment), and the [`WhoIs`] each one gives.

use std::path::PathBuf;
use std::sync::Arc;

use identity::{IdentityFileError, IdentityFileWhoIs, LocalApiWhoIs, ReloadOptions, WhoIs};

/// Where caller identities come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentitySource {
    /// tailscaled's LocalAPI over a unix socket.
    LocalApi(PathBuf),
    /// A static identity file.
    File(PathBuf),
}

/// The identity source could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum IdentitySourceError {
    /// The identity file could not be read or parsed.
    #[error("identity source: {0}")]
    File(#[from] IdentityFileError),
}

impl IdentitySource {
    /// The source named by the `--localapi-socket` and `--identity-file`
    /// flags; `None` unless exactly one of them is given.
    pub(crate) fn from_flags(
        localapi_socket: Option<PathBuf>,
        identity_file: Option<PathBuf>,
    ) -> Option<Self> {
        match (localapi_socket, identity_file) {
            (Some(socket), None) => Some(IdentitySource::LocalApi(socket)),
            (None, Some(file)) => Some(IdentitySource::File(file)),
            _ => None,
        }
    }

    /// A [`WhoIs`] over this source; an identity file is read once, now.
    pub fn whois(&self) -> Result<Arc<dyn WhoIs>, IdentitySourceError> {
        Ok(match self {
            IdentitySource::LocalApi(socket) => {
                Arc::new(LocalApiWhoIs::with_socket(socket.clone()))
            }
            IdentitySource::File(file) => Arc::new(IdentityFileWhoIs::load(file.clone())?),
        })
    }

    /// A [`WhoIs`] over this source for a serving proxy: an identity file is
    /// kept current (re-read when it changes and on SIGHUP).
    pub(crate) fn watched_whois(&self) -> Result<Arc<dyn WhoIs>, IdentitySourceError> {
        match self {
            IdentitySource::File(file) => Ok(Arc::new(IdentityFileWhoIs::watch(
                file.clone(),
                ReloadOptions::default(),
            )?)),
            IdentitySource::LocalApi(_) => self.whois(),
        }
    }
}

impl std::fmt::Display for IdentitySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IdentitySource::LocalApi(p) => write!(f, "LocalAPI socket {}", p.display()),
            IdentitySource::File(p) => write!(f, "identity file {}", p.display()),
        }
    }
}
