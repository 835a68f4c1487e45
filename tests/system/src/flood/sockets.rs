//! The flood itself: many TCP connections to one listener, each sending the first part of something
//! the listener must wait for (nothing, half a request, half an HTTP/2 preface, half a TLS
//! ClientHello, or a whole TLS handshake and then half a request) and then holding still, from
//! several source addresses, opened at a bounded rate. Counts how many opened, how many could not,
//! and how many the server closed.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;
use tokio::sync::watch;

use crate::Error;

/// What a flood connection sends before it goes quiet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opening {
    /// Nothing at all.
    Idle,
    /// An HTTP/1.1 request head without its final empty line.
    HalfRequest,
    /// The first 16 of the 24 bytes of the HTTP/2 connection preface.
    HalfH2Preface,
    /// A TLS record header announcing a 512-byte ClientHello, and 64 bytes of it.
    HalfClientHello,
    /// A complete TLS handshake, then half a request head inside it.
    TlsHalfRequest,
    /// A complete TLS handshake (ALPN h2), then half the HTTP/2 preface inside it.
    TlsHalfH2Preface,
}

const HALF_REQUEST: &[u8] =
    b"GET /api/v1/namespaces/default/pods HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: flood\r\n";
const HALF_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n";

/// A TLS 1.2 record header (handshake, 512 bytes) and the start of a ClientHello that never ends.
fn half_client_hello() -> Vec<u8> {
    let mut hello = vec![
        0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
    ];
    hello.extend((0u8..32).map(|i| i.wrapping_mul(37)));
    hello.extend([0x00, 0x00, 0x20]);
    hello.extend([0x13, 0x01, 0x13, 0x02, 0x13, 0x03, 0xc0, 0x2b]);
    hello.truncate(64);
    hello
}

impl Opening {
    /// The mix a flood of a plain-text listener cycles through.
    pub const PLAIN: [Opening; 4] = [
        Opening::Idle,
        Opening::HalfRequest,
        Opening::HalfH2Preface,
        Opening::HalfClientHello,
    ];

    /// The mix against a TLS listener: half a handshake, or half a request inside a whole one.
    pub const TLS: [Opening; 4] = [
        Opening::Idle,
        Opening::HalfClientHello,
        Opening::TlsHalfRequest,
        Opening::TlsHalfH2Preface,
    ];

    /// How the report names it.
    pub fn name(self) -> &'static str {
        match self {
            Opening::Idle => "idle",
            Opening::HalfRequest => "half a request",
            Opening::HalfH2Preface => "half an HTTP/2 preface",
            Opening::HalfClientHello => "half a TLS ClientHello",
            Opening::TlsHalfRequest => "TLS, then half a request",
            Opening::TlsHalfH2Preface => "TLS, then half an HTTP/2 preface",
        }
    }
}

/// What a flood has done so far.
#[derive(Debug, Default)]
pub struct Counts {
    /// Connections that reached the state they hold (connected, and sent what they send).
    pub opened: AtomicUsize,
    /// Connections that could not be opened (refused, reset during set-up, timed out).
    pub failed: AtomicUsize,
    /// Opened connections the server has closed since.
    pub closed: AtomicUsize,
}

/// A snapshot of [`Counts`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// See [`Counts::opened`].
    pub opened: usize,
    /// See [`Counts::failed`].
    pub failed: usize,
    /// See [`Counts::closed`].
    pub closed: usize,
}

impl Tally {
    /// Adds `other`'s numbers to these.
    pub fn add(&mut self, other: Tally) {
        self.opened += other.opened;
        self.failed += other.failed;
        self.closed += other.closed;
    }
}

impl Counts {
    /// The numbers now.
    pub fn tally(&self) -> Tally {
        Tally {
            opened: self.opened.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            closed: self.closed.load(Ordering::Relaxed),
        }
    }
}

/// One flood: where, how many, from where, how fast, with what.
#[derive(Debug, Clone)]
pub struct FloodSpec {
    /// The listener.
    pub target: SocketAddr,
    /// Connections to open and hold.
    pub count: usize,
    /// Source addresses, used in turn (127.0.0.x: one host with many addresses).
    pub sources: Vec<Ipv4Addr>,
    /// Connections opened per second at most.
    pub rate: usize,
    /// The listener serves TLS with a certificate from this CA (PEM): use [`Opening::TLS`].
    pub tls_ca: Option<String>,
}

/// A TLS client trusting `ca_pem` only, offering h2 and http/1.1.
fn tls_connector(ca_pem: &str) -> Result<tokio_rustls::TlsConnector, Error> {
    let ca = CertificateDer::from_pem_slice(ca_pem.as_bytes())
        .map_err(|e| format!("the flood's CA is not a PEM certificate: {e}"))?;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// Opens `spec.count` connections at `spec.rate` per second and holds each until the server closes
/// it or `stop` turns true; counts into `counts`. Returns when every connection has ended.
pub async fn flood(
    spec: FloodSpec,
    counts: Arc<Counts>,
    stop: watch::Receiver<bool>,
) -> Result<(), Error> {
    let (mix, connector) = match &spec.tls_ca {
        Some(ca) => (&Opening::TLS, Some(tls_connector(ca)?)),
        None => (&Opening::PLAIN, None),
    };
    if spec.sources.is_empty() {
        return Err("a flood needs at least one source address".into());
    }
    let hello = Arc::new(half_client_hello());
    // Opened in batches every 10 ms: `rate` per second in all.
    let per_tick = spec.rate.div_ceil(100).max(1);
    let mut ticker = tokio::time::interval(Duration::from_millis(10));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..spec.count {
        if i % per_tick == 0 {
            ticker.tick().await;
        }
        if *stop.borrow() {
            break;
        }
        let source = spec.sources[i % spec.sources.len()];
        let opening = mix[i % mix.len()];
        let connection = Connection {
            target: spec.target,
            source,
            opening,
            connector: connector.clone(),
            hello: hello.clone(),
        };
        let (counts, stop) = (counts.clone(), stop.clone());
        tasks.spawn(connection.hold(counts, stop));
    }
    while tasks.join_next().await.is_some() {}
    Ok(())
}

/// One flood connection.
struct Connection {
    target: SocketAddr,
    source: Ipv4Addr,
    opening: Opening,
    connector: Option<tokio_rustls::TlsConnector>,
    hello: Arc<Vec<u8>>,
}

impl Connection {
    /// Opens, sends the opening, and holds until the server closes or `stop`.
    async fn hold(self, counts: Arc<Counts>, mut stop: watch::Receiver<bool>) {
        // A connect the server's full backlog leaves hanging would otherwise outlive the flood.
        let opened = tokio::select! {
            opened = tokio::time::timeout(Duration::from_secs(30), self.open()) => opened,
            _ = stop.wait_for(|stop| *stop) => return,
        };
        let mut stream: Box<dyn AsyncRead + Unpin + Send> = match opened {
            Ok(Ok(stream)) => stream,
            _ => {
                counts.failed.fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        counts.opened.fetch_add(1, Ordering::Relaxed);
        let mut buf = [0u8; 1024];
        loop {
            tokio::select! {
                read = stream.read(&mut buf) => match read {
                    Ok(0) | Err(_) => {
                        counts.closed.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                    // Whatever the server says (a 408, an alert, a GOAWAY), keep reading to the end.
                    Ok(_) => {}
                },
                _ = stop.wait_for(|stop| *stop) => return,
            }
        }
    }

    async fn open(&self) -> Result<Box<dyn AsyncRead + Unpin + Send>, Error> {
        let socket = TcpSocket::new_v4()?;
        socket.bind(SocketAddr::new(IpAddr::V4(self.source), 0))?;
        let mut tcp = socket.connect(self.target).await?;
        let text: &[u8] = match self.opening {
            Opening::Idle => b"",
            Opening::HalfRequest | Opening::TlsHalfRequest => HALF_REQUEST,
            Opening::HalfH2Preface | Opening::TlsHalfH2Preface => HALF_PREFACE,
            Opening::HalfClientHello => &self.hello,
        };
        match (self.opening, &self.connector) {
            (Opening::TlsHalfRequest | Opening::TlsHalfH2Preface, Some(connector)) => {
                let name = ServerName::IpAddress(self.target.ip().into());
                let mut tls = connector.connect(name, tcp).await?;
                tls.write_all(text).await?;
                tls.flush().await?;
                Ok(Box::new(tls))
            }
            _ => {
                tcp.write_all(text).await?;
                Ok(Box::new(tcp))
            }
        }
    }
}
