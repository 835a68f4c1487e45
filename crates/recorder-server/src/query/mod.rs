//! Reading back: the in-memory indexes, their rebuild from storage, and the
//! `/api/v1` HTTP API (documented in `docs/api.md`), which records every
//! viewing of a session as an audit event ([`audit`]).

pub mod api;
pub mod audit;
pub mod index;
pub mod rebuild;
pub mod sessions;

pub use index::{EventFilter, QueryIndex};
pub use sessions::{SessionIndex, SessionInfo, SessionState};
