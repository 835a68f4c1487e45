//! The `audit.k8s.io/v1` wire types kube-apiserver writes to its audit log
//! and POSTs to audit webhooks, with exactly the JSON field names (and
//! `omitempty` rules) of `k8s.io/apiserver/pkg/apis/audit/v1`.
//!
//! Only what the exporter fills is modelled: no protobuf, no Policy types.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// `apiVersion` of every object here.
pub const AUDIT_API_VERSION: &str = "audit.k8s.io/v1";

/// The stage every exported event is in: the response has been sent.
pub const STAGE_RESPONSE_COMPLETE: &str = "ResponseComplete";

/// One audit event (`audit.k8s.io/v1` `Event`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Event {
    /// Always `Event`.
    pub kind: String,
    /// Always [`AUDIT_API_VERSION`].
    #[serde(rename = "apiVersion")]
    pub api_version: String,
    /// `Metadata`, `Request` or `RequestResponse`.
    pub level: String,
    /// Unique per request; joins to kube-apiserver's own audit event.
    #[serde(rename = "auditID")]
    pub audit_id: String,
    /// Always [`STAGE_RESPONSE_COMPLETE`].
    pub stage: String,
    /// Path and query as sent by the client.
    #[serde(rename = "requestURI")]
    pub request_uri: String,
    /// The Kubernetes verb (lower-case HTTP method for non-resource requests).
    pub verb: String,
    /// Who made the request.
    pub user: UserInfo,
    /// Who the request was made as (impersonation), when anyone.
    #[serde(rename = "impersonatedUser", skip_serializing_if = "Option::is_none")]
    pub impersonated_user: Option<UserInfo>,
    /// Client addresses (omitted: the recorder does not learn them).
    #[serde(rename = "sourceIPs", default, skip_serializing_if = "Vec::is_empty")]
    pub source_ips: Vec<String>,
    /// The client's `User-Agent`.
    #[serde(
        rename = "userAgent",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub user_agent: String,
    /// The object a resource request is about.
    #[serde(rename = "objectRef", skip_serializing_if = "Option::is_none")]
    pub object_ref: Option<ObjectReference>,
    /// The response status (a `metav1.Status`).
    #[serde(rename = "responseStatus", skip_serializing_if = "Option::is_none")]
    pub response_status: Option<Status>,
    /// The request body, as JSON (a `runtime.Unknown`, written as its raw bytes).
    #[serde(rename = "requestObject", skip_serializing_if = "Option::is_none")]
    pub request_object: Option<Box<RawValue>>,
    /// When the request was received (`metav1.MicroTime`).
    #[serde(rename = "requestReceivedTimestamp")]
    pub request_received_timestamp: String,
    /// When the stage was reached (`metav1.MicroTime`).
    #[serde(rename = "stageTimestamp")]
    pub stage_timestamp: String,
    /// Free-form annotations (`kubescribe.io/…`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// `authentication.k8s.io/v1` `UserInfo`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserInfo {
    /// The user's name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub username: String,
    /// A unique value for the user across time.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uid: String,
    /// The groups the user is in.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// Other attributes of the user.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, Vec<String>>,
}

/// `audit.k8s.io/v1` `ObjectReference`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectReference {
    /// The resource (plural, lower-case).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub resource: String,
    /// The namespace.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    /// The object's name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// The API group (empty for the core group).
    #[serde(rename = "apiGroup", default, skip_serializing_if = "String::is_empty")]
    pub api_group: String,
    /// The API version.
    #[serde(
        rename = "apiVersion",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub api_version: String,
    /// The subresource.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub subresource: String,
}

/// The parts of `meta.k8s.io/v1` `Status` an exported event carries.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// `ListMeta`: always `{}`, as kube-apiserver writes it.
    pub metadata: EmptyObject,
    /// `Failure` for an error status; omitted on success, as kube-apiserver does.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub status: String,
    /// Why the exchange failed, when the proxy knows.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// The HTTP status code.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub code: i32,
}

fn is_zero(n: &i32) -> bool {
    *n == 0
}

/// An empty JSON object (`{}`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmptyObject {}

/// `audit.k8s.io/v1` `EventList`: the body of an audit-webhook POST.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EventList {
    /// Always `EventList`.
    pub kind: String,
    /// Always [`AUDIT_API_VERSION`].
    #[serde(rename = "apiVersion")]
    pub api_version: String,
    /// `ListMeta`: always `{}`.
    pub metadata: EmptyObject,
    /// The events.
    pub items: Vec<Event>,
}

impl EventList {
    /// A list of `items`.
    pub fn new(items: Vec<Event>) -> Self {
        Self {
            kind: "EventList".to_owned(),
            api_version: AUDIT_API_VERSION.to_owned(),
            metadata: EmptyObject {},
            items,
        }
    }
}
