//! Every vector (`tests/data/requestinfo-vectors.json`) must come out exactly: all `expect`
//! fields, plus the decoded path, the raw selectors, whether `NewRequestInfo` failed and, where a
//! vector gives it, the status kube-apiserver answers the failure with.
//!
//! Each vector names its `source`. The first 139 are the shared vector file, unchanged: 58
//! (`upstream-test`) are cases of kube-apiserver's own request-info unit tests; 81 (`derived`) were
//! worked out by hand from the algorithm (`docs/request-info.md#algorithm`). The rest
//! (`kube-apiserver v1.37.2 audit log`) were checked against a running kube-apiserver v1.37.2 by
//! the oracle (`cargo xtask oracle`): the verb and objectRef of the audit event it wrote for the
//! request, or, for a request it refuses, its own status and the absence of an audit event. The
//! oracle sends every vector that makes sense live on each run and compares the vector's
//! expectations with the audit log again.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use k8s_request_parse::{request_info, RequestInfo};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
struct Vector {
    id: u64,
    method: String,
    url: String,
    expect: Expect,
    expect_extra: ExpectExtra,
    source: String,
    note: String,
}

#[derive(Debug, Deserialize, PartialEq)]
struct Expect {
    is_resource_request: bool,
    verb: String,
    api_prefix: String,
    api_group: String,
    api_version: String,
    namespace: String,
    resource: String,
    subresource: String,
    name: String,
    parts: Vec<String>,
}

#[derive(Debug, Deserialize, PartialEq)]
struct ExpectExtra {
    path: String,
    field_selector: String,
    label_selector: String,
    error: bool,
    /// For an error: the status kube-apiserver answers with (500 for a request-info error, 400
    /// for a target Go's server rejects, which has no request info at all). Optional; the shared
    /// vectors do not give it.
    #[serde(default)]
    status: Option<u16>,
}

/// How many vectors come from the shared vector file (the first ones, in its order).
const SHARED: usize = 139;
/// The `source` of the vectors checked against a running kube-apiserver.
const LIVE_SOURCE: &str = "kube-apiserver v1.37.2 audit log";

fn vectors() -> Vec<Vector> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/requestinfo-vectors.json"
    );
    let text = std::fs::read_to_string(path).expect("read the vector file");
    serde_json::from_str(&text).expect("parse the vector file")
}

/// Observed result in the vectors' shape.
fn observe(info: &RequestInfo, error: bool, status: Option<u16>) -> (Expect, ExpectExtra) {
    (
        Expect {
            is_resource_request: info.is_resource_request,
            verb: info.verb.clone(),
            api_prefix: info.api_prefix.clone(),
            api_group: info.api_group.clone(),
            api_version: info.api_version.clone(),
            namespace: info.namespace.clone(),
            resource: info.resource.clone(),
            subresource: info.subresource.clone(),
            name: info.name.clone(),
            parts: info.parts.clone().unwrap_or_default(),
        },
        ExpectExtra {
            path: info.path.clone(),
            field_selector: info.field_selector.clone(),
            label_selector: info.label_selector.clone(),
            error,
            status,
        },
    )
}

#[test]
fn all_vectors_pass() {
    let vectors = vectors();
    assert!(
        vectors.len() > SHARED,
        "the shared vectors and the live-checked ones"
    );
    let mut failures = Vec::new();
    for v in &vectors {
        // A vector without a status says nothing about it.
        let wants_status = v.expect_extra.status.is_some();
        let (info, error, status) = match request_info(&v.method, &v.url) {
            Ok(info) => (info, false, None),
            Err(err) => {
                let status = wants_status.then(|| err.http_status());
                match err.partial_info() {
                    Some(partial) => (partial.clone(), true, status),
                    // Only a vector that says so may have no request info at all (a target
                    // Go's server rejects with 400).
                    None if v.expect_extra.status == Some(400) => {
                        (RequestInfo::default(), true, status)
                    }
                    None => {
                        failures.push(format!(
                            "#{} {} {:?} ({}): no request info at all: {err}",
                            v.id, v.method, v.url, v.note
                        ));
                        continue;
                    }
                }
            }
        };
        // Upstream's nil Parts is written as [] in the vectors; check the
        // nil-ness separately: nil exactly for non-resource and error results.
        let parts_nil_expected = !v.expect.is_resource_request || v.expect_extra.error;
        if info.parts.is_none() != parts_nil_expected {
            failures.push(format!(
                "#{} {} {:?} ({}): Parts is {:?}, expected nil = {parts_nil_expected}",
                v.id, v.method, v.url, v.note, info.parts
            ));
        }
        let observed = observe(&info, error, status);
        if observed.0 != v.expect || observed.1 != v.expect_extra {
            failures.push(format!(
                "#{} {} {:?} ({}):\n   got      {:?}\n   expected {:?} {:?}",
                v.id, v.method, v.url, v.note, observed, v.expect, v.expect_extra
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} vectors failed:\n{}",
        failures.len(),
        vectors.len(),
        failures.join("\n")
    );
}

#[test]
fn vectors_cover_every_field_of_the_contract() {
    // Guard against a truncated or hand-edited copy: the first vectors must
    // equal the shared vector file when that is present next to the
    // workspace; only live-checked vectors follow them.
    let copy = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/requestinfo-vectors.json"
    );
    let shared = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/reference/requestinfo-vectors.json"
    );
    let ours: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(copy).unwrap()).unwrap();
    if let Ok(reference) = std::fs::read(shared) {
        let reference: Vec<serde_json::Value> = serde_json::from_slice(&reference).unwrap();
        assert_eq!(reference.len(), SHARED);
        assert_eq!(
            &ours[..SHARED],
            &reference[..],
            "tests/data copy differs from the shared vector file"
        );
    }
    assert!(ours[SHARED..].iter().all(|v| v["source"] == LIVE_SOURCE));
    let vectors = vectors();
    assert!(vectors.iter().any(|v| v.expect_extra.error));
    assert!(vectors
        .iter()
        .any(|v| !v.expect_extra.field_selector.is_empty()));
    assert!(vectors
        .iter()
        .any(|v| !v.expect_extra.label_selector.is_empty()));
}

#[test]
fn vector_sources_are_as_documented() {
    // The module documentation (and the README) say how many vectors come
    // from kube-apiserver's tests, how many were derived by hand, and how
    // many were checked against a running kube-apiserver.
    let vectors = vectors();
    let count = |source: &str| vectors.iter().filter(|v| v.source == source).count();
    assert_eq!(count("upstream-test"), 58);
    assert_eq!(count("derived"), 81);
    assert_eq!(count(LIVE_SOURCE), 53);
    assert_eq!(vectors.len(), 58 + 81 + 53, "no other source");
    // Live-checked ids are their own range.
    assert!(vectors[SHARED..].iter().all(|v| v.id > 1000));
}

#[test]
fn serialises_with_go_keys_in_go_order() {
    let info = request_info("GET", "/api/v1/namespaces/default/pods/foo").unwrap();
    let json = serde_json::to_string(&info).unwrap();
    assert_eq!(
        json,
        r#"{"IsResourceRequest":true,"Path":"/api/v1/namespaces/default/pods/foo","Verb":"get","APIPrefix":"api","APIGroup":"","APIVersion":"v1","Namespace":"default","Resource":"pods","Subresource":"","Name":"foo","Parts":["pods","foo"],"FieldSelector":"","LabelSelector":""}"#
    );
    let non_resource = serde_json::to_value(request_info("GET", "/version").unwrap()).unwrap();
    assert_eq!(non_resource["Parts"], serde_json::Value::Null);
}

#[test]
fn reads_tailscale_output_and_is_lenient() {
    let go = r#"{"IsResourceRequest":false,"Path":"/version","Verb":"get","APIPrefix":"","APIGroup":"","APIVersion":"","Namespace":"","Resource":"","Subresource":"","Name":"","Parts":null,"FieldSelector":"","LabelSelector":""}"#;
    let info: RequestInfo = serde_json::from_str(go).unwrap();
    assert_eq!(info, request_info("GET", "/version").unwrap());

    let with_list = r#"{"IsResourceRequest":true,"Path":"/api/v1/pods","Verb":"list","APIPrefix":"api","APIGroup":"","APIVersion":"v1","Namespace":"","Resource":"pods","Subresource":"","Name":"","Parts":["pods"],"FieldSelector":"","LabelSelector":"","FutureField":1}"#;
    let info: RequestInfo = serde_json::from_str(with_list).unwrap();
    assert_eq!(info, request_info("GET", "/api/v1/pods").unwrap());

    let sparse: RequestInfo = serde_json::from_str(r#"{"Verb":"get","Path":null}"#).unwrap();
    assert_eq!(
        sparse,
        RequestInfo {
            verb: "get".into(),
            ..RequestInfo::default()
        }
    );
    let empty_parts: RequestInfo = serde_json::from_str(r#"{"Parts":[]}"#).unwrap();
    assert_eq!(empty_parts.parts, Some(vec![]));
}

#[test]
fn round_trips_through_json() {
    for (method, target) in [
        (
            "GET",
            "/api/v1/pods?fieldSelector=metadata.name%3Dx&labelSelector=a%3Db",
        ),
        ("GET", "/healthz"),
        ("POST", "/api/v1/namespaces/x/pods/p/exec?command=sh"),
    ] {
        let info = request_info(method, target).unwrap();
        let back: RequestInfo =
            serde_json::from_slice(&serde_json::to_vec(&info).unwrap()).unwrap();
        assert_eq!(back, info);
    }
}
