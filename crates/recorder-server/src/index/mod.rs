//! The in-memory indexes: what the pipeline fills as it stores records and
//! sessions, and what the query side reads. Rebuilt from storage at start-up.
//!
//! Bottom to top: `filter` (what both lists filter on), [`events`] (recent
//! events joined with their response records, bounded by
//! `--index-max-bytes`), [`sessions`] (every session's metadata).

pub(crate) mod events;
mod filter;
pub(crate) mod sessions;

pub(crate) use events::{EventFilter, EventIndex, Reads, Row};
pub(crate) use filter::ListFilter;
pub(crate) use sessions::{SessionFilter, SessionIndex, SessionInfo, SessionState};
