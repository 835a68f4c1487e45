//! The kubescribe Kubernetes API server proxy: identity-aware, impersonating,
//! recording every API request as a Tailscale-compatible `kubernetes-api-request`
//! event before forwarding it, and handing exec/attach upgrades to a
//! [`SessionHook`].
//!
//! Data path, one module each: [`listener`] (TLS, PROXY protocol) →
//! [`request`] (context, body capture) → [`caller`] (WhoIs, grants) →
//! [`policy`] (the fail-closed decision) → [`event`] → [`recorder`] (transport)
//! → [`forward`] (reverse proxy, upgrades) → [`upstream`] (the API server).
//! [`proxy`] strings them together per request; [`app`] assembles a running
//! server from a [`Config`].
//!
//! ```
//! use kubescribe_proxy::forward::{upstream_request_headers, upgrade_type};
//! use kubescribe_proxy::config::Mode;
//! use http::{HeaderMap, HeaderValue};
//!
//! let mut h = HeaderMap::new();
//! h.insert("authorization", HeaderValue::from_static("Bearer caller"));
//! h.insert("x-forwarded-for", HeaderValue::from_static("203.0.113.9"));
//! upstream_request_headers(&mut h, upgrade_type(&HeaderMap::new()).as_ref(), Mode::Auth, None,
//!     Some(HeaderValue::from_static("Bearer proxy")));
//! assert_eq!(h.get("authorization").unwrap(), "Bearer proxy");
//! assert!(h.get("x-forwarded-for").is_none());
//! ```

pub mod admin;
pub mod app;
pub mod caller;
pub mod caller_cache;
pub mod config;
pub mod event;
pub mod forward;
pub mod listener;
pub mod metrics;
pub mod policy;
pub mod proxy;
pub mod recorder;
pub mod request;
pub mod session_hook;
pub mod session_recorder;
pub mod session_tracker;
pub mod upstream;
pub mod whois_cmd;

pub use app::{start, Components, RunningProxy};
pub use config::{Cli, Config, Mode};
pub use session_hook::{PassThrough, SessionContext, SessionHook, SessionRelay};
pub use session_recorder::RecordingHook;
