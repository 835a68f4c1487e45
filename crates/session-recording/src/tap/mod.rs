//! The taps: the kubectl exec/attach protocols read from forwarded bytes
//! ([`spdy`] over SPDY/3.1 frames, [`ws`] over WebSocket frames), and the
//! vocabulary they report in, independent of SPDY or WebSocket
//! ([`StreamKind`], [`SessionEvents`]).

pub(crate) mod spdy;
pub(crate) mod ws;

use crate::cast::OutputStream;

/// The role of a SPDY stream or WebSocket channel in a kubectl exec/attach session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum StreamKind {
    /// Standard input (never recorded).
    Stdin,
    /// Standard output (recorded as `o`).
    Stdout,
    /// Standard error (recorded as `o`).
    Stderr,
    /// The error channel: the server's final `Status` (exit code).
    Error,
    /// Terminal resize messages from the client.
    Resize,
    /// Anything else (ignored).
    Other,
}

impl StreamKind {
    /// The kind named by a SPDY `streamtype` header value.
    pub(crate) fn from_stream_type(value: &[u8]) -> Self {
        match value {
            b"stdin" => StreamKind::Stdin,
            b"stdout" => StreamKind::Stdout,
            b"stderr" => StreamKind::Stderr,
            b"error" => StreamKind::Error,
            b"resize" => StreamKind::Resize,
            _ => StreamKind::Other,
        }
    }

    /// The kind of a `v4`/`v5.channel.k8s.io` channel number.
    pub(crate) fn from_channel(channel: u8) -> Self {
        match channel {
            0 => StreamKind::Stdin,
            1 => StreamKind::Stdout,
            2 => StreamKind::Stderr,
            3 => StreamKind::Error,
            4 => StreamKind::Resize,
            _ => StreamKind::Other,
        }
    }

    /// The output stream this kind records into, if any.
    pub(crate) fn output_stream(self) -> Option<OutputStream> {
        match self {
            StreamKind::Stdout => Some(OutputStream::Stdout),
            StreamKind::Stderr => Some(OutputStream::Stderr),
            _ => None,
        }
    }
}

/// What the parsers report. Implemented by the session core; tests implement
/// it to observe a parser alone.
pub(crate) trait SessionEvents {
    /// Payload bytes of the current stdout/stderr message.
    fn output(&mut self, stream: OutputStream, data: &[u8]);
    /// The current stdout/stderr message (WebSocket message, SPDY data frame) ended.
    fn output_end(&mut self, stream: OutputStream);
    /// Bytes of the resize stream (concatenated JSON objects).
    fn resize_data(&mut self, data: &[u8]);
    /// Bytes of the error channel.
    fn error_data(&mut self, data: &[u8]);
    /// The current error-channel message ended.
    fn error_end(&mut self);
    /// A SPDY stream was opened with the given `streamtype`. Returns false when
    /// the table of streams is full (the parser then reports an error).
    fn register_stream(&mut self, stream_id: u32, kind: StreamKind) -> bool;
    /// The kind of a SPDY stream, if it was opened with a known `streamtype`.
    fn stream_kind(&self, stream_id: u32) -> Option<StreamKind>;
}
