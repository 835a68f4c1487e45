//! A Kubernetes API server simulator good enough for real kubectl: discovery, CRUD,
//! watch, logs and exec/attach over SPDY and WebSocket, bearer tokens and
//! impersonation, TLS with a generated CA, and a log of every request it received.
//!
//! ```no_run
//! # async fn demo() -> Result<(), kube_sim::SimError> {
//! use kube_sim::{Credentials, KubeSim, SimConfig};
//! let sim = KubeSim::start(SimConfig::default()).await?;
//! sim.write_kubeconfig("/tmp/kubeconfig".as_ref(), &Credentials::None)?;
//! // … run kubectl --kubeconfig /tmp/kubeconfig get pods …
//! assert!(sim.requests().iter().any(|r| r.uri.starts_with("/api/v1/namespaces/default/pods")));
//! sim.shutdown().await;
//! # Ok(()) }
//! ```
#![warn(unreachable_pub)]

#[cfg(doctest)]
#[doc = include_str!("../README.md")]
mod readme_doctest {}

mod api;
pub mod auth;
mod clock;
mod containers;
pub mod discovery;
pub mod exec;
mod http_util;
pub mod kubeconfig;
mod logs;
mod openapi;
pub mod patch;
pub mod protobuf;
mod rendering;
pub mod request_log;
pub mod resources;
mod routes;
mod running;
mod seed;
pub mod selectors;
mod server;
mod state;
pub mod status;
pub mod store;
pub mod tls;
mod watch;

pub use auth::{parse_token_file, TokenEntry, UserInfo};
pub use kubeconfig::Credentials;
pub use logs::{line_text as log_line_text, INITIAL_LINES as LOG_INITIAL_LINES};
pub use request_log::RecordedRequest;
pub use running::{KubeSim, RunningSim, SimConfig, SimError};
