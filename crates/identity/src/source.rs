//! Where caller identities come from, as a binary's `--localapi-socket` or `--identity-file` flag names
//! it, and the [`WhoIs`] each source gives. Both kubescribe binaries open their source through here.

use std::path::PathBuf;
use std::sync::Arc;

use crate::identity_file::{IdentityFileError, IdentityFileWhoIs, ReloadOptions};
use crate::localapi::LocalApiWhoIs;
use crate::whois::WhoIs;

/// Where caller identities come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentitySource {
    /// tailscaled's LocalAPI over its unix socket (the tailnet deployment).
    LocalApi(PathBuf),
    /// A static identity file (deployments without a tailnet).
    File(PathBuf),
}

impl IdentitySource {
    /// The source the `--localapi-socket` and `--identity-file` flags name; `None` unless exactly one
    /// of them is given (the binaries' flag parsers refuse both together).
    pub fn from_flags(
        localapi_socket: Option<PathBuf>,
        identity_file: Option<PathBuf>,
    ) -> Option<Self> {
        match (localapi_socket, identity_file) {
            (Some(socket), None) => Some(IdentitySource::LocalApi(socket)),
            (None, Some(file)) => Some(IdentitySource::File(file)),
            _ => None,
        }
    }

    /// A [`WhoIs`] over this source for a one-off lookup: an identity file is read once, now.
    pub fn open(&self) -> Result<Arc<dyn WhoIs>, IdentityFileError> {
        Ok(match self {
            IdentitySource::LocalApi(socket) => {
                Arc::new(LocalApiWhoIs::with_socket(socket.clone()))
            }
            IdentitySource::File(file) => Arc::new(IdentityFileWhoIs::load(file.clone())?),
        })
    }

    /// A [`WhoIs`] over this source for a serving process: an identity file is read now (so a bad
    /// file fails at start-up) and then kept current (re-read when it changes and on SIGHUP).
    pub fn open_watched(&self) -> Result<Arc<dyn WhoIs>, IdentityFileError> {
        match self {
            IdentitySource::File(file) => Ok(Arc::new(IdentityFileWhoIs::watch(
                file.clone(),
                ReloadOptions::default(),
            )?)),
            IdentitySource::LocalApi(_) => self.open(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exactly_one_flag_names_a_source() {
        assert_eq!(IdentitySource::from_flags(None, None), None);
        assert_eq!(
            IdentitySource::from_flags(Some("/s".into()), None),
            Some(IdentitySource::LocalApi("/s".into()))
        );
        assert_eq!(
            IdentitySource::from_flags(None, Some("/f".into())),
            Some(IdentitySource::File("/f".into()))
        );
        assert_eq!(
            IdentitySource::from_flags(Some("/s".into()), Some("/f".into())),
            None
        );
    }

    #[test]
    fn a_missing_identity_file_fails_when_opened() {
        let source = IdentitySource::File("/nonexistent/identities.yaml".into());
        assert!(source.open().is_err());
        assert!(source.open_watched().is_err());
        assert_eq!(
            source.to_string(),
            "identity file /nonexistent/identities.yaml"
        );
    }
}
