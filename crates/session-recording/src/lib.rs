//! Passive parsers for kubectl exec/attach streams (SPDY/3.1 and WebSocket
//! `v4`/`v5.channel.k8s.io`) that turn output and resizes into an asciicast v2
//! recording without altering the bytes passed through.
//!
//! The proxy, after the upstream's `101`, either runs
//! [`copy_bidirectional_recorded`] or, in its own copy loop, shows every
//! chunk to a [`SessionRecorder`] before forwarding the same bytes. Lines go to
//! a non-blocking [`CastSink`] (e.g. [`channel_sink`] feeding the upload);
//! failures surface in [`RecordingStatus`] for the proxy's fail-open/closed
//! policy.
//!
//! ```
//! use event_model::{CastHeader, CastKubernetes};
//! use session_recording::{ws, Clock, MemorySink, Protocol, RecorderOptions, SessionRecorder};
//!
//! let sink = MemorySink::new();
//! let header = CastHeader {
//!     kubernetes: Some(CastKubernetes { pod_name: "web-0".into(), ..Default::default() }),
//!     ..Default::default()
//! };
//! let mut options = RecorderOptions::new(Protocol::WebSocket, true);
//! options.clock = Clock::Fixed(0.5);
//! let recorder = SessionRecorder::new(options, header, sink.clone());
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

pub mod cast;
mod copy;
mod error;
pub mod events;
pub mod exec_status;
mod recorder;
pub mod resize;
mod sink;
pub mod spdy;
mod status;
pub mod ws;

pub use cast::{Clock, OutputStream};
pub use copy::{copy_bidirectional_recorded, CopyOptions, CopySummary, DEFAULT_COPY_BUFFER};
pub use error::{Direction, RecordingError, SinkError};
pub use exec_status::ExecStatus;
pub use recorder::{Protocol, RecorderOptions, SessionRecorder};
pub use sink::{channel_sink, CastLineReceiver, CastSink, ChannelSink, MemorySink, SinkPressure};
pub use status::RecordingStatus;
