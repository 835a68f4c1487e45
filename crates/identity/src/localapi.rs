//! WhoIs through tailscaled's LocalAPI: `GET /localapi/v0/whois?addr=IP:PORT` over its unix socket.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use tokio::net::UnixStream;

use crate::cache::WhoIsCache;
use crate::caller::Caller;
use crate::whois::{WhoIs, WhoIsError};
use crate::whois_response::{WhoIsResponse, MAX_DOCUMENT_BYTES};

/// An error behind a bad answer, as [`WhoIsError::BadResponse`] carries it.
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// tailscaled's default LocalAPI socket on Linux.
pub const DEFAULT_TAILSCALED_SOCKET: &str = "/var/run/tailscale/tailscaled.sock";

/// The `Host` tailscale's own LocalAPI client sends.
const LOCALAPI_HOST: &str = "local-tailscaled.sock";

/// Go's `url.QueryEscape` set: everything but `A-Z a-z 0-9 - _ . ~` is escaped.
const QUERY_ESCAPE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Longest error text from tailscaled quoted in an error.
const MAX_ERROR_TEXT: usize = 512;

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
    cache: WhoIsCache,
}

impl LocalApiWhoIs {
    /// A client with the given settings. Nothing is contacted until the first lookup.
    pub fn new(config: LocalApiConfig) -> Self {
        let cache = WhoIsCache::new(config.cache_ttl, config.cache_capacity);
        LocalApiWhoIs { config, cache }
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
        let stream = UnixStream::connect(path)
            .await
            .map_err(|e| connect_error(path, e))?;
        let bad = |status: Option<u16>, detail: String| WhoIsError::BadResponse {
            peer,
            status,
            detail,
            source: None,
        };
        // The same, caused by `error`, whose message ends the detail.
        let broken = |status: Option<u16>, what: &str, error: BoxError| WhoIsError::BadResponse {
            peer,
            status,
            detail: format!("{what}: {error}"),
            source: Some(error),
        };
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| broken(None, "HTTP handshake failed", e.into()))?;
        let _connection = AbortOnDrop(tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "LocalAPI connection ended with an error");
            }
        }));

        let target = format!(
            "/localapi/v0/whois?addr={}",
            utf8_percent_encode(&peer.to_string(), QUERY_ESCAPE)
        );
        let request = Request::get(target)
            .header(http::header::HOST, LOCALAPI_HOST)
            .header("Sec-Tailscale", "localapi")
            .body(Empty::<Bytes>::new())
            .map_err(|e| broken(None, "cannot build request", e.into()))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| broken(None, "request failed", e.into()))?;
        let status = response.status();
        let body = Limited::new(response.into_body(), MAX_DOCUMENT_BYTES)
            .collect()
            .await
            .map_err(|e| {
                broken(
                    Some(status.as_u16()),
                    &format!("reading the answer failed (limit {MAX_DOCUMENT_BYTES} bytes)"),
                    e,
                )
            })?
            .to_bytes();
        match status {
            StatusCode::OK => {
                let response = WhoIsResponse::from_json(&body)
                    .map_err(|e| broken(Some(200), "answer is not a WhoIsResponse", e.into()))?;
                match response.incomplete() {
                    Some(missing) => {
                        Err(bad(Some(200), format!("answer is incomplete: {missing}")))
                    }
                    None => Ok(response),
                }
            }
            StatusCode::NOT_FOUND => Err(WhoIsError::NoMatch {
                peer,
                detail: error_text(&body),
            }),
            StatusCode::FORBIDDEN | StatusCode::UNAUTHORIZED => Err(WhoIsError::PermissionDenied {
                path: path.clone(),
                detail: format!("tailscaled answered {status}: {}", error_text(&body)),
            }),
            other => Err(bad(
                Some(other.as_u16()),
                format!("unexpected status {other}: {}", error_text(&body)),
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

fn connect_error(path: &Path, error: std::io::Error) -> WhoIsError {
    match error.kind() {
        std::io::ErrorKind::NotFound => WhoIsError::SocketMissing {
            path: path.to_owned(),
        },
        std::io::ErrorKind::PermissionDenied => WhoIsError::PermissionDenied {
            path: path.to_owned(),
            detail: format!("connecting to the socket: {error}"),
        },
        _ => WhoIsError::Unreachable {
            path: path.to_owned(),
            source: error,
        },
    }
}

/// tailscaled's plain-text error body, trimmed and bounded.
fn error_text(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(MAX_ERROR_TEXT)]);
    text.trim().to_owned()
}

/// Stops the connection task when the lookup ends or is abandoned (timeout).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
