//! Logging set-up: `tracing` to stderr, filtered by `RUST_LOG` (default
//! `info`), as human-readable lines or one JSON object per line.
//!
//! Plumbing shared in shape with the proxy binary; kept narrow (one type, one
//! function) so that it can move to a crate both binaries use.

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Installs the global `tracing` subscriber: stderr, `RUST_LOG` filter
/// (default `info`), in `format`. Call once, before anything logs.
pub fn init(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}
