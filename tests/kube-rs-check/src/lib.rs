//! A tests-only crate: the real Rust Kubernetes client, [kube-rs], against the
//! `kube-sim` simulator.
//!
//! The integration test `tests/kube_rs.rs` starts the simulator in-process (TLS with a
//! generated CA, bearer tokens from an allow-list), loads the kubeconfig the simulator
//! writes through kube-rs's own kubeconfig reader, then creates, lists (label
//! selector), gets and deletes pods and runs `exec` over WebSocket with and without
//! stdin, asserting what the simulator's request log saw.
//!
//! Run it with `cargo test -p kubescribe-kube-rs-check`.
//!
//! [kube-rs]: https://kube.rs
