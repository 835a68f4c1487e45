//! The kubescribe recorder: receives events and session recordings over
//! HTTP/1.1 and h2c (Tailscale's `tsrecorder` wire protocol plus
//! kubescribe's batch and response-record extensions), stores them durably
//! on disk or S3, and serves a query API, metrics and the web UI.
//!
//! Build a [`Config`] from the command line ([`Cli`]) and [`run`] it, or
//! [`spawn`] a recorder in-process on a [`storage::Storage`] of your own
//! (the crate's README shows both).
//!
//! # Layers
//!
//! Bottom to top; a module imports only from the layers below it.
//!
//! 1. Vocabulary and plumbing, imported by every layer (TLS files, logging,
//!    the shutdown signal and the identity source come from the `service`
//!    and `identity` crates, shared with the proxy):
//!    * [`config`]: the command line, validated into one [`Config`].
//!    * `metrics`: the Prometheus counters every layer counts in.
//!    * [`record`]: record kinds, record/batch/session ids, and the summary
//!      of a record that the index keeps.
//!    * [`body`]: reading request bodies within limits ([`body::BodyError`]).
//!    * [`signing`]: signing-key files and [`signing::Signing`] (the
//!      configuration reads the key; the tamper layer signs with it).
//! 2. State below the pipeline and the query side:
//!    * [`storage`]: the [`storage::Storage`] trait, the object layout, the
//!      disk and S3 back ends.
//!    * `index`: the in-memory event and session indexes.
//!    * [`access`]: who may upload and who may read.
//!    * [`tamper`]: hash chains, signed manifests, the sealer and `verify`.
//!    * `cluster`: replicas sharing one bucket: leases, the leader, whose
//!      interrupted sessions may be finalised.
//! 3. The two sides, independent of each other and of HTTP:
//!    * [`pipeline`]: the write side: records and batches parsed, the group
//!      commit, idempotency keys, session casts, the session-view audit record.
//!    * `query`: the read side: filters, pages, records and casts read back.
//! 4. [`export`]: stored events as `audit.k8s.io/v1` Events, delivered from
//!    a durable cursor per sink to an audit webhook and JSON lines files
//!    (reads storage and the commit loop's in-flight watermark).
//! 5. `http`: the listener, the router, one error type that knows its
//!    response, and the route groups (uploads, query API, web UI), each with
//!    the narrow state its handlers need.
//! 6. `app`: start-up (storage check, crash recovery, index rebuild, the
//!    first manifest) and assembly: [`open_storage`], [`spawn`], [`run`]; the
//!    `keygen` and `verify` subcommands ([`run_subcommand`]).
#![warn(unreachable_pub)]

pub use app::commands::{run_subcommand, KeygenCli, Output, VerifyCli};
pub use app::{open_storage, run, spawn, RecorderHandle, StartError};
pub use config::{Cli, Config};
pub use query::params::check_query;

// 1. Vocabulary and plumbing.
pub mod body;
pub mod config;
mod metrics;
pub mod record;
pub mod signing;

// 2. State below both sides.
pub mod access;
mod cluster;
mod index;
pub mod storage;
pub mod tamper;

// 3. The write side and the read side.
pub mod pipeline;
mod query;

// 4. Export.
pub mod export;

// 5. HTTP.
mod http;

// 6. Start-up and assembly.
mod app;

/// The README's examples, compiled and run as doc-tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
mod readme_doctest {}
