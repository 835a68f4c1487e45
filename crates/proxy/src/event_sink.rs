//! The recorder transport as the pipeline sees it: the two things the proxy
//! asks of a recorder transport, behind a trait so the data path can be
//! tested with a fake and the recorder client's API can change in one place.

use std::net::SocketAddr;

use async_trait::async_trait;
use event_model::{Event, ResponseRecord};
use recorder_client::{FailurePolicy, Outcome};

/// Where API events and response records go.
#[async_trait]
pub trait EventSink: Send + Sync + 'static {
    /// Deliver a request event to `recorders` (in order, first success wins)
    /// and say whether the request may be forwarded. `url` is the request
    /// target as received, for refusal messages.
    async fn record_event(
        &self,
        recorders: &[SocketAddr],
        policy: FailurePolicy,
        event: &Event,
        url: &str,
    ) -> Outcome;

    /// Queue a response record (fire and forget; never blocks the response).
    fn record_response(&self, recorders: &[SocketAddr], record: ResponseRecord);
}

#[async_trait]
impl EventSink for recorder_client::RecorderClient {
    async fn record_event(
        &self,
        recorders: &[SocketAddr],
        policy: FailurePolicy,
        event: &Event,
        url: &str,
    ) -> Outcome {
        recorder_client::RecorderClient::record_event(self, recorders, policy, event, url).await
    }

    fn record_response(&self, recorders: &[SocketAddr], record: ResponseRecord) {
        recorder_client::RecorderClient::send_response_record(self, recorders, &record)
    }
}
