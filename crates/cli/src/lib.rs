//! `kubescribe`, the command line for a kubescribe recorder: what the web UI shows, at a terminal.
//!
//! - `kubescribe events [filters] [--follow] [-o table|json|jsonl]`: stored API request events,
//!   newest first (or, with `--follow`, oldest first and then each new one as it is stored).
//! - `kubescribe sessions [filters]`: recorded `kubectl exec`/`attach` sessions.
//! - `kubescribe play SESSION [--speed X] [--idle-limit SECS]`: a session's recording played in
//!   the terminal with its timing, like `asciinema play`.
//! - `kubescribe completions SHELL`: shell completions.
//!
//! It reads the recorder's query API (docs/api.md) with the same reader authorisation as the UI:
//! a tailnet identity the recorder's `--allow-readers` admits, or a read token
//! (`--token-file`). Every read is recorded by the recorder as a read.
//!
//! Layers, bottom to top:
//! - `error`: [`CliError`], what can go wrong, each with the exit status it gives.
//! - `time_arg`: `--since`/`--until` values (relative, RFC 3339 or Unix seconds).
//! - `client`: [`RecorderClient`], GETs against the query API.
//! - `query`: the filter flags of `events` and `sessions`, as query parameters.
//! - `render`: events and sessions as a table, JSON or JSON lines.
//! - `play`: a cast played to a terminal with its timing.
//! - `commands`: each subcommand, start to end.
#![warn(unreachable_pub)]
#![warn(missing_docs)]

// 1. Errors and values.
mod error;
mod time_arg;

// 2. The recorder.
mod client;

// 3. What is asked and how it is shown.
mod play;
mod query;
mod render;

// 4. Subcommands.
mod commands;

pub use client::{ClientOptions, RecorderClient};
pub use commands::{run, Cli};
pub use error::CliError;
pub use play::{play_cast, PlayOptions, Played};

#[doc = include_str!("../README.md")]
#[cfg(doctest)]
mod readme {}
