//! The line protocol of the `requestinfo` example binary, kept here so that
//! it is tested and stable (conformance checks and downstream tools rely on
//! it).
//!
//! Input: one JSON object per line, `{"method":"GET","url":"/api/v1/pods?watch=1"}`
//! (`url` is the request-target: path plus optional query; other keys are
//! ignored).
//!
//! Output: exactly one JSON line per input line, an object with the event's
//! `kubernetes` keys in Go order — `IsResourceRequest`, `Path`, `Verb`,
//! `APIPrefix`, `APIGroup`, `APIVersion`, `Namespace`, `Resource`,
//! `Subresource`, `Name`, `Parts`, `FieldSelector`, `LabelSelector` — followed
//! by `"error"`: `null` on success, else the error text. `Parts` is always a
//! list (`[]` where upstream has nil). On an error the fields hold the
//! partial info kube-apiserver had (path verb without resource), or are
//! empty (invalid target, invalid input line).
//!
//! ```
//! let line = k8s_request_parse::cli::process_line(r#"{"method":"GET","url":"/api/v1/pods?watch=1"}"#);
//! assert_eq!(
//!     line,
//!     r#"{"IsResourceRequest":true,"Path":"/api/v1/pods","Verb":"watch","APIPrefix":"api","APIGroup":"","APIVersion":"v1","Namespace":"","Resource":"pods","Subresource":"","Name":"","Parts":["pods"],"FieldSelector":"","LabelSelector":"","error":null}"#
//! );
//! ```

use serde::{Deserialize, Serialize};

use crate::{request_info, RequestInfo};

/// One input line.
#[derive(Deserialize)]
struct Input {
    method: String,
    url: String,
}

/// One output line: the `kubernetes` keys plus `error`.
#[derive(Serialize)]
struct Output<'a> {
    #[serde(rename = "IsResourceRequest")]
    is_resource_request: bool,
    #[serde(rename = "Path")]
    path: &'a str,
    #[serde(rename = "Verb")]
    verb: &'a str,
    #[serde(rename = "APIPrefix")]
    api_prefix: &'a str,
    #[serde(rename = "APIGroup")]
    api_group: &'a str,
    #[serde(rename = "APIVersion")]
    api_version: &'a str,
    #[serde(rename = "Namespace")]
    namespace: &'a str,
    #[serde(rename = "Resource")]
    resource: &'a str,
    #[serde(rename = "Subresource")]
    subresource: &'a str,
    #[serde(rename = "Name")]
    name: &'a str,
    #[serde(rename = "Parts")]
    parts: &'a [String],
    #[serde(rename = "FieldSelector")]
    field_selector: &'a str,
    #[serde(rename = "LabelSelector")]
    label_selector: &'a str,
    error: Option<&'a str>,
}

/// Answers one input line (without its line terminator) with one output
/// line (without a terminator). Never panics.
pub fn process_line(line: &str) -> String {
    match serde_json::from_str::<Input>(line) {
        Err(err) => render(
            &RequestInfo::default(),
            Some(&format!(
                r#"invalid input line: {err} (expected a JSON object like {{"method":"GET","url":"/api/v1/pods"}})"#
            )),
        ),
        Ok(input) => match request_info(&input.method, &input.url) {
            Ok(info) => render(&info, None),
            Err(err) => {
                let text = err.to_string();
                match err.into_partial_info() {
                    Some(partial) => render(&partial, Some(&text)),
                    None => render(&RequestInfo::default(), Some(&text)),
                }
            }
        },
    }
}

/// [`process_line`] for raw input bytes: a line that is not UTF-8 gets an
/// error line.
pub fn process_line_bytes(line: &[u8]) -> String {
    match std::str::from_utf8(line) {
        Ok(text) => process_line(text),
        Err(err) => render(
            &RequestInfo::default(),
            Some(&format!("invalid input line: not UTF-8 ({err})")),
        ),
    }
}

fn render(info: &RequestInfo, error: Option<&str>) -> String {
    let output = Output {
        is_resource_request: info.is_resource_request,
        path: &info.path,
        verb: &info.verb,
        api_prefix: &info.api_prefix,
        api_group: &info.api_group,
        api_version: &info.api_version,
        namespace: &info.namespace,
        resource: &info.resource,
        subresource: &info.subresource,
        name: &info.name,
        parts: info.parts.as_deref().unwrap_or_default(),
        field_selector: &info.field_selector,
        label_selector: &info.label_selector,
        error,
    };
    // Serialising plain strings, bools and a string list cannot fail; keep a
    // valid line even if it ever did.
    serde_json::to_string(&output).unwrap_or_else(|err| {
        format!(
            r#"{{"IsResourceRequest":false,"Path":"","Verb":"","APIPrefix":"","APIGroup":"","APIVersion":"","Namespace":"","Resource":"","Subresource":"","Name":"","Parts":[],"FieldSelector":"","LabelSelector":"","error":{}}}"#,
            serde_json::Value::from(format!("cannot serialise output: {err}"))
        )
    })
}
