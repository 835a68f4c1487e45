//! Transport from the kubescribe proxy to its recorders, and the decision
//! whether a request may go through when recording fails.
//!
//! * [`RecorderClient`] delivers API request events (`POST /v2/event`) to a
//!   caller's recorders in order, first success wins, over pooled keep-alive
//!   connections with a cached `HEAD` probe, a deadline on every attempt and
//!   a circuit breaker per recorder ([`BreakerConfig`]): a recorder that
//!   stalled is skipped at once until a probe gets an answer.
//!   Under fail open an undeliverable event goes to a bounded on-disk
//!   [`spool`] when one is configured ([`ClientConfig::spool`]) and is
//!   redelivered in order once a recorder accepts again; without a spool it
//!   is dropped and counted.
//! * [`FailurePolicy`] and [`Outcome`] are what the proxy acts on: forward,
//!   forward unrecorded, or refuse ([`Refusal`]: Tailscale's status and
//!   message, and the response they make).
//! * [`RecorderDialer`] ([`ClientConfig::dialer`]) is how events and session
//!   uploads open their connections: direct TCP, through tailscaled's LocalAPI
//!   (`ts-dial`, for a proxy beside a userspace-networking tailscaled) or
//!   through SOCKS5; the dial timeout bounds each, and a [`DialError`] names
//!   the way tried.
//! * [`connect_session`] opens a session upload (`/v2/record` over h2c with
//!   ack tracking, falling back to the legacy `/record`) and returns a
//!   [`SessionUpload`] the data path pushes cast lines into.
//!
//! # Layers
//!
//! Bottom to top; a module imports only from modules listed before it.
//!
//! 1. `cause`: [`Cause`], the lower-level error inside this crate's failures.
//! 2. `ack`: [`AckDecoder`], the recorder's ack-frame stream on `/v2/record`.
//! 3. `dialer`: [`RecorderDialer`], how a stream to a recorder is opened
//!    (direct TCP, tailscaled's LocalAPI, SOCKS5) for events and sessions
//!    alike, and why it could not be ([`DialError`]).
//! 4. `error`: the failures of deliveries, starts and session uploads.
//! 5. `policy`: the fail-open / fail-closed decision ([`FailurePolicy`],
//!    [`Outcome`]), a pure function of those failures.
//! 6. `metrics`: the client's Prometheus counters.
//! 7. [`spool`]: the on-disk record format and the bounded spool.
//! 8. `config`: [`ClientConfig`] and its parts.
//! 9. `events`: event delivery (probe cache, HTTP transport, batching,
//!    failover, spool redelivery).
//! 10. `session`: session uploads (the upload handle, dial, v2, v1, connect).
//! 11. `client`: [`RecorderClient`], which ties events, spool and sessions
//!     to the policy.
//!
//! ```no_run
//! # async fn demo(event: event_model::Event) -> Result<(), Box<dyn std::error::Error>> {
//! use recorder_client::{ClientConfig, FailurePolicy, Outcome, RecorderClient};
//!
//! let mut registry = prometheus_client::registry::Registry::default();
//! let client = RecorderClient::start(ClientConfig::default(), &mut registry)?;
//! let recorders = ["127.0.0.1:8080".parse()?];
//! match client.record_event(&recorders, FailurePolicy::FailClosed, &event, "/api/v1/pods").await {
//!     Outcome::Forward | Outcome::Queued | Outcome::ForwardUnrecorded { .. } => { /* proxy the request */ }
//!     Outcome::Refuse(refusal) => { /* answer with `refusal.into_response()` */ }
//! }
//! # Ok(()) }
//! ```
#![warn(unreachable_pub)]

// 1. Causes.
mod cause;

// 2. Ack frames.
mod ack;

// 3. Dialing.
mod dialer;

// 4. Failures.
mod error;

// 5. The failure policy.
mod policy;

// 6. Metrics.
mod metrics;

// 7. The spool.
pub mod spool;

// 8. Configuration.
mod config;

// 9. Events.
mod events;

// 10. Sessions.
mod session;

// 11. The client.
mod client;

pub use ack::{AckDecodeError, AckDecoder, AckFrame};
pub use cause::Cause;
pub use client::RecorderClient;
pub use config::{BatchConfig, BreakerConfig, ClientConfig, FailOpenDelivery, SessionOptions};
pub use dialer::{DialError, DialFailure, RecorderDialer, RecorderStream};
pub use error::{
    AttemptError, ConnectError, DeliveryError, PushError, SessionAttemptError, StartError,
    UploadError,
};
pub use events::Delivered;
pub use localapi::LocalApi;
pub use metrics::Metrics;
pub use policy::{DropReason, FailurePolicy, Outcome, Refusal, SessionKind, UnrecordedReason};
pub use session::connect::connect_session;
pub use session::{SessionProtocol, SessionUpload, UploadStatus, UploadSummary};
pub use spool::{FsyncPolicy, SpoolConfig, SpoolFullPolicy};

/// The README's example runs as a doc-test.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
mod readme {}
