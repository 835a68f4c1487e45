//! Tamper evidence (docs/storage.md, "Tamper evidence"): per-segment hash
//! chains, Ed25519-signed manifests that link to each other, the sealer that
//! writes them, and the verifier behind `kubescribe-recorder verify`.
//!
//! Inside, bottom to top: [`chain`] and [`manifest`] (formats, no storage;
//! the keys are [`crate::signing`]'s), `store` (manifests read back), then
//! `sealer` (write side) and [`verify`] (read side).

pub mod chain;
pub mod manifest;
mod store;

pub(crate) mod sealer;
pub mod verify;
