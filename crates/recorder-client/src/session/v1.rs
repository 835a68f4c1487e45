//! Legacy `POST /record` over HTTP/1.1 with `Expect: 100-continue`, for
//! recorders without `/v2/record`. The upload counts as connected only once
//! the recorder's `100 Continue` arrives.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use http::{header, Method, Request, StatusCode};
use http_body_util::BodyExt;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{timeout, timeout_at, Instant};

use super::dial::dial;
use super::upload::{
    conclude, ChannelBody, SessionProtocol, SessionUpload, Shared, UploadStatus, UploadSummary,
};
use crate::cause::Cause;
use crate::config::SessionOptions;
use crate::error::{SessionAttemptError, UploadError};

/// Connects over HTTP/1.1 and waits for `100 Continue`.
pub(crate) async fn start(
    addr: SocketAddr,
    opts: &SessionOptions,
    deadline: Instant,
) -> Result<SessionUpload, SessionAttemptError> {
    let tcp = dial(addr, opts, deadline).await?;
    let until = deadline.min(Instant::now() + opts.response_timeout);
    let (mut send, conn) = timeout_at(until, http1::handshake::<_, ChannelBody>(TokioIo::new(tcp)))
        .await
        .map_err(|_| SessionAttemptError::HandshakeTimeout)?
        .map_err(|e| SessionAttemptError::Http(Cause::new(e)))?;
    let conn = tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "HTTP/1.1 connection to recorder ended");
        }
    });
    let capacity = opts.channel_capacity.max(1);
    let (tx, rx) = mpsc::channel(capacity);
    let shared = Arc::new(Shared::default());
    let mut req = Request::builder()
        .method(Method::POST)
        .uri("/record")
        .header(header::HOST, addr.to_string())
        .header(header::EXPECT, "100-continue")
        .header(header::TRANSFER_ENCODING, "chunked")
        .body(ChannelBody::new(rx, shared.clone()))
        .map_err(|e| SessionAttemptError::Request(Cause::new(e)))?;
    let (continue_tx, continue_rx) = oneshot::channel();
    let continue_tx = Mutex::new(Some(continue_tx));
    hyper::ext::on_informational(&mut req, move |res| {
        if res.status() == StatusCode::CONTINUE {
            if let Some(tx) = continue_tx.lock().unwrap_or_else(|p| p.into_inner()).take() {
                let _ = tx.send(());
            }
        }
    });
    let mut response = tokio::spawn(async move {
        let resp = send.send_request(req).await;
        // Keep the sender (and so the connection) alive until the answer.
        drop(send);
        resp
    });
    tokio::select! {
        _ = continue_rx => {}
        early = &mut response => {
            conn.abort();
            return Err(match early {
                Ok(Ok(resp)) if resp.status() == StatusCode::OK => SessionAttemptError::UnexpectedEof,
                Ok(Ok(resp)) => SessionAttemptError::Status(resp.status()),
                Ok(Err(e)) => SessionAttemptError::Http(Cause::new(e)),
                Err(e) => SessionAttemptError::Http(Cause::new(e)),
            });
        }
        _ = tokio::time::sleep_until(until) => {
            response.abort();
            conn.abort();
            return Err(SessionAttemptError::NoContinue);
        }
    }
    let (status_tx, status_rx) = watch::channel(UploadStatus::Running);
    let window = opts.ack_window;
    let metrics = opts.metrics.clone();
    let task_shared = shared.clone();
    let task = tokio::spawn(async move {
        let result = async {
            let resp = match response.await {
                Ok(Ok(resp)) => resp,
                Ok(Err(e)) => return Err(UploadError::Transport(Cause::new(e))),
                Err(e) => return Err(UploadError::Transport(Cause::new(e))),
            };
            if resp.status() != StatusCode::OK {
                return Err(UploadError::Status(resp.status()));
            }
            if !task_shared.finishing.load(Ordering::Acquire) {
                return Err(UploadError::EndedEarly);
            }
            // Drain the (small) body, bounded in time and size.
            let _ = timeout(
                window,
                http_body_util::Limited::new(resp.into_body(), 64 << 10).collect(),
            )
            .await;
            Ok(UploadSummary {
                recorder: addr,
                protocol: SessionProtocol::V1,
                bytes_sent: task_shared.sent.load(Ordering::Relaxed),
                bytes_acked: None,
            })
        }
        .await;
        conn.abort();
        conclude(result, &status_tx, metrics.as_ref(), addr)
    });
    Ok(SessionUpload::new(
        addr,
        SessionProtocol::V1,
        tx,
        capacity,
        shared,
        status_rx,
        task,
    ))
}
