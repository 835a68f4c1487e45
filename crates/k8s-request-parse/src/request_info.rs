//! The [`RequestInfo`] record, serialised exactly like Go's
//! `k8s.io/apiserver/pkg/endpoints/request.RequestInfo` (no JSON tags, so the
//! keys are the Go field names).

use serde::{Deserialize, Deserializer, Serialize};

/// What kube-apiserver learns about a request from its method and URL.
///
/// Field for field the same as Go's `request.RequestInfo`, and serialised with
/// the Go field names as keys, in Go's field order: this object is embedded
/// verbatim as the `kubernetes` object of a `kubernetes-api-request` event.
///
/// Reading is lenient so that events from Tailscale's proxy (or older/newer
/// senders) always load: missing keys and `null` values take the default,
/// unknown keys are ignored, and `Parts` may be `null` or a list.
///
/// ```
/// let info = k8s_request_parse::request_info("GET", "/api/v1/namespaces/default/pods/web-0")?;
/// let json = serde_json::to_string(&info).unwrap();
/// assert!(json.starts_with(r#"{"IsResourceRequest":true,"Path":"/api/v1/namespaces/default/pods/web-0","Verb":"get""#));
/// # Ok::<(), k8s_request_parse::RequestInfoError>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RequestInfo {
    /// True once the path was recognised as `/api/{version}/…` or
    /// `/apis/{group}/{version}/…` with at least one segment after the version.
    #[serde(rename = "IsResourceRequest", deserialize_with = "null_as_default")]
    pub is_resource_request: bool,
    /// The percent-decoded URL path, exactly as parsed (not cleaned, no query).
    #[serde(rename = "Path", deserialize_with = "null_as_default")]
    pub path: String,
    /// The Kubernetes verb (`get`, `list`, `watch`, `create`, `update`, `patch`,
    /// `delete`, `deletecollection`, `proxy`, or `""` for unmapped methods) for
    /// resource requests; the lower-cased HTTP method for non-resource requests.
    #[serde(rename = "Verb", deserialize_with = "null_as_default")]
    pub verb: String,
    /// `api` or `apis` (the first path segment); may be set on a non-resource
    /// request such as `/apis/apps/v1`.
    #[serde(rename = "APIPrefix", deserialize_with = "null_as_default")]
    pub api_prefix: String,
    /// The API group; `""` for the legacy core group under `/api`.
    #[serde(rename = "APIGroup", deserialize_with = "null_as_default")]
    pub api_group: String,
    /// The API version segment (not validated).
    #[serde(rename = "APIVersion", deserialize_with = "null_as_default")]
    pub api_version: String,
    /// The namespace from `namespaces/{ns}`, else `""` (cluster-scoped or all
    /// namespaces).
    #[serde(rename = "Namespace", deserialize_with = "null_as_default")]
    pub namespace: String,
    /// The resource: `Parts[0]`.
    #[serde(rename = "Resource", deserialize_with = "null_as_default")]
    pub resource: String,
    /// The subresource: `Parts[2]`, except for the `proxy` path verb.
    #[serde(rename = "Subresource", deserialize_with = "null_as_default")]
    pub subresource: String,
    /// The object name: `Parts[1]`, or the value of a `metadata.name` field
    /// selector on a list/watch.
    #[serde(rename = "Name", deserialize_with = "null_as_default")]
    pub name: String,
    /// The path segments from the resource on. `None` (JSON `null`, Go `nil`)
    /// for non-resource requests and for the path-verb error.
    #[serde(rename = "Parts")]
    pub parts: Option<Vec<String>>,
    /// The raw (query-decoded, otherwise unparsed) first `fieldSelector`
    /// value, recorded only for `list`, `watch` and `deletecollection`.
    #[serde(rename = "FieldSelector", deserialize_with = "null_as_default")]
    pub field_selector: String,
    /// The raw (query-decoded, otherwise unparsed) first `labelSelector`
    /// value, recorded only for `list`, `watch` and `deletecollection`.
    #[serde(rename = "LabelSelector", deserialize_with = "null_as_default")]
    pub label_selector: String,
}

/// Go's decoder leaves a field untouched when it reads `null`; do the same.
fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}
