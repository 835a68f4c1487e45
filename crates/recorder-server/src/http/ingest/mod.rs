//! The upload endpoints (Tailscale's `tsrecorder` wire protocol plus
//! kubescribe's batches and response records): `HEAD`/`POST /v2/event`,
//! `POST /v2/events`, `HEAD`/`POST /v2/record` and `POST /record`.
//!
//! Bottom to top: `state` (what the endpoints share, [`Ingest`], and the
//! steps every upload takes), `records` (events, response records and
//! batches) and `sessions` (casts), then this module: every upload goes
//! through [`Ingest::post`], authorised first, then handled by its
//! endpoint; every refusal is counted in `requests_rejected_total` by its
//! reason.

mod records;
mod sessions;
mod state;

use crate::access::Peer;

use http::{Request, Response};
use hyper::body::Incoming;

use super::response::{empty, recorder_header, ResBody};
pub(crate) use state::Ingest;

/// An upload endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Upload {
    /// `POST /v2/event`: one record (or a batch, by its content type).
    Event,
    /// `POST /v2/events`: a batch.
    Events,
    /// `POST /record`: a whole cast, answered once it is stored.
    RecordV1,
    /// `POST /v2/record`: a streamed cast, answered with ack frames.
    RecordV2,
}

impl Upload {
    /// What is uploaded, for the log of a refusal.
    fn what(self) -> &'static str {
        match self {
            Upload::Event => "event",
            Upload::Events => "batch",
            Upload::RecordV1 | Upload::RecordV2 => "session",
        }
    }
}

impl Ingest {
    /// `HEAD /v2/event` and `HEAD /v2/record`: the probe, answered with
    /// `X-Kubescribe-Recorder: 1`.
    pub(crate) fn head() -> Response<ResBody> {
        let mut res = Response::new(empty());
        recorder_header(&mut res);
        res
    }

    /// Serves `POST` on the upload endpoint `endpoint` from `peer`: the
    /// uploader is authorised before anything is read or stored; a refusal
    /// is counted by its reason.
    pub(crate) async fn post(
        &self,
        endpoint: Upload,
        peer: &Peer,
        req: Request<Incoming>,
    ) -> Response<ResBody> {
        let result = match self.authorise(peer, req.headers(), endpoint.what()).await {
            Ok(uploader) => match endpoint {
                Upload::Event => self.event(uploader, req).await,
                Upload::Events => self.events(uploader, req).await,
                Upload::RecordV1 => self.record_v1(uploader, peer, req).await,
                Upload::RecordV2 => self.record_v2(uploader, peer, req).await,
            },
            Err(e) => {
                state::discard_refused_body(req).await;
                Err(e)
            }
        };
        result.unwrap_or_else(|e| {
            if let Some(reason) = e.rejection_reason() {
                self.metrics.reject(reason);
            }
            e.into_response()
        })
    }
}
