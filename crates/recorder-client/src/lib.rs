//! Transport from the kubescribe proxy to its recorders, and the decision
//! whether a request may go through.
//!
//! * [`RecorderClient`] delivers API request events (`POST /v2/event`) to a
//!   caller's recorders in order, first success wins, over pooled keep-alive
//!   connections with a cached `HEAD` probe and a deadline on every attempt.
//!   Under fail open an undeliverable event goes to a bounded on-disk
//!   [`spool`] and is redelivered in order once a recorder accepts again.
//! * [`FailurePolicy`] and [`Outcome`] are what the proxy acts on: forward,
//!   forward unrecorded, or refuse ([`Refusal`]: Tailscale's status and
//!   message, and the response they make).
//! * [`connect_session`] opens a session upload (`/v2/record` over h2c with
//!   ack tracking, falling back to the legacy `/record`) and returns a
//!   [`SessionUpload`] the data path pushes cast lines into.
//!
//! ```no_run
//! # async fn demo(event: event_model::Event) -> Result<(), Box<dyn std::error::Error>> {
//! use recorder_client::{ClientConfig, FailurePolicy, Outcome, RecorderClient};
//!
//! let mut registry = prometheus_client::registry::Registry::default();
//! let client = RecorderClient::start(ClientConfig::default(), &mut registry)?;
//! let recorders = ["127.0.0.1:8080".parse()?];
//! match client.record_event(&recorders, FailurePolicy::FailClosed, &event, "/api/v1/pods").await {
//!     Outcome::Forward | Outcome::ForwardUnrecorded { .. } => { /* proxy the request */ }
//!     Outcome::Refuse(refusal) => { /* answer with `refusal.into_response()` */ }
//! }
//! # Ok(()) }
//! ```

mod client;
mod config;
mod error;
mod events;
mod metrics;
mod policy;
mod session;
pub mod spool;

pub use client::RecorderClient;
pub use config::{BatchConfig, ClientConfig, SessionOptions};
pub use error::{AttemptError, ConnectError, DeliveryError, PushError, StartError, UploadError};
pub use events::Delivered;
pub use metrics::Metrics;
pub use policy::{DropReason, FailurePolicy, Outcome, Refusal, SessionKind, UnrecordedReason};
pub use session::ack::{AckDecodeError, AckDecoder, AckFrame};
pub use session::connect::connect_session;
pub use session::{SessionProtocol, SessionUpload, UploadStatus, UploadSummary};
pub use spool::{FsyncPolicy, SpoolConfig, SpoolFullPolicy};
