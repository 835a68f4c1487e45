//! The wire endpoints that receive data: events and response records
//! (`/v2/event`, batches on `/v2/events`), and session recordings
//! (`/v2/record` over h2c with acks, legacy `/record`).

pub mod batch;
pub mod body;
pub mod cast;
pub mod event;
pub mod session_v1;
pub mod session_v2;

/// Response header telling kubescribe's client that this is a kubescribe
/// recorder (so it may send batches and response records).
pub const KUBESCRIBE_RECORDER_HEADER: &str = "x-kubescribe-recorder";
