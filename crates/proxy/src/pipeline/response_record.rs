//! The response record of a request with an event, armed before the request
//! is forwarded so that every recorded request gets exactly one, whatever
//! becomes of it: the API server's answer (once its body ends, however it
//! ends), the proxy's own answer (its reason in `error`), or none at all
//! because the caller went away first (status `0`). Each says the proxy's
//! [`Decision`]: `forwarded`, `upstream-error`, or `refused-fail-closed`
//! for an exec/attach session that could not be recorded.

use std::net::SocketAddr;
use std::sync::Arc;

use event_model::Decision;
use http::Response;
use http_body_util::BodyExt;

use super::RecordedEvent;
use crate::body::{AnsweredByProxy, BodyEnd, ObservedBody, ProxyBody};
use crate::event;
use crate::event_sink::EventSink;
use crate::request::context::RequestContext;

/// Why a request with an event got no response at all.
const NO_RESPONSE: &str =
    "no response: the caller closed the connection before the API server answered";

/// Sends one request's response record: when its response body ends
/// ([`ResponseRecorder::attach`]), or, if it is dropped before a response
/// existed, at once with status `0`.
pub(super) struct ResponseRecorder {
    armed: Option<Armed>,
}

/// What a response record needs besides the response.
struct Armed {
    sink: Arc<dyn EventSink>,
    recorders: Vec<SocketAddr>,
    ctx: RequestContext,
    recorded: RecordedEvent,
}

impl Armed {
    fn send(
        self,
        status: u16,
        bytes: u64,
        end: &BodyEnd,
        error: Option<String>,
        decision: Decision,
    ) {
        let digest = self
            .recorded
            .digest
            .and_then(|d| d.lock().ok().and_then(|g| g.clone()));
        let mut record =
            event::response_record(&self.recorded.key, status, &self.ctx, bytes, end, digest);
        if let Some(error) = error {
            record.error = Some(error);
        }
        record.decision = Some(decision);
        self.sink.record_response(&self.recorders, record);
    }
}

impl ResponseRecorder {
    /// Armed for the request `ctx`, whose event was `recorded`, towards `recorders`.
    pub(super) fn arm(
        sink: Arc<dyn EventSink>,
        recorders: Vec<SocketAddr>,
        ctx: RequestContext,
        recorded: RecordedEvent,
    ) -> Self {
        ResponseRecorder {
            armed: Some(Armed {
                sink,
                recorders,
                ctx,
                recorded,
            }),
        }
    }

    /// Watches `resp`'s body and sends the record when it ends (never
    /// delaying the response); a response the proxy wrote itself gives its
    /// reason as the record's error.
    pub(super) fn attach(mut self, resp: Response<ProxyBody>) -> Response<ProxyBody> {
        let Some(armed) = self.armed.take() else {
            return resp;
        };
        let status = resp.status().as_u16();
        let answered = resp
            .extensions()
            .get::<AnsweredByProxy>()
            .map(|a| a.0.clone());
        let decision = resp
            .extensions()
            .get::<Decision>()
            .cloned()
            .unwrap_or(Decision::Forwarded);
        resp.map(move |body| {
            ObservedBody::new(body, move |bytes, end: BodyEnd| {
                armed.send(status, bytes, &end, answered, decision);
            })
            .boxed()
        })
    }
}

impl Drop for ResponseRecorder {
    fn drop(&mut self) {
        if let Some(armed) = self.armed.take() {
            // Dropped while forwarding: the request had gone upstream.
            armed.send(
                0,
                0,
                &BodyEnd::Complete,
                Some(NO_RESPONSE.to_string()),
                Decision::Forwarded,
            );
        }
    }
}
