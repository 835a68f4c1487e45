//! The WebSocket transport of exec/attach (`v4.channel.k8s.io`, `v5.channel.k8s.io`):
//! binary messages whose first byte is the channel (0 stdin, 1 stdout, 2 stderr,
//! 3 error, 4 resize, 255 close-signal in v5).

use std::path::PathBuf;

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use http::{header, HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::{exit_status, parse_resize, ExecRequest};
use crate::containers::process::{self, Input, Output};
use crate::http_util::{empty, Body};
use crate::status::ApiError;

/// Channel numbers.
pub mod channel {
    /// stdin (client → server)
    pub const STDIN: u8 = 0;
    /// stdout
    pub const STDOUT: u8 = 1;
    /// stderr
    pub const STDERR: u8 = 2;
    /// error (the final Status)
    pub const ERROR: u8 = 3;
    /// resize (client → server)
    pub const RESIZE: u8 = 4;
    /// v5 close signal: `[255, channel]`
    pub const CLOSE: u8 = 255;
}

/// Largest WebSocket message accepted from the client.
const MAX_MESSAGE: usize = 4 * 1024 * 1024;

/// How long the reply to a client's Close frame may take to send (a client that stops
/// reading must not hold the session open).
const CLOSE_REPLY_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

fn framed(channel: u8, data: &[u8]) -> Message {
    let mut buf = BytesMut::with_capacity(data.len() + 1);
    buf.put_u8(channel);
    buf.put_slice(data);
    Message::Binary(buf.freeze())
}

/// Answers the upgrade request (101) and runs the session on the upgraded connection.
pub fn upgrade(
    req: Request<Incoming>,
    protocol: &'static str,
    request: ExecRequest,
    sandbox: PathBuf,
) -> Result<Response<Body>, ApiError> {
    let key = req
        .headers()
        .get("sec-websocket-key")
        .ok_or_else(|| ApiError::bad_request("missing Sec-WebSocket-Key"))?;
    let accept = derive_accept_key(key.as_bytes());
    let v5 = protocol.starts_with("v5");
    tokio::spawn(async move {
        match hyper::upgrade::on(req).await {
            Ok(upgraded) => {
                let config = WebSocketConfig::default()
                    .max_message_size(Some(MAX_MESSAGE))
                    .max_frame_size(Some(MAX_MESSAGE));
                let ws = WebSocketStream::from_raw_socket(
                    TokioIo::new(upgraded),
                    Role::Server,
                    Some(config),
                )
                .await;
                run(ws, v5, request, sandbox).await;
            }
            Err(e) => tracing::warn!(error = %e, "websocket upgrade failed"),
        }
    });
    let mut response = Response::new(empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert("sec-websocket-protocol", HeaderValue::from_static(protocol));
    if let Ok(value) = HeaderValue::from_str(&accept) {
        headers.insert("sec-websocket-accept", value);
    }
    Ok(response)
}

async fn run<S>(ws: WebSocketStream<S>, v5: bool, request: ExecRequest, sandbox: PathBuf)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let options = request.options.clone();
    let mut shutdown = request.shutdown.clone();
    let mut session = request.start(&sandbox);
    let (mut sink, mut stream) = ws.split();
    for (open, ch) in [
        (options.stdout, channel::STDOUT),
        (options.stderr, channel::STDERR),
        (true, channel::ERROR),
    ] {
        if open && sink.send(framed(ch, &[])).await.is_err() {
            return;
        }
    }
    let input = session.input.clone();
    let (gone_tx, mut gone_rx) = tokio::sync::oneshot::channel::<()>();
    // The reader holds half of the socket: stop it on every way out so the connection closes.
    let mut reader = AbortOnDrop(tokio::spawn(async move {
        while let Some(Ok(message)) = stream.next().await {
            let data: Bytes = match message {
                Message::Binary(data) => data,
                Message::Close(_) => break,
                _ => continue,
            };
            let Some((&ch, payload)) = data.split_first() else {
                continue;
            };
            let sent = match ch {
                channel::STDIN if !payload.is_empty() => {
                    input
                        .send(Input::Data(Bytes::copy_from_slice(payload)))
                        .await
                }
                channel::RESIZE => match parse_resize(payload) {
                    Some((cols, rows)) => input.send(Input::Resize(cols, rows)).await,
                    None => Ok(()),
                },
                channel::CLOSE if v5 && payload.first() == Some(&channel::STDIN) => {
                    input.send(Input::Eof).await
                }
                _ => Ok(()),
            };
            if sent.is_err() {
                break;
            }
        }
        let _ = gone_tx.send(());
        stream
    }));
    loop {
        tokio::select! {
            chunk = session.output.recv() => match chunk {
                Some((which, data)) => {
                    let ch = if which == Output::Stdout { channel::STDOUT } else { channel::STDERR };
                    if sink.send(framed(ch, &data)).await.is_err() {
                        return;
                    }
                }
                None => break,
            },
            _ = shutdown.changed() => {
                let away = CloseFrame { code: CloseCode::Away, reason: "kube-sim is shutting down".into() };
                let _ = sink.send(Message::Close(Some(away))).await;
                return;
            }
            _ = &mut gone_rx => {
                tracing::debug!(pod = %request.pod, "websocket client went away; ending the session");
                let _ = tokio::time::timeout(CLOSE_REPLY_GRACE, close_after_client(sink, &mut reader.0)).await;
                return;
            }
        }
    }
    let exit = (&mut session.exit)
        .await
        .unwrap_or(process::Exit::Code(137));
    if let process::Exit::StartFailed(message) = &exit {
        let _ = sink
            .send(framed(
                if options.tty {
                    channel::STDOUT
                } else {
                    channel::STDERR
                },
                format!("{message}\n").as_bytes(),
            ))
            .await;
    }
    let status = serde_json::to_vec(&exit_status(&exit)).unwrap_or_default();
    let _ = sink.send(framed(channel::ERROR, &status)).await;
    let _ = sink
        .send(Message::Close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        })))
        .await;
    let _ = sink.flush().await;
    drop(session.kill);
}

/// Ends the connection after the client closed the WebSocket, as kube-apiserver does:
/// completes the closing handshake (RFC 6455 §5.5.1: the reader saw the client's Close
/// and tungstenite queued the reply) and then shuts the transport down (TLS
/// `close_notify`, then FIN). A v4 client has no close signal and closes the WebSocket
/// to end stdin; a client such as kube-rs then waits for the reply and a clean end of
/// the stream, and treats a bare TCP close as an error.
async fn close_after_client<S>(
    mut sink: SplitSink<WebSocketStream<S>, Message>,
    reader: &mut tokio::task::JoinHandle<SplitStream<WebSocketStream<S>>>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let _ = sink.close().await;
    if let Ok(stream) = reader.await {
        if let Ok(mut ws) = sink.reunite(stream) {
            let _ = ws.get_mut().shutdown().await;
        }
    }
}

/// Aborts a task when dropped.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}
