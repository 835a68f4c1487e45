//! Reading back: the in-memory indexes, their rebuild from storage, and the
//! `/api/v1` HTTP API (documented in `docs/api.md`).

pub mod api;
pub mod index;
pub mod rebuild;
pub mod sessions;

pub use index::{EventFilter, QueryIndex};
pub use sessions::{SessionIndex, SessionInfo, SessionState};
