//! Wire types of kubescribe: the `kubernetes-api-request` event, kubescribe's
//! response record, and the asciicast v2 session stream.
//!
//! Everything here is wire-compatible with Tailscale's Kubernetes API server
//! proxy and its `tsrecorder`:
//!
//! * [`Event`] serialises with Tailscale's key names and order, and reads what
//!   Tailscale's proxy emits (Go's `\u0026` escapes, `null` where Go writes nil).
//! * [`CastHeader`] and [`CastEvent`] are the asciicast v2 header and lines that
//!   Tailscale's session recorder writes.
//! * [`to_go_json`] produces the exact bytes Go's `json.Encoder` would.
//!
//! kubescribe's own additions never change the upstream fields: they live in an
//! optional `kubescribe` object ([`Extension`], [`CastExtension`]) that upstream
//! readers ignore, and in a separate record type ([`ResponseRecord`]). Unknown
//! fields from newer senders are kept (see [`Event::unknown`]) and written back
//! out unchanged, so a store-and-forward hop never loses data.
//!
//! # Layers
//!
//! Bottom to top; a module imports only from modules listed before it.
//!
//! 1. `go_json`: [`to_go_json`], the exact bytes of Go's `json.Encoder`.
//! 2. `go_serde`, `body`: Go's conventions for serde (`null` as the zero
//!    value, `omitempty`, `[]byte` as base64).
//! 3. `extension`: [`Extension`], kubescribe's object on an event.
//! 4. `event`: [`Event`], the `kubernetes-api-request` record.
//! 5. `response`: [`ResponseRecord`], kubescribe's response record.
//! 6. `record`: [`Record`], either of the two, told apart by `type`.
//! 7. `cast`: the asciicast v2 header and lines of a session recording.
//!
//! ```
//! use event_model::{Event, Record};
//!
//! let json = br#"{"type":"kubernetes-api-request","id":"","timestamp":1767225600,
//!   "userAgent":"kubectl","request":{"method":"GET","path":"/api/v1/pods?watch=1",
//!   "body":"","queryParameters":{"watch":["1"]}},"kubernetes":{"IsResourceRequest":true,
//!   "Path":"/api/v1/pods","Verb":"watch","APIPrefix":"api","APIGroup":"","APIVersion":"v1",
//!   "Namespace":"","Resource":"pods","Subresource":"","Name":"","Parts":["pods"],
//!   "FieldSelector":"","LabelSelector":""},"source":{"node":"laptop","nodeID":"n1"},
//!   "destination":{"node":"","nodeID":""}}"#;
//! let Record::Event(event) = Record::from_slice(json)? else { unreachable!() };
//! assert_eq!(event.kubernetes.verb, "watch");
//! let wire: Vec<u8> = event_model::to_go_json(&event)?;
//! assert!(wire.ends_with(b"\n"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![warn(unreachable_pub)]

// 1. Go's JSON bytes.
mod go_json;

// 2. Go's serde conventions.
mod body;
mod go_serde;

// 3. kubescribe's extension.
mod extension;

// 4. The event.
mod event;

// 5. The response record.
mod response;

// 6. Either record.
mod record;

// 7. Casts.
mod cast;

pub use cast::{
    CastEvent, CastEventCode, CastExtension, CastHeader, CastKubernetes, ResizeOrder, TerminalSize,
    TerminalSizeError, ASCIICAST_VERSION,
};
pub use event::{Destination, Event, Request, Source, KUBERNETES_API_EVENT_TYPE};
pub use extension::{AuditLevel, BodyCapture, Decision, Extension, Redaction};
pub use go_json::{go_escape_html, to_go_json};
pub use k8s_request_parse::RequestInfo;
pub use record::{Record, RecordError};
pub use response::{ResponseRecord, KUBESCRIBE_RECORDER_HEADER, RESPONSE_RECORD_TYPE};

/// The README's example runs as a doc-test.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
mod readme {}
