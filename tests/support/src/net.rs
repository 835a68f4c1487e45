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
/// for one, derives gRPC ports as port + 10000). Every candidate stays bound
/// until all are chosen, so neither this call nor a concurrent one in the
/// same test binary is handed the same port twice.
pub fn free_ports(count: usize, below: u16) -> Result<Vec<u16>, Error> {
    let mut held = Vec::new();
    let mut ports = Vec::with_capacity(count);
    while ports.len() < count {
        let listener =
            TcpListener::bind("127.0.0.1:0").map_err(Error::io("binding 127.0.0.1:0"))?;
        let port = listener
            .local_addr()
            .map_err(Error::io("reading a bound port"))?
            .port();
        if port < below {
            ports.push(port);
        }
        held.push(listener);
    }
    Ok(ports)
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
