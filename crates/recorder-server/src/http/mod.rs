//! The HTTP side, on top of everything: one listener serving HTTP/1.1 and
//! h2c (or TLS with ALPN), the router, and the route groups, each with the
//! narrow state its handlers need.
//!
//! Bottom to top: `response` (bodies and builders), `error` (the one error
//! type of every handler, which knows its status and body), the route groups
//! `ingest` (uploads), `api` (queries) and `ui` (the web UI), `admin`
//! (`/metrics`, `/healthz`, `/readyz` on their own listener), `router`, and
//! `listener` (both listeners, on `service::conn`).

pub(crate) mod admin;
pub(crate) mod api;
pub(crate) mod error;
pub(crate) mod ingest;
pub(crate) mod listener;
pub(crate) mod response;
pub(crate) mod router;
pub(crate) mod ui;
