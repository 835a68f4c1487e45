//! The identity source: tailscaled's LocalAPI WhoIs, or a static identity
//! file (watched and reloaded when it changes), as `--localapi-socket` or
//! `--identity-file` names it.
//!
//! Plumbing shared in shape with the proxy binary; kept to one function so
//! that it can move to a crate both binaries use.

use std::sync::Arc;

use identity::{IdentityFileError, IdentityFileWhoIs, LocalApiWhoIs, ReloadOptions, WhoIs};

use crate::config::IdentitySource;

/// The WhoIs source `source` names, `None` when there is none. An identity
/// file is read now (so a bad file fails at start-up) and then watched.
pub(crate) fn open(source: &IdentitySource) -> Result<Option<Arc<dyn WhoIs>>, IdentityFileError> {
    Ok(match source {
        IdentitySource::None => None,
        IdentitySource::LocalApi(path) => Some(Arc::new(LocalApiWhoIs::with_socket(path.clone()))),
        IdentitySource::File(path) => Some(Arc::new(IdentityFileWhoIs::watch(
            path.clone(),
            ReloadOptions::default(),
        )?)),
    })
}
