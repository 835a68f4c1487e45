//! A stored event (and its response record, joined by `kubescribe.key`) as
//! an `audit.k8s.io/v1` Event. The mapping, field by field, is
//! `docs/export.md`; this module is its only implementation.

use std::collections::BTreeMap;
use std::time::Duration;

use event_model::{AuditLevel, Event, ResponseRecord};
use serde_json::value::RawValue;
use time::macros::format_description;
use time::OffsetDateTime;

use super::audit::{
    self, ObjectReference, Status, UserInfo, AUDIT_API_VERSION, STAGE_RESPONSE_COMPLETE,
};

/// The prefix of every annotation the exporter adds.
pub(crate) const ANNOTATION_PREFIX: &str = "kubescribe.io/";

/// What became of the event's response record when it was converted.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Response<'a> {
    /// Joined by key.
    Found(&'a ResponseRecord),
    /// None was stored within the wait bound (a long watch, a proxy that
    /// died, or one that sends no response records).
    Missing {
        /// How long the exporter waited for it.
        waited: Duration,
    },
    /// The event has no `kubescribe.key` (Tailscale's proxy): no response
    /// record can belong to it.
    NoKey,
}

/// `kube-apiserver`'s `metav1.MicroTime` text: RFC 3339, UTC, six fraction
/// digits (`2026-12-07T06:43:04.000000Z`).
pub(crate) fn micro_time(unix_micros: i64) -> String {
    let t = OffsetDateTime::from_unix_timestamp_nanos(i128::from(unix_micros) * 1000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    t.format(format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
    ))
    .unwrap_or_default()
}

fn annotate(annotations: &mut BTreeMap<String, String>, name: &str, value: impl Into<String>) {
    let value = value.into();
    if !value.is_empty() {
        annotations.insert(format!("{ANNOTATION_PREFIX}{name}"), value);
    }
}

/// The audit level the event was recorded at: `kubescribe.auditLevel`, or
/// for a proxy that applied no Policy, `Request` when it holds a body and
/// `Metadata` when not.
fn level_of(event: &Event) -> AuditLevel {
    match event
        .kubescribe
        .as_ref()
        .and_then(|ext| ext.audit_level.clone())
    {
        Some(level) => level,
        None if event.request.body.is_empty() => AuditLevel::Metadata,
        None => AuditLevel::Request,
    }
}

/// The tailnet caller, as the `user` who authenticated to kubescribe.
fn tailnet_user(event: &Event) -> UserInfo {
    let source = &event.source;
    let username = if source.node_user.is_empty() {
        source.node.clone()
    } else {
        source.node_user.clone()
    };
    let uid = if source.node_user_id != 0 {
        source.node_user_id.to_string()
    } else {
        source.node_id.clone()
    };
    let mut extra = BTreeMap::new();
    for (name, value) in [
        ("node", &source.node),
        ("node-id", &source.node_id),
        ("proxy-node", &event.destination.node),
    ] {
        if !value.is_empty() {
            extra.insert(format!("{ANNOTATION_PREFIX}{name}"), vec![value.clone()]);
        }
    }
    UserInfo {
        username,
        uid,
        groups: source.node_tags.clone(),
        extra,
    }
}

/// The user the proxy impersonated, as kube-apiserver writes it in its own
/// event's `impersonatedUser`: the impersonated groups, plus
/// `system:authenticated` unless it or `system:unauthenticated` is among them.
fn impersonated_user(event: &Event) -> Option<UserInfo> {
    let ext = event.kubescribe.as_ref()?;
    if ext.impersonated_user.is_empty() {
        return None;
    }
    let mut groups = ext.impersonated_groups.clone();
    if !groups
        .iter()
        .any(|g| g == "system:authenticated" || g == "system:unauthenticated")
    {
        groups.push("system:authenticated".to_owned());
    }
    Some(UserInfo {
        username: ext.impersonated_user.clone(),
        groups,
        ..UserInfo::default()
    })
}

/// The request body as `requestObject`, or why there is none (an
/// annotation), when the level includes the body.
fn request_object(event: &Event, level: &AuditLevel) -> (Option<Box<RawValue>>, &'static str) {
    let ext = event.kubescribe.as_ref();
    if !level.includes_request_body() {
        return (None, "");
    }
    if ext.is_some_and(|e| e.redaction.is_some()) {
        return (None, "omitted: redacted");
    }
    if event.request.body.is_empty() {
        return (None, "");
    }
    if ext
        .and_then(|e| e.body.as_ref())
        .is_some_and(|b| b.truncated)
    {
        return (None, "omitted: body longer than the proxy's capture limit");
    }
    match serde_json::from_slice::<Box<RawValue>>(&event.request.body) {
        Ok(raw) if raw.get().starts_with('{') => (Some(raw), ""),
        _ => (None, "omitted: body is not a JSON object"),
    }
}

/// Converts one stored event and what is known of its response.
pub(crate) fn to_audit_event(event: &Event, response: Response<'_>) -> audit::Event {
    let ext = event.kubescribe.as_ref();
    let mut annotations = BTreeMap::new();
    let level = level_of(event);
    let info = &event.kubernetes;
    let verb = if info.verb.is_empty() {
        event.request.method.to_ascii_lowercase()
    } else {
        info.verb.clone()
    };
    let object_ref = info.is_resource_request.then(|| ObjectReference {
        resource: info.resource.clone(),
        namespace: info.namespace.clone(),
        name: info.name.clone(),
        api_group: info.api_group.clone(),
        api_version: info.api_version.clone(),
        subresource: info.subresource.clone(),
    });
    let received_us = event.timestamp.saturating_mul(1_000_000);
    let mut stage_us = received_us;
    let mut decision = ext.and_then(|e| e.decision.clone());
    let response_status = match response {
        Response::Found(r) => {
            annotate(&mut annotations, "response-record-id", r.id.clone());
            annotate(
                &mut annotations,
                "error",
                r.error.clone().unwrap_or_default(),
            );
            decision = r.decision.clone().or(decision);
            // `durationMs` is measured by the proxy; the event's own
            // timestamp has whole seconds only.
            let duration_us = (r.duration_ms * 1000.0).clamp(0.0, i64::MAX as f64) as i64;
            stage_us = received_us
                .saturating_add(duration_us)
                .max(r.timestamp.saturating_mul(1_000_000));
            (r.status != 0).then(|| Status {
                status: if r.status >= 400 {
                    "Failure".to_owned()
                } else {
                    String::new()
                },
                message: r.error.clone().unwrap_or_default(),
                code: i32::from(r.status),
                ..Status::default()
            })
        }
        Response::Missing { waited } => {
            annotate(
                &mut annotations,
                "response",
                format!("missing: no response record within {}s", waited.as_secs()),
            );
            None
        }
        Response::NoKey => {
            annotate(
                &mut annotations,
                "response",
                "missing: the event has no kubescribe.key to join a response record by",
            );
            None
        }
    };
    let (request_object, why_no_object) = request_object(event, &level);
    annotate(&mut annotations, "request-object", why_no_object);
    annotate(&mut annotations, "record-id", event.id.clone());
    annotate(&mut annotations, "node", event.source.node.clone());
    annotate(&mut annotations, "node-id", event.source.node_id.clone());
    annotate(
        &mut annotations,
        "node-user",
        event.source.node_user.clone(),
    );
    if event.source.node_user_id != 0 {
        annotate(
            &mut annotations,
            "node-user-id",
            event.source.node_user_id.to_string(),
        );
    }
    annotate(
        &mut annotations,
        "node-tags",
        event.source.node_tags.join(","),
    );
    annotate(
        &mut annotations,
        "proxy-node",
        event.destination.node.clone(),
    );
    annotate(
        &mut annotations,
        "decision",
        decision.map(String::from).unwrap_or_default(),
    );
    if let Some(redaction) = ext.and_then(|e| e.redaction.as_ref()) {
        annotate(
            &mut annotations,
            "redaction",
            format!(
                "{}; {} bytes dropped",
                redaction.reason, redaction.dropped_bytes
            ),
        );
    }
    let audit_id = match ext {
        Some(e) if !e.audit_id.is_empty() => e.audit_id.clone(),
        Some(e) => e.key.clone(),
        None => String::new(),
    };
    let audit_id = if audit_id.is_empty() {
        event.id.clone()
    } else {
        audit_id
    };
    audit::Event {
        kind: "Event".to_owned(),
        api_version: AUDIT_API_VERSION.to_owned(),
        level: level.as_str().to_owned(),
        audit_id,
        stage: STAGE_RESPONSE_COMPLETE.to_owned(),
        request_uri: event.request.path.clone(),
        verb,
        user: tailnet_user(event),
        impersonated_user: impersonated_user(event),
        source_ips: Vec::new(),
        user_agent: event.user_agent.clone(),
        object_ref,
        response_status,
        request_object,
        request_received_timestamp: micro_time(received_us),
        stage_timestamp: micro_time(stage_us),
        annotations,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use event_model::{BodyCapture, Decision, Extension, Record, Redaction};
    use serde_json::json;

    fn stored(json: serde_json::Value) -> Event {
        match Record::from_slice(json.to_string().as_bytes()).unwrap() {
            Record::Event(e) => e,
            Record::Response(_) => panic!("not an event"),
        }
    }

    fn pod_create() -> Event {
        stored(json!({
            "type": "kubernetes-api-request", "id": "e-0193aaaabbbbccccddddeeeeffff0000-3",
            "timestamp": 1_767_225_600, "userAgent": "kubectl/v1.34",
            "request": {"method": "POST", "path": "/api/v1/namespaces/dev/pods?dryRun=All",
                "body": "eyJraW5kIjoiUG9kIn0=", "queryParameters": {"dryRun": ["All"]}},
            "kubernetes": {"IsResourceRequest": true, "Path": "/api/v1/namespaces/dev/pods",
                "Verb": "create", "APIPrefix": "api", "APIGroup": "", "APIVersion": "v1",
                "Namespace": "dev", "Resource": "pods", "Subresource": "", "Name": "",
                "Parts": ["pods"], "FieldSelector": "", "LabelSelector": ""},
            "source": {"node": "laptop.tail.ts.net", "nodeID": "nA", "nodeUserID": 42,
                "nodeUser": "alice@example.com"},
            "destination": {"node": "proxy.tail.ts.net", "nodeID": "nP"},
            "kubescribe": {"key": "0193-key", "auditID": "0193-key",
                "impersonatedUser": "alice@example.com", "impersonatedGroups": ["devs"]}
        }))
    }

    fn response(status: u16) -> ResponseRecord {
        ResponseRecord {
            id: "r-0193aaaabbbbccccddddeeeeffff0001-0".into(),
            key: "0193-key".into(),
            timestamp: 1_767_225_601,
            status,
            duration_ms: 1500.25,
            decision: Some(Decision::Forwarded),
            ..ResponseRecord::default()
        }
    }

    #[test]
    fn a_forwarded_create_maps_field_by_field() {
        let r = response(201);
        let a = to_audit_event(&pod_create(), Response::Found(&r));
        let wire = serde_json::to_value(&a).unwrap();
        assert_eq!(
            wire,
            json!({
                "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Request",
                "auditID": "0193-key", "stage": "ResponseComplete",
                "requestURI": "/api/v1/namespaces/dev/pods?dryRun=All", "verb": "create",
                "user": {"username": "alice@example.com", "uid": "42",
                    "extra": {"kubescribe.io/node": ["laptop.tail.ts.net"],
                        "kubescribe.io/node-id": ["nA"],
                        "kubescribe.io/proxy-node": ["proxy.tail.ts.net"]}},
                "impersonatedUser": {"username": "alice@example.com",
                    "groups": ["devs", "system:authenticated"]},
                "userAgent": "kubectl/v1.34",
                "objectRef": {"resource": "pods", "namespace": "dev", "apiVersion": "v1"},
                "responseStatus": {"metadata": {}, "code": 201},
                "requestObject": {"kind": "Pod"},
                "requestReceivedTimestamp": "2026-01-01T00:00:00.000000Z",
                "stageTimestamp": "2026-01-01T00:00:01.500250Z",
                "annotations": {
                    "kubescribe.io/decision": "forwarded",
                    "kubescribe.io/node": "laptop.tail.ts.net",
                    "kubescribe.io/node-id": "nA",
                    "kubescribe.io/node-user": "alice@example.com",
                    "kubescribe.io/node-user-id": "42",
                    "kubescribe.io/proxy-node": "proxy.tail.ts.net",
                    "kubescribe.io/record-id": "e-0193aaaabbbbccccddddeeeeffff0000-3",
                    "kubescribe.io/response-record-id": "r-0193aaaabbbbccccddddeeeeffff0001-0"
                }
            })
        );
    }

    #[test]
    fn metadata_level_redaction_truncation_and_non_json_bodies_omit_the_object() {
        let r = response(200);
        let mut e = pod_create();
        e.kubescribe.as_mut().unwrap().audit_level = Some(AuditLevel::Metadata);
        let a = to_audit_event(&e, Response::Found(&r));
        assert_eq!(a.level, "Metadata");
        assert!(a.request_object.is_none());
        assert!(!a.annotations.contains_key("kubescribe.io/request-object"));

        let mut e = pod_create();
        e.request.body.clear();
        e.kubescribe.as_mut().unwrap().redaction = Some(Redaction {
            reason: "secret".into(),
            dropped_bytes: 77,
        });
        let a = to_audit_event(&e, Response::Found(&r));
        assert_eq!(a.level, "Metadata", "no Policy and no body: Metadata");
        assert_eq!(
            a.annotations["kubescribe.io/redaction"],
            "secret; 77 bytes dropped"
        );

        let mut e = pod_create();
        e.kubescribe.as_mut().unwrap().body = Some(BodyCapture {
            truncated: true,
            captured_bytes: 14,
        });
        let a = to_audit_event(&e, Response::Found(&r));
        assert!(a.request_object.is_none());
        assert!(a.annotations["kubescribe.io/request-object"].contains("capture limit"));

        let mut e = pod_create();
        e.request.body = b"\x0ak8s\x00protobuf".to_vec();
        let a = to_audit_event(&e, Response::Found(&r));
        assert!(a.request_object.is_none());
        assert!(a.annotations["kubescribe.io/request-object"].contains("not a JSON object"));
    }

    #[test]
    fn non_resource_requests_tagged_callers_and_missing_responses() {
        let mut e = pod_create();
        e.kubernetes = Default::default();
        e.kubernetes.verb = "get".into();
        e.request.method = "GET".into();
        e.request.path = "/version".into();
        e.request.body.clear();
        e.source = event_model::Source {
            node: "ci.tail.ts.net".into(),
            node_id: "nC".into(),
            node_tags: vec!["tag:ci".into(), "tag:deploy".into()],
            ..Default::default()
        };
        e.kubescribe = Some(Extension {
            key: "k2".into(),
            ..Default::default()
        });
        let a = to_audit_event(
            &e,
            Response::Missing {
                waited: Duration::from_secs(60),
            },
        );
        assert_eq!(a.verb, "get");
        assert!(a.object_ref.is_none());
        assert!(a.response_status.is_none());
        assert!(a.impersonated_user.is_none(), "noauth: nobody impersonated");
        assert_eq!(a.audit_id, "k2", "no auditID: the key");
        assert_eq!(a.user.username, "ci.tail.ts.net");
        assert_eq!(a.user.uid, "nC");
        assert_eq!(a.user.groups, ["tag:ci", "tag:deploy"]);
        assert_eq!(
            a.annotations["kubescribe.io/node-tags"],
            "tag:ci,tag:deploy"
        );
        assert!(a.annotations["kubescribe.io/response"].contains("60s"));
        assert_eq!(a.stage_timestamp, a.request_received_timestamp);

        let a = to_audit_event(&e, Response::NoKey);
        assert!(a.annotations["kubescribe.io/response"].contains("no kubescribe.key"));

        e.kubernetes.verb.clear();
        e.request.method = "OPTIONS".into();
        assert_eq!(
            to_audit_event(&e, Response::Found(&response(0))).verb,
            "options"
        );
    }

    #[test]
    fn failures_carry_failure_status_and_the_proxy_error() {
        let mut r = response(502);
        r.error = Some("upstream unreachable".into());
        r.decision = Some(Decision::UpstreamError);
        let a = to_audit_event(&pod_create(), Response::Found(&r));
        let status = a.response_status.unwrap();
        assert_eq!(status.code, 502);
        assert_eq!(status.status, "Failure");
        assert_eq!(status.message, "upstream unreachable");
        assert_eq!(a.annotations["kubescribe.io/decision"], "upstream-error");
        // No response at all (status 0): no responseStatus.
        assert!(to_audit_event(&pod_create(), Response::Found(&response(0)))
            .response_status
            .is_none());
    }

    #[test]
    fn micro_time_is_what_kube_apiserver_writes() {
        assert_eq!(micro_time(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(
            micro_time(1_767_225_600_123_456),
            "2026-01-01T00:00:00.123456Z"
        );
    }
}
