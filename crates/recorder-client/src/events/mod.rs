//! Event and response-record delivery: probe cache, sender with failover,
//! batching, and redelivery from the spool.

pub(crate) mod batch;
pub(crate) mod probe_cache;
pub(crate) mod redeliver;
pub(crate) mod sender;

use std::net::SocketAddr;

/// A record was durably stored by a recorder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    /// The recorder that accepted it.
    pub recorder: SocketAddr,
}
