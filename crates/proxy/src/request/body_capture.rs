//! Capturing a request body for the event without buffering more than the cap.
//!
//! Design (documented in the README): read up to `cap + 1` bytes.
//! * If the body ends within the cap, the event carries the whole body and the
//!   same bytes are forwarded.
//! * Otherwise the event carries the first `cap` bytes with
//!   `kubescribe.body.truncated = true`, and the body is forwarded whole as a
//!   stream: the bytes already read, then the rest as it arrives. Its full size
//!   and SHA-256 are only known once it has been forwarded, so they go into the
//!   response record (`requestBodyBytes`, `requestBodySHA256`).
//!
//! Memory per request is bounded by the cap plus one read frame.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use sha2::{Digest, Sha256};

use crate::body::{self, BodyEnd, BodyObserver, BoxError, ObservedBody, PolledFrame, ProxyBody};

/// Size and SHA-256 of a forwarded body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BodyDigest {
    /// Bytes forwarded.
    pub size: u64,
    /// Lower-case hex SHA-256 of those bytes.
    pub sha256: String,
    /// Whether the body reached its end (false: the forward was cut short).
    pub complete: bool,
}

/// Where a streaming body leaves its digest once it has been forwarded.
pub(crate) type DigestSlot = Arc<Mutex<Option<BodyDigest>>>;

/// A captured request body.
pub(crate) enum Captured {
    /// The body ended within the cap: these are all its bytes.
    Whole {
        /// The body.
        body: Bytes,
        /// Request trailers, if the caller sent any.
        trailers: Option<http::HeaderMap>,
    },
    /// The body is longer than the cap.
    Truncated {
        /// Its first `cap` bytes, for the event.
        prefix: Bytes,
        /// The whole body to forward (read bytes first, then the rest).
        forward: ProxyBody,
        /// Filled with size and SHA-256 once `forward` is done.
        digest: DigestSlot,
    },
}

impl std::fmt::Debug for Captured {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Captured::Whole { body, .. } => f.debug_tuple("Whole").field(&body.len()).finish(),
            Captured::Truncated { prefix, .. } => f
                .debug_struct("Truncated")
                .field("prefix", &prefix.len())
                .finish(),
        }
    }
}

impl Captured {
    /// What the event carries: the captured bytes, whether they are only a
    /// prefix, and (then) where the whole body's digest will be left.
    pub(crate) fn for_event(&self) -> (Bytes, bool, Option<DigestSlot>) {
        match self {
            Captured::Whole { body, .. } => (body.clone(), false, None),
            Captured::Truncated { prefix, digest, .. } => {
                (prefix.clone(), true, Some(digest.clone()))
            }
        }
    }

    /// The body to forward upstream (all bytes, trailers kept).
    pub(crate) fn forward_body(self) -> ProxyBody {
        match self {
            Captured::Whole {
                body,
                trailers: None,
            } => body::full(body),
            Captured::Whole { body, trailers } => {
                ReplayBody::new(vec![body], trailers, None).boxed()
            }
            Captured::Truncated { forward, .. } => forward,
        }
    }
}

/// Read `body` until it ends or more than `cap` bytes have arrived.
pub(crate) async fn capture<B>(mut body: B, cap: usize) -> Result<Captured, BoxError>
where
    B: Body<Data = Bytes> + Send + Sync + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    let mut chunks: Vec<Bytes> = Vec::new();
    let mut total = 0usize;
    let mut trailers = None;
    while total <= cap {
        match body.frame().await {
            None => {
                return Ok(Captured::Whole {
                    body: join(&chunks, total),
                    trailers,
                })
            }
            Some(Err(e)) => return Err(e.into()),
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => {
                    total += data.len();
                    chunks.push(data);
                }
                Err(frame) => {
                    if let Ok(t) = frame.into_trailers() {
                        trailers = Some(t);
                    }
                }
            },
        }
    }
    let all = join(&chunks, total);
    let prefix = all.slice(..cap);
    let digest = DigestSlot::default();
    let rest: ProxyBody = body.map_err(Into::into).boxed();
    let replay = ReplayBody::new(vec![all], None, Some(rest)).boxed();
    let forward = ObservedBody::new(replay, Hashing::new(digest.clone()));
    Ok(Captured::Truncated {
        prefix,
        forward: forward.boxed(),
        digest,
    })
}

/// A body that is not recorded (its request is redacted): forwarded as it
/// arrives, never buffered, hashed on the way. Returns the body to forward,
/// where its size and SHA-256 will be once forwarded, and its declared size
/// (`Content-Length`), if any.
pub(crate) fn stream_unrecorded<B>(body: B) -> (ProxyBody, DigestSlot, Option<u64>)
where
    B: Body<Data = Bytes> + Send + Sync + 'static,
    B::Error: Into<BoxError>,
{
    let declared = body.size_hint().exact();
    let digest = DigestSlot::default();
    let forward = ObservedBody::new(
        body.map_err(Into::into).boxed(),
        Hashing::new(digest.clone()),
    );
    (forward.boxed(), digest, declared)
}

/// The digest of a body read whole (`bytes`), for a redacted body that was
/// captured before it was found to name a Secret.
pub(crate) fn digest_of(bytes: &[u8]) -> DigestSlot {
    Arc::new(Mutex::new(Some(BodyDigest {
        size: bytes.len() as u64,
        sha256: hex::encode(Sha256::digest(bytes)),
        complete: true,
    })))
}

fn join(chunks: &[Bytes], total: usize) -> Bytes {
    match chunks {
        [] => Bytes::new(),
        [one] => one.clone(),
        many => {
            let mut b = BytesMut::with_capacity(total);
            for c in many {
                b.extend_from_slice(c);
            }
            b.freeze()
        }
    }
}

/// Replays already-read chunks, then continues with the rest of the body.
struct ReplayBody {
    head: std::collections::VecDeque<Bytes>,
    trailers: Option<http::HeaderMap>,
    rest: Option<ProxyBody>,
}

impl ReplayBody {
    fn new(head: Vec<Bytes>, trailers: Option<http::HeaderMap>, rest: Option<ProxyBody>) -> Self {
        ReplayBody {
            head: head.into(),
            trailers,
            rest,
        }
    }
}

impl Body for ReplayBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> PolledFrame {
        if let Some(b) = self.head.pop_front() {
            return Poll::Ready(Some(Ok(Frame::data(b))));
        }
        if let Some(t) = self.trailers.take() {
            return Poll::Ready(Some(Ok(Frame::trailers(t))));
        }
        match self.rest.as_mut() {
            Some(r) => Pin::new(r).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.head.is_empty()
            && self.trailers.is_none()
            && self.rest.as_ref().is_none_or(|r| r.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        let head: u64 = self.head.iter().map(|b| b.len() as u64).sum();
        match &self.rest {
            None => SizeHint::with_exact(head),
            Some(r) => {
                let h = r.size_hint();
                let mut s = SizeHint::new();
                s.set_lower(h.lower().saturating_add(head));
                if let Some(u) = h.upper() {
                    s.set_upper(u.saturating_add(head));
                }
                s
            }
        }
    }
}

/// Hashes the data frames of a forwarded body; leaves its digest in the
/// slot at the end (or when the forward is cut short).
struct Hashing {
    hasher: Sha256,
    slot: DigestSlot,
}

impl Hashing {
    fn new(slot: DigestSlot) -> Self {
        Hashing {
            hasher: Sha256::new(),
            slot,
        }
    }
}

impl BodyObserver for Hashing {
    fn data(&mut self, data: &Bytes) {
        self.hasher.update(data);
    }

    fn end(self, bytes: u64, end: BodyEnd) {
        let digest = BodyDigest {
            size: bytes,
            sha256: hex::encode(self.hasher.finalize()),
            complete: end.is_complete(),
        };
        if let Ok(mut slot) = self.slot.lock() {
            *slot = Some(digest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, StreamBody};

    fn chunked(chunks: Vec<&'static [u8]>) -> ProxyBody {
        let s = futures_util::stream::iter(
            chunks
                .into_iter()
                .map(|c| Ok::<_, BoxError>(Frame::data(Bytes::from_static(c)))),
        );
        StreamBody::new(s).boxed()
    }

    #[tokio::test]
    async fn body_within_cap_is_whole() {
        let c = capture(chunked(vec![b"hello ", b"world"]), 11).await;
        match c {
            Ok(Captured::Whole { body, .. }) => assert_eq!(&body[..], b"hello world"),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[tokio::test]
    async fn body_over_cap_is_truncated_but_forwarded_whole_with_digest() {
        let c = capture(chunked(vec![b"hello ", b"world", b"!!"]), 8).await;
        let Ok(Captured::Truncated {
            prefix,
            forward,
            digest,
        }) = c
        else {
            panic!("expected truncation");
        };
        assert_eq!(&prefix[..], b"hello wo");
        let all = forward.collect().await.map(|c| c.to_bytes());
        assert_eq!(all.ok().as_deref(), Some(&b"hello world!!"[..]));
        let d = digest.lock().ok().and_then(|d| d.clone());
        assert_eq!(
            d,
            Some(BodyDigest {
                size: 13,
                sha256: hex::encode(Sha256::digest(b"hello world!!")),
                complete: true
            })
        );
    }

    #[tokio::test]
    async fn empty_body_and_exact_cap() {
        assert!(
            matches!(capture(chunked(vec![]), 0).await, Ok(Captured::Whole { body, .. }) if body.is_empty())
        );
        assert!(
            matches!(capture(chunked(vec![b"abcd"]), 4).await, Ok(Captured::Whole { body, .. }) if body.len() == 4)
        );
        assert!(matches!(
            capture(chunked(vec![b"abcde"]), 4).await,
            Ok(Captured::Truncated { .. })
        ));
    }

    #[tokio::test]
    async fn unrecorded_body_is_streamed_whole_with_digest() {
        let (forward, digest, declared) = stream_unrecorded(chunked(vec![b"top ", b"secret"]));
        assert_eq!(declared, None);
        let all = forward.collect().await.map(|c| c.to_bytes());
        assert_eq!(all.ok().as_deref(), Some(&b"top secret"[..]));
        let d = digest.lock().ok().and_then(|d| d.clone());
        assert_eq!(
            d,
            digest_of(b"top secret").lock().ok().and_then(|d| d.clone())
        );
        let (_, _, declared) = stream_unrecorded(body::full(Bytes::from_static(b"12345")));
        assert_eq!(declared, Some(5));
    }

    #[tokio::test]
    async fn dropped_forward_reports_incomplete() {
        let Ok(Captured::Truncated {
            forward, digest, ..
        }) = capture(chunked(vec![b"0123456789", b"abc"]), 4).await
        else {
            panic!("expected truncation");
        };
        drop(forward);
        let d = digest.lock().ok().and_then(|d| d.clone());
        assert_eq!(d.map(|d| d.complete), Some(false));
    }
}
