//! The crate's error type.

use std::fmt;

use crate::request_info::RequestInfo;
use crate::request_target::TargetError;

/// A verb that kube-apiserver reads from the path (`/api/v1/watch/…`,
/// `/api/v1/proxy/…`), a deprecated form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PathVerb {
    /// `/…/{version}/watch/…`
    Watch,
    /// `/…/{version}/proxy/…`
    Proxy,
}

impl PathVerb {
    /// The verb as it appears in the path and in `RequestInfo::verb`.
    pub fn as_str(self) -> &'static str {
        match self {
            PathVerb::Watch => "watch",
            PathVerb::Proxy => "proxy",
        }
    }
}

impl fmt::Display for PathVerb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why no request info could be derived.
///
/// Both cases mirror a request kube-apiserver itself refuses, so a proxy that
/// gets this error may answer the client the same way
/// ([`http_status`](Self::http_status)) without forwarding the request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestInfoError {
    /// The request-target is not a valid request URI (for example an invalid
    /// `%` escape in the path). Go's HTTP server answers `400 Bad Request`
    /// before any Kubernetes code runs, so there is no request info at all.
    #[error("invalid request target: {0}; kube-apiserver rejects it with 400 Bad Request")]
    InvalidTarget(#[from] TargetError),
    /// A path verb (`watch`/`proxy`) directly after the version with nothing
    /// after it, e.g. `/api/v1/watch`. kube-apiserver's `NewRequestInfo`
    /// fails and the server answers `500 Internal Server Error`.
    ///
    /// `partial` is what upstream had derived at that point:
    /// `IsResourceRequest`, prefix, group and version set, `Verb` still the
    /// lower-cased HTTP method, `Parts` `None`. Get it with
    /// [`partial_info`](Self::partial_info).
    #[error(
        "unable to determine kind and namespace from URL path {path:?}: the '{verb}' path verb must be followed by a resource; kube-apiserver answers 500 Internal Server Error",
        path = .partial.path
    )]
    MissingResourceAfterPathVerb {
        /// The path verb that had nothing after it.
        verb: PathVerb,
        /// The request info derived before the error.
        partial: Box<RequestInfo>,
    },
}

impl RequestInfoError {
    /// The request info kube-apiserver had derived when it failed, if any
    /// (only for [`MissingResourceAfterPathVerb`](Self::MissingResourceAfterPathVerb)).
    pub fn partial_info(&self) -> Option<&RequestInfo> {
        match self {
            RequestInfoError::MissingResourceAfterPathVerb { partial, .. } => Some(partial),
            RequestInfoError::InvalidTarget(_) => None,
        }
    }

    /// Like [`partial_info`](Self::partial_info), by value.
    pub fn into_partial_info(self) -> Option<RequestInfo> {
        match self {
            RequestInfoError::MissingResourceAfterPathVerb { partial, .. } => Some(*partial),
            RequestInfoError::InvalidTarget(_) => None,
        }
    }

    /// The HTTP status kube-apiserver answers such a request with: 400 for
    /// an invalid target, 500 for a path verb without a resource.
    pub fn http_status(&self) -> u16 {
        match self {
            RequestInfoError::InvalidTarget(_) => 400,
            RequestInfoError::MissingResourceAfterPathVerb { .. } => 500,
        }
    }
}
