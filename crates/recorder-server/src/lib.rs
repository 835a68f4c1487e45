//! The kubescribe recorder: receives events and session recordings over
//! HTTP/1.1 and h2c (Tailscale's `tsrecorder` wire protocol plus kubescribe's
//! batch and response-record extensions), stores them durably on disk or S3,
//! and serves a query API, metrics and the web UI.
//!
//! The data path, in folder order: [`server`] (listener) → [`auth`] (who may
//! upload or read) → [`ingest`] (wire endpoints) → [`commit`] (group commit of
//! events) → [`storage`] (disk or S3, time-partitioned layout) → [`query`]
//! (in-memory index and the `/api/v1` API).

pub mod app;
pub mod auth;
pub mod commit;
pub mod config;
pub mod ingest;
pub mod metrics;
pub mod query;
pub mod server;
pub mod storage;
pub mod ui;

pub use app::{open_storage, run, spawn, App};
pub use config::{Cli, Config};
