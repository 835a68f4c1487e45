//! WebSocket (`v4.channel.k8s.io`, `v5.channel.k8s.io`): RFC 6455 frames
//! ([`frame`]). The Kubernetes channel protocol on top is the WebSocket
//! tap's business, one layer up.

pub mod frame;

use frame::Opcode;

/// Why a WebSocket byte stream cannot be parsed (recording stops; bytes still flow).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WsError {
    /// An opcode RFC 6455 reserves.
    #[error("frame uses reserved opcode {0:#x}")]
    ReservedOpcode(u8),
    /// RSV bits set: an extension (e.g. permessage-deflate) that kubectl sessions do not negotiate.
    #[error("frame has reserved bits {0:#04x} set (a WebSocket extension such as compression, which is not supported)")]
    ReservedBits(u8),
    /// A 64-bit length with its most significant bit set.
    #[error("frame length has its most significant bit set")]
    LengthHighBit,
    /// A control frame that is fragmented or longer than 125 bytes.
    #[error("invalid control frame {opcode:?} (fin={fin}, length {len}): must be unfragmented and at most 125 bytes")]
    BadControlFrame {
        /// The opcode.
        opcode: Opcode,
        /// Its FIN bit.
        fin: bool,
        /// Its payload length.
        len: u64,
    },
    /// A frame larger than the 32 MiB limit.
    #[error("frame payload of {len} bytes exceeds the {max}-byte limit")]
    FrameTooLarge {
        /// The announced payload length.
        len: u64,
        /// The limit.
        max: u64,
    },
    /// A continuation frame with no message in progress.
    #[error("continuation frame without a message in progress")]
    UnexpectedContinuation,
    /// A new text/binary frame while a fragmented message is unfinished.
    #[error("new data frame while a fragmented message is still in progress")]
    UnfinishedMessage,
}
