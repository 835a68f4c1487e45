//! The connection flood: the binaries as users run them ([`servers`]), and against each listener
//! in turn, thousands of connections that send nothing or half of something and hold still
//! ([`sockets`]), while legitimate requests keep being sent and the server's file descriptors and
//! RSS are watched ([`measure`]). `cargo xtask flood` runs it at full size (the `flood` binary);
//! `tests/connection_flood.rs` runs it small and checks behaviour only.
//!
//! Bottom to top: `sockets` (the flood), `servers` (what is flooded), `measure` (phases, numbers,
//! the table).

pub mod sockets;

pub mod servers;

pub mod measure;
