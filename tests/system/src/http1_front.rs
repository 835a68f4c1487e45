//! An HTTP/1-only front for a recorder, as a recorder that predates `/v2/record` (or any
//! HTTP/1-only reverse proxy in front of one) looks to an uploader: a connection that opens with
//! the HTTP/2 preface (h2c with prior knowledge, how Tailscale probes `HEAD /v2/record`) is
//! answered `400` and closed, as an HTTP/1.1 server answers it; every other connection is
//! forwarded byte for byte, its PROXY protocol v2 header included, so the recorder still sees
//! the tailnet caller. Tailscale's proxy then falls back to `POST /record` over HTTP/1.1.
//!
//! It sits between a node's `tailscale serve` (with `--proxy-protocol=2`) and the recorder.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use crate::Error;

/// What an HTTP/2 client with prior knowledge sends first.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The fixed part of a PROXY protocol v2 header: signature, version/command, family, length.
const PROXY_V2_FIXED: usize = 16;

/// A running front; stops accepting when dropped.
pub struct Http1Front {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    refused_h2: Arc<AtomicU64>,
    forwarded: Arc<AtomicU64>,
}

impl Http1Front {
    /// Listens on 127.0.0.1 and fronts the recorder at `backend`.
    pub fn start(backend: SocketAddr) -> Result<Self, Error> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let refused_h2 = Arc::new(AtomicU64::new(0));
        let forwarded = Arc::new(AtomicU64::new(0));
        let (stop_flag, refused, passed) = (stop.clone(), refused_h2.clone(), forwarded.clone());
        thread::spawn(move || {
            while !stop_flag.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((client, _)) => {
                        let (refused, passed) = (refused.clone(), passed.clone());
                        thread::spawn(move || {
                            let _ = serve(client, backend, &refused, &passed);
                        });
                    }
                    Err(_) => thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        Ok(Self {
            addr,
            stop,
            refused_h2,
            forwarded,
        })
    }

    /// Where `tailscale serve` forwards to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections that opened with the HTTP/2 preface and were refused.
    pub fn refused_h2(&self) -> u64 {
        self.refused_h2.load(Ordering::SeqCst)
    }

    /// Connections forwarded to the recorder.
    pub fn forwarded(&self) -> u64 {
        self.forwarded.load(Ordering::SeqCst)
    }
}

impl Drop for Http1Front {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn serve(
    mut client: TcpStream,
    backend: SocketAddr,
    refused: &AtomicU64,
    forwarded: &AtomicU64,
) -> std::io::Result<()> {
    client.set_nonblocking(false)?;
    client.set_read_timeout(Some(Duration::from_secs(15)))?;
    let mut head = vec![0u8; PROXY_V2_FIXED];
    client.read_exact(&mut head)?;
    let rest = usize::from(u16::from_be_bytes([head[14], head[15]]));
    let mut addresses = vec![0u8; rest];
    client.read_exact(&mut addresses)?;
    head.extend_from_slice(&addresses);
    // Read as much of the first request as tells HTTP/2 from HTTP/1.
    let mut first = Vec::new();
    let mut byte = [0u8; 1];
    while first.len() < H2_PREFACE.len() && H2_PREFACE.starts_with(&first) {
        if client.read(&mut byte)? == 0 {
            return Ok(());
        }
        first.push(byte[0]);
    }
    if first == H2_PREFACE {
        refused.fetch_add(1, Ordering::SeqCst);
        client.write_all(
            b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n\
              Connection: close\r\n\r\n400 Bad Request",
        )?;
        return client.shutdown(Shutdown::Both);
    }
    forwarded.fetch_add(1, Ordering::SeqCst);
    client.set_read_timeout(None)?;
    let mut upstream = TcpStream::connect(backend)?;
    upstream.write_all(&head)?;
    upstream.write_all(&first)?;
    let (mut client_read, mut upstream_write) = (client.try_clone()?, upstream.try_clone()?);
    let upload = thread::spawn(move || {
        let _ = std::io::copy(&mut client_read, &mut upstream_write);
        let _ = upstream_write.shutdown(Shutdown::Write);
    });
    let _ = std::io::copy(&mut upstream, &mut client);
    let _ = client.shutdown(Shutdown::Write);
    let _ = upload.join();
    Ok(())
}
