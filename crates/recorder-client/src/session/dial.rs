//! The TCP connect to one recorder, shared by both wire versions.

use std::net::SocketAddr;

use tokio::net::TcpStream;
use tokio::time::{timeout_at, Instant};

use crate::cause::Cause;
use crate::config::SessionOptions;
use crate::error::SessionAttemptError;

/// Dials `addr` with the dial timeout (bounded by `deadline`).
pub(crate) async fn dial(
    addr: SocketAddr,
    opts: &SessionOptions,
    deadline: Instant,
) -> Result<TcpStream, SessionAttemptError> {
    let until = deadline.min(Instant::now() + opts.dial_timeout);
    let tcp = timeout_at(until, TcpStream::connect(addr))
        .await
        .map_err(|_| SessionAttemptError::DialTimeout { addr })?
        .map_err(|e| SessionAttemptError::Dial {
            addr,
            source: Cause::new(e),
        })?;
    let _ = tcp.set_nodelay(true);
    Ok(tcp)
}
