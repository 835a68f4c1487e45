//! [`LocalApiError`]: every way one LocalAPI exchange fails, worded for the operator.

use std::path::PathBuf;

use http::StatusCode;

/// An error beneath a failed exchange.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// tailscaled's status document did not parse.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StatusParseError(#[from] serde_json::Error);

/// Why a LocalAPI exchange failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LocalApiError {
    /// The socket could not be connected to (its [`std::io::ErrorKind`] tells missing from
    /// forbidden).
    #[error("cannot connect to tailscaled's LocalAPI socket {path}: {source}")]
    Connect {
        /// The socket path.
        path: PathBuf,
        /// The connect error.
        #[source]
        source: std::io::Error,
    },
    /// The HTTP/1.1 handshake on the socket failed.
    #[error("HTTP handshake failed: {0}")]
    Handshake(#[source] hyper::Error),
    /// The request could not be built (a bad target).
    #[error("cannot build request: {0}")]
    BuildRequest(#[source] http::Error),
    /// The request was not answered.
    #[error("request failed: {0}")]
    Request(#[source] hyper::Error),
    /// The answer's body could not be read within the limit.
    #[error("reading the answer failed (limit {limit} bytes): {source}")]
    Body {
        /// The status tailscaled answered.
        status: StatusCode,
        /// Most bytes read.
        limit: usize,
        /// The read error (or the limit being hit).
        #[source]
        source: BoxError,
    },
    /// tailscaled answered with a status the exchange does not expect.
    #[error("tailscaled answered {status}: {body}")]
    Status {
        /// The status.
        status: StatusCode,
        /// tailscaled's plain-text error, trimmed and bounded.
        body: String,
    },
    /// The `ts-dial` upgrade did not complete after tailscaled agreed to it.
    #[error("the ts-dial upgrade failed: {0}")]
    Upgrade(#[source] hyper::Error),
    /// tailscaled told us to dial a non-tailnet address ourselves (`Dial-Self`), and that
    /// failed or its `Dial-Addr` was unusable.
    #[error(
        "tailscaled said to dial {addr:?} directly (not a tailnet route), which failed: {source}"
    )]
    DialSelf {
        /// tailscaled's `Dial-Addr`, as sent.
        addr: String,
        /// Why.
        #[source]
        source: BoxError,
    },
    /// The status document did not parse.
    #[error("tailscaled's status is not a status document: {0}")]
    BadStatus(#[source] StatusParseError),
    /// The exchange did not complete within its timeout.
    #[error("tailscaled's LocalAPI did not answer within {0:?}")]
    Timeout(std::time::Duration),
}

impl LocalApiError {
    /// The status tailscaled answered, when it answered at all.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            LocalApiError::Body { status, .. } | LocalApiError::Status { status, .. } => {
                Some(*status)
            }
            _ => None,
        }
    }
}
