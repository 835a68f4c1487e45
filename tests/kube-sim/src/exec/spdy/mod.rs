//! The SPDY/3.1 transport of exec/attach (what kubectl ≤ 1.29 speaks, and newer
//! kubectl's fallback): the client opens one stream per channel, named by the
//! `streamtype` header (`error`, `stdin`, `stdout`, `stderr`, `resize`); the server
//! replies to each, then copies process output onto them and the final `Status`
//! onto the error stream.

pub mod frame;
pub mod headers;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{header, HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use super::{exit_status, parse_resize, ExecRequest};
use crate::containers::process::{self, Input, Output, Session};
use crate::http_util::{empty, Body};
use crate::status::ApiError;
use frame::{Frame, FLAG_FIN};
use headers::{HeaderDecoder, HeaderEncoder};

/// How long the client has to open all its streams (kubelet uses 30 s).
const STREAM_CREATION_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest DATA frame the server sends.
const MAX_DATA: usize = 32 * 1024;
/// Most stdin bytes buffered before the session starts.
const MAX_PENDING_INPUT: usize = 1024 * 1024;
/// Largest buffered resize message.
const MAX_RESIZE_BUFFER: usize = 64 * 1024;

/// The channel a SPDY stream carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StreamType {
    /// The final Status.
    Error,
    /// stdin
    Stdin,
    /// stdout
    Stdout,
    /// stderr
    Stderr,
    /// Terminal sizes.
    Resize,
}

impl StreamType {
    /// From the `streamtype` header value.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "error" => Some(Self::Error),
            "stdin" => Some(Self::Stdin),
            "stdout" => Some(Self::Stdout),
            "stderr" => Some(Self::Stderr),
            "resize" => Some(Self::Resize),
            _ => None,
        }
    }
}

/// Answers the upgrade request (101) and runs the session on the upgraded connection.
pub fn upgrade(
    req: Request<Incoming>,
    protocol: &'static str,
    request: ExecRequest,
    sandbox: PathBuf,
) -> Result<Response<Body>, ApiError> {
    tokio::spawn(async move {
        match hyper::upgrade::on(req).await {
            Ok(upgraded) => {
                if let Err(e) = run(TokioIo::new(upgraded), request, sandbox).await {
                    tracing::info!(error = %e, "SPDY exec session ended with an error");
                }
            }
            Err(e) => tracing::warn!(error = %e, "SPDY upgrade failed"),
        }
    });
    let mut response = Response::new(empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static("SPDY/3.1"));
    headers.insert(
        "x-stream-protocol-version",
        HeaderValue::from_static(protocol),
    );
    Ok(response)
}

/// What the writer task sends.
enum Outgoing {
    /// A frame without a header block.
    Frame(Frame),
    /// SYN_REPLY with an empty header block.
    Reply(u32),
}

/// Session errors.
#[derive(Debug, thiserror::Error)]
pub enum SpdyError {
    /// Bad frame from the client.
    #[error(transparent)]
    Frame(#[from] frame::FrameError),
    /// Bad header block from the client.
    #[error(transparent)]
    Headers(#[from] headers::HeaderError),
    /// Connection I/O.
    #[error("SPDY connection I/O: {0}")]
    Io(#[from] std::io::Error),
    /// The client did not open its streams in time.
    #[error("timed out waiting for the client to create its streams")]
    StreamTimeout,
}

async fn writer<W: AsyncWrite + Unpin>(mut io: W, mut rx: mpsc::Receiver<Outgoing>) {
    let mut encoder = HeaderEncoder::new();
    while let Some(outgoing) = rx.recv().await {
        let frame = match outgoing {
            Outgoing::Frame(frame) => frame,
            Outgoing::Reply(stream_id) => match encoder.encode(&[]) {
                Ok(block) => Frame::SynReply {
                    stream_id,
                    flags: 0,
                    header_block: Bytes::from(block),
                },
                Err(e) => {
                    tracing::warn!(error = %e, "cannot compress SPDY headers");
                    return;
                }
            },
        };
        if io.write_all(&frame::serialize(&frame)).await.is_err() {
            return;
        }
    }
    let _ = io.flush().await;
    let _ = io.shutdown().await;
}

struct Connection {
    out: mpsc::Sender<Outgoing>,
    streams: HashMap<StreamType, u32>,
    decoder: HeaderDecoder,
    resize_buffer: Vec<u8>,
    input: Option<mpsc::Sender<Input>>,
    pending_input: Vec<Input>,
    last_stream: u32,
}

impl Connection {
    async fn send(&self, outgoing: Outgoing) {
        let _ = self.out.send(outgoing).await;
    }

    async fn feed(&mut self, message: Input) {
        match &self.input {
            Some(input) => {
                let _ = input.send(message).await;
            }
            None => {
                // Input before every stream is open waits, up to a bound.
                let buffered: usize = self
                    .pending_input
                    .iter()
                    .map(|i| if let Input::Data(d) = i { d.len() } else { 0 })
                    .sum();
                if buffered < MAX_PENDING_INPUT {
                    self.pending_input.push(message);
                }
            }
        }
    }

    fn stream_type(&self, stream_id: u32) -> Option<StreamType> {
        self.streams
            .iter()
            .find(|(_, id)| **id == stream_id)
            .map(|(t, _)| *t)
    }

    /// Handles one client frame; `Ok(false)` when the client said GOAWAY.
    async fn handle(&mut self, frame: Frame) -> Result<bool, SpdyError> {
        match frame {
            Frame::SynStream {
                stream_id,
                header_block,
                ..
            } => {
                let headers = self.decoder.decode(&header_block)?;
                self.last_stream = self.last_stream.max(stream_id);
                let kind = headers
                    .iter()
                    .find(|(n, _)| n == "streamtype")
                    .and_then(|(_, v)| StreamType::parse(v));
                match kind {
                    Some(kind) => {
                        self.streams.insert(kind, stream_id);
                        self.send(Outgoing::Reply(stream_id)).await;
                    }
                    None => {
                        self.send(Outgoing::Frame(Frame::RstStream {
                            stream_id,
                            status: 1,
                        }))
                        .await
                    }
                }
            }
            Frame::Headers { header_block, .. } => {
                // Keep the shared zlib stream in step even though the headers are unused.
                self.decoder.decode(&header_block)?;
            }
            Frame::SynReply { header_block, .. } if !header_block.is_empty() => {
                self.decoder.decode(&header_block)?;
            }
            Frame::Data {
                stream_id,
                flags,
                data,
            } => match self.stream_type(stream_id) {
                Some(StreamType::Stdin) => {
                    if !data.is_empty() {
                        self.feed(Input::Data(data)).await;
                    }
                    if flags & FLAG_FIN != 0 {
                        self.feed(Input::Eof).await;
                    }
                }
                Some(StreamType::Resize) => {
                    self.resize_buffer.extend_from_slice(&data);
                    while let Some(end) = self.resize_buffer.iter().position(|b| *b == b'\n') {
                        let line: Vec<u8> = self.resize_buffer.drain(..=end).collect();
                        if let Some((cols, rows)) = parse_resize(&line) {
                            self.feed(Input::Resize(cols, rows)).await;
                        }
                    }
                    if let Some((cols, rows)) = parse_resize(&self.resize_buffer) {
                        self.resize_buffer.clear();
                        self.feed(Input::Resize(cols, rows)).await;
                    }
                    if self.resize_buffer.len() > MAX_RESIZE_BUFFER {
                        self.resize_buffer.clear();
                    }
                }
                _ => {}
            },
            Frame::RstStream { stream_id, .. } => {
                if self.stream_type(stream_id) == Some(StreamType::Stdin) {
                    self.feed(Input::Eof).await;
                }
            }
            Frame::Ping { id } => self.send(Outgoing::Frame(Frame::Ping { id })).await,
            Frame::GoAway { .. } => return Ok(false),
            Frame::SynReply { .. }
            | Frame::Settings { .. }
            | Frame::WindowUpdate { .. }
            | Frame::Unknown { .. } => {}
        }
        Ok(true)
    }

    async fn data(&self, kind: StreamType, data: &[u8], fin: bool) {
        let Some(&stream_id) = self.streams.get(&kind) else {
            return;
        };
        for chunk in data.chunks(MAX_DATA) {
            self.send(Outgoing::Frame(Frame::Data {
                stream_id,
                flags: 0,
                data: Bytes::copy_from_slice(chunk),
            }))
            .await;
        }
        if fin {
            self.send(Outgoing::Frame(Frame::Data {
                stream_id,
                flags: FLAG_FIN,
                data: Bytes::new(),
            }))
            .await;
        }
    }
}

fn expected_streams(request: &ExecRequest) -> Vec<StreamType> {
    let o = &request.options;
    let mut expected = vec![StreamType::Error];
    for (wanted, kind) in [
        (o.stdin, StreamType::Stdin),
        (o.stdout, StreamType::Stdout),
        (o.stderr, StreamType::Stderr),
        (o.tty, StreamType::Resize),
    ] {
        if wanted {
            expected.push(kind);
        }
    }
    expected
}

/// Reads frames from `buf` after more bytes arrived; `Ok(false)` on GOAWAY.
async fn drain_frames(conn: &mut Connection, buf: &mut BytesMut) -> Result<bool, SpdyError> {
    while let Some((frame, used)) = frame::parse(buf)? {
        let _ = buf.split_to(used);
        if !conn.handle(frame).await? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Runs one SPDY exec/attach session on an upgraded connection.
pub async fn run<S>(io: S, request: ExecRequest, sandbox: PathBuf) -> Result<(), SpdyError>
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut reader, write_half) = tokio::io::split(io);
    let (out_tx, out_rx) = mpsc::channel(64);
    let writer_task = tokio::spawn(writer(write_half, out_rx));
    let mut conn = Connection {
        out: out_tx,
        streams: HashMap::new(),
        decoder: HeaderDecoder::new(),
        resize_buffer: Vec::new(),
        input: None,
        pending_input: Vec::new(),
        last_stream: 0,
    };
    let expected = expected_streams(&request);
    let mut shutdown = request.shutdown.clone();
    let mut buf = BytesMut::with_capacity(16 * 1024);
    let deadline = tokio::time::sleep(STREAM_CREATION_TIMEOUT);
    tokio::pin!(deadline);
    while !expected.iter().all(|k| conn.streams.contains_key(k)) {
        tokio::select! {
            read = reader.read_buf(&mut buf) => {
                if read? == 0 || !drain_frames(&mut conn, &mut buf).await? {
                    return Ok(());
                }
            }
            () = &mut deadline => return Err(SpdyError::StreamTimeout),
            _ = shutdown.changed() => return Ok(()),
        }
    }
    let mut session: Session = request.start(&sandbox);
    for pending in std::mem::take(&mut conn.pending_input) {
        let _ = session.input.send(pending).await;
    }
    conn.input = Some(session.input.clone());
    let mut interrupted = false;
    loop {
        tokio::select! {
            read = reader.read_buf(&mut buf) => {
                let more = match read {
                    Ok(0) | Err(_) => false,
                    Ok(_) => drain_frames(&mut conn, &mut buf).await?,
                };
                if !more {
                    tracing::debug!(pod = %request.pod, "SPDY client closed the connection; ending the session");
                    return Ok(());
                }
            }
            _ = shutdown.changed() => {
                interrupted = true;
                break;
            }
            chunk = session.output.recv() => match chunk {
                Some((Output::Stdout, data)) => conn.data(StreamType::Stdout, &data, false).await,
                Some((Output::Stderr, data)) => conn.data(StreamType::Stderr, &data, false).await,
                None => break,
            },
        }
    }
    let status = if interrupted {
        drop(session.kill); // kills the process
        crate::status::ApiError::internal("the session was interrupted: kube-sim is shutting down")
            .to_status()
    } else {
        let exit = (&mut session.exit)
            .await
            .unwrap_or(process::Exit::Code(137));
        if let process::Exit::StartFailed(message) = &exit {
            let target = if request.options.tty {
                StreamType::Stdout
            } else {
                StreamType::Stderr
            };
            conn.data(target, format!("{message}\n").as_bytes(), false)
                .await;
        }
        drop(session.kill);
        exit_status(&exit)
    };
    let status = serde_json::to_vec(&status).unwrap_or_default();
    conn.data(StreamType::Error, &status, true).await;
    conn.data(StreamType::Stdout, &[], true).await;
    conn.data(StreamType::Stderr, &[], true).await;
    conn.send(Outgoing::Frame(Frame::GoAway {
        last_stream_id: conn.last_stream,
        status: 0,
    }))
    .await;
    drop(conn);
    let _ = writer_task.await;
    Ok(())
}
