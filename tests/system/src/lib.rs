//! The harness for kubescribe's whole-system tests: the project's real
//! binaries against real peers. Finding and launching the peers (kubectl,
//! SeaweedFS, child processes, free ports, HTTP) is the test-support crate's
//! job (`test_support`); this crate builds the whole system from them.
//!
//! Layers, bottom to top:
//!
//! * [`report`] prints the e2e run's scenarios and checks.
//! * [`run`] runs a client program to completion, with a deadline.
//! * [`flags`] checks a rendered container's command line against the binary it runs.
//! * [`rbac`] creates namespaces, roles and bindings in the real API server.
//! * [`kubectl`] runs the real kubectl as the administrator of the real API server.
//! * [`identities`] builds tailscaled's `WhoIsResponse` JSON for a user and a
//!   tagged node.
//! * [`fake_localapi`] serves that JSON as tailscaled's LocalAPI `whois` on a
//!   unix socket, so identities need no tailnet.
//! * [`proxy_protocol`] stands in for `tailscale serve`: it forwards TCP to
//!   the proxy with a PROXY protocol v2 header naming a tailnet source
//!   address, so each caller can have its own identity on one machine.
//! * [`upstream`] runs the API server behind the proxy: the simulator or the
//!   real kube-apiserver, and reads what it received.
//! * [`stack`] runs the upstream, the recorder and the proxy as real
//!   processes, with four callers (and any a test adds, and a second proxy
//!   in noauth mode when asked).
//! * [`http1_front`] fronts a recorder as an HTTP/1-only server (no h2c), so
//!   an uploader that probes `/v2/record` falls back to `/record`.
//! * [`tailscale_proxy`] runs Tailscale's own API server proxy (v1.102.5) as
//!   a tsnet node of a tailnet.
//! * [`tailnet_stack`] runs the same system on a real tailnet: tailscaled
//!   nodes, `tailscale serve` in front of the proxy and the recorders, and
//!   Tailscale's proxy beside kubescribe's when asked.
//! * [`client_comparison`] starts the stack a client-library test compares
//!   direct and proxied runs on.
//! * [`client`] sends one request as a caller, with a deadline, and says
//!   how its reply ended (whole, cut short, not at all).
//! * [`load`] sends a closed-loop request load through one caller and times
//!   every reply.
//! * [`received`] compares what kube-apiserver's audit log says it received
//!   through a proxy with the events the recorder stored.
//! * [`flood`] floods each listener of the binaries with idle and half-open
//!   connections and measures what legitimate clients and the server see.
//!
//! The integration tests in `tests/`, one concern each, run against the real
//! kube-apiserver:
//!
//! * `kubectl_clients`: kubectl 1.27, 1.33 and 1.37 run every command
//!   directly (as the same user and group) and through the proxy, with the
//!   same outcome; every request has its event.
//! * `python_client`, `kube_rs_client`: the Python `kubernetes` client and
//!   kube-rs, the same way.
//! * `rbac_matrix`: callers are allowed and refused as `kubectl auth can-i
//!   --as … --as-group …` says, over verbs × resources × namespaces.
//! * `impersonation_headers`: a caller's own `Impersonate-*` headers never
//!   reach the API server.
//! * `noauth_mode`: in noauth mode the caller's token names its user.
//!
//! On a real tailnet (each test in a sealed network namespace of its own):
//! `tailnet` (identities, grants, sessions, recorder outages and failover,
//! refusals, LocalAPI faults) and `tailscale_interop` (Tailscale's own API
//! server proxy recording into kubescribe-recorder, and its events compared
//! field by field with kubescribe-proxy's: docs/compatibility.md).
//!
//! And against the simulator: `session_fairness` (one caller's idle execs do not keep another's from
//! being recorded) and `connection_flood` (a small flood of every listener: fds bounded, every
//! legitimate request answered).
//!
//! The binaries in `src/bin`: `e2e` (`cargo xtask e2e`), `oracle` (`cargo
//! xtask oracle`), `bench_exec` (`cargo xtask bench-exec`), `flood` (`cargo xtask flood`) and `chaos`
//! (`cargo xtask chaos`: the recorder, and the S3 server, killed or stopped
//! under load; see its module documentation).
#![warn(unreachable_pub)]

pub mod fake_localapi;
pub mod flags;
pub mod http1_front;
pub mod identities;
pub mod kubectl;
pub mod proxy_protocol;
pub mod rbac;
pub mod report;
pub mod run;
pub mod upstream;

pub mod stack;
pub mod tailnet_stack;
pub mod tailscale_proxy;

pub mod client;
pub mod load;

pub mod received;

pub mod flood;

pub mod client_comparison;

/// Every harness error: a message for the person reading the test output.
pub type Error = Box<dyn std::error::Error + Send + Sync>;
