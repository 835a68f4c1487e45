//! The `kubernetes-api-request` event: one per API request through the proxy.

use std::collections::BTreeMap;

use k8s_request_parse::RequestInfo;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::extension::Extension;
use crate::go_serde::{is_zero, null_default};

/// The value of [`Event::event_type`] for Kubernetes API request events.
pub const KUBERNETES_API_EVENT_TYPE: &str = "kubernetes-api-request";

/// One Kubernetes API request, as Tailscale's proxy records it.
///
/// Fields serialise in Tailscale's order (Go struct order); `kubescribe` and
/// any unknown fields follow. Reading is lenient where Go is: `null` for a
/// nil slice or map reads as empty, and missing fields read as their zero
/// value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Always [`KUBERNETES_API_EVENT_TYPE`] for this record.
    #[serde(rename = "type")]
    pub event_type: String,
    /// Empty from the proxy; the recorder sets it to a reference to where the
    /// event is stored.
    #[serde(default, deserialize_with = "null_default")]
    pub id: String,
    /// Unix seconds when the proxy received the request.
    #[serde(default, deserialize_with = "null_default")]
    pub timestamp: i64,
    /// The request's `User-Agent` header, `""` when absent.
    #[serde(rename = "userAgent", default, deserialize_with = "null_default")]
    pub user_agent: String,
    /// The HTTP request.
    #[serde(default, deserialize_with = "null_default")]
    pub request: Request,
    /// The request info kube-apiserver derives from the request (Go field names).
    #[serde(default, deserialize_with = "null_default")]
    pub kubernetes: RequestInfo,
    /// Who sent the request.
    #[serde(default, deserialize_with = "null_default")]
    pub source: Source,
    /// The proxy that forwarded it; filled in by the recorder.
    #[serde(default, deserialize_with = "null_default")]
    pub destination: Destination,
    /// kubescribe's additions (idempotency key, body capture); absent from
    /// events sent by Tailscale's proxy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubescribe: Option<Extension>,
    /// Top-level fields this version does not know, kept in order and written
    /// back out unchanged, so that a newer sender's data survives a hop
    /// through an older recorder.
    #[serde(flatten)]
    pub unknown: Map<String, Value>,
}

impl Default for Event {
    fn default() -> Self {
        Self {
            event_type: KUBERNETES_API_EVENT_TYPE.to_owned(),
            id: String::new(),
            timestamp: 0,
            user_agent: String::new(),
            request: Request::default(),
            kubernetes: RequestInfo::default(),
            source: Source::default(),
            destination: Destination::default(),
            kubescribe: None,
            unknown: Map::new(),
        }
    }
}

impl Event {
    /// The idempotency key kubescribe's proxy attaches, if any.
    pub fn key(&self) -> Option<&str> {
        self.kubescribe.as_ref().map(|ext| ext.key.as_str())
    }
}

/// The HTTP request an [`Event`] describes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Request {
    /// The HTTP method, as sent.
    #[serde(default, deserialize_with = "null_default")]
    pub method: String,
    /// The path plus `?` and the raw query when there is one, as received
    /// (for example `/api/v1/pods?watch=true`).
    #[serde(default, deserialize_with = "null_default")]
    pub path: String,
    /// The request body (base64 on the wire, `""` when empty). When the body
    /// was larger than the proxy's capture limit this holds only a prefix; see
    /// [`Extension::body`].
    #[serde(default, with = "crate::body")]
    pub body: Vec<u8>,
    /// The parsed query with Go's `url.ParseQuery` rules, values decoded.
    /// Always an object on the wire (`{}` when empty).
    #[serde(rename = "queryParameters", default, deserialize_with = "null_default")]
    pub query_parameters: BTreeMap<String, Vec<String>>,
    /// Fields this version does not know, written back out unchanged.
    #[serde(flatten)]
    pub unknown: Map<String, Value>,
}

/// The tailnet identity of the caller.
///
/// Untagged nodes carry the user (`nodeUserID`, `nodeUser`); tagged nodes
/// carry `nodeTags` and no user. Those three keys are omitted when empty, as
/// Go's `omitempty` does.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Source {
    /// The node's fully qualified name, without the trailing dot.
    #[serde(default, deserialize_with = "null_default")]
    pub node: String,
    /// The node's stable ID.
    #[serde(rename = "nodeID", default, deserialize_with = "null_default")]
    pub node_id: String,
    /// The node's tags (tagged nodes only).
    #[serde(
        rename = "nodeTags",
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub node_tags: Vec<String>,
    /// The user's ID (`UserProfile.ID`; untagged nodes only).
    #[serde(
        rename = "nodeUserID",
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "is_zero"
    )]
    pub node_user_id: i64,
    /// The user's login name (untagged nodes only).
    #[serde(
        rename = "nodeUser",
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub node_user: String,
    /// Fields this version does not know, written back out unchanged.
    #[serde(flatten)]
    pub unknown: Map<String, Value>,
}

/// The proxy node that forwarded the request, as the recorder sees the
/// uploading peer. Both fields are always present (empty from the proxy).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Destination {
    /// The proxy node's fully qualified name, without the trailing dot.
    #[serde(default, deserialize_with = "null_default")]
    pub node: String,
    /// The proxy node's stable ID.
    #[serde(rename = "nodeID", default, deserialize_with = "null_default")]
    pub node_id: String,
    /// Fields this version does not know, written back out unchanged.
    #[serde(flatten)]
    pub unknown: Map<String, Value>,
}
