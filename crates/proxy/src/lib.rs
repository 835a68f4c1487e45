//! The kubescribe Kubernetes API server proxy: identity-aware, impersonating,
//! recording the API requests of callers whose grants ask for it as
//! Tailscale-compatible `kubernetes-api-request` events before forwarding
//! them, and handing exec/attach upgrades to a [`SessionHook`]
//! ([`RecordingHook`] records them as asciicasts).
//!
//! # Layers
//!
//! Bottom to top, as the `mod` lines at the end are grouped; a module
//! imports only modules listed above it, never one below.
//!
//! Facts and plumbing (nothing from this crate; TLS files, logging, the
//! shutdown signal and the identity source come from the `service` and
//! `identity` crates, shared with the recorder):
//! - `body`: the body type on both sides (`ProxyBody`, [`BoxError`]), the
//!   proxy's own plain-text answers, a body observer (byte counts, digests,
//!   how a body ended).
//! - `metrics`: the proxy's Prometheus metrics, Tailscale's counter names included.
//! - `mode`: [`Mode`], auth or noauth, the one switch several layers read.
//! - `session_tracker`: upgraded sessions still relaying, for graceful shutdown.
//!
//! The request as received:
//! - `headers`: hop-by-hop and forwarding-header hygiene, upgrade detection.
//! - `request`: [`RequestContext`] of one request, and capturing its body.
//!
//! Identity, policy, events, transport, upstream, sessions:
//! - `admission`: the recorder client's fail-open/fail-closed decision
//!   applied to a request.
//! - `caller`: WhoIs → [`CallerInfo`] (identity, grants, impersonation),
//!   with a per-address cache.
//! - `audit`: the audit Policy in force (`--audit-policy`), its reload,
//!   and who a request's user is for it.
//! - `event`: the request event and the response record.
//! - `event_sink`: [`EventSink`], the recorder transport as the pipeline sees it.
//! - `recorder_dial`: [`RecorderDial`] (`--recorder-dial`), how recorders are
//!   reached (direct, tailscaled's LocalAPI, SOCKS5), and the `auto` choice.
//! - `session_hook`: the [`SessionHook`] seam for upgrades; [`PassThrough`].
//! - `upstream`: the API server: kubeconfig and in-cluster config (kube-rs),
//!   credentials (token, token file, exec plugin), client.
//! - `recording_hook`: [`RecordingHook`], exec/attach recording (on the session hook).
//!
//! Serving, and its configuration:
//! - `admin`: `/metrics`, `/healthz`, `/readyz`.
//! - `config`: the command line ([`Cli`]) validated into a [`Config`].
//! - `forward`: the request upstream, the response back, upgrades to the hook.
//! - `listener`: the API listener (TLS, PROXY protocol, graceful shutdown).
//! - `pipeline`: one request's steps: resolve caller → admit (and record the
//!   event) → forward → response record; failures answered in one place.
//!
//! Assembly and commands:
//! - `app`: [`Components`] → [`start`] → [`RunningProxy`]; [`serve`].
//! - `whois_cmd`: the `whois` subcommand ([`whois`]).
//!
//! # Example
//!
//! The header rewrite every forwarded request gets, in auth mode:
//!
//! ```
//! use kubescribe_proxy::{upgrade_type, upstream_request_headers, Mode};
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
#![warn(unreachable_pub)]

// Running a proxy.
pub use admin::Readiness;
pub use app::{serve, start, Components, RunningProxy, StartError};
pub use config::{Cli, Command, Config, ConfigError, ServeArgs, SpoolDir, SpoolOptions, WhoisArgs};
pub use identity::IdentitySource;
pub use mode::Mode;
pub use recorder_dial::RecorderDial;
pub use service::{LogFormat, TlsError, TlsFiles};
pub use upstream::{
    Credential, KubeconfigError, TokenError, UpstreamError, UpstreamSource, UpstreamSpec,
    UpstreamTlsError, DEFAULT_EXEC_TIMEOUT,
};
pub use whois_cmd::whois;

// The seams: where events go and what happens to upgraded sessions.
pub use caller::CallerInfo;
pub use event_sink::EventSink;
pub use recorder_client::{Outcome, Refusal};
pub use recording_hook::RecordingHook;
pub use request::context::RequestContext;
pub use service::conn::ConnInfo;
pub use session_hook::{
    PassThrough, SessionContext, SessionHook, SessionMetrics, SessionRelay, UpgradedStream,
};

// The error type of bodies (the integration tests' fake upstream uses it).
pub use body::BoxError;

// Input handling, public for the fuzz targets.
pub use headers::{upgrade_type, upstream_request_headers};
pub use service::conn::{parse_header, read_header, ProxiedPeer, ProxyHeaderError};

// Facts and plumbing.
mod body;
mod metrics;
mod mode;
mod session_tracker;

// The request as received.
mod headers;
mod request;

// Identity, policy, events, transport, upstream, sessions.
mod admission;
mod audit;
mod caller;
mod event;
mod event_sink;
mod recorder_dial;
mod session_hook;
mod upstream;

// Recording sessions, through the session hook.
mod recording_hook;

// Serving, and its configuration.
mod admin;
mod config;
mod forward;
mod listener;
mod pipeline;

// Assembly and commands.
mod app;
mod whois_cmd;

/// The README's examples, compiled as doc-tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
mod readme_doctest {}
