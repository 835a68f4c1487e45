//! A stand-in for `tailscale serve` with `ProxyProtocol: 2`: forwards each
//! TCP connection to a backend, first writing a PROXY protocol v2 header
//! that names a chosen tailnet source address.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::Error;

/// The 12-byte PROXY protocol v2 signature.
const SIGNATURE: [u8; 12] = [
    0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
];

/// A running forwarder; stops when dropped.
pub struct ProxyProtocolForwarder {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl ProxyProtocolForwarder {
    /// Listens on 127.0.0.1 and forwards to `backend`, presenting every
    /// connection as coming from `source` (its port is the real client's).
    pub async fn start(backend: SocketAddr, source: std::net::IpAddr) -> Result<Self, Error> {
        Self::start_balanced(vec![backend], source).await
    }

    /// Like [`start`](Self::start), spreading connections over `backends` in turn, as a load
    /// balancer in front of proxy replicas: a connection goes to the next backend that accepts
    /// it (one that refuses, e.g. a replica that was killed, is skipped until it is back).
    pub async fn start_balanced(
        backends: Vec<SocketAddr>,
        source: std::net::IpAddr,
    ) -> Result<Self, Error> {
        if backends.is_empty() {
            return Err("a forwarder needs a backend".into());
        }
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let backends = Arc::new(backends);
        let turn = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn(async move {
            while let Ok((mut client, peer)) = listener.accept().await {
                let (backends, turn) = (backends.clone(), turn.clone());
                tokio::spawn(async move {
                    let first = turn.fetch_add(1, Ordering::Relaxed);
                    let mut connected = None;
                    for i in 0..backends.len() {
                        let backend = backends[(first + i) % backends.len()];
                        if let Ok(upstream) = TcpStream::connect(backend).await {
                            connected = Some((upstream, backend));
                            break;
                        }
                    }
                    let Some((mut upstream, backend)) = connected else {
                        return;
                    };
                    let header = v2_header(SocketAddr::new(source, peer.port()), backend);
                    if upstream.write_all(&header).await.is_err() {
                        return;
                    }
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                });
            }
        });
        Ok(Self { addr, task })
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for ProxyProtocolForwarder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A PROXY v2 `PROXY` command header for a TCP connection from `src` to `dst`.
pub fn v2_header(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let mut header = SIGNATURE.to_vec();
    header.push(0x21); // version 2, command PROXY
    match (src, dst) {
        (SocketAddr::V4(s), SocketAddr::V4(d)) => {
            header.push(0x11); // TCP over IPv4
            header.extend_from_slice(&12u16.to_be_bytes());
            header.extend_from_slice(&s.ip().octets());
            header.extend_from_slice(&d.ip().octets());
            header.extend_from_slice(&s.port().to_be_bytes());
            header.extend_from_slice(&d.port().to_be_bytes());
        }
        (s, d) => {
            let to_v6 = |a: SocketAddr| match a {
                SocketAddr::V4(v4) => v4.ip().to_ipv6_mapped(),
                SocketAddr::V6(v6) => *v6.ip(),
            };
            header.push(0x21); // TCP over IPv6
            header.extend_from_slice(&36u16.to_be_bytes());
            header.extend_from_slice(&to_v6(s).octets());
            header.extend_from_slice(&to_v6(d).octets());
            header.extend_from_slice(&s.port().to_be_bytes());
            header.extend_from_slice(&d.port().to_be_bytes());
        }
    }
    header
}
