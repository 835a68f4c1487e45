//! [`SessionTap`]: one exec/attach session's passive tap. The proxy
//! shows it every chunk it forwards, in each direction, and forwards the same
//! bytes unchanged; the recorder never alters, delays or drops them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use event_model::{CastHeader, TerminalSize};

use crate::cast::{CastWriter, Clock, OutputStream, DEFAULT_MAX_PENDING_BEFORE_HEADER};
use crate::error::{Direction, RecordingError};
use crate::exec_status::ErrorChannelCapture;
use crate::resize::ResizeDecoder;
use crate::sink::CastSink;
use crate::spdy::frame::{encode_data_frame, FLAG_FIN};
use crate::status::RecordingStatus;
use crate::tap::spdy::{SpdyTap, MAX_STREAMS};
use crate::tap::ws::WsTap;
use crate::tap::{SessionEvents, StreamKind};
use crate::ws::frame::{encode_frame, Opcode};

/// The streaming protocol the upstream agreed to in its `101 Switching Protocols`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// `Upgrade: SPDY/3.1` (kubectl ≤ 1.29, and the fallback of newer ones).
    Spdy,
    /// `Upgrade: websocket` with `v4.channel.k8s.io` / `v5.channel.k8s.io`.
    WebSocket,
}

impl Protocol {
    /// The protocol named by an `Upgrade` header value (`SPDY/3.1` exactly,
    /// or `websocket` in any case), if it is one this crate records.
    pub fn from_upgrade_header(value: &str) -> Option<Self> {
        let value = value.trim();
        if value == "SPDY/3.1" {
            Some(Protocol::Spdy)
        } else if value.eq_ignore_ascii_case("websocket") {
            Some(Protocol::WebSocket)
        } else {
            None
        }
    }
}

/// How to record one session.
#[derive(Debug, Clone)]
pub struct TapOptions {
    /// The protocol of the upgraded connection.
    pub protocol: Protocol,
    /// Whether the session has a terminal (query `tty=true`): the header then
    /// waits for the first resize to carry the terminal size.
    pub tty: bool,
    /// Where cast times come from (default: seconds since this options value was made).
    pub clock: Clock,
    /// Bytes of encoded output held while a TTY session waits for its first
    /// resize. When exceeded, the header is written with size 0x0 and
    /// recording continues; the first resize then becomes an `r` line.
    pub max_pending_before_header: usize,
}

impl TapOptions {
    /// Options with the defaults: clock starting now, 1 MiB held before the header.
    pub fn new(protocol: Protocol, tty: bool) -> Self {
        TapOptions {
            protocol,
            tty,
            clock: Clock::Since(Instant::now()),
            max_pending_before_header: DEFAULT_MAX_PENDING_BEFORE_HEADER,
        }
    }
}

/// Records one kubectl exec/attach session from the bytes the proxy forwards.
///
/// Cheap to clone (all clones share one recording): give one clone to each
/// copy direction. Call [`observe_client_to_server`](Self::observe_client_to_server)
/// / [`observe_server_to_client`](Self::observe_server_to_client) with every
/// chunk *before* forwarding it, then forward the same bytes. Parse errors
/// and sink failures are reported through [`status`](Self::status), never by
/// failing the observe call: forwarding must go on regardless.
///
/// The recording is finished (open lines flushed, sink closed) by
/// [`finish`](Self::finish) or when the last clone is dropped.
#[derive(Clone)]
pub struct SessionTap {
    core: Arc<Mutex<Core>>,
    status: RecordingStatus,
    protocol: Protocol,
}

impl std::fmt::Debug for SessionTap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionTap")
            .field("protocol", &self.protocol)
            .field("status", &self.status)
            .finish()
    }
}

impl SessionTap {
    /// Starts recording. `header` is built by the proxy from the caller's
    /// identity and the pod; width and height are filled in here. For a
    /// non-TTY session the header is written to `sink` at once.
    pub fn new(options: TapOptions, header: CastHeader, sink: impl CastSink + 'static) -> Self {
        let status = RecordingStatus::new();
        let writer = CastWriter::new(
            header,
            options.tty,
            options.clock,
            Box::new(sink),
            status.clone(),
            options.max_pending_before_header,
        );
        let (c2s, s2c) = match options.protocol {
            Protocol::Spdy => (
                Parser::Spdy(SpdyTap::new(Direction::ClientToServer)),
                Parser::Spdy(SpdyTap::new(Direction::ServerToClient)),
            ),
            Protocol::WebSocket => (
                Parser::Ws(WsTap::new(Direction::ClientToServer)),
                Parser::Ws(WsTap::new(Direction::ServerToClient)),
            ),
        };
        let session = Session {
            writer,
            status: status.clone(),
            resize: ResizeDecoder::new(),
            error: ErrorChannelCapture::default(),
            streams: HashMap::new(),
            failed: false,
        };
        SessionTap {
            core: Arc::new(Mutex::new(Core { c2s, s2c, session })),
            status,
            protocol: options.protocol,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Core> {
        self.core
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Shows the recorder a chunk the client sent, before it is forwarded upstream.
    pub fn observe_client_to_server(&self, chunk: &[u8]) {
        self.observe(Direction::ClientToServer, chunk);
    }

    /// Shows the recorder a chunk the upstream sent, before it is forwarded to the client.
    pub fn observe_server_to_client(&self, chunk: &[u8]) {
        self.observe(Direction::ServerToClient, chunk);
    }

    /// Shows the recorder a chunk flowing in `direction`.
    pub fn observe(&self, direction: Direction, chunk: &[u8]) {
        if chunk.is_empty() {
            return;
        }
        let mut guard = self.lock();
        let core = &mut *guard;
        if core.session.failed {
            return;
        }
        let parser = match direction {
            Direction::ClientToServer => &mut core.c2s,
            Direction::ServerToClient => &mut core.s2c,
        };
        let result = match parser {
            Parser::Spdy(tap) => tap
                .feed(chunk, &mut core.session)
                .map_err(|source| RecordingError::Spdy { direction, source }),
            Parser::Ws(tap) => tap
                .feed(chunk, &mut core.session)
                .map_err(|source| RecordingError::WebSocket { direction, source }),
        };
        if let Err(err) = result {
            tracing::warn!(error = %err, "session recording stopped");
            core.session.failed = true;
            // Keep what was recorded up to the error (header included), then stop.
            core.session.writer.finish();
            self.status.fail(err);
        }
    }

    /// The recording's live status (failures, counters, exit status).
    pub fn status(&self) -> RecordingStatus {
        self.status.clone()
    }

    /// The protocol being recorded.
    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// Whether the header has been written (false while a TTY session waits for its first resize).
    pub fn header_written(&self) -> bool {
        self.lock().session.writer.header_written()
    }

    /// Ends the recording: flushes open output lines and held bytes, writes a
    /// still-waiting header (size 0x0) and closes the sink. Idempotent.
    pub fn finish(&self) {
        self.lock().session.writer.finish();
    }

    /// Bytes to send to the client to end the session with an error message
    /// on the error channel (fail-closed after the recorder was lost): a
    /// `metav1.Status` failure that kubectl prints as `error: <message>`.
    ///
    /// `None` when no such frame can be placed safely: the server→client
    /// stream is not at a frame boundary, the recording stopped on a parse
    /// error, or (SPDY) no error stream was opened.
    pub fn termination_frame(&self, message: &str) -> Option<Vec<u8>> {
        let core = self.lock();
        if core.session.failed {
            return None;
        }
        let status = serde_json::json!({
            "metadata": {},
            "status": "Failure",
            "message": message,
            "reason": "InternalError",
            "code": 500,
        });
        let body = serde_json::to_vec(&status).ok()?;
        match &core.s2c {
            Parser::Ws(tap) => {
                if !tap.at_frame_boundary() {
                    return None;
                }
                let mut payload = Vec::with_capacity(body.len() + 1);
                payload.push(3);
                payload.extend_from_slice(&body);
                Some(encode_frame(true, Opcode::Binary, None, &payload))
            }
            Parser::Spdy(tap) => {
                if !tap.at_frame_boundary() {
                    return None;
                }
                let id = core
                    .session
                    .streams
                    .iter()
                    .filter(|(_, kind)| **kind == StreamKind::Error)
                    .map(|(id, _)| *id)
                    .min()?;
                Some(encode_data_frame(id, FLAG_FIN, &body))
            }
        }
    }
}

enum Parser {
    Spdy(SpdyTap),
    Ws(WsTap),
}

struct Core {
    c2s: Parser,
    s2c: Parser,
    session: Session,
}

impl Drop for Core {
    fn drop(&mut self) {
        self.session.writer.finish();
    }
}

/// Everything both directions share: the cast writer and protocol state.
struct Session {
    writer: CastWriter,
    status: RecordingStatus,
    resize: ResizeDecoder,
    error: ErrorChannelCapture,
    streams: HashMap<u32, StreamKind>,
    failed: bool,
}

impl SessionEvents for Session {
    fn output(&mut self, stream: OutputStream, data: &[u8]) {
        self.writer.output(stream, data);
    }

    fn output_end(&mut self, stream: OutputStream) {
        self.writer.output_end(stream);
    }

    fn resize_data(&mut self, data: &[u8]) {
        let writer = &mut self.writer;
        self.resize
            .feed(data, |size: TerminalSize| writer.resize(size));
    }

    fn error_data(&mut self, data: &[u8]) {
        self.error.push(data);
    }

    fn error_end(&mut self) {
        if let Some(status) = self.error.status() {
            self.status.set_exec_status(status);
        }
    }

    fn register_stream(&mut self, stream_id: u32, kind: StreamKind) -> bool {
        if self.streams.len() >= MAX_STREAMS && !self.streams.contains_key(&stream_id) {
            return false;
        }
        self.streams.insert(stream_id, kind);
        true
    }

    fn stream_kind(&self, stream_id: u32) -> Option<StreamKind> {
        self.streams.get(&stream_id).copied()
    }
}
