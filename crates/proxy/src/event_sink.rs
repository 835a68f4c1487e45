//! The recorder transport as the pipeline sees it: the things the proxy
//! asks of a recorder transport, behind a trait so the data path can be
//! tested with a fake and the recorder client's API can change in one place.

use std::net::SocketAddr;

use async_trait::async_trait;
use event_model::{Event, ResponseRecord};
use recorder_client::{FailurePolicy, Outcome};

/// Where API events and response records go.
#[async_trait]
pub trait EventSink: Send + Sync + 'static {
    /// Deliver a request event to the recorders `to` (in order, first
    /// success wins) and say, under `policy`, whether the request may be
    /// forwarded. Refusal messages name the event's `request.path` (the
    /// request target as received).
    async fn record_event(
        &self,
        to: &[SocketAddr],
        policy: FailurePolicy,
        event: &Event,
    ) -> Outcome;

    /// Queue a response record (fire and forget; never blocks the response).
    fn record_response(&self, recorders: &[SocketAddr], record: ResponseRecord);

    /// Queue the records of a request refused after [`record_event`](Self::record_event)
    /// could not deliver its event: the event marked with the refusal
    /// (`kubescribe.decision`) and its response record (fire and forget).
    /// The default sends only the response record.
    fn record_refused(&self, recorders: &[SocketAddr], event: Event, record: ResponseRecord) {
        let _ = event;
        self.record_response(recorders, record);
    }
}

#[async_trait]
impl EventSink for recorder_client::RecorderClient {
    async fn record_event(
        &self,
        to: &[SocketAddr],
        policy: FailurePolicy,
        event: &Event,
    ) -> Outcome {
        let url = &event.request.path;
        recorder_client::RecorderClient::record_event(self, to, policy, event, url).await
    }

    fn record_response(&self, recorders: &[SocketAddr], record: ResponseRecord) {
        recorder_client::RecorderClient::send_response_record(self, recorders, &record)
    }

    fn record_refused(&self, recorders: &[SocketAddr], event: Event, record: ResponseRecord) {
        recorder_client::RecorderClient::send_refused_event(self, recorders, &event);
        recorder_client::RecorderClient::send_response_record(self, recorders, &record);
    }
}
