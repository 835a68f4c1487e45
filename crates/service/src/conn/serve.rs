//! Serving HTTP on a set-up [`Connection`] within its limits: the first request admits the
//! connection (or refuses it over the serving limits with `503`/`429`), requests in flight — streaming
//! response bodies included — keep it alive, and a connection with nothing in flight for the idle
//! timeout, or none at all by the set-up deadline, is closed.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, Version};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming as IncomingBody;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use tokio::sync::{watch, Notify};
use tokio::time::Instant;

use super::listener::{ConnInfo, Connection, PendingSlot, ServingSlot, Shared};
use super::metrics::Refusal;

/// The error type of the bodies served.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How serving a connection ended, when not cleanly.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// HTTP-level failure (malformed request, peer reset, …).
    #[error(transparent)]
    Http(BoxError),
}

/// A handler's body with its error boxed (one concrete type for hyper to serve).
type HandlerBody = http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>;

pin_project_lite::pin_project! {
    /// A response body as served: the handler's, which keeps the connection counted as busy until it
    /// is finished, or the listener's own refusal.
    pub struct ServedBody {
        #[pin]
        inner: Served,
    }
}

pin_project_lite::pin_project! {
    #[project = ServedProj]
    enum Served {
        Handler {
            #[pin]
            body: HandlerBody,
            busy: Busy,
        },
        Refusal {
            #[pin]
            body: Full<Bytes>,
        },
    }
}

impl ServedBody {
    fn handler(body: HandlerBody, busy: Busy) -> Self {
        Self {
            inner: Served::Handler { body, busy },
        }
    }

    fn refusal(text: String) -> Self {
        Self {
            inner: Served::Refusal {
                body: Full::new(Bytes::from(text)),
            },
        }
    }
}

impl Body for ServedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.project().inner.project() {
            ServedProj::Handler { body, .. } => body.poll_frame(cx),
            ServedProj::Refusal { body } => body
                .poll_frame(cx)
                .map_err(|never: Infallible| match never {}),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Served::Handler { body, .. } => body.is_end_stream(),
            Served::Refusal { body } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Served::Handler { body, .. } => body.size_hint(),
            Served::Refusal { body } => body.size_hint(),
        }
    }
}

/// One request in flight on a connection, from its head to the end of its response body.
pub struct Busy(Arc<Activity>);

impl std::fmt::Debug for Busy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Busy")
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.0.touch();
    }
}

/// What the watchdog knows about a connection's requests.
struct Activity {
    in_flight: AtomicUsize,
    state: Mutex<State>,
    changed: Notify,
}

struct State {
    admission: Admission,
    last_change: Instant,
}

enum Admission {
    /// No request yet.
    Waiting,
    /// Serving, holding its place among the serving connections.
    Admitted(#[allow(dead_code)] ServingSlot),
    /// Refused over a limit; the connection closes after the refusal.
    Refused,
}

impl Activity {
    fn touch(&self) {
        if let Ok(mut state) = self.state.lock() {
            state.last_change = Instant::now();
        }
        self.changed.notify_one();
    }
}

/// The connection's handler, counting requests in flight and admitting the connection on its first.
struct Tracked<S> {
    inner: S,
    activity: Arc<Activity>,
    shared: Arc<Shared>,
    info: ConnInfo,
}

impl<S, B> hyper::service::Service<Request<IncomingBody>> for Tracked<S>
where
    S: hyper::service::Service<Request<IncomingBody>, Response = Response<B>, Error = Infallible>,
    S::Future: Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    BoxError: From<B::Error>,
{
    type Response = Response<ServedBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn call(&self, req: Request<IncomingBody>) -> Self::Future {
        if let Err(refusal) = self.admit() {
            let response = self.refusal(refusal, req.version());
            return Box::pin(async move { Ok(response) });
        }
        self.activity.in_flight.fetch_add(1, Ordering::AcqRel);
        self.activity.touch();
        let busy = Busy(self.activity.clone());
        let future = self.inner.call(req);
        Box::pin(async move {
            let response = future.await?;
            Ok(response.map(|body| {
                ServedBody::handler(BodyExt::map_err(body, BoxError::from).boxed_unsync(), busy)
            }))
        })
    }
}

impl<S> Tracked<S> {
    /// Admits the connection on its first request: takes a serving place within the limits.
    fn admit(&self) -> Result<(), Refusal> {
        let mut state = match self.activity.state.lock() {
            Ok(state) => state,
            Err(poisoned) => poisoned.into_inner(),
        };
        match state.admission {
            Admission::Admitted(_) => Ok(()),
            Admission::Refused => Err(Refusal::TooMany),
            Admission::Waiting => match ServingSlot::take(&self.shared, self.info.peer.ip()) {
                Ok(slot) => {
                    state.admission = Admission::Admitted(slot);
                    drop(state);
                    self.activity.touch();
                    Ok(())
                }
                Err(refusal) => {
                    state.admission = Admission::Refused;
                    drop(state);
                    self.shared.metrics.closed(self.shared.name, refusal);
                    tracing::warn!(
                        listener = self.shared.name,
                        peer = %self.info.peer,
                        limit = refusal.as_str(),
                        "connection refused: over the connection limit"
                    );
                    self.activity.touch();
                    Err(refusal)
                }
            },
        }
    }

    fn refusal(&self, refusal: Refusal, version: Version) -> Response<ServedBody> {
        let limits = &self.shared.limits;
        let (status, text) = match refusal {
            Refusal::TooManyFromSource => (
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "too many connections from {} (limit {}); close idle connections and retry\n",
                    self.info.peer.ip(),
                    limits.max_connections_per_source
                ),
            ),
            _ => (
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "too many connections to this server (limit {}); retry later\n",
                    limits.max_connections
                ),
            ),
        };
        let mut response = Response::new(ServedBody::refusal(text));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        headers.insert(http::header::RETRY_AFTER, HeaderValue::from_static("1"));
        if version < Version::HTTP_2 {
            headers.insert(http::header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

impl<S: Clone> Clone for Tracked<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            activity: self.activity.clone(),
            shared: self.shared.clone(),
            info: self.info,
        }
    }
}

/// What the watchdog decides next.
enum Next {
    /// Keep serving; check again by then (None: when something changes).
    Wait(Option<Instant>),
    /// Close: refused over a limit (already counted), or idle for the idle timeout.
    Close(Option<Refusal>),
}

/// Watches one connection: its set-up deadline, its requests in flight, its idle time.
struct Watchdog {
    activity: Arc<Activity>,
    shared: Arc<Shared>,
    info: ConnInfo,
    deadline: Instant,
    pending: PendingSlot,
}

impl Watchdog {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.activity
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn waiting(&self) -> bool {
        matches!(self.state().admission, Admission::Waiting)
    }

    fn next(&self) -> Next {
        let state = self.state();
        match state.admission {
            Admission::Waiting => Next::Wait(Some(self.deadline)),
            Admission::Refused => Next::Close(None),
            Admission::Admitted(_) if self.activity.in_flight.load(Ordering::Acquire) > 0 => {
                Next::Wait(None)
            }
            Admission::Admitted(_) => {
                let idle_until = state.last_change + self.shared.limits.idle_timeout;
                if Instant::now() >= idle_until {
                    Next::Close(Some(Refusal::Idle))
                } else {
                    Next::Wait(Some(idle_until))
                }
            }
        }
    }

    fn closed(&self, why: Refusal) {
        self.shared.metrics.closed(self.shared.name, why);
        tracing::debug!(
            listener = self.shared.name,
            peer = %self.info.peer,
            reason = why.as_str(),
            "connection closed by the listener"
        );
    }

    /// Drives `conn` to its end, closing it (through `graceful`, or by dropping it) as the limits say.
    async fn drive<C, G>(
        mut self,
        conn: C,
        graceful: G,
        mut shutdown: Option<watch::Receiver<bool>>,
    ) -> Result<(), ServeError>
    where
        C: Future<Output = Result<(), BoxError>>,
        G: Fn(Pin<&mut C>),
    {
        let mut conn = std::pin::pin!(conn);
        loop {
            let next = self.next();
            if !self.waiting() {
                // Admitted or refused: no longer in the set-up pool, no longer evictable.
                self.pending.leave_pool();
            }
            let until = match next {
                Next::Close(reason) => {
                    if let Some(reason) = reason {
                        self.closed(reason);
                    }
                    graceful(conn.as_mut());
                    // Let a refusal or a GOAWAY be written, within the set-up budget; then drop.
                    return match tokio::time::timeout(self.shared.limits.handshake_timeout, conn)
                        .await
                    {
                        Ok(done) => done.map_err(ServeError::Http),
                        Err(_) => Ok(()),
                    };
                }
                Next::Wait(until) => until,
            };
            let waiting = self.waiting();
            tokio::select! {
                done = conn.as_mut() => return done.map_err(ServeError::Http),
                _ = self.pending.evicted(), if waiting => {
                    self.closed(Refusal::Evicted);
                    return Ok(());
                }
                _ = self.activity.changed.notified() => {}
                _ = sleep_until(until) => {
                    if self.waiting() && Instant::now() >= self.deadline {
                        self.closed(Refusal::HandshakeTimeout);
                        return Ok(());
                    }
                }
                _ = shutdown_requested(&mut shutdown) => {
                    graceful(conn.as_mut());
                    return conn.await.map_err(ServeError::Http);
                }
            }
        }
    }
}

async fn sleep_until(until: Option<Instant>) {
    match until {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Completes when `shutdown` turns true; never without a receiver or once its sender is gone.
async fn shutdown_requested(shutdown: &mut Option<watch::Receiver<bool>>) {
    match shutdown {
        Some(rx) => {
            if rx.wait_for(|stop| *stop).await.is_err() {
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending().await,
    }
}

impl Connection {
    /// Serves HTTP/1.1 and HTTP/2 (as `builder` allows) with `service` until the connection ends,
    /// the listener closes it (set-up deadline, idle timeout, eviction from the set-up pool, refusal
    /// over a limit), or `shutdown` turns true (then gracefully: requests in flight finish). With
    /// `upgrades`, HTTP/1.1 upgrades (exec and attach streams) are handed to the service; an upgraded
    /// stream is no longer this connection's.
    ///
    /// The future is boxed here, where its bounds are known, so that spawning it needs no proof
    /// of `Send` from the caller (which rustc cannot always give for these bounds).
    pub fn serve<S, B>(
        self,
        builder: Arc<Builder<TokioExecutor>>,
        service: S,
        upgrades: bool,
        shutdown: Option<watch::Receiver<bool>>,
    ) -> Pin<Box<dyn Future<Output = Result<(), ServeError>> + Send>>
    where
        S: hyper::service::Service<
                Request<IncomingBody>,
                Response = Response<B>,
                Error = Infallible,
            > + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
        B: Body<Data = Bytes> + Send + 'static,
        BoxError: From<B::Error>,
    {
        Box::pin(async move {
            let Connection {
                io,
                info,
                deadline,
                pending,
            } = self;
            let shared = pending.shared().clone();
            let activity = Arc::new(Activity {
                in_flight: AtomicUsize::new(0),
                state: Mutex::new(State {
                    admission: Admission::Waiting,
                    last_change: Instant::now(),
                }),
                changed: Notify::new(),
            });
            let tracked = Tracked {
                inner: service,
                activity: activity.clone(),
                shared: shared.clone(),
                info,
            };
            let watchdog = Watchdog {
                activity,
                shared,
                info,
                deadline,
                pending,
            };
            let io = TokioIo::new(io);
            if upgrades {
                let conn = builder.serve_connection_with_upgrades(io, tracked);
                watchdog
                    .drive(conn, |c| c.graceful_shutdown(), shutdown)
                    .await
            } else {
                let conn = builder.serve_connection(io, tracked);
                watchdog
                    .drive(conn, |c| c.graceful_shutdown(), shutdown)
                    .await
            }
        })
    }
}
