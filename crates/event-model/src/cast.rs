//! The asciicast v2 session stream: a header line, then one event per line.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, SeqAccess, Visitor};
use serde::ser::SerializeSeq;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::go_serde::{is_zero, null_default};

/// The asciicast format version the header carries.
pub const ASCIICAST_VERSION: u32 = 2;

/// Line 1 of a recording: Tailscale's `CastHeader`, keys in its order.
///
/// For Kubernetes sessions `kubernetes` is set and the SSH fields are empty.
/// `command`, `srcNodeTags`, `srcNodeUserID` and `srcNodeUser` are omitted
/// when empty; `env` is `null` unless set; `sshUser`, `localUser` and
/// `connectionID` are always present.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CastHeader {
    /// Always [`ASCIICAST_VERSION`].
    pub version: u32,
    /// Terminal columns; for TTY sessions from the first resize, else 0.
    #[serde(default, deserialize_with = "null_default")]
    pub width: u32,
    /// Terminal rows; for TTY sessions from the first resize, else 0.
    #[serde(default, deserialize_with = "null_default")]
    pub height: u32,
    /// Unix seconds when recording was set up.
    #[serde(default, deserialize_with = "null_default")]
    pub timestamp: i64,
    /// The command, its arguments joined by spaces (absent for attach).
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub command: String,
    /// The caller's node FQDN, without the trailing dot.
    #[serde(rename = "srcNode", default, deserialize_with = "null_default")]
    pub src_node: String,
    /// The caller's stable node ID.
    #[serde(rename = "srcNodeID", default, deserialize_with = "null_default")]
    pub src_node_id: String,
    /// The caller node's tags (tagged nodes only).
    #[serde(
        rename = "srcNodeTags",
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub src_node_tags: Vec<String>,
    /// The node's owner (`Node.User`; note: events use `UserProfile.ID`).
    #[serde(
        rename = "srcNodeUserID",
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "is_zero"
    )]
    pub src_node_user_id: i64,
    /// The caller's login name (untagged nodes only).
    #[serde(
        rename = "srcNodeUser",
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub src_node_user: String,
    /// Environment (SSH sessions); `null` for Kubernetes sessions.
    #[serde(default)]
    pub env: Option<BTreeMap<String, String>>,
    /// SSH user (SSH sessions only).
    #[serde(rename = "sshUser", default, deserialize_with = "null_default")]
    pub ssh_user: String,
    /// Local user (SSH sessions only).
    #[serde(rename = "localUser", default, deserialize_with = "null_default")]
    pub local_user: String,
    /// Connection ID (SSH sessions only).
    #[serde(rename = "connectionID", default, deserialize_with = "null_default")]
    pub connection_id: String,
    /// The Kubernetes session, with Go field names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes: Option<CastKubernetes>,
    /// kubescribe's additions; ignored by upstream readers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubescribe: Option<CastExtension>,
    /// Fields this version does not know, written back out unchanged.
    #[serde(flatten)]
    pub unknown: Map<String, Value>,
}

impl Default for CastHeader {
    fn default() -> Self {
        Self {
            version: ASCIICAST_VERSION,
            width: 0,
            height: 0,
            timestamp: 0,
            command: String::new(),
            src_node: String::new(),
            src_node_id: String::new(),
            src_node_tags: Vec::new(),
            src_node_user_id: 0,
            src_node_user: String::new(),
            env: None,
            ssh_user: String::new(),
            local_user: String::new(),
            connection_id: String::new(),
            kubernetes: None,
            kubescribe: None,
            unknown: Map::new(),
        }
    }
}

impl CastHeader {
    /// The order in which this recording's `r` events write the size.
    ///
    /// Tailscale's Kubernetes recorder writes `"<height>x<width>"`, the
    /// reverse of the asciicast spec's `"<cols>x<rows>"`, and kubescribe's
    /// proxy matches it on the wire. A header with a `kubernetes` object is
    /// from such a recorder; anything else (SSH, plain asciinema) follows the
    /// spec. A `kubescribe.resizeOrder` field, when present, wins.
    pub fn resize_order(&self) -> ResizeOrder {
        if let Some(order) = self.kubescribe.as_ref().and_then(|ext| ext.resize_order) {
            return order;
        }
        if self.kubernetes.is_some() {
            ResizeOrder::HeightFirst
        } else {
            ResizeOrder::WidthFirst
        }
    }
}

/// The Kubernetes session a recording is of (Go field names on the wire).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CastKubernetes {
    /// The pod.
    #[serde(rename = "PodName", default, deserialize_with = "null_default")]
    pub pod_name: String,
    /// The pod's namespace.
    #[serde(rename = "Namespace", default, deserialize_with = "null_default")]
    pub namespace: String,
    /// The container (the `container` query values concatenated).
    #[serde(rename = "Container", default, deserialize_with = "null_default")]
    pub container: String,
    /// `exec` or `attach`.
    #[serde(rename = "SessionType", default, deserialize_with = "null_default")]
    pub session_type: String,
}

/// kubescribe's additions to the cast header.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CastExtension {
    /// The session's ID, unique per recording.
    #[serde(
        rename = "sessionID",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub session_id: String,
    /// The idempotency key of the exec/attach request's event.
    #[serde(rename = "eventKey", default, skip_serializing_if = "String::is_empty")]
    pub event_key: String,
    /// Whether the session has a terminal (`tty=true`).
    #[serde(default)]
    pub tty: bool,
    /// The order of `r` event sizes, when the writer states it.
    #[serde(
        rename = "resizeOrder",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub resize_order: Option<ResizeOrder>,
    /// Fields this version does not know, written back out unchanged.
    #[serde(flatten)]
    pub unknown: Map<String, Value>,
}

/// Which number comes first in an `r` event's `"AxB"` data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ResizeOrder {
    /// `"<height>x<width>"`, as Tailscale's Kubernetes recorder writes.
    #[serde(rename = "height-first")]
    HeightFirst,
    /// `"<cols>x<rows>"`, as the asciicast v2 spec says.
    #[serde(rename = "width-first")]
    WidthFirst,
}

/// A terminal size in character cells.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TerminalSize {
    /// Columns.
    pub width: u32,
    /// Rows.
    pub height: u32,
}

/// Why an `r` event's data is not a size.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("resize data {0:?} is not of the form \"<number>x<number>\"")]
pub struct TerminalSizeError(pub String);

impl TerminalSize {
    /// Formats the size as `r` event data in the given order.
    pub fn to_resize_data(self, order: ResizeOrder) -> String {
        match order {
            ResizeOrder::HeightFirst => format!("{}x{}", self.height, self.width),
            ResizeOrder::WidthFirst => format!("{}x{}", self.width, self.height),
        }
    }

    /// Parses `r` event data written in the given order.
    pub fn from_resize_data(data: &str, order: ResizeOrder) -> Result<Self, TerminalSizeError> {
        let err = || TerminalSizeError(data.to_owned());
        let (first, second) = data.split_once('x').ok_or_else(err)?;
        let first: u32 = first.parse().map_err(|_| err())?;
        let second: u32 = second.parse().map_err(|_| err())?;
        Ok(match order {
            ResizeOrder::HeightFirst => TerminalSize {
                width: second,
                height: first,
            },
            ResizeOrder::WidthFirst => TerminalSize {
                width: first,
                height: second,
            },
        })
    }
}

/// The code of a cast event: `o`, `i`, `r`, `m`, or anything else verbatim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CastEventCode {
    /// `o`: terminal output (stdout and stderr).
    Output,
    /// `i`: terminal input (never written by kubescribe).
    Input,
    /// `r`: a terminal resize; see [`TerminalSize::from_resize_data`].
    Resize,
    /// `m`: a marker.
    Marker,
    /// Any other code, kept verbatim.
    Other(String),
}

impl CastEventCode {
    /// The code as it appears on the wire.
    pub fn as_str(&self) -> &str {
        match self {
            CastEventCode::Output => "o",
            CastEventCode::Input => "i",
            CastEventCode::Resize => "r",
            CastEventCode::Marker => "m",
            CastEventCode::Other(code) => code,
        }
    }

    fn from_wire(code: String) -> Self {
        match code.as_str() {
            "o" => CastEventCode::Output,
            "i" => CastEventCode::Input,
            "r" => CastEventCode::Resize,
            "m" => CastEventCode::Marker,
            _ => CastEventCode::Other(code),
        }
    }
}

/// One line after the header: `[<seconds since start>, "<code>", "<data>"]`.
#[derive(Debug, Clone, PartialEq)]
pub struct CastEvent {
    /// Seconds since recording was set up.
    pub time: f64,
    /// What kind of event this is.
    pub code: CastEventCode,
    /// Output text, or resize data.
    pub data: String,
}

impl CastEvent {
    /// An output (`o`) event.
    pub fn output(time: f64, data: impl Into<String>) -> Self {
        Self {
            time,
            code: CastEventCode::Output,
            data: data.into(),
        }
    }

    /// A resize (`r`) event with the size written in `order`.
    pub fn resize(time: f64, size: TerminalSize, order: ResizeOrder) -> Self {
        Self {
            time,
            code: CastEventCode::Resize,
            data: size.to_resize_data(order),
        }
    }

    /// This event as one cast line: compact JSON plus `\n`.
    pub fn to_line(&self) -> Vec<u8> {
        let mut line = serde_json::to_vec(self).unwrap_or_default();
        line.push(b'\n');
        line
    }
}

impl Serialize for CastEvent {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(3))?;
        // JSON has no NaN or infinity; a clock that produced one writes 0.
        let time = if self.time.is_finite() {
            self.time
        } else {
            0.0
        };
        seq.serialize_element(&time)?;
        seq.serialize_element(self.code.as_str())?;
        seq.serialize_element(&self.data)?;
        seq.end()
    }
}

impl<'de> Deserialize<'de> for CastEvent {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct CastEventVisitor;
        impl<'de> Visitor<'de> for CastEventVisitor {
            type Value = CastEvent;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a cast event [time, code, data]")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<CastEvent, A::Error> {
                let time: f64 = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::invalid_length(0, &self))?;
                let code: String = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::invalid_length(1, &self))?;
                let data: String = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::invalid_length(2, &self))?;
                if seq.next_element::<de::IgnoredAny>()?.is_some() {
                    return Err(de::Error::invalid_length(4, &self));
                }
                Ok(CastEvent {
                    time,
                    code: CastEventCode::from_wire(code),
                    data,
                })
            }
        }
        deserializer.deserialize_seq(CastEventVisitor)
    }
}
