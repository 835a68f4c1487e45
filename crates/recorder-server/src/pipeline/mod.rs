//! The write side: what happens to uploaded data between the HTTP handlers
//! and storage, independent of HTTP.
//!
//! Bottom to top:
//! * `prepare`: parsing and validating records and NDJSON batches into
//!   lines ready to commit (the uploader written into `destination`).
//! * `keys`: the idempotency keys already stored (de-duplication).
//! * `commit`: the group commit loop: records written together, every waiter
//!   answered once its batch is durable, the event index updated.
//! * `slots`: session upload slots shared fairly: in total, per uploader,
//!   per caller.
//! * `cast`: session uploads: cast lines validated and appended durably, the
//!   session index kept current, the caller counted as its header names it.
//! * `audit`: the session-view audit record, committed before a cast is served.

pub(crate) mod audit;
pub(crate) mod cast;
pub(crate) mod commit;
pub(crate) mod keys;
pub(crate) mod prepare;
pub(crate) mod slots;

pub use cast::{check_line, CastError, CastLine, HeaderProblem};
pub use prepare::{prepare, PrepareError, Prepared};
pub use slots::SlotRefusal;
