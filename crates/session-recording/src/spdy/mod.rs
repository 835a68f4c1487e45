//! SPDY/3.1 as kubectl and the kubelet speak it for exec/attach: frames
//! ([`frame`]) and zlib-compressed header blocks ([`headers`]). What the
//! streams mean (stdout, stderr, resize, error) is the SPDY tap's business,
//! one layer up.

pub mod frame;
pub mod headers;

use crate::shared_error::SharedError;

/// Why a SPDY byte stream cannot be parsed (recording stops; bytes still flow).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpdyError {
    /// A control frame whose version is not 3.
    #[error("control frame has version {0}, expected SPDY version 3")]
    UnsupportedVersion(u16),
    /// A control frame of type 0 (not SPDY).
    #[error("control frame has type 0: this is not a SPDY stream")]
    ZeroControlType,
    /// A data frame on stream 0 (not SPDY).
    #[error("data frame on stream 0: this is not a SPDY stream")]
    ZeroStreamId,
    /// A control frame larger than the limit this tap buffers.
    #[error("control frame of {len} bytes exceeds the {max}-byte limit")]
    ControlFrameTooLarge {
        /// The announced length.
        len: u32,
        /// The limit.
        max: u32,
    },
    /// A control frame too short for its type.
    #[error("control frame type {kind} is {len} bytes long, too short for its fixed fields")]
    ShortControlFrame {
        /// The frame type.
        kind: u16,
        /// Its length.
        len: usize,
    },
    /// The zlib stream of header blocks is corrupt.
    #[error("header block decompression failed: {0}")]
    Decompress(#[source] SharedError<flate2::DecompressError>),
    /// zlib neither consumed nor produced anything on a header block.
    #[error("header block decompression failed: zlib stream made no progress")]
    DecompressStalled,
    /// A header block decompresses to more than the limit.
    #[error("header block decompresses to more than {max} bytes")]
    HeaderBlockTooLarge {
        /// The limit.
        max: usize,
    },
    /// A decompressed header block is not a valid SPDY/3 name/value block.
    #[error("malformed header block: {0}")]
    MalformedHeaderBlock(&'static str),
    /// More streams than the tap tracks.
    #[error("more than {max} streams opened on one connection")]
    TooManyStreams {
        /// The limit.
        max: usize,
    },
}
