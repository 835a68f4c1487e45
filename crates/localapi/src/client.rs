//! [`LocalApi`]: one HTTP/1.1 connection to tailscaled's unix socket per exchange.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{header, Request, StatusCode};
use http_body_util::{BodyExt, Empty, Limited};
use hyper::client::conn::http1;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};

use crate::error::LocalApiError;
use crate::status::{Status, MAX_STATUS_BYTES};

/// tailscaled's default LocalAPI socket on Linux.
pub const DEFAULT_TAILSCALED_SOCKET: &str = "/var/run/tailscale/tailscaled.sock";

/// The `Host` tailscale's own LocalAPI client sends (`apitype.LocalAPIHost`).
pub const LOCALAPI_HOST: &str = "local-tailscaled.sock";

/// Longest error text from tailscaled quoted in an error.
const MAX_ERROR_TEXT: usize = 512;

/// The `Upgrade` protocol of `/localapi/v0/dial`.
const TS_DIAL: &str = "ts-dial";

/// tailscaled's LocalAPI at one socket. Cheap to clone; holds no connection: each exchange opens
/// its own and bounds nothing by itself (callers put their own deadline around it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalApi {
    socket_path: PathBuf,
}

/// A LocalAPI answer: its status and (bounded) body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The status.
    pub status: StatusCode,
    /// The body.
    pub body: Bytes,
}

impl Answer {
    /// The body as tailscaled's plain-text error: trimmed and bounded.
    pub fn error_text(&self) -> String {
        let end = self.body.len().min(MAX_ERROR_TEXT);
        String::from_utf8_lossy(&self.body[..end]).trim().to_owned()
    }
}

impl LocalApi {
    /// The LocalAPI at `socket_path` (`tailscaled --socket`).
    pub fn new(socket_path: impl Into<PathBuf>) -> Self {
        LocalApi {
            socket_path: socket_path.into(),
        }
    }

    /// The socket path.
    pub fn socket_path(&self) -> &Path {
        &self.socket_path
    }

    /// `GET target` (a path and query), reading at most `limit` body bytes.
    pub async fn get(&self, target: &str, limit: usize) -> Result<Answer, LocalApiError> {
        let (mut sender, _connection) = self.connect(false).await?;
        let request = request("GET", target)
            .body(Empty::<Bytes>::new())
            .map_err(LocalApiError::BuildRequest)?;
        let response = sender
            .send_request(request)
            .await
            .map_err(LocalApiError::Request)?;
        let status = response.status();
        let body = Limited::new(response.into_body(), limit)
            .collect()
            .await
            .map_err(|source| LocalApiError::Body {
                status,
                limit,
                source,
            })?
            .to_bytes();
        Ok(Answer { status, body })
    }

    /// `GET /localapi/v0/status`: this node and its netmap's peers.
    pub async fn status(&self) -> Result<Status, LocalApiError> {
        let answer = self.get("/localapi/v0/status", MAX_STATUS_BYTES).await?;
        if answer.status != StatusCode::OK {
            return Err(LocalApiError::Status {
                status: answer.status,
                body: answer.error_text(),
            });
        }
        Status::from_json(&answer.body).map_err(LocalApiError::BadStatus)
    }

    /// A TCP stream to `host:port` through tailscaled (`POST /localapi/v0/dial`, Tailscale's
    /// `local.Client.UserDial`): tailscaled answers `101 Switching Protocols` and the LocalAPI
    /// connection becomes the stream to the peer. For an address that is not a tailnet route,
    /// newer tailscaled (1.102 does, 1.96 does not) answers `200` with `Dial-Self: true` and the
    /// resolved `Dial-Addr` instead, and the stream is a plain TCP connection from this process
    /// to it, as Tailscale's client does.
    pub async fn dial(&self, host: IpAddr, port: u16) -> Result<DialedStream, LocalApiError> {
        let (mut sender, connection) = self.connect(true).await?;
        let request = request("POST", "/localapi/v0/dial")
            .header(header::UPGRADE, TS_DIAL)
            .header(header::CONNECTION, "upgrade")
            .header("Dial-Host", host.to_string())
            .header("Dial-Port", port.to_string())
            .header("Dial-Network", "tcp")
            .body(Empty::<Bytes>::new())
            .map_err(LocalApiError::BuildRequest)?;
        let response = sender
            .send_request(request)
            .await
            .map_err(LocalApiError::Request)?;
        let status = response.status();
        if status == StatusCode::SWITCHING_PROTOCOLS {
            let upgraded = hyper::upgrade::on(response)
                .await
                .map_err(LocalApiError::Upgrade)?;
            drop(connection);
            return Ok(DialedStream::Tailscale(TokioIo::new(upgraded)));
        }
        let dial_self = response
            .headers()
            .get("Dial-Self")
            .is_some_and(|v| v.as_bytes() == b"true");
        let dial_addr = response
            .headers()
            .get("Dial-Addr")
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        let body = Limited::new(response.into_body(), MAX_ERROR_TEXT)
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let answer = Answer { status, body };
        match (status, dial_self, dial_addr) {
            (StatusCode::OK, true, Some(addr)) => {
                let target: SocketAddr = match addr.parse() {
                    Ok(target) => target,
                    Err(e) => {
                        return Err(LocalApiError::DialSelf {
                            addr,
                            source: Box::new(e),
                        })
                    }
                };
                let tcp =
                    TcpStream::connect(target)
                        .await
                        .map_err(|e| LocalApiError::DialSelf {
                            addr,
                            source: Box::new(e),
                        })?;
                let _ = tcp.set_nodelay(true);
                Ok(DialedStream::Direct(tcp))
            }
            (StatusCode::OK, true, None) => Err(LocalApiError::DialSelf {
                addr: String::new(),
                source: "tailscaled sent Dial-Self without Dial-Addr".into(),
            }),
            _ => Err(LocalApiError::Status {
                status,
                body: answer.error_text(),
            }),
        }
    }

    /// Connects and handshakes; the returned guard drives the connection until dropped.
    async fn connect(
        &self,
        upgrades: bool,
    ) -> Result<(http1::SendRequest<Empty<Bytes>>, AbortOnDrop), LocalApiError> {
        let stream = UnixStream::connect(&self.socket_path)
            .await
            .map_err(|source| LocalApiError::Connect {
                path: self.socket_path.clone(),
                source,
            })?;
        let (sender, connection) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(LocalApiError::Handshake)?;
        let task = if upgrades {
            tokio::spawn(async move {
                if let Err(error) = connection.with_upgrades().await {
                    tracing::debug!(%error, "LocalAPI connection ended with an error");
                }
            })
        } else {
            tokio::spawn(async move {
                if let Err(error) = connection.await {
                    tracing::debug!(%error, "LocalAPI connection ended with an error");
                }
            })
        };
        Ok((sender, AbortOnDrop(task)))
    }
}

/// A request with the headers tailscale's own LocalAPI client sends.
fn request(method: &str, target: &str) -> http::request::Builder {
    Request::builder()
        .method(method)
        .uri(target)
        .header(header::HOST, LOCALAPI_HOST)
        .header("Sec-Tailscale", "localapi")
}

/// Stops a connection task when the exchange ends or is abandoned (a caller's timeout).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A byte stream to a peer opened by [`LocalApi::dial`].
#[derive(Debug)]
pub enum DialedStream {
    /// The upgraded LocalAPI connection: tailscaled relays it to the peer.
    Tailscale(TokioIo<Upgraded>),
    /// A direct TCP connection, when tailscaled said the address is not a tailnet route.
    Direct(TcpStream),
}

impl AsyncRead for DialedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            DialedStream::Tailscale(s) => Pin::new(s).poll_read(cx, buf),
            DialedStream::Direct(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for DialedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            DialedStream::Tailscale(s) => Pin::new(s).poll_write(cx, buf),
            DialedStream::Direct(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            DialedStream::Tailscale(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            DialedStream::Direct(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            DialedStream::Tailscale(s) => s.is_write_vectored(),
            DialedStream::Direct(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            DialedStream::Tailscale(s) => Pin::new(s).poll_flush(cx),
            DialedStream::Direct(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            DialedStream::Tailscale(s) => Pin::new(s).poll_shutdown(cx),
            DialedStream::Direct(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}
