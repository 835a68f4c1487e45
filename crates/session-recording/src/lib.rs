//! Passive parsers for kubectl exec/attach streams (SPDY/3.1 and WebSocket
//! `v4`/`v5.channel.k8s.io`) that turn output and resizes into an asciicast v2
//! recording without altering the bytes passed through.
//!
//! The proxy, after the upstream's `101`, either runs
//! [`copy_bidirectional_recorded`] or, in its own copy loop, shows every
//! chunk to a [`SessionTap`] before forwarding the same bytes. Lines go to
//! a non-blocking [`CastSink`] (e.g. [`channel_sink`] feeding the upload);
//! failures surface in [`RecordingStatus`] for the proxy's fail-open/closed
//! policy.
//!
//! # Layers
//!
//! Bottom to top; a module imports only from modules listed before it.
//!
//! 1. `shared_error`: [`SharedError`], a library's error kept `Clone`.
//! 2. [`spdy`], [`ws`]: the wire formats (SPDY/3.1 frames and header blocks,
//!    RFC 6455 frames) and their errors.
//! 3. `error`: [`Direction`], [`SinkError`] and [`RecordingError`].
//! 4. `exec_status`, `resize`: the error channel's final `Status` and the
//!    resize channel's JSON.
//! 5. `status`: [`RecordingStatus`], the live health the proxy watches.
//! 6. `sink`: where cast lines go ([`CastSink`], [`channel_sink`],
//!    [`MemorySink`]).
//! 7. `cast`: the asciicast writer (header gating, `o` and `r` lines, UTF-8
//!    reassembly).
//! 8. `tap`: the exec/attach protocols read from forwarded bytes (SPDY
//!    streams, WebSocket channels) as session events.
//! 9. `session_tap`: [`SessionTap`], one session's passive tap.
//! 10. `copy`: [`copy_bidirectional_recorded`], the proxy's copy loop with
//!     the recorder in it.
//!
//! ```
//! use event_model::{CastHeader, CastKubernetes};
//! use session_recording::{ws, Clock, MemorySink, Protocol, TapOptions, SessionTap};
//!
//! let sink = MemorySink::new();
//! let header = CastHeader {
//!     kubernetes: Some(CastKubernetes { pod_name: "web-0".into(), ..Default::default() }),
//!     ..Default::default()
//! };
//! let mut options = TapOptions::new(Protocol::WebSocket, true);
//! options.clock = Clock::Fixed(0.5);
//! let recorder = SessionTap::new(options, header, sink.clone());
//!
//! // kubectl sends its terminal size (channel 4, masked), the server prints a prompt (channel 1).
//! let resize = ws::frame::encode_frame(true, ws::frame::Opcode::Binary, Some([1, 2, 3, 4]),
//!     b"\x04{\"Width\":120,\"Height\":40}");
//! recorder.observe_client_to_server(&resize);
//! recorder.observe_server_to_client(&ws::frame::encode_frame(true, ws::frame::Opcode::Binary, None, b"\x01$ "));
//! recorder.finish();
//!
//! let cast = String::from_utf8(sink.contents())?;
//! let lines: Vec<&str> = cast.lines().collect();
//! assert!(lines[0].contains(r#""width":120,"height":40"#));
//! assert_eq!(lines[1], r#"[0.5,"o","$ "]"#);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![warn(unreachable_pub)]

// 1. Shared errors.
mod shared_error;

// 2. Wire formats.
pub mod spdy;
pub mod ws;

// 3. Errors.
mod error;

// 4. Exec status and resizes.
mod exec_status;
mod resize;

// 5. Recording status.
mod status;

// 6. Sinks.
mod sink;

// 7. The cast writer.
mod cast;

// 8. Protocol taps.
mod tap;

// 9. One session's tap.
mod session_tap;

// 10. The copy loop.
mod copy;

pub use cast::Clock;
pub use copy::{copy_bidirectional_recorded, CopyOptions, CopySummary, DEFAULT_COPY_BUFFER};
pub use error::{Direction, RecordingError, SinkError};
pub use exec_status::ExecStatus;
pub use session_tap::{Protocol, SessionTap, TapOptions};
pub use shared_error::SharedError;
pub use sink::{channel_sink, CastLineReceiver, CastSink, ChannelSink, MemorySink, SinkPressure};
pub use status::RecordingStatus;

/// The README's example runs as a doc-test.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
mod readme {}
