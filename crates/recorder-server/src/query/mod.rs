//! The read side: what the query API (`/api/v1`, documented in
//! `docs/api.md`) answers, independent of HTTP: query parameters turned
//! into filters, pages of the indexes rendered as JSON, records read back
//! from storage when they are no longer indexed, casts streamed from storage.
//!
//! Bottom to top: [`params`] (query strings → filters), [`events`] and
//! [`sessions`] (the answers).

pub(crate) mod events;
pub(crate) mod params;
pub(crate) mod sessions;

use crate::storage::StorageError;

/// Default page size.
pub(crate) const DEFAULT_LIMIT: usize = 100;
/// Largest page size.
pub(crate) const MAX_LIMIT: usize = 1000;

/// Why a query cannot be answered, worded for the caller.
#[derive(Debug, thiserror::Error)]
pub(crate) enum QueryError {
    /// A query parameter this route does not take.
    #[error("unknown query parameter {name:?}; known: {known}")]
    UnknownParameter {
        /// The parameter.
        name: String,
        /// The ones the route takes.
        known: &'static str,
    },
    /// A time that is neither Unix seconds nor RFC 3339.
    #[error("{name}={value:?}: expected Unix seconds or RFC 3339 (2026-01-31T12:00:00Z)")]
    BadTime {
        /// `since` or `until`.
        name: &'static str,
        /// The value given.
        value: String,
    },
    /// A page size out of range.
    #[error("limit={value:?}: expected 1..={MAX_LIMIT}")]
    BadLimit {
        /// The value given.
        value: String,
    },
    /// A cursor this API did not hand out.
    #[error("cursor={value:?}: not a cursor from this API")]
    BadCursor {
        /// The value given.
        value: String,
    },
    /// A record cursor that is not an event's.
    #[error("cursor={value:?}: not an event cursor")]
    NotEventCursor {
        /// The value given.
        value: String,
    },
    /// `reads` that is not one of its values.
    #[error("reads={value:?}: expected exclude (the default), only or include")]
    BadReads {
        /// The value given.
        value: String,
    },
    /// `live` that is not a boolean.
    #[error("live={value:?}: expected true or false")]
    BadLive {
        /// The value given.
        value: String,
    },
    /// A day that is not `YYYY-MM-DD` (a real UTC date).
    #[error("date={value:?}: expected a UTC day as YYYY-MM-DD (2026-01-31)")]
    BadDate {
        /// The value given.
        value: String,
    },
    /// A parameter the route needs is not given.
    #[error("the query parameter {name:?} is required")]
    MissingParameter {
        /// The parameter.
        name: &'static str,
    },
    /// A parameter given more than once where one value is meant.
    #[error("the query parameter {name:?} is given more than once")]
    RepeatedParameter {
        /// The parameter.
        name: &'static str,
    },
    /// No record has this id.
    #[error("no record with id {id:?}")]
    NoSuchRecord {
        /// The id asked for.
        id: String,
    },
    /// No session has this id.
    #[error("no session with id {id:?}")]
    NoSuchSession {
        /// The id asked for.
        id: String,
    },
    /// The session's cast is still being uploaded.
    #[error("the session is still being recorded; its cast is available once it ends")]
    SessionLive,
    /// Reading storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}
