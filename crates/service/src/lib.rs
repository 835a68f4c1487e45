//! What every kubescribe binary (`kubescribe-proxy`, `kubescribe-recorder`) does around its core, written
//! once: accepting connections within limits, loading a rustls server configuration from PEM files,
//! setting up logging, and waiting for the signal to shut down.
//!
//! Layers, bottom to top:
//! - [`tls`]: the crypto provider, PEM certificates and keys, a server configuration with chosen ALPN
//!   protocols; errors name the flag and file at fault.
//! - [`logging`]: `--log-format text|json` and `RUST_LOG`, written to standard error.
//! - [`shutdown`]: a future that completes on SIGTERM or Ctrl-C.
//! - [`conn`]: accepting connections within limits (in total, per source, set-up and idle time),
//!   with an optional PROXY protocol header and TLS, and serving HTTP on them.
//! - [`cli`]: durations and the connection-limit flags both binaries take.
//! - [`admin`]: the `/metrics` page and plain answers of the admin listeners.
#![doc = include_str!("../README.md")]
#![warn(unreachable_pub)]

pub mod admin;
pub mod logging;
pub mod shutdown;
pub mod tls;

pub mod conn;

pub mod cli;

pub use logging::LogFormat;
pub use tls::{TlsError, TlsFiles};
