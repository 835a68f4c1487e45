//! The harness for kubescribe's whole-system tests: real binaries, real peers.
//!
//! * [`peers`] finds the real third-party programs (`cargo xtask peers`
//!   installs them).
//! * [`process`] starts the project's binaries and stops them on drop.
//! * [`fake_localapi`] serves tailscaled's LocalAPI `whois` on a unix socket
//!   with real `WhoIsResponse` JSON, so identities need no tailnet.
//! * [`identities`] builds that JSON for a user and a tagged node.
//! * [`proxy_protocol`] stands in for `tailscale serve`: it forwards TCP to
//!   the proxy with a PROXY protocol v2 header naming a tailnet source
//!   address, so each caller can have its own identity on one machine.

pub mod fake_localapi;
pub mod http;
pub mod identities;
pub mod peers;
pub mod process;
pub mod proxy_protocol;
pub mod report;
pub mod seaweed;
pub mod stack;

/// Every harness error: a message for the person reading the test output.
pub type Error = Box<dyn std::error::Error + Send + Sync>;
