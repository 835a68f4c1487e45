//! [`RecorderDialer`]: how a byte stream to a recorder address is opened, for event delivery and
//! session uploads alike: direct TCP (a host with a tailnet interface), through tailscaled's
//! LocalAPI (`POST /localapi/v0/dial`, the userspace-networking sidecar), or through a SOCKS5
//! proxy (`tailscaled --socks5-server`). Also the [`Connector`] that gives the pooled HTTP client
//! the same streams.

use std::fmt;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::TokioIo;
use localapi::LocalApi;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::cause::Cause;

/// How the client reaches recorder addresses. The dial timeout applies to the whole of one dial,
/// whichever way (for the LocalAPI: connecting to the socket, the request and tailscaled's own
/// dial of the peer; for SOCKS5: the proxy connection and its handshake).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum RecorderDialer {
    /// A TCP connection from this host: needs a route to the recorder (a TUN device for tailnet
    /// addresses). The default.
    #[default]
    Direct,
    /// Through tailscaled's LocalAPI at this socket (`POST /localapi/v0/dial`, upgraded to the
    /// raw stream), as Tailscale's own proxy reaches recorders in userspace-networking mode.
    LocalApi(LocalApi),
    /// Through the SOCKS5 proxy at `HOST:PORT` (tailscaled's `--socks5-server`), no
    /// authentication.
    Socks5(String),
    /// Tailnet addresses (100.64.0.0/10, fd7a:115c:a1e0::/48) through tailscaled's LocalAPI at
    /// this socket, any other address (a recorder on loopback, a cluster IP) directly: what
    /// tailscaled itself would say of those (`Dial-Self`), without the round trip.
    TailnetThroughLocalApi(LocalApi),
}

impl fmt::Display for RecorderDialer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecorderDialer::Direct => f.write_str("direct TCP"),
            RecorderDialer::LocalApi(api) => write!(
                f,
                "tailscaled's LocalAPI at {}",
                api.socket_path().display()
            ),
            RecorderDialer::Socks5(proxy) => write!(f, "the SOCKS5 proxy at {proxy}"),
            RecorderDialer::TailnetThroughLocalApi(api) => write!(
                f,
                "tailscaled's LocalAPI at {} (tailnet addresses; others direct)",
                api.socket_path().display()
            ),
        }
    }
}

/// A stream to a recorder address could not be opened. Says which way was tried: direct TCP
/// keeps upstream's wording (`dial tcp 100.64.0.3:80: …`), the others name tailscaled's LocalAPI
/// socket or the SOCKS5 proxy (`dialing 100.64.0.3:80 through tailscaled's LocalAPI at
/// /var/run/tailscale/tailscaled.sock: …`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DialError {
    /// The recorder address.
    pub addr: SocketAddr,
    /// The way it was dialed.
    pub via: RecorderDialer,
    /// What went wrong.
    pub failure: DialFailure,
}

/// What went wrong in a [`DialError`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DialFailure {
    /// The dial did not complete within the dial timeout (or the attempt's deadline).
    TimedOut(Duration),
    /// The dial failed (refused, unreachable, tailscaled's or the proxy's refusal).
    Failed(Cause),
}

impl fmt::Display for DialError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.via {
            RecorderDialer::Direct => write!(f, "dial tcp {}", self.addr)?,
            via => write!(f, "dialing {} through {via}", self.addr)?,
        }
        match &self.failure {
            DialFailure::TimedOut(after) => write!(f, ": timed out after {after:?}"),
            DialFailure::Failed(cause) => write!(f, ": {cause}"),
        }
    }
}

impl std::error::Error for DialError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.failure {
            DialFailure::TimedOut(_) => None,
            DialFailure::Failed(cause) => Some(cause),
        }
    }
}

/// A byte stream to a recorder, however it was opened.
pub struct RecorderStream(Box<dyn Io>);

trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

impl fmt::Debug for RecorderStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RecorderStream")
    }
}

impl RecorderDialer {
    /// Opens a stream to `addr`, within `timeout`.
    pub async fn dial(
        &self,
        addr: SocketAddr,
        timeout: Duration,
    ) -> Result<RecorderStream, DialError> {
        // The way this address takes.
        let way = match self {
            RecorderDialer::TailnetThroughLocalApi(api) => {
                if localapi::is_tailnet_address(addr.ip()) {
                    RecorderDialer::LocalApi(api.clone())
                } else {
                    RecorderDialer::Direct
                }
            }
            other => other.clone(),
        };
        let failed = |source: Cause| DialError {
            addr,
            via: way.clone(),
            failure: DialFailure::Failed(source),
        };
        let dial = async {
            Ok::<_, DialError>(match &way {
                RecorderDialer::Direct => {
                    let tcp = TcpStream::connect(addr)
                        .await
                        .map_err(|e| failed(Cause::new(e)))?;
                    let _ = tcp.set_nodelay(true);
                    RecorderStream(Box::new(tcp))
                }
                // (`way` is never TailnetThroughLocalApi; dialing through tailscaled is right for it.)
                RecorderDialer::LocalApi(api) | RecorderDialer::TailnetThroughLocalApi(api) => {
                    RecorderStream(Box::new(
                        api.dial(addr.ip(), addr.port())
                            .await
                            .map_err(|e| failed(Cause::new(e)))?,
                    ))
                }
                RecorderDialer::Socks5(proxy) => {
                    let stream = tokio_socks::tcp::Socks5Stream::connect(proxy.as_str(), addr)
                        .await
                        .map_err(|e| failed(Cause::new(e)))?;
                    let tcp = stream.into_inner();
                    let _ = tcp.set_nodelay(true);
                    RecorderStream(Box::new(tcp))
                }
            })
        };
        match tokio::time::timeout(timeout, dial).await {
            Ok(result) => result,
            Err(_) => Err(DialError {
                addr,
                via: way,
                failure: DialFailure::TimedOut(timeout),
            }),
        }
    }
}

impl AsyncRead for RecorderStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for RecorderStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_shutdown(cx)
    }
}

/// The pooled HTTP client's connector: a [`RecorderDialer`] as a `tower::Service<Uri>`.
#[derive(Debug, Clone)]
pub(crate) struct Connector {
    dialer: Arc<RecorderDialer>,
    timeout: Duration,
}

impl Connector {
    pub(crate) fn new(dialer: RecorderDialer, timeout: Duration) -> Self {
        Connector {
            dialer: Arc::new(dialer),
            timeout,
        }
    }
}

/// A dialed stream as the pooled HTTP client holds it.
#[derive(Debug)]
pub(crate) struct PooledStream(TokioIo<RecorderStream>);

impl Connection for PooledStream {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl hyper::rt::Read for PooledStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for PooledStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }
}

impl tower_service::Service<Uri> for Connector {
    type Response = PooledStream;
    type Error = DialError;
    type Future = Pin<Box<dyn Future<Output = Result<PooledStream, DialError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), DialError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let dialer = self.dialer.clone();
        let timeout = self.timeout;
        Box::pin(async move {
            let addr = recorder_addr(&uri).ok_or_else(|| DialError {
                addr: SocketAddr::from(([0, 0, 0, 0], 0)),
                via: (*dialer).clone(),
                failure: DialFailure::Failed(Cause::msg(format!(
                    "{uri} does not name a recorder by IP address"
                ))),
            })?;
            let stream = dialer.dial(addr, timeout).await?;
            Ok(PooledStream(TokioIo::new(stream)))
        })
    }
}

/// The `IP:port` of an `http://IP:port/…` URI (IPv6 in brackets).
fn recorder_addr(uri: &Uri) -> Option<SocketAddr> {
    let host = uri.host()?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let ip: IpAddr = host.parse().ok()?;
    Some(SocketAddr::new(ip, uri.port_u16().unwrap_or(80)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn recorder_addresses_come_from_the_uri() {
        let addr = |s: &str| recorder_addr(&s.parse().unwrap());
        assert_eq!(
            addr("http://100.64.0.3:8080/v2/event"),
            Some("100.64.0.3:8080".parse().unwrap())
        );
        assert_eq!(
            addr("http://[fd7a:115c:a1e0::3]:80/v2/event"),
            Some("[fd7a:115c:a1e0::3]:80".parse().unwrap())
        );
        assert_eq!(
            addr("http://100.64.0.3/"),
            Some("100.64.0.3:80".parse().unwrap())
        );
        assert_eq!(addr("http://recorder.example/"), None);
    }

    #[tokio::test]
    async fn auto_dials_tailnet_addresses_through_tailscaled_and_others_directly() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let local = listener.local_addr().unwrap();
        let api = LocalApi::new("/nonexistent/ts.sock");
        let dialer = RecorderDialer::TailnetThroughLocalApi(api);
        let timeout = Duration::from_secs(5);
        // Loopback is not a tailnet address: a plain TCP connection, no LocalAPI needed.
        let (dialed, accepted) = tokio::join!(dialer.dial(local, timeout), listener.accept());
        dialed.unwrap();
        accepted.unwrap();
        // A tailnet address goes to tailscaled (whose socket is missing here).
        let err = dialer
            .dial("100.64.0.3:80".parse().unwrap(), timeout)
            .await
            .unwrap_err();
        assert!(
            err.to_string().starts_with(
                "dialing 100.64.0.3:80 through tailscaled's LocalAPI at /nonexistent/ts.sock"
            ),
            "{err}"
        );
        let err = dialer
            .dial("[fd7a:115c:a1e0::9]:80".parse().unwrap(), timeout)
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("through tailscaled's LocalAPI"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn errors_say_which_way_was_tried() {
        // A port nothing listens on (bound, then closed).
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let timeout = Duration::from_secs(5);

        let err = RecorderDialer::Direct
            .dial(addr, timeout)
            .await
            .unwrap_err();
        assert!(
            err.to_string().starts_with(&format!("dial tcp {addr}: ")),
            "{err}"
        );

        let api = LocalApi::new("/nonexistent/ts.sock");
        let err = RecorderDialer::LocalApi(api)
            .dial("100.64.0.3:80".parse().unwrap(), timeout)
            .await
            .unwrap_err();
        assert!(
            err.to_string().starts_with(
                "dialing 100.64.0.3:80 through tailscaled's LocalAPI at /nonexistent/ts.sock: \
                 cannot connect to tailscaled's LocalAPI socket /nonexistent/ts.sock"
            ),
            "{err}"
        );

        let err = RecorderDialer::Socks5(addr.to_string())
            .dial("100.64.0.3:80".parse().unwrap(), timeout)
            .await
            .unwrap_err();
        assert!(
            err.to_string().starts_with(&format!(
                "dialing 100.64.0.3:80 through the SOCKS5 proxy at {addr}: "
            )),
            "{err}"
        );
    }

    #[tokio::test]
    async fn the_dial_timeout_bounds_every_way() {
        // A listener that accepts (the kernel does) but never answers: the LocalAPI's HTTP
        // exchange and the SOCKS5 handshake both wait on it.
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("ts.sock");
        let _unix = tokio::net::UnixListener::bind(&socket).unwrap();
        let timeout = Duration::from_millis(200);
        for dialer in [
            RecorderDialer::LocalApi(LocalApi::new(&socket)),
            RecorderDialer::Socks5(silent.local_addr().unwrap().to_string()),
        ] {
            let started = std::time::Instant::now();
            let err = dialer
                .dial("100.64.0.3:80".parse().unwrap(), timeout)
                .await
                .unwrap_err();
            assert!(
                matches!(err.failure, DialFailure::TimedOut(t) if t == timeout),
                "{err}"
            );
            assert!(started.elapsed() < Duration::from_secs(2));
            assert!(err.to_string().ends_with("timed out after 200ms"), "{err}");
        }
    }
}
