//! The connection to one recorder, shared by both wire versions: the client's
//! [`RecorderDialer`](crate::RecorderDialer) under the dial timeout.

use std::net::SocketAddr;

use tokio::time::Instant;

use crate::config::SessionOptions;
use crate::dialer::RecorderStream;
use crate::error::SessionAttemptError;

/// Dials `addr` with the dial timeout (bounded by `deadline`).
pub(crate) async fn dial(
    addr: SocketAddr,
    opts: &SessionOptions,
    deadline: Instant,
) -> Result<RecorderStream, SessionAttemptError> {
    let timeout = deadline
        .saturating_duration_since(Instant::now())
        .min(opts.dial_timeout);
    opts.dialer
        .dial(addr, timeout)
        .await
        .map_err(SessionAttemptError::Dial)
}
