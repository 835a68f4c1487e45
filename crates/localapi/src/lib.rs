//! tailscaled's LocalAPI over its unix socket, as kubescribe uses it: plain `GET`s (WhoIs, status),
//! the `ts-dial` upgrade that turns a LocalAPI connection into a TCP stream to a tailnet peer
//! (how a proxy without a TUN device reaches its recorders), and the node's status, whose peers
//! and their tags name the recorders a grant's `recorder` tags mean.
//!
//! The one copy of the LocalAPI plumbing: `identity` asks WhoIs through it, `recorder-client`
//! dials recorders through it, the proxy resolves recorder tags through it. It depends on no
//! other kubescribe crate.
//!
//! # Layers
//!
//! Bottom to top; a module imports only from modules listed before it.
//!
//! 1. `error`: [`LocalApiError`], every way a LocalAPI exchange fails, and
//!    [`StatusParseError`].
//! 2. `status`: [`Status`] and [`PeerStatus`], tailscaled's `/localapi/v0/status` JSON, and
//!    the recorder addresses a set of tags names ([`Status::recorders_for_tags`]).
//! 3. `client`: [`LocalApi`], one connection per exchange: [`LocalApi::get`],
//!    [`LocalApi::dial`] ([`DialedStream`]), [`LocalApi::status`].
//! 4. `status_cache`: [`StatusCache`], the status reused for a few seconds.
//!
//! ```no_run
//! # async fn demo() -> Result<(), localapi::LocalApiError> {
//! use localapi::{LocalApi, StatusCache};
//!
//! let api = LocalApi::new(localapi::DEFAULT_TAILSCALED_SOCKET);
//! // A TCP stream to a tailnet peer, through tailscaled.
//! let stream = api.dial("100.64.0.3".parse().expect("an IP"), 80).await?;
//! // The recorders tagged `tag:k8s-recorder` in this node's netmap.
//! let cache = StatusCache::new(api, std::time::Duration::from_secs(5));
//! let recorders = cache.recorders_for_tags(&["tag:k8s-recorder".to_owned()]).await?;
//! # drop((stream, recorders)); Ok(()) }
//! ```
#![warn(unreachable_pub)]

// 1. Failures.
mod error;

// 2. The status document.
mod status;

// 3. The client.
mod client;

// 4. The status cache.
mod status_cache;

pub use client::{Answer, DialedStream, LocalApi, DEFAULT_TAILSCALED_SOCKET, LOCALAPI_HOST};
pub use error::{LocalApiError, StatusParseError};
pub use status::{is_tailnet_address, PeerStatus, Status, MAX_STATUS_BYTES, RECORDER_PORT};
pub use status_cache::StatusCache;
