//! The body type on both sides of the proxy ([`ProxyBody`]), the proxy's own
//! plain-text answers (marked [`AnsweredByProxy`]), and [`ObservedBody`],
//! which watches a body stream by and says how it ended ([`BodyEnd`]):
//! response records count response bytes with it, truncated request bodies
//! are hashed with it.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::Response;
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use recorder_client::Refusal;

/// Boxed error of proxied bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body type used on both sides of the proxy.
pub(crate) type ProxyBody = BoxBody<Bytes, BoxError>;

/// What polling one of the proxy's bodies for its next frame gives.
pub(crate) type PolledFrame = Poll<Option<Result<Frame<Bytes>, BoxError>>>;

/// A body holding `bytes`.
pub(crate) fn full(bytes: Bytes) -> ProxyBody {
    Full::new(bytes).map_err(|e| match e {}).boxed()
}

/// An empty body.
pub(crate) fn empty() -> ProxyBody {
    Empty::new().map_err(|e| match e {}).boxed()
}

/// Marks a response the proxy wrote itself instead of relaying the API
/// server's (an extension of the response, never sent): why, in the words
/// of its body, so the response record can say it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AnsweredByProxy(pub(crate) String);

/// A response the proxy writes itself (a refusal or an error): Go's
/// `http.Error` shape, as [`Refusal::into_response`] decides it, marked
/// [`AnsweredByProxy`].
pub(crate) fn refusal_response(refusal: Refusal) -> Response<ProxyBody> {
    let reason = AnsweredByProxy(refusal.message.clone());
    let mut response = refusal.into_response().map(|text| full(Bytes::from(text)));
    response.extensions_mut().insert(reason);
    response
}

/// An error and its sources on one line (hyper names only an error's kind;
/// the cause, e.g. "Connection refused", is in its sources).
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// How a body an [`ObservedBody`] watched ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BodyEnd {
    /// Its end was passed on: the last frame, or all of its known length.
    Complete,
    /// The body it relays failed (for a response: the API server's stream
    /// broke off), with the error and its sources.
    Failed(String),
    /// It was dropped before its end: whoever read it (for a response, the
    /// caller's connection) went away.
    Dropped,
}

impl BodyEnd {
    /// Whether the whole body passed.
    pub(crate) fn is_complete(&self) -> bool {
        matches!(self, BodyEnd::Complete)
    }
}

/// What an [`ObservedBody`] tells as its frames pass.
pub(crate) trait BodyObserver: Send + Unpin + 'static {
    /// Sees each data frame.
    fn data(&mut self, _data: &Bytes) {}
    /// Called exactly once, with the data bytes that passed and how the
    /// body ended: at its end, on an error, or when it is dropped.
    fn end(self, bytes: u64, end: BodyEnd);
}

impl<F: FnOnce(u64, BodyEnd) + Send + Unpin + 'static> BodyObserver for F {
    fn end(self, bytes: u64, end: BodyEnd) {
        self(bytes, end)
    }
}

/// A body that passes `inner` through unchanged, counting data bytes and
/// telling its observer about each frame and, once, about the end.
pub(crate) struct ObservedBody<O: BodyObserver> {
    inner: ProxyBody,
    bytes: u64,
    observer: Option<O>,
}

impl<O: BodyObserver> ObservedBody<O> {
    /// Wrap `inner`.
    pub(crate) fn new(inner: ProxyBody, observer: O) -> Self {
        ObservedBody {
            inner,
            bytes: 0,
            observer: Some(observer),
        }
    }

    fn finish(&mut self, end: BodyEnd) {
        if let Some(observer) = self.observer.take() {
            observer.end(self.bytes, end);
        }
    }
}

impl<O: BodyObserver> Drop for ObservedBody<O> {
    fn drop(&mut self) {
        // hyper stops polling a body whose length is known once it is written,
        // so "dropped at its end" counts as complete.
        let end = if self.inner.is_end_stream() {
            BodyEnd::Complete
        } else {
            BodyEnd::Dropped
        };
        self.finish(end);
    }
}

impl<O: BodyObserver> Body for ObservedBody<O> {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> PolledFrame {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.bytes += data.len() as u64;
                    if let Some(observer) = this.observer.as_mut() {
                        observer.data(data);
                    }
                }
                if this.inner.is_end_stream() {
                    this.finish(BodyEnd::Complete);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.finish(BodyEnd::Failed(error_chain(e.as_ref())));
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                this.finish(BodyEnd::Complete);
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
