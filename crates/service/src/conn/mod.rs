//! Connections, as both kubescribe binaries accept them: bounded in number (in total and per source)
//! and in time (set-up, idle), with an optional PROXY protocol header and TLS, served over HTTP/1.1 and
//! HTTP/2 with the requests in flight tracked.
//!
//! Layers, bottom to top:
//! - `limits`: [`ConnectionLimits`]; `setup_rate`: how fast one source may open connections.
//! - `metrics`: [`ConnectionMetrics`], what a listener counts, and why it closes ([`Refusal`]).
//! - `maybe_tls`: [`MaybeTls`], a plain or TLS byte stream.
//! - `proxy_protocol`: reading one PROXY protocol header ([`read_header`], [`parse_header`]).
//! - `listener`: [`Listener`] → [`Incoming`] → [`Connection`] with [`ConnInfo`].
//! - `serve`: [`Connection::serve`], HTTP within the limits.

// 1. Limits and metrics.
mod limits;
mod metrics;
mod setup_rate;

// 2. Byte streams and the PROXY header.
mod maybe_tls;
mod proxy_protocol;

// 3. Accepting and setting up.
mod listener;

// 4. Serving.
mod serve;

pub use limits::ConnectionLimits;
pub use listener::{
    ConnInfo, Connection, HandshakeError, Incoming, Listener, ListenerOptions, ServerStream,
};
pub use maybe_tls::MaybeTls;
pub use metrics::{ConnectionMetrics, Refusal};
pub use proxy_protocol::{
    parse_header, read_header, ProxiedPeer, ProxyHeaderError, HEADER_TIMEOUT,
};
pub use serve::{BoxError, Busy, ServeError, ServedBody};
