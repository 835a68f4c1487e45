//! Event and response-record delivery, bottom to top:
//!
//! * [`probe_cache`]: per-recorder memory of the `HEAD /v2/event` probe;
//! * [`breaker`]: the circuit breaker of each recorder (closed or open);
//! * [`transport`]: the raw HTTP/1.1 exchanges with one recorder (probe,
//!   single `POST`, NDJSON batch) under the attempt deadline;
//! * [`batch`]: coalescing of concurrent events to one kubescribe recorder;
//! * [`sender`]: one record to the first of a caller's recorders that takes
//!   it (breaker, probe, batch or single `POST`, failover), and the
//!   background probe of an open breaker;
//! * [`redeliver`]: the background task that empties the spool through the
//!   sender.

pub(crate) mod batch;
pub(crate) mod breaker;
pub(crate) mod probe_cache;
pub(crate) mod redeliver;
pub(crate) mod sender;
pub(crate) mod transport;

use std::net::SocketAddr;

/// A record was durably stored by a recorder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    /// The recorder that accepted it.
    pub recorder: SocketAddr,
}
