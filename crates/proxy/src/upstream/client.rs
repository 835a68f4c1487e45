//! The HTTP/1.1 client to the API server: hyper's pooled client over our own
//! connector (TCP + rustls with the cluster CA, client certificate, ALPN
//! `http/1.1` only, since SPDY upgrades need HTTP/1.1).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;

use service::conn::MaybeTls;

/// Bound on establishing one upstream connection (TCP + TLS).
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Connects to the API server.
#[derive(Clone)]
pub(crate) struct Connector {
    tls: Option<tokio_rustls::TlsConnector>,
    server_name: Option<ServerName<'static>>,
}

impl Connector {
    /// A connector; `tls` is used for `https` URIs, `server_name` overrides the SNI/verification name.
    pub(crate) fn new(
        tls: Option<Arc<rustls::ClientConfig>>,
        server_name: Option<ServerName<'static>>,
    ) -> Self {
        Connector {
            tls: tls.map(tokio_rustls::TlsConnector::from),
            server_name,
        }
    }
}

/// A plain (`http://` upstreams, tests) or TLS stream to the API server.
pub(crate) type UpstreamStream = MaybeTls<tokio_rustls::client::TlsStream<TcpStream>>;

type ConnectFuture =
    Pin<Box<dyn Future<Output = Result<TokioIo<UpstreamStream>, std::io::Error>> + Send>>;

impl tower_service::Service<http::Uri> for Connector {
    type Response = TokioIo<UpstreamStream>;
    type Error = std::io::Error;
    type Future = ConnectFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let fut = this.connect(uri);
            match tokio::time::timeout(CONNECT_TIMEOUT, fut).await {
                Ok(r) => r,
                Err(_) => Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("connecting to the API server took longer than {CONNECT_TIMEOUT:?}"),
                )),
            }
        })
    }
}

impl Connector {
    async fn connect(self, uri: http::Uri) -> Result<TokioIo<UpstreamStream>, std::io::Error> {
        let invalid =
            |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidInput, m.to_string());
        let host = uri
            .host()
            .ok_or_else(|| invalid("upstream URI has no host"))?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let https = uri.scheme_str() == Some("https");
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let tcp = TcpStream::connect((host.as_str(), port)).await?;
        tcp.set_nodelay(true)?;
        if !https {
            return Ok(TokioIo::new(MaybeTls::Plain(tcp)));
        }
        let tls = self
            .tls
            .as_ref()
            .ok_or_else(|| invalid("https upstream without a TLS configuration"))?;
        let name = match &self.server_name {
            Some(n) => n.clone(),
            None => ServerName::try_from(host.clone())
                .map_err(|_| invalid("upstream host is not a valid TLS server name"))?,
        };
        let s = tls.connect(name, tcp).await?;
        Ok(TokioIo::new(MaybeTls::Tls(Box::new(s))))
    }
}
