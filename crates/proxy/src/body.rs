//! The body type on both sides of the proxy ([`ProxyBody`]), the proxy's own
//! plain-text answers, and [`ObservedBody`], which watches a body stream by
//! (response records count response bytes with it, truncated request bodies
//! are hashed with it).

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

/// A response the proxy writes itself (a refusal or an error): Go's
/// `http.Error` shape, as [`Refusal::into_response`] decides it.
pub(crate) fn refusal_response(refusal: Refusal) -> Response<ProxyBody> {
    refusal.into_response().map(|text| full(Bytes::from(text)))
}

/// What an [`ObservedBody`] tells as its frames pass.
pub(crate) trait BodyObserver: Send + Unpin + 'static {
    /// Sees each data frame.
    fn data(&mut self, _data: &Bytes) {}
    /// Called exactly once, with the data bytes that passed: at the end of
    /// the stream (`complete`), on an error, or when the body is dropped.
    fn end(self, bytes: u64, complete: bool);
}

impl<F: FnOnce(u64, bool) + Send + Unpin + 'static> BodyObserver for F {
    fn end(self, bytes: u64, complete: bool) {
        self(bytes, complete)
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

    fn finish(&mut self, complete: bool) {
        if let Some(observer) = self.observer.take() {
            observer.end(self.bytes, complete);
        }
    }
}

impl<O: BodyObserver> Drop for ObservedBody<O> {
    fn drop(&mut self) {
        // hyper stops polling a body whose length is known once it is written,
        // so "dropped at its end" counts as complete.
        let complete = self.inner.is_end_stream();
        self.finish(complete);
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
                    this.finish(true);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.finish(false);
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                this.finish(true);
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
