//! Which request bodies are never recorded: those of core `secrets`, of the
//! resources the operator names, and any body that names a Secret.

use event_model::{Event, Redaction};
use k8s_request_parse::RequestInfo;

use crate::group_resource::GroupResource;
use crate::sniff::names_secret;

/// Why a request body was withheld (the event's `kubescribe.redaction.reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// `secret`: the request is to core `secrets`, or its body names an
    /// object of kind `Secret`.
    Secret,
    /// `resource`: a resource the operator named with `--redact-resource`.
    Resource,
    /// `policy`: the audit Policy's level for the request is `Metadata`.
    Policy,
}

impl Reason {
    /// The wire string.
    pub fn as_str(&self) -> &'static str {
        match self {
            Reason::Secret => "secret",
            Reason::Resource => "resource",
            Reason::Policy => "policy",
        }
    }

    /// The event's `kubescribe.redaction` for a withheld body of `dropped_bytes`.
    pub fn redaction(&self, dropped_bytes: u64) -> Redaction {
        Redaction {
            reason: self.as_str().to_owned(),
            dropped_bytes,
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The built-in resource whose bodies are never recorded: core `secrets`.
const SECRETS: GroupResource = GroupResource::const_new("", "secrets");

/// The redaction rule: core `secrets` always, plus the operator's resources.
///
/// Resource names and groups are compared ignoring ASCII case (kube-apiserver
/// would not serve a differently cased name, but a body sent there is still
/// not recorded), for every verb and subresource.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Redactor {
    resources: Vec<GroupResource>,
}

impl Redactor {
    /// The rule with the operator's extra `resources`.
    pub fn new(resources: impl IntoIterator<Item = GroupResource>) -> Self {
        Redactor {
            resources: resources.into_iter().collect(),
        }
    }

    /// The operator's extra resources.
    pub fn resources(&self) -> &[GroupResource] {
        &self.resources
    }

    /// The decision made before a body is read: is the request's resource
    /// one whose bodies are never recorded?
    pub fn for_request(&self, info: &RequestInfo) -> Option<Reason> {
        if !info.is_resource_request {
            return None;
        }
        let (group, resource) = (info.api_group.as_str(), info.resource.as_str());
        if SECRETS.matches(group, resource) {
            Some(Reason::Secret)
        } else if self.resources.iter().any(|r| r.matches(group, resource)) {
            Some(Reason::Resource)
        } else {
            None
        }
    }

    /// The decision on a body sent to any other resource: does it name a
    /// Secret? `truncated`: `body` is only the body's first bytes.
    pub fn for_body(&self, body: &[u8], truncated: bool) -> Option<Reason> {
        names_secret(body, truncated).then_some(Reason::Secret)
    }

    /// Both decisions, resource first.
    pub fn decide(&self, info: &RequestInfo, body: &[u8], truncated: bool) -> Option<Reason> {
        self.for_request(info)
            .or_else(|| self.for_body(body, truncated))
    }

    /// Applies the rule to a received event (the recorder's ingest: a proxy
    /// that does not redact sends Secret bodies): empties `request.body`
    /// and sets `kubescribe.redaction` when the rule says so. The request
    /// is judged by the event's `kubernetes` request info and by its method
    /// and path parsed again (either naming a redacted resource suffices).
    /// Returns the reason when the event was changed.
    pub fn redact_event(&self, event: &mut Event) -> Option<Reason> {
        if event.request.body.is_empty() {
            return None;
        }
        let reparsed = k8s_request_parse::request_info(&event.request.method, &event.request.path)
            .ok()
            .and_then(|info| self.for_request(&info));
        let truncated = event
            .kubescribe
            .as_ref()
            .and_then(|k| k.body.as_ref())
            .is_some_and(|b| b.truncated);
        let reason = self
            .for_request(&event.kubernetes)
            .or(reparsed)
            .or_else(|| self.for_body(&event.request.body, truncated))?;
        let dropped = event.request.body.len() as u64;
        event.request.body = Vec::new();
        let extension = event.kubescribe.get_or_insert_with(Default::default);
        extension.body = None;
        let total = extension
            .redaction
            .as_ref()
            .map_or(0, |r| r.dropped_bytes)
            .saturating_add(dropped);
        extension.redaction = Some(reason.redaction(total));
        Some(reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(method: &str, path: &str) -> RequestInfo {
        k8s_request_parse::request_info(method, path).expect("valid request")
    }

    #[test]
    fn secrets_any_verb_and_subresource() {
        let r = Redactor::default();
        for (m, p) in [
            ("POST", "/api/v1/namespaces/a/secrets"),
            ("PUT", "/api/v1/namespaces/a/secrets/s"),
            ("PATCH", "/api/v1/namespaces/a/secrets/s"),
            ("PATCH", "/api/v1/namespaces/a/secrets/s/status"),
            ("GET", "/api/v1/secrets"),
            ("DELETE", "/api/v1/namespaces/a/secrets"),
        ] {
            assert_eq!(r.for_request(&info(m, p)), Some(Reason::Secret), "{m} {p}");
        }
        for (m, p) in [
            ("POST", "/apis/example.com/v1/namespaces/a/secrets"),
            ("POST", "/api/v1/namespaces/a/configmaps"),
            ("GET", "/api/v1"),
            ("GET", "/secrets"),
        ] {
            assert_eq!(r.for_request(&info(m, p)), None, "{m} {p}");
        }
    }

    #[test]
    fn operator_resources() {
        let r = Redactor::new(
            ["/configmaps", "example.com/credentials"]
                .iter()
                .map(|s| s.parse().expect("valid")),
        );
        assert_eq!(
            r.for_request(&info("POST", "/api/v1/namespaces/a/configmaps")),
            Some(Reason::Resource)
        );
        assert_eq!(
            r.for_request(&info("PATCH", "/apis/example.com/v1/credentials/x")),
            Some(Reason::Resource)
        );
        assert_eq!(
            r.for_request(&info("PATCH", "/apis/other.com/v1/credentials/x")),
            None
        );
    }

    #[test]
    fn events_are_redacted_at_ingest() {
        let r = Redactor::default();
        let mut event = Event::default();
        event.request.method = "POST".into();
        event.request.path = "/api/v1/namespaces/a/secrets".into();
        event.request.body = br#"{"data":{"a":"aHVudGVyMg=="}}"#.to_vec();
        // The sender's request info says otherwise: the path is parsed again.
        assert_eq!(r.redact_event(&mut event), Some(Reason::Secret));
        assert!(event.request.body.is_empty());
        let redaction = event.kubescribe.and_then(|k| k.redaction);
        assert_eq!(
            redaction.map(|r| (r.reason, r.dropped_bytes)),
            Some(("secret".into(), 29))
        );

        let mut event = Event::default();
        event.request.method = "POST".into();
        event.request.path = "/api/v1/namespaces/a/configmaps".into();
        event.request.body = br#"{"kind":"ConfigMap"}"#.to_vec();
        assert_eq!(r.redact_event(&mut event), None);
        assert!(!event.request.body.is_empty());
    }
}
