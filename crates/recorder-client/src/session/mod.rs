//! Session recording uploads, bottom to top:
//!
//! * [`upload`]: the [`SessionUpload`] handle the data path pushes into, the
//!   streaming body, and the final accounting both wire versions share;
//! * [`dial`]: the TCP connect to one recorder under the dial timeout;
//! * [`v2`]: `HEAD` and `POST /v2/record` over h2c, with the ack monitor;
//! * [`v1`]: the legacy `POST /record` with `Expect: 100-continue`;
//! * [`connect`]: [`connect_session`](connect::connect_session), trying each
//!   address in order, v2 then v1.

pub(crate) mod connect;
pub(crate) mod dial;
pub(crate) mod upload;
pub(crate) mod v1;
pub(crate) mod v2;

pub use upload::{SessionProtocol, SessionUpload, UploadStatus, UploadSummary};
