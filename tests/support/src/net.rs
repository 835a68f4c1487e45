//! Loopback ports and waiting for something to listen on them.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use crate::Error;

/// A free TCP port on 127.0.0.1 (bound and released; the caller binds it next).
pub fn free_port() -> Result<u16, Error> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(Error::io("binding 127.0.0.1:0"))?;
    Ok(listener
        .local_addr()
        .map_err(Error::io("reading a bound port"))?
        .port())
}

/// `count` distinct free ports on 127.0.0.1, each below `below` (SeaweedFS,
/// for one, derives gRPC ports as port + 10000) and below the kernel's
/// ephemeral range (`ip_local_port_range`), from 10000 up: no outgoing
/// connection of any process can take one of them while the server that owns
/// it is down, so a server killed and restarted gets its ports back. Every
/// candidate stays bound until all are chosen, so neither this call nor a
/// concurrent one in the same test binary is handed the same port twice.
pub fn free_ports(count: usize, below: u16) -> Result<Vec<u16>, Error> {
    const LOWEST: u16 = 10_000;
    let top = below.min(ephemeral_low());
    let span = top.saturating_sub(LOWEST);
    if usize::from(span) < count {
        return Err(Error::io(format!(
            "choosing {count} ports from {LOWEST} to {top}"
        ))(std::io::Error::other(
            "not enough ports below the ephemeral range",
        )));
    }
    // Start somewhere different each time, so concurrent test binaries rarely probe the same ports.
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0)
        ^ std::process::id().wrapping_mul(2_654_435_761);
    let start = seed % u32::from(span);
    let mut held = Vec::new();
    let mut ports = Vec::with_capacity(count);
    for i in 0..u32::from(span) {
        if ports.len() == count {
            break;
        }
        let port = LOWEST + ((start + i) % u32::from(span)) as u16;
        if let Ok(listener) = TcpListener::bind(("127.0.0.1", port)) {
            ports.push(port);
            held.push(listener);
        }
    }
    if ports.len() < count {
        return Err(Error::io(format!(
            "choosing {count} ports from {LOWEST} to {top}"
        ))(std::io::Error::other(
            "too few of them are free",
        )));
    }
    Ok(ports)
}

/// The first port of the kernel's ephemeral range (32768 when it cannot be read).
fn ephemeral_low() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse().ok())
        .unwrap_or(32768)
}

/// Whether `addr` accepts a TCP connection within 200 ms.
pub fn accepts_tcp(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}

/// Polls `ready` every `interval` until it returns true or `timeout` passes.
/// `gone` is asked before each poll: if it returns an error (the process
/// behind the endpoint exited), waiting stops with that error.
pub fn poll_until(
    timeout: Duration,
    interval: Duration,
    mut gone: impl FnMut() -> Result<(), Error>,
    mut ready: impl FnMut() -> bool,
) -> Result<bool, Error> {
    let deadline = Instant::now() + timeout;
    loop {
        if ready() {
            return Ok(true);
        }
        gone()?;
        if Instant::now() > deadline {
            return Ok(false);
        }
        std::thread::sleep(interval);
    }
}

/// Waits until `addr` accepts TCP connections (no process to watch).
pub fn wait_for_tcp(addr: SocketAddr, timeout: Duration) -> Result<(), Error> {
    if poll_until(
        timeout,
        Duration::from_millis(50),
        || Ok(()),
        || accepts_tcp(addr),
    )? {
        Ok(())
    } else {
        Err(Error::Timeout {
            name: addr.to_string(),
            waiting_for: "accepting TCP connections".into(),
            timeout,
            log_tail: String::new(),
        })
    }
}
