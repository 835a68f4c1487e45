//! How a listener bounds what connections may cost: how many, from whom, and for how long they may sit
//! without serving a request.

use std::time::Duration;

/// Connection limits of one listener. Every kubescribe listener (the proxy's API and admin listeners,
/// the recorder's) enforces them; the defaults suit a service exposed to a whole tailnet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Most connections serving requests at once; one more is answered `503` and closed.
    pub max_connections: usize,
    /// Most connections serving requests at once from one source address (the PROXY header's source
    /// when PROXY protocol is on, else the TCP peer); one more is answered `429` and closed.
    pub max_connections_per_source: usize,
    /// Most connections still being set up (no complete request yet). When full, the oldest from the
    /// source address with the most is closed to make room, so connections that send nothing, from
    /// one address or a few, cannot crowd out ones that do.
    pub max_pending: usize,
    /// New connections one source address may open per second (bursts of twice as many). Past
    /// that, a connection waits for its turn before its TLS handshake (at most a second's worth
    /// of the rate); more are closed at once, before any handshake. An IPv6 source is limited by
    /// its /64. 0: no limit.
    pub max_connection_rate_per_source: u32,
    /// Bound on setting a connection up: the PROXY header, the TLS handshake and the first request's
    /// head must all arrive within it.
    pub handshake_timeout: Duration,
    /// A connection with no request in flight for this long is closed (gracefully: HTTP/2 gets a
    /// GOAWAY). Streaming responses (watches, logs) and uploads count as in flight.
    pub idle_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            max_connections: 4096,
            max_connections_per_source: 512,
            max_pending: 1024,
            max_connection_rate_per_source: 100,
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(120),
        }
    }
}

impl ConnectionLimits {
    /// Limits for an operator's endpoint (metrics, health): few connections, quick to give up.
    pub fn admin() -> Self {
        Self {
            max_connections: 64,
            max_connections_per_source: 16,
            max_pending: 64,
            max_connection_rate_per_source: 100,
            handshake_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(60),
        }
    }

    /// These limits, checked: every count at least 1 and every duration non-zero.
    pub fn validated(self) -> Result<Self, &'static str> {
        if self.max_connections == 0
            || self.max_connections_per_source == 0
            || self.max_pending == 0
        {
            return Err("connection limits must be at least 1");
        }
        if self.handshake_timeout.is_zero() || self.idle_timeout.is_zero() {
            return Err("connection timeouts must be longer than 0");
        }
        Ok(self)
    }
}
