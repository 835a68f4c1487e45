//! Accepting and setting up connections within [`ConnectionLimits`]: the pool of connections still
//! being set up (when full, the oldest from the source with the most is evicted), the PROXY protocol header and the TLS handshake within the
//! set-up deadline, and the count of serving connections, in total and per source.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::time::Instant;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use super::limits::ConnectionLimits;
use super::maybe_tls::MaybeTls;
use super::metrics::{ConnectionMetrics, Refusal};
use super::proxy_protocol::{self, ProxiedPeer, ProxyHeaderError};
use super::setup_rate::{Admission, SetupRate};

/// What is known about the connection a request arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnInfo {
    /// Who is on the other end: the PROXY header's source when PROXY protocol is on (the caller behind
    /// `tailscale serve`), else the TCP peer.
    pub peer: SocketAddr,
    /// The TCP peer (the forwarder, when PROXY protocol is on).
    pub tcp_peer: SocketAddr,
    /// Whether TLS was terminated here.
    pub tls: bool,
    /// Whether `peer` came from a PROXY header.
    pub via_proxy_protocol: bool,
}

/// How a listener accepts connections.
#[derive(Debug, Clone)]
pub struct ListenerOptions {
    /// The listener's name in logs and metrics (`api`, `admin`, `recorder`, …).
    pub name: &'static str,
    /// What connections may cost.
    pub limits: ConnectionLimits,
    /// Require a PROXY protocol (v2 or v1) header on every connection; its source is the peer.
    pub proxy_protocol: bool,
    /// Serve TLS with this configuration.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Where connections are counted.
    pub metrics: ConnectionMetrics,
}

/// The byte stream of an accepted connection, plain or TLS.
pub type ServerStream = MaybeTls<TlsStream<TcpStream>>;

/// A bound listener.
pub struct Listener {
    tcp: TcpListener,
    local: SocketAddr,
    tls: Option<TlsAcceptor>,
    proxy_protocol: bool,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener")
            .field("name", &self.shared.name)
            .field("local", &self.local)
            .field("tls", &self.tls.is_some())
            .field("proxy_protocol", &self.proxy_protocol)
            .finish()
    }
}

/// State shared by a listener and its connections.
pub(crate) struct Shared {
    pub(crate) name: &'static str,
    pub(crate) limits: ConnectionLimits,
    pub(crate) metrics: ConnectionMetrics,
    pending: Mutex<PendingPool>,
    serving: Mutex<Serving>,
    setup_rate: Mutex<SetupRate>,
}

#[derive(Default)]
struct PendingPool {
    next_id: u64,
    /// Connections in the pool, all sources together.
    len: usize,
    /// The pool by TCP source address, each source's oldest first.
    by_source: HashMap<IpAddr, VecDeque<(u64, CancellationToken)>>,
}

impl PendingPool {
    /// Closes the oldest connection of the source with the most connections in the pool (of
    /// sources with as many, the one whose oldest is oldest).
    fn evict_one(&mut self) {
        let busiest = self
            .by_source
            .iter()
            .max_by_key(|(_, queue)| {
                let oldest = queue.front().map_or(u64::MAX, |(id, _)| *id);
                (queue.len(), std::cmp::Reverse(oldest))
            })
            .map(|(source, _)| *source);
        let Some(source) = busiest else {
            return;
        };
        if let Some(queue) = self.by_source.get_mut(&source) {
            if let Some((_, oldest)) = queue.pop_front() {
                oldest.cancel();
                self.len -= 1;
            }
            if queue.is_empty() {
                self.by_source.remove(&source);
            }
        }
    }

    /// Takes connection `id` from `source` out of the pool, if it is still there.
    fn remove(&mut self, source: IpAddr, id: u64) {
        if let Some(queue) = self.by_source.get_mut(&source) {
            let before = queue.len();
            queue.retain(|(queued, _)| *queued != id);
            self.len -= before - queue.len();
            if queue.is_empty() {
                self.by_source.remove(&source);
            }
        }
    }
}

#[derive(Default)]
struct Serving {
    total: usize,
    per_source: HashMap<IpAddr, usize>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The guarded maps stay consistent even if a holder panicked: use them.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Listener {
    /// Binds `addr`. An unspecified IPv6 address (`[::]:PORT`) falls back to `0.0.0.0:PORT` where IPv6
    /// is off.
    pub async fn bind(addr: SocketAddr, options: ListenerOptions) -> std::io::Result<Self> {
        let tcp = match bind_tcp(addr) {
            Ok(l) => l,
            Err(e) if addr.ip().is_unspecified() && addr.is_ipv6() => {
                bind_tcp(SocketAddr::from(([0, 0, 0, 0], addr.port()))).map_err(|_| e)?
            }
            Err(e) => return Err(e),
        };
        let local = tcp.local_addr()?;
        Ok(Self {
            tcp,
            local,
            tls: options.tls.map(TlsAcceptor::from),
            proxy_protocol: options.proxy_protocol,
            shared: Arc::new(Shared {
                name: options.name,
                limits: options.limits,
                metrics: options.metrics,
                pending: Mutex::default(),
                serving: Mutex::default(),
                setup_rate: Mutex::default(),
            }),
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Whether connections are TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Whether connections must start with a PROXY protocol header.
    pub fn requires_proxy_protocol(&self) -> bool {
        self.proxy_protocol
    }

    /// The next connection. Accept failures (for example EMFILE) are logged and retried after a
    /// short pause, so the accept loop backs off instead of spinning. Set the connection up with
    /// [`Incoming::handshake`] in a task of its own.
    pub async fn accept(&self) -> Incoming {
        loop {
            match self.tcp.accept().await {
                Ok((stream, tcp_peer)) => {
                    let _ = stream.set_nodelay(true);
                    let pending = PendingSlot::enter(&self.shared, tcp_peer.ip());
                    return Incoming {
                        stream,
                        tcp_peer,
                        deadline: Instant::now() + self.shared.limits.handshake_timeout,
                        tls: self.tls.clone(),
                        proxy_protocol: self.proxy_protocol,
                        pending,
                    };
                }
                Err(e) => {
                    tracing::warn!(listener = self.shared.name, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
}

/// Connections the kernel queues before they are accepted (it caps this at `net.core.somaxconn`).
/// The standard library's 128 fills within milliseconds under a flood of connections, and a
/// legitimate client whose SYN is dropped then waits a second before sending it again.
const LISTEN_BACKLOG: u32 = 4096;

/// A listening socket on `addr` (address reuse on, as the standard library sets it) with a
/// backlog of [`LISTEN_BACKLOG`].
fn bind_tcp(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// A connection in the set-up pool: evictable, counted as open.
pub(crate) struct PendingSlot {
    id: u64,
    source: IpAddr,
    token: CancellationToken,
    in_pool: bool,
    shared: Arc<Shared>,
}

impl PendingSlot {
    fn enter(shared: &Arc<Shared>, source: IpAddr) -> Self {
        let token = CancellationToken::new();
        let mut pool = lock(&shared.pending);
        let id = pool.next_id;
        pool.next_id += 1;
        while pool.len >= shared.limits.max_pending && pool.len > 0 {
            // The oldest connection of the source with the most still being set up makes room:
            // connections that send nothing cannot keep a new one out, and a flood from a few
            // addresses cannot evict another address's connection before its request is read.
            pool.evict_one();
        }
        pool.by_source
            .entry(source)
            .or_default()
            .push_back((id, token.clone()));
        pool.len += 1;
        drop(pool);
        shared.metrics.opened(shared.name);
        Self {
            id,
            source,
            token,
            in_pool: true,
            shared: shared.clone(),
        }
    }

    /// Cancelled when the pool evicts this connection.
    pub(crate) fn evicted(&self) -> tokio_util::sync::WaitForCancellationFuture<'_> {
        self.token.cancelled()
    }

    /// Leaves the set-up pool (the first request has arrived): no longer evictable.
    pub(crate) fn leave_pool(&mut self) {
        if std::mem::take(&mut self.in_pool) {
            lock(&self.shared.pending).remove(self.source, self.id);
        }
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }
}

impl Drop for PendingSlot {
    fn drop(&mut self) {
        self.leave_pool();
        self.shared.metrics.released(self.shared.name);
    }
}

/// A place among the serving connections, released when dropped.
pub(crate) struct ServingSlot {
    source: IpAddr,
    shared: Arc<Shared>,
}

impl ServingSlot {
    /// Takes a serving place for a connection from `source`, or says which limit is full.
    pub(crate) fn take(shared: &Arc<Shared>, source: IpAddr) -> Result<Self, Refusal> {
        let mut serving = lock(&shared.serving);
        if serving.total >= shared.limits.max_connections {
            return Err(Refusal::TooMany);
        }
        let from_source = serving.per_source.entry(source).or_insert(0);
        if *from_source >= shared.limits.max_connections_per_source {
            return Err(Refusal::TooManyFromSource);
        }
        *from_source += 1;
        serving.total += 1;
        Ok(Self {
            source,
            shared: shared.clone(),
        })
    }
}

impl Drop for ServingSlot {
    fn drop(&mut self) {
        let mut serving = lock(&self.shared.serving);
        serving.total = serving.total.saturating_sub(1);
        if let Some(n) = serving.per_source.get_mut(&self.source) {
            *n -= 1;
            if *n == 0 {
                serving.per_source.remove(&self.source);
            }
        }
    }
}

/// An accepted TCP connection, not yet set up.
pub struct Incoming {
    stream: TcpStream,
    tcp_peer: SocketAddr,
    deadline: Instant,
    tls: Option<TlsAcceptor>,
    proxy_protocol: bool,
    pending: PendingSlot,
}

/// Why a connection was closed during set-up.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// The set-up pool was full and this was the oldest connection of the source with the most.
    #[error("closed to make room: too many connections being set up")]
    Evicted,
    /// The source opened connections faster than `max_connection_rate_per_source`.
    #[error("closed before set-up: more than {0} new connections a second from this source")]
    RateLimited(u32),
    /// Set-up took longer than the handshake timeout.
    #[error("connection set-up took longer than {0:?}")]
    Timeout(Duration),
    /// The PROXY protocol header was missing or malformed.
    #[error(transparent)]
    ProxyHeader(#[from] ProxyHeaderError),
    /// The TLS handshake failed.
    #[error("TLS handshake failed: {0}")]
    Tls(#[source] std::io::Error),
}

impl HandshakeError {
    /// The metric label of this failure.
    pub fn refusal(&self) -> Refusal {
        match self {
            HandshakeError::Evicted => Refusal::Evicted,
            HandshakeError::RateLimited(_) => Refusal::RateLimited,
            HandshakeError::Timeout(_) => Refusal::HandshakeTimeout,
            HandshakeError::ProxyHeader(_) => Refusal::ProxyHeader,
            HandshakeError::Tls(_) => Refusal::Tls,
        }
    }
}

impl Incoming {
    /// The TCP peer.
    pub fn tcp_peer(&self) -> SocketAddr {
        self.tcp_peer
    }

    /// Reads the PROXY header (when required), checks the source's connection rate, and completes
    /// the TLS handshake (when configured), within the handshake timeout and unless the set-up pool
    /// evicts this connection first.
    /// Failures are counted in the listener's metrics; the connection is then dropped.
    pub async fn handshake(self) -> Result<Connection, HandshakeError> {
        let Incoming {
            mut stream,
            tcp_peer,
            deadline,
            tls,
            proxy_protocol,
            pending,
        } = self;
        let shared = pending.shared().clone();
        let timeout = shared.limits.handshake_timeout;
        let set_up = async {
            let mut peer = tcp_peer;
            if proxy_protocol {
                // The outer deadline bounds this read; the header's own timeout is the same budget.
                match proxy_protocol::read_header(&mut stream, timeout).await? {
                    ProxiedPeer::Address(source) => peer = source,
                    ProxiedPeer::Local => {}
                }
            }
            // Before the TLS handshake: a flood of new connections must not cost handshakes.
            let rate = shared.limits.max_connection_rate_per_source;
            let admission = lock(&shared.setup_rate).admit(peer.ip(), rate, Instant::now());
            match admission {
                Admission::Now => {}
                // Within the handshake deadline and the set-up pool's eviction, as any set-up.
                Admission::After(wait) => tokio::time::sleep(wait).await,
                Admission::Refused => return Err(HandshakeError::RateLimited(rate)),
            }
            let io = match &tls {
                None => MaybeTls::Plain(stream),
                Some(acceptor) => MaybeTls::Tls(Box::new(
                    acceptor.accept(stream).await.map_err(HandshakeError::Tls)?,
                )),
            };
            let info = ConnInfo {
                peer,
                tcp_peer,
                tls: tls.is_some(),
                via_proxy_protocol: proxy_protocol && peer != tcp_peer,
            };
            Ok::<_, HandshakeError>((io, info))
        };
        let result = tokio::select! {
            _ = pending.evicted() => Err(HandshakeError::Evicted),
            done = tokio::time::timeout_at(deadline, set_up) => match done {
                Err(_) => Err(HandshakeError::Timeout(timeout)),
                Ok(result) => result,
            },
        };
        match result {
            Ok((io, info)) => Ok(Connection {
                io,
                info,
                deadline,
                pending,
            }),
            Err(e) => {
                shared.metrics.closed(shared.name, e.refusal());
                tracing::debug!(listener = shared.name, %tcp_peer, error = %e, "connection closed during set-up");
                Err(e)
            }
        }
    }
}

/// A set-up connection, ready to serve HTTP (see [`Connection::serve`]).
pub struct Connection {
    pub(crate) io: ServerStream,
    pub(crate) info: ConnInfo,
    /// The first request's head must have arrived by then.
    pub(crate) deadline: Instant,
    pub(crate) pending: PendingSlot,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("info", &self.info)
            .finish()
    }
}

impl Connection {
    /// What is known about this connection.
    pub fn info(&self) -> ConnInfo {
        self.info
    }
}
