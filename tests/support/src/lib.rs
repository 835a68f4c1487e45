//! The one place that launches real peers for kubescribe's tests: it finds
//! what `cargo xtask peers` installed (kubectl, SeaweedFS, asciinema, the
//! Python virtualenv, etcd and kube-apiserver, tailscaled and a tailnet's
//! control server), starts them on loopback
//! ports of their own, waits until they answer, and stops them on drop.
//!
//! Layers, bottom to top (each imports only from those above it in this list):
//!
//! * [`error`]: the one [`Error`] type; every wait names what it waited for
//!   and ends with the tail of the process's log.
//! * `jsonl`: reading the JSON lines files peers write.
//! * [`peers`]: where the installed programs are (`KUBESCRIBE_PEERS`, else
//!   `<workspace>/target/peers`).
//! * [`net`]: free loopback ports; waiting for a TCP listener.
//! * [`http`]: a blocking HTTP/1.1 client, plain or over TLS trusting one CA.
//! * [`pki`]: a fresh CA, serving certificate and signing key per test.
//! * [`process`]: a child-process guard ([`Spawned`]) that logs to a file
//!   and kills and reaps on drop; the workspace's own binaries.
//! * [`seaweed`]: a real SeaweedFS S3 server ([`Seaweed`]).
//! * [`netns`]: a sealed network namespace the test re-runs itself in.
//! * [`tailnet`]: a real tailnet ([`Tailnet`]): Tailscale's test control
//!   server and tailscaled nodes, inside that namespace.
//! * [`apiserver`]: a real control plane, etcd and kube-apiserver
//!   ([`ControlPlane`]), with token users, RBAC and an audit log.
//! * [`audit_sink`]: an audit webhook receiver and JSON lines checker that
//!   decode strictly with the real `audit.k8s.io/v1` Go types ([`AuditSink`]).
#![warn(unreachable_pub)]

pub mod apiserver;
pub mod audit_sink;
pub mod error;
pub mod http;
mod jsonl;
pub mod net;
pub mod netns;
pub mod peers;
pub mod pki;
pub mod process;
pub mod seaweed;
pub mod tailnet;

pub use apiserver::ControlPlane;
pub use audit_sink::AuditSink;
pub use error::Error;
pub use process::Spawned;
pub use seaweed::Seaweed;
pub use tailnet::Tailnet;

/// The README's examples compile (and the first one runs) as doc-tests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
