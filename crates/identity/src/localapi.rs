//! WhoIs through tailscaled's LocalAPI: `GET /localapi/v0/whois?addr=IP:PORT` over its unix socket.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use http::StatusCode;
use localapi::{LocalApi, LocalApiError};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use crate::cache::WhoIsCache;
use crate::caller::Caller;
use crate::whois::{WhoIs, WhoIsError};
use crate::whois_response::{WhoIsResponse, MAX_DOCUMENT_BYTES};

pub use localapi::DEFAULT_TAILSCALED_SOCKET;

/// Go's `url.QueryEscape` set: everything but `A-Z a-z 0-9 - _ . ~` is escaped.
const QUERY_ESCAPE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Settings of a [`LocalApiWhoIs`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalApiConfig {
    /// tailscaled's LocalAPI socket (`tailscaled --socket`). Default
    /// [`DEFAULT_TAILSCALED_SOCKET`].
    pub socket_path: PathBuf,
    /// Upper bound on one lookup: connect, request and the whole answer. Default 5 s.
    pub timeout: Duration,
    /// How long a successful answer is reused for the same `IP:port`. Default 5 s; zero disables
    /// caching. Keep it short: grants and tags change.
    pub cache_ttl: Duration,
    /// Most cached answers held at once (oldest evicted first). Default 4096; zero disables
    /// caching.
    pub cache_capacity: usize,
}

impl Default for LocalApiConfig {
    fn default() -> Self {
        LocalApiConfig {
            socket_path: PathBuf::from(DEFAULT_TAILSCALED_SOCKET),
            timeout: Duration::from_secs(5),
            cache_ttl: Duration::from_secs(5),
            cache_capacity: 4096,
        }
    }
}

/// [`WhoIs`] backed by tailscaled's LocalAPI, with a short-lived bounded cache of successful
/// answers. Each lookup that misses the cache opens one connection to the socket.
#[derive(Debug)]
pub struct LocalApiWhoIs {
    config: LocalApiConfig,
    api: LocalApi,
    cache: WhoIsCache,
}

impl LocalApiWhoIs {
    /// A client with the given settings. Nothing is contacted until the first lookup.
    pub fn new(config: LocalApiConfig) -> Self {
        let cache = WhoIsCache::new(config.cache_ttl, config.cache_capacity);
        let api = LocalApi::new(config.socket_path.clone());
        LocalApiWhoIs { config, api, cache }
    }

    /// A client for the socket at `path` with default settings.
    pub fn with_socket(path: impl Into<PathBuf>) -> Self {
        Self::new(LocalApiConfig {
            socket_path: path.into(),
            ..LocalApiConfig::default()
        })
    }

    /// The settings in use.
    pub fn config(&self) -> &LocalApiConfig {
        &self.config
    }

    /// The socket path in use.
    pub fn socket_path(&self) -> &Path {
        &self.config.socket_path
    }

    /// Asks tailscaled (bypassing the cache) and returns its answer as parsed.
    pub async fn whois_response(&self, peer: SocketAddr) -> Result<WhoIsResponse, WhoIsError> {
        let timeout = self.config.timeout;
        match tokio::time::timeout(timeout, self.ask(peer)).await {
            Ok(result) => result,
            Err(_) => Err(WhoIsError::Timeout {
                peer,
                path: self.config.socket_path.clone(),
                after: timeout,
            }),
        }
    }

    async fn ask(&self, peer: SocketAddr) -> Result<WhoIsResponse, WhoIsError> {
        let path = &self.config.socket_path;
        let bad = |status: Option<u16>, detail: String| WhoIsError::BadResponse {
            peer,
            status,
            detail,
            source: None,
        };
        let target = format!(
            "/localapi/v0/whois?addr={}",
            utf8_percent_encode(&peer.to_string(), QUERY_ESCAPE)
        );
        let answer = self
            .api
            .get(&target, MAX_DOCUMENT_BYTES)
            .await
            .map_err(|e| exchange_error(peer, path, e))?;
        let status = answer.status;
        match status {
            StatusCode::OK => {
                let response = WhoIsResponse::from_json(&answer.body).map_err(|e| {
                    WhoIsError::BadResponse {
                        peer,
                        status: Some(200),
                        detail: format!("answer is not a WhoIsResponse: {e}"),
                        source: Some(e.into()),
                    }
                })?;
                match response.incomplete() {
                    Some(missing) => {
                        Err(bad(Some(200), format!("answer is incomplete: {missing}")))
                    }
                    None => Ok(response),
                }
            }
            StatusCode::NOT_FOUND => Err(WhoIsError::NoMatch {
                peer,
                detail: answer.error_text(),
            }),
            StatusCode::FORBIDDEN | StatusCode::UNAUTHORIZED => Err(WhoIsError::PermissionDenied {
                path: path.clone(),
                detail: format!("tailscaled answered {status}: {}", answer.error_text()),
            }),
            other => Err(bad(
                Some(other.as_u16()),
                format!("unexpected status {other}: {}", answer.error_text()),
            )),
        }
    }
}

#[async_trait]
impl WhoIs for LocalApiWhoIs {
    async fn whois(&self, peer: SocketAddr) -> Result<Caller, WhoIsError> {
        if let Some(caller) = self.cache.get(peer) {
            return Ok(caller);
        }
        let caller = match self.whois_response(peer).await {
            Ok(response) => Caller::from(response),
            Err(error) => {
                tracing::debug!(%peer, %error, "LocalAPI WhoIs failed");
                return Err(error);
            }
        };
        tracing::debug!(%peer, caller = %caller.identity.describe(), "LocalAPI WhoIs");
        self.cache.put(peer, &caller);
        Ok(caller)
    }
}

/// A LocalAPI exchange that did not produce an answer, as a WhoIs error.
fn exchange_error(peer: SocketAddr, path: &Path, error: LocalApiError) -> WhoIsError {
    let status = error.status().map(|s| s.as_u16());
    match error {
        LocalApiError::Connect { source, .. } => match source.kind() {
            std::io::ErrorKind::NotFound => WhoIsError::SocketMissing {
                path: path.to_owned(),
            },
            std::io::ErrorKind::PermissionDenied => WhoIsError::PermissionDenied {
                path: path.to_owned(),
                detail: format!("connecting to the socket: {source}"),
            },
            _ => WhoIsError::Unreachable {
                path: path.to_owned(),
                source,
            },
        },
        other => WhoIsError::BadResponse {
            peer,
            status,
            detail: other.to_string(),
            source: Some(other.into()),
        },
    }
}
