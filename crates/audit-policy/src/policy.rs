//! The `audit.k8s.io/v1` Policy: its file format (read strictly) and
//! kube-apiserver's rule semantics (`k8s.io/apiserver/pkg/audit/policy`):
//! the first matching rule decides the level; no rule matching means
//! `None`.

use std::path::Path;

use k8s_request_parse::RequestInfo;
use serde::Deserialize;

use crate::error::PolicyError;

/// The only API version read.
const API_VERSION: &str = "audit.k8s.io/v1";

/// How much of a request is recorded, as the Policy names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
pub enum Level {
    /// Not recorded at all.
    None,
    /// Who, what, when and the outcome; no request body.
    Metadata,
    /// Metadata and the request body.
    Request,
    /// Metadata, request body and response body (kubescribe's proxy records
    /// response sizes and statuses, not bodies: recorded as `Request` is,
    /// with the level saying `RequestResponse`).
    RequestResponse,
}

impl Level {
    /// The Policy's spelling.
    pub fn as_str(&self) -> &'static str {
        match self {
            Level::None => "None",
            Level::Metadata => "Metadata",
            Level::Request => "Request",
            Level::RequestResponse => "RequestResponse",
        }
    }

    /// The event's `kubescribe.auditLevel` (`None` for `None`: no event).
    pub fn audit_level(&self) -> Option<event_model::AuditLevel> {
        match self {
            Level::None => None,
            Level::Metadata => Some(event_model::AuditLevel::Metadata),
            Level::Request => Some(event_model::AuditLevel::Request),
            Level::RequestResponse => Some(event_model::AuditLevel::RequestResponse),
        }
    }

    /// Whether a request at this level is recorded with its body.
    pub fn includes_request_body(&self) -> bool {
        matches!(self, Level::Request | Level::RequestResponse)
    }
}

impl std::fmt::Display for Level {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An audit stage, as the Policy names it (`omitStages`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
pub enum Stage {
    /// The request was received (kubescribe: the event, sent before forwarding).
    RequestReceived,
    /// Response headers were sent (long-running requests; kubescribe: no record of its own).
    ResponseStarted,
    /// The response was sent (kubescribe: the response record).
    ResponseComplete,
    /// A panic occurred (kubescribe: no record of its own).
    Panic,
}

/// One `resources` entry of a rule.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GroupResources {
    /// The API group (`""`: core; `*`: any).
    #[serde(default)]
    pub group: String,
    /// Resources (`pods`, `pods/log`, `*`, `*/status`, `pods/*`); empty: all of the group.
    #[serde(default)]
    pub resources: Vec<String>,
    /// Object names; empty: any.
    #[serde(default)]
    pub resource_names: Vec<String>,
}

/// One rule of a Policy.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PolicyRule {
    /// The level of the requests this rule matches.
    pub level: Level,
    /// User names; empty: any.
    #[serde(default)]
    pub users: Vec<String>,
    /// Groups (any one of the user's); empty: any.
    #[serde(default)]
    pub user_groups: Vec<String>,
    /// Verbs; empty: any.
    #[serde(default)]
    pub verbs: Vec<String>,
    /// Resources; with `namespaces`, only resource requests match.
    #[serde(default)]
    pub resources: Vec<GroupResources>,
    /// Namespaces (`""`: cluster-scoped); empty: any.
    #[serde(default)]
    pub namespaces: Vec<String>,
    /// Non-resource paths (`/healthz`, `/version*`, `*`); only non-resource requests match.
    #[serde(default, rename = "nonResourceURLs")]
    pub non_resource_urls: Vec<String>,
    /// Stages not recorded, besides the Policy's.
    #[serde(default)]
    pub omit_stages: Vec<Stage>,
    /// Whether `metadata.managedFields` is stripped from recorded bodies;
    /// absent: the Policy's setting.
    #[serde(default)]
    pub omit_managed_fields: Option<bool>,
}

/// What the Policy file holds.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PolicyFile {
    api_version: String,
    kind: String,
    #[serde(default)]
    #[allow(dead_code)]
    metadata: Option<serde_yaml_ng::Value>,
    #[serde(default)]
    rules: Vec<PolicyRule>,
    #[serde(default)]
    omit_stages: Vec<Stage>,
    #[serde(default)]
    omit_managed_fields: bool,
}

/// An `audit.k8s.io/v1` Policy, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    rules: Vec<PolicyRule>,
    omit_stages: Vec<Stage>,
    omit_managed_fields: bool,
}

/// Who made a request and what it is, as the Policy's rules see it.
#[derive(Debug, Clone, Copy)]
pub struct Attributes<'a> {
    /// The user name (kube-apiserver's authenticated, or impersonated, user).
    pub user: &'a str,
    /// The user's groups (kube-apiserver adds `system:authenticated`).
    pub groups: &'a [String],
    /// What the request is.
    pub request: &'a RequestInfo,
}

/// The Policy's decision for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditConfig {
    /// How much is recorded.
    pub level: Level,
    /// Stages not recorded (the rule's and the Policy's).
    pub omit_stages: Vec<Stage>,
    /// Whether `metadata.managedFields` is stripped from recorded bodies.
    pub omit_managed_fields: bool,
    /// The index of the matching rule (`None`: no rule matched).
    pub rule: Option<usize>,
}

impl AuditConfig {
    /// Whether `stage` is omitted.
    pub fn omits(&self, stage: Stage) -> bool {
        self.omit_stages.contains(&stage)
    }
}

impl Policy {
    /// The Policy kubescribe applies without `--audit-policy`: every request
    /// at `Request` level.
    pub fn request_level_for_all() -> Self {
        Policy {
            rules: vec![PolicyRule {
                level: Level::Request,
                users: Vec::new(),
                user_groups: Vec::new(),
                verbs: Vec::new(),
                resources: Vec::new(),
                namespaces: Vec::new(),
                non_resource_urls: Vec::new(),
                omit_stages: Vec::new(),
                omit_managed_fields: None,
            }],
            omit_stages: Vec::new(),
            omit_managed_fields: false,
        }
    }

    /// Reads a Policy file.
    pub fn load(path: &Path) -> Result<Self, PolicyError> {
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_yaml(&text)
    }

    /// Parses a Policy (YAML or JSON), strictly: unknown fields, unknown
    /// levels or stages, and what kube-apiserver's validation refuses are
    /// errors that say where.
    pub fn from_yaml(text: &str) -> Result<Self, PolicyError> {
        let file: PolicyFile = serde_yaml_ng::from_str(text).map_err(PolicyError::Syntax)?;
        if file.api_version != API_VERSION || file.kind != "Policy" {
            return Err(PolicyError::NotAPolicy {
                api_version: file.api_version,
                kind: file.kind,
            });
        }
        for (index, rule) in file.rules.iter().enumerate() {
            validate_rule(rule).map_err(|message| PolicyError::Invalid { index, message })?;
        }
        let rules = file
            .rules
            .into_iter()
            .map(|mut rule| {
                // As kube-apiserver: each rule omits the Policy's stages too.
                let mut stages = file.omit_stages.clone();
                stages.extend(rule.omit_stages);
                stages.sort();
                stages.dedup();
                rule.omit_stages = stages;
                rule
            })
            .collect();
        Ok(Policy {
            rules,
            omit_stages: file.omit_stages,
            omit_managed_fields: file.omit_managed_fields,
        })
    }

    /// The rules, in order.
    pub fn rules(&self) -> &[PolicyRule] {
        &self.rules
    }

    /// The decision for one request: the first matching rule's, else `None`.
    pub fn evaluate(&self, attrs: &Attributes<'_>) -> AuditConfig {
        for (index, rule) in self.rules.iter().enumerate() {
            if rule_matches(rule, attrs) {
                return AuditConfig {
                    level: rule.level,
                    omit_stages: rule.omit_stages.clone(),
                    omit_managed_fields: rule
                        .omit_managed_fields
                        .unwrap_or(self.omit_managed_fields),
                    rule: Some(index),
                };
            }
        }
        AuditConfig {
            level: Level::None,
            omit_stages: self.omit_stages.clone(),
            omit_managed_fields: self.omit_managed_fields,
            rule: None,
        }
    }
}

/// kube-apiserver's validation of one rule.
fn validate_rule(rule: &PolicyRule) -> Result<(), String> {
    for url in &rule.non_resource_urls {
        if url == "*" {
            continue;
        }
        if !url.starts_with('/') {
            return Err(format!(
                "nonResourceURLs: {url:?}: non-resource URL rules must begin with a '/' character"
            ));
        }
        // Any `*` but a final one (by characters: the URL may end in a multi-byte one).
        if url.strip_suffix('*').unwrap_or(url).contains('*') {
            return Err(format!(
                "nonResourceURLs: {url:?}: non-resource URL wildcards '*' must be the final character of the rule"
            ));
        }
    }
    if !rule.non_resource_urls.is_empty()
        && (!rule.resources.is_empty() || !rule.namespaces.is_empty())
    {
        return Err(
            "nonResourceURLs: rules cannot apply to both regular resources and non-resource URLs"
                .to_owned(),
        );
    }
    for gr in &rule.resources {
        if !gr.group.is_empty() && gr.group != "*" && !is_dns_subdomain(&gr.group) {
            return Err(format!(
                "resources.group: {:?}: not a DNS subdomain (lower-case letters, digits, '-' and '.')",
                gr.group
            ));
        }
        if !gr.resource_names.is_empty() && gr.resources.is_empty() {
            return Err(
                "resources.resourceNames: using resourceNames requires at least one resource"
                    .to_owned(),
            );
        }
    }
    Ok(())
}

/// RFC 1123 subdomain, as Kubernetes validates API group names.
fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253
        && s.split('.').all(|label| {
            let b = label.as_bytes();
            !b.is_empty()
                && b.len() <= 63
                && b.iter()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
                && b[0] != b'-'
                && b[b.len() - 1] != b'-'
        })
}

fn has(list: &[String], value: &str) -> bool {
    list.iter().any(|s| s == value)
}

fn rule_matches(rule: &PolicyRule, attrs: &Attributes<'_>) -> bool {
    if !rule.users.is_empty() && !has(&rule.users, attrs.user) {
        return false;
    }
    if !rule.user_groups.is_empty() && !attrs.groups.iter().any(|g| has(&rule.user_groups, g)) {
        return false;
    }
    if !rule.verbs.is_empty() && !has(&rule.verbs, &attrs.request.verb) {
        return false;
    }
    if !rule.namespaces.is_empty() || !rule.resources.is_empty() {
        return resource_matches(rule, attrs.request);
    }
    if !rule.non_resource_urls.is_empty() {
        return !attrs.request.is_resource_request
            && rule
                .non_resource_urls
                .iter()
                .any(|spec| path_matches(&attrs.request.path, spec));
    }
    true
}

fn path_matches(path: &str, spec: &str) -> bool {
    spec == "*"
        || spec == path
        || (spec.ends_with('*') && path.starts_with(spec.trim_end_matches('*')))
}

fn resource_matches(rule: &PolicyRule, info: &RequestInfo) -> bool {
    if !info.is_resource_request {
        return false;
    }
    if !rule.namespaces.is_empty() && !has(&rule.namespaces, &info.namespace) {
        return false;
    }
    if rule.resources.is_empty() {
        return true;
    }
    let (resource, sub) = (info.resource.as_str(), info.subresource.as_str());
    let combined = if sub.is_empty() {
        resource.to_owned()
    } else {
        format!("{resource}/{sub}")
    };
    rule.resources.iter().any(|gr| {
        if gr.group != info.api_group && gr.group != "*" {
            return false;
        }
        if gr.resources.is_empty() {
            return true;
        }
        if !gr.resource_names.is_empty() && !has(&gr.resource_names, &info.name) {
            return false;
        }
        gr.resources.iter().any(|res| {
            res == &combined
                || res == "*"
                || (!sub.is_empty() && res.strip_prefix("*/") == Some(sub))
                || res.strip_suffix("/*") == Some(resource)
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the `audit_policy_parse` fuzz target: a URL ending in a multi-byte character
    /// was sliced inside it.
    #[test]
    fn a_non_resource_url_ending_in_a_multi_byte_character_is_checked_without_panicking() {
        for (url, ok) in [
            ("/héé", true),
            ("/a*é", false),
            ("/é*", true),
            ("/**", false),
        ] {
            let yaml = format!(
                "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: None\n  nonResourceURLs: [\"{url}\"]\n"
            );
            assert_eq!(Policy::from_yaml(&yaml).is_ok(), ok, "{url}");
        }
    }

    fn info(method: &str, path: &str) -> RequestInfo {
        k8s_request_parse::request_info(method, path).expect("valid request")
    }

    fn level(policy: &Policy, user: &str, groups: &[&str], method: &str, path: &str) -> Level {
        let groups: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
        let request = info(method, path);
        policy
            .evaluate(&Attributes {
                user,
                groups: &groups,
                request: &request,
            })
            .level
    }

    const POLICY: &str = r#"
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: None
    users: ["system:kube-proxy"]
  - level: None
    nonResourceURLs: ["/healthz*", "/version"]
  - level: RequestResponse
    userGroups: ["admins"]
    verbs: ["delete"]
  - level: Metadata
    resources:
      - group: ""
        resources: ["secrets", "configmaps/*"]
  - level: Request
    resources:
      - group: "apps"
        resources: ["deployments"]
        resourceNames: ["web"]
      - group: "*"
        resources: ["*/status"]
    namespaces: ["prod", ""]
    omitManagedFields: true
  - level: Metadata
"#;

    #[test]
    fn first_matching_rule_wins() {
        let p = Policy::from_yaml(POLICY).expect("valid");
        let pods = "/api/v1/namespaces/dev/pods";
        assert_eq!(
            level(&p, "system:kube-proxy", &[], "GET", pods),
            Level::None
        );
        assert_eq!(level(&p, "u", &[], "GET", "/healthz/etcd"), Level::None);
        assert_eq!(level(&p, "u", &[], "GET", "/version"), Level::None);
        assert_eq!(level(&p, "u", &[], "GET", "/version/x"), Level::Metadata);
        assert_eq!(
            level(
                &p,
                "u",
                &["admins"],
                "DELETE",
                "/api/v1/namespaces/dev/secrets/s"
            ),
            Level::RequestResponse
        );
        assert_eq!(
            level(&p, "u", &[], "GET", "/api/v1/namespaces/dev/secrets/s"),
            Level::Metadata
        );
        assert_eq!(
            level(
                &p,
                "u",
                &[],
                "PATCH",
                "/api/v1/namespaces/dev/configmaps/c/x"
            ),
            Level::Metadata
        );
        let web = "/apis/apps/v1/namespaces/prod/deployments/web";
        assert_eq!(level(&p, "u", &[], "PUT", web), Level::Request);
        let api = "/apis/apps/v1/namespaces/prod/deployments/api";
        assert_eq!(level(&p, "u", &[], "PUT", api), Level::Metadata);
        let status = "/api/v1/namespaces/prod/pods/p/status";
        assert_eq!(level(&p, "u", &[], "PUT", status), Level::Request);
        assert_eq!(
            level(&p, "u", &[], "PUT", "/api/v1/nodes/n/status"),
            Level::Request
        );
        let other_ns = "/api/v1/namespaces/dev/pods/p/status";
        assert_eq!(level(&p, "u", &[], "PUT", other_ns), Level::Metadata);

        let request = info("PUT", web);
        let config = p.evaluate(&Attributes {
            user: "u",
            groups: &[],
            request: &request,
        });
        assert!(config.omit_managed_fields && config.omits(Stage::RequestReceived));
        assert_eq!(config.rule, Some(4));
    }

    #[test]
    fn no_rule_means_none() {
        let p = Policy::from_yaml("apiVersion: audit.k8s.io/v1\nkind: Policy\n").expect("valid");
        assert_eq!(level(&p, "u", &[], "GET", "/api"), Level::None);
        let all = Policy::request_level_for_all();
        assert_eq!(level(&all, "u", &[], "GET", "/api"), Level::Request);
    }

    #[test]
    fn strict_parsing_says_where() {
        let err = |text: &str| Policy::from_yaml(text).expect_err("invalid").to_string();
        let head = "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n";
        let e = err(&format!("{head}  - level: Loud\n"));
        assert!(e.contains("line 4"), "{e}");
        let e = err(&format!("{head}  - level: None\n    user: [a]\n"));
        assert!(e.contains("line 5") && e.contains("user"), "{e}");
        let e = err(&format!("{head}  - users: [a]\n"));
        assert!(e.contains("level"), "{e}");
        let e = err(&format!(
            "{head}  - level: None\n    nonResourceURLs: [healthz]\n"
        ));
        assert!(e.contains("rules[0]"), "{e}");
        let e = err(&format!(
            "{head}  - level: None\n  - level: None\n    nonResourceURLs: [/a]\n    namespaces: [x]\n"
        ));
        assert!(e.contains("rules[1]"), "{e}");
        let e = err("apiVersion: audit.k8s.io/v1beta1\nkind: Policy\n");
        assert!(e.contains("audit.k8s.io/v1"), "{e}");
        let e = err(&format!("omitStages: [Sometimes]\n{head}"));
        assert!(e.contains("line 1"), "{e}");
        let e = err(&format!(
            "{head}  - level: None\n    resources: [{{group: Apps}}]\n"
        ));
        assert!(e.contains("DNS"), "{e}");
    }
}
