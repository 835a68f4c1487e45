//! The state the upload endpoints share ([`Ingest`]), and the steps every
//! upload takes: authorisation (one function for all four endpoints), the
//! body read within its limits, the session upload slot (within the total
//! and the uploader's share; the caller's is claimed when the cast header
//! names it).

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Request};
use hyper::body::Incoming;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::access::{Peer, UploadAccess, Uploader};
use crate::body::{content_length, read_limited, reserve};
use crate::config::Limits;
use crate::http::error::HttpError;
use crate::metrics::Metrics;
use crate::pipeline::cast::CastIntake;
use crate::pipeline::commit::Committer;
use crate::pipeline::slots::{SlotLimits, UploadSlot, UploadSlots};

/// What the upload endpoints need.
pub(crate) struct Ingest {
    /// Who may upload.
    access: UploadAccess,
    /// The group commit of events and response records.
    pub(super) committer: Committer,
    /// Where session casts go.
    pub(super) casts: Arc<CastIntake>,
    /// Request limits.
    pub(super) limits: Limits,
    /// Counters.
    pub(super) metrics: Arc<Metrics>,
    /// In-flight event/batch body budget in KiB (`--max-inflight-bytes`).
    body_budget: Arc<Semaphore>,
    /// Session upload slots (`--max-concurrent-uploads`, per uploader, per caller).
    upload_slots: Arc<UploadSlots>,
}

impl Ingest {
    /// The upload endpoints' state: uploads authorised by `access`, records
    /// committed by `committer`, casts stored through `casts`, within `limits`.
    pub(crate) fn new(
        access: UploadAccess,
        committer: Committer,
        casts: Arc<CastIntake>,
        limits: Limits,
        metrics: Arc<Metrics>,
    ) -> Self {
        let upload_slots = UploadSlots::new(SlotLimits {
            total: limits.max_concurrent_uploads,
            per_uploader: limits.max_uploads_per_uploader,
            per_caller: limits.max_uploads_per_caller,
        });
        let body_budget = Arc::new(Semaphore::new(
            (limits.max_inflight_bytes / 1024).min(Semaphore::MAX_PERMITS),
        ));
        Self {
            access,
            committer,
            casts,
            limits,
            metrics,
            body_budget,
            upload_slots,
        }
    }

    /// Authorises the upload of `what` (`event`, `batch`, `session`) from
    /// `peer`: the one check of every upload. A refusal is logged.
    pub(super) async fn authorise(
        &self,
        peer: &Peer,
        headers: &HeaderMap,
        what: &'static str,
    ) -> Result<Uploader, HttpError> {
        self.access.check(peer, headers).await.map_err(|denied| {
            tracing::warn!(%peer, reason = %denied, "{what} upload refused");
            HttpError::Denied(denied)
        })
    }

    /// The shared front of the record endpoints: refuses a declared length
    /// over `limit` (413 naming `flag`), reserves room in the in-flight
    /// budget, and reads the body with the limit and the idle timeout. The
    /// permit must be held until the body's records are committed.
    pub(super) async fn read_record_body(
        &self,
        req: Request<Incoming>,
        limit: usize,
        what: &'static str,
        flag: &'static str,
    ) -> Result<(OwnedSemaphorePermit, Bytes), HttpError> {
        let declared = content_length(req.headers());
        if declared.is_some_and(|n| n > limit as u64) {
            return Err(HttpError::DeclaredTooLarge { what, limit, flag });
        }
        let idle = self.limits.upload_idle_timeout;
        let permit = reserve(&self.body_budget, declared, limit, idle).await?;
        let body = read_limited(req.into_body(), limit, idle).await?;
        Ok((permit, body))
    }

    /// A session upload slot for `uploader` at `peer`, held until the upload
    /// ends; a refusal names the limit (and the uploader) and is logged.
    pub(super) fn upload_slot(
        &self,
        uploader: &Uploader,
        peer: &Peer,
    ) -> Result<UploadSlot, HttpError> {
        // A WhoIs node by its stable ID; otherwise the label: the token is one uploader, an
        // anonymous one is its address.
        let key = if uploader.node_id.is_empty() {
            uploader.label.clone()
        } else {
            format!("node:{}", uploader.node_id)
        };
        self.upload_slots
            .acquire(&key, &uploader.label)
            .map_err(|refusal| {
                tracing::warn!(%peer, uploader = %uploader.label, "session upload refused: {refusal}");
                HttpError::Slots(refusal)
            })
    }
}

/// Most bytes of a refused upload's body read and thrown away.
const REFUSED_BODY_DRAIN_BYTES: usize = 64 << 10;

/// How long a refused upload's body is read for.
const REFUSED_BODY_DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(1);

/// Reads and discards the body of an upload refused before it was read, up
/// to 64 KiB or 1 s, so that the refusal reaches the uploader: closing a
/// connection with unread bytes makes the kernel send a reset, which can
/// overtake the `403` (through `tailscale serve` it does) and leave the
/// uploader with "connection reset" instead of the reason. A larger or
/// slower body is left unread, at the old cost.
pub(super) async fn discard_refused_body(req: Request<Incoming>) {
    use http_body_util::BodyExt as _;
    let mut body = req.into_body();
    let mut read = 0usize;
    let drain = async {
        while let Some(Ok(frame)) = body.frame().await {
            read += frame.data_ref().map_or(0, Bytes::len);
            if read > REFUSED_BODY_DRAIN_BYTES {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(REFUSED_BODY_DRAIN_TIME, drain).await;
}
