//! The comparison: each kubescribe event against the audit event kube-apiserver wrote for the same
//! request (same `auditID`), field by field, with the legitimate differences encoded as rules.

use std::collections::{BTreeMap, HashMap, HashSet};

use base64::Engine as _;
use serde_json::Value;

use crate::corpus::Expect;
use crate::golang;
use crate::run::{marker, Sent};

/// The fields compared, in the table's order.
pub(crate) const FIELDS: &[&str] = &[
    "joined (event and audit event found)",
    "auditID",
    "verb",
    "objectRef (resource request)",
    "objectRef.apiGroup",
    "objectRef.apiVersion",
    "objectRef.resource",
    "objectRef.subresource",
    "objectRef.namespace",
    "objectRef.name",
    "requestURI",
    "userAgent",
    "user",
    "impersonatedUser",
    "impersonatedGroups",
    "responseStatus.code",
    "refused before audit: status",
    "refused before audit: nothing recorded",
    "every audited request has an event",
    "vector expectations",
];

/// The legitimate differences, each applied only under its precise condition.
pub(crate) const RULES: &[(&str, &str)] = &[
    (
        "name/namespace completed from the body",
        "audit.LogRequestObject fills an empty objectRef.name/namespace from the decoded object of a create or update (docs/request-info.md#audit-event); request info leaves them empty",
    ),
    (
        "system:authenticated added",
        "impersonation.WithImpersonation appends system:authenticated to impersonated groups unless system:authenticated or system:unauthenticated is among them",
    ),
    (
        "User-Agent truncated",
        "audit.maybeTruncateUserAgent cuts a User-Agent over 1024 bytes and appends ...TRUNCATED",
    ),
    (
        "requestURI re-escaped by Go",
        "net/url URL.RequestURI() keeps the raw path only when it is a valid encoding; otherwise it re-escapes the decoded path (a raw é or | becomes %C3%A9 or %7C)",
    ),
    (
        "audited before authentication",
        "filters.WithRequestDeadline refuses an invalid timeout parameter before authentication and audits it (stage ResponseStarted) without user or impersonation",
    ),
    (
        "refused before audit",
        "kube-apiserver answers a request-info error (500, filters.WithRequestInfo) or a malformed target (400, Go's net/http) before filters.WithAudit: no audit event; kubescribe's parser must give the same status",
    ),
    (
        "CONNECT refused by the proxy",
        "kubescribe-proxy answers CONNECT with 405 and forwards nothing: hyper's client would send it as CONNECT host:port, not the request recorded; kube-apiserver serves no CONNECT",
    ),
    (
        "OPTIONS * answered by Go",
        "net/http's serverHandler answers OPTIONS * itself (globalOptionsHandler, 200) without calling kube-apiserver's handler chain: recorded by kubescribe, not audited",
    ),
    (
        "name/namespace from a withheld body",
        "a Secret's body (or a --redact-resource one) is never recorded (kubescribe.redaction says so); audit.LogRequestObject still completes an empty objectRef.name/namespace from it, which the event cannot show",
    ),
];

/// A request kube-apiserver refused before auditing, sent to it directly as well.
#[derive(Debug, Clone)]
pub(crate) struct Direct {
    pub(crate) status: u16,
    /// The `Audit-ID` the direct request carried.
    pub(crate) audit_id: String,
}

/// Counts per field and per rule, with every mismatch's detail.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    pub(crate) compared: BTreeMap<&'static str, usize>,
    pub(crate) mismatches: Vec<(&'static str, String)>,
    pub(crate) applied: BTreeMap<&'static str, (usize, String)>,
    /// Vectors whose expectations kube-apiserver confirmed, by `source`: (confirmed, sent).
    pub(crate) vectors: BTreeMap<String, (usize, usize)>,
}

impl Tally {
    fn same(&mut self, field: &'static str) {
        *self.compared.entry(field).or_default() += 1;
    }

    fn differ(&mut self, field: &'static str, detail: String) {
        self.same(field);
        self.mismatches.push((field, detail));
    }

    fn check(&mut self, field: &'static str, ok: bool, detail: impl FnOnce() -> String) {
        if ok {
            self.same(field);
        } else {
            self.differ(field, detail());
        }
    }

    fn legit(&mut self, field: &'static str, rule: &'static str, example: impl FnOnce() -> String) {
        self.same(field);
        let entry = self.applied.entry(rule).or_insert((0, String::new()));
        entry.0 += 1;
        if entry.1.is_empty() {
            entry.1 = example();
        }
    }

    /// Mismatches of `field`.
    pub(crate) fn mismatched(&self, field: &str) -> Vec<&String> {
        self.mismatches
            .iter()
            .filter(|(f, _)| *f == field)
            .map(|(_, d)| d)
            .collect()
    }
}

/// A stored event with its response record, as the recorder's query API returns it.
#[derive(Debug, Clone)]
pub(crate) struct Stored {
    pub(crate) event: Value,
    pub(crate) response: Value,
}

impl Stored {
    pub(crate) fn key(&self) -> &str {
        self.event["kubescribe"]["key"].as_str().unwrap_or("")
    }

    pub(crate) fn audit_id(&self) -> &str {
        self.event["kubescribe"]["auditID"].as_str().unwrap_or("")
    }
}

/// Everything the comparison needs.
pub(crate) struct Inputs<'a> {
    pub(crate) sent: &'a [Sent],
    /// Stored events by key.
    pub(crate) events: &'a HashMap<String, Stored>,
    /// Audit events by `auditID`.
    pub(crate) audit: &'a HashMap<String, Vec<Value>>,
    /// Direct answers to the requests refused before auditing, by corpus id.
    pub(crate) direct: &'a HashMap<usize, Direct>,
    /// Who kube-apiserver authenticates the proxy as (`username`, `groups`, …).
    pub(crate) proxy_identity: &'a Value,
}

/// Compares everything; returns the tally and the keys of the events no corpus entry claimed
/// (kubectl's), which are compared too.
pub(crate) fn compare(inputs: &Inputs<'_>) -> (Tally, Vec<String>) {
    let mut tally = Tally::default();
    let mut claimed = HashSet::new();
    for sent in inputs.sent {
        let label = label(sent.id, &sent.entry.method, &sent.entry.target);
        match sent.outcome() {
            Expect::RefusedByProxy => {
                refused_by_proxy(&mut tally, &label, sent, inputs);
            }
            Expect::AnsweredByGo => {
                answered_by_go(&mut tally, &label, sent, inputs, &mut claimed);
            }
            Expect::Audited | Expect::Observed => {
                let Some(key) = sent.audit_id() else {
                    let why = match &sent.response {
                        Ok(r) => format!(
                            "status {} without an Audit-Id header: {}",
                            r.status,
                            snippet(&r.body)
                        ),
                        Err(e) => format!("no response: {e}"),
                    };
                    tally.differ(FIELDS[0], format!("{label}: {why}"));
                    continue;
                };
                claimed.insert(key.to_owned());
                let Some(stored) = inputs.events.get(key) else {
                    tally.differ(
                        FIELDS[0],
                        format!(
                            "{label}: no kubescribe event with key {key} (status {})",
                            sent.status()
                        ),
                    );
                    continue;
                };
                let Some(audits) = inputs.audit.get(key) else {
                    tally.differ(
                        FIELDS[0],
                        format!("{label}: no audit event with auditID {key}"),
                    );
                    continue;
                };
                tally.same(FIELDS[0]);
                tally.check(
                    FIELDS[1],
                    stored.audit_id() == key && stored.key() == key,
                    || {
                        format!(
                            "{label}: response Audit-Id {key}, event key {}, event auditID {}",
                            stored.key(),
                            stored.audit_id()
                        )
                    },
                );
                compare_pair(&mut tally, &label, stored, audits, inputs.proxy_identity);
                if let Some(vector) = &sent.entry.vector {
                    vector_audited(&mut tally, &label, vector, final_stage(audits));
                }
            }
            Expect::RefusedBeforeAudit => {
                refused(&mut tally, &label, sent, inputs);
                if let Some(vector) = &sent.entry.vector {
                    vector_refused(&mut tally, &label, vector, inputs.direct.get(&sent.id));
                }
            }
        }
    }
    // Events the corpus did not send itself: kubectl's.
    let mut unclaimed: Vec<String> = inputs
        .events
        .keys()
        .filter(|key| !claimed.contains(*key))
        .cloned()
        .collect();
    unclaimed.sort();
    for key in &unclaimed {
        let stored = &inputs.events[key];
        let label = format!(
            "{} {} ({})",
            stored.event["request"]["method"].as_str().unwrap_or(""),
            stored.event["request"]["path"].as_str().unwrap_or(""),
            stored.event["userAgent"].as_str().unwrap_or("")
        );
        let Some(audits) = inputs.audit.get(stored.audit_id()) else {
            tally.differ(
                FIELDS[0],
                format!("{label}: no audit event with auditID {}", stored.audit_id()),
            );
            continue;
        };
        tally.same(FIELDS[0]);
        tally.check(FIELDS[1], stored.audit_id() == stored.key(), || {
            format!(
                "{label}: event key {} but auditID {}",
                stored.key(),
                stored.audit_id()
            )
        });
        compare_pair(&mut tally, &label, stored, audits, inputs.proxy_identity);
    }
    // The other way round: every request the API server audited as the proxy has its event.
    let recorded: HashSet<&str> = inputs.events.values().map(Stored::audit_id).collect();
    for (audit_id, audits) in inputs.audit {
        // The oracle's own direct requests carry audit IDs of its own.
        if audit_id.starts_with("oracle-") {
            continue;
        }
        if !audits
            .iter()
            .any(|a| a["user"]["username"] == inputs.proxy_identity["username"])
        {
            continue;
        }
        let first = &audits[0];
        tally.check(FIELDS[18], recorded.contains(audit_id.as_str()), || {
            format!(
                "audit event {audit_id} ({} {}) has no kubescribe event",
                first["verb"].as_str().unwrap_or(""),
                first["requestURI"].as_str().unwrap_or("")
            )
        });
    }
    (tally, unclaimed)
}

/// The final audit event of a request: `ResponseComplete` (or `Panic`), else the last stage written.
fn final_stage(audits: &[Value]) -> &Value {
    audits
        .iter()
        .find(|a| a["stage"] == "ResponseComplete" || a["stage"] == "Panic")
        .unwrap_or_else(|| &audits[audits.len() - 1])
}

fn compare_pair(tally: &mut Tally, label: &str, stored: &Stored, audits: &[Value], proxy: &Value) {
    let event = &stored.event;
    let k8s = &event["kubernetes"];
    let audit = final_stage(audits);
    let text = |v: &Value| v.as_str().unwrap_or("").to_owned();
    let field_pair = |ours: &Value, theirs: &Value| (text(ours), text(theirs));

    let (ours, theirs) = field_pair(&k8s["Verb"], &audit["verb"]);
    tally.check("verb", ours == theirs, || {
        format!("{label}: kubescribe {ours:?}, audit {theirs:?}")
    });

    let resource = k8s["IsResourceRequest"].as_bool().unwrap_or(false);
    let object_ref = &audit["objectRef"];
    let has_ref = object_ref.is_object();
    tally.check("objectRef (resource request)", resource == has_ref, || {
        format!("{label}: kubescribe IsResourceRequest {resource}, audit objectRef {object_ref}")
    });
    if resource && has_ref {
        let verb = text(&k8s["Verb"]);
        let body_meta = body_metadata(event);
        for (field, ours_key, theirs_key) in [
            ("objectRef.apiGroup", "APIGroup", "apiGroup"),
            ("objectRef.apiVersion", "APIVersion", "apiVersion"),
            ("objectRef.resource", "Resource", "resource"),
            ("objectRef.subresource", "Subresource", "subresource"),
            ("objectRef.namespace", "Namespace", "namespace"),
            ("objectRef.name", "Name", "name"),
        ] {
            let (ours, theirs) = field_pair(&k8s[ours_key], &object_ref[theirs_key]);
            if ours == theirs {
                tally.same(field);
                continue;
            }
            // The audit event completes an empty name or namespace from the decoded object of a
            // create or update (audit.LogRequestObject); request info never reads the body.
            let completed = matches!(verb.as_str(), "create" | "update")
                && ours.is_empty()
                && body_meta
                    .as_ref()
                    .and_then(|m| m[theirs_key].as_str())
                    .is_some_and(|from_body| from_body == theirs);
            // The same, from a body kubescribe withheld (a Secret): nothing in the event to compare.
            let withheld = matches!(verb.as_str(), "create" | "update")
                && ours.is_empty()
                && body_meta.is_none()
                && event["kubescribe"]["redaction"].is_object();
            if completed && matches!(theirs_key, "name" | "namespace") {
                tally.legit(field, RULES[0].0, || {
                    format!("{label}: audit {theirs_key} {theirs:?} from the body")
                });
            } else if withheld && matches!(theirs_key, "name" | "namespace") {
                tally.legit(field, RULES[8].0, || {
                    format!("{label}: audit {theirs_key} {theirs:?} from a withheld body")
                });
            } else {
                tally.differ(
                    field,
                    format!("{label}: kubescribe {ours:?}, audit {theirs:?}"),
                );
            }
        }
    }

    let path = text(&event["request"]["path"]);
    let theirs = text(&audit["requestURI"]);
    match golang::request_uri(&path) {
        Some(expected) if expected == theirs => {
            if expected == path {
                tally.same("requestURI");
            } else {
                tally.legit("requestURI", RULES[3].0, || {
                    format!("{label}: sent {path:?}, audited {theirs:?}")
                });
            }
        }
        expected => tally.differ(
            "requestURI",
            format!("{label}: kubescribe path {path:?} (Go: {expected:?}), audit {theirs:?}"),
        ),
    }

    let ours = text(&event["userAgent"]);
    let theirs = text(&audit["userAgent"]);
    let expected = golang::audit_user_agent(&ours);
    if expected != theirs {
        tally.differ(
            "userAgent",
            format!("{label}: kubescribe {ours:?}, audit {theirs:?}"),
        );
    } else if expected != ours {
        tally.legit("userAgent", RULES[2].0, || {
            format!("{label}: {} bytes recorded, audit cut at 1024", ours.len())
        });
    } else {
        tally.same("userAgent");
    }

    // WithRequestDeadline audits an invalid `timeout` before authentication: no user, no
    // impersonation, stage ResponseStarted.
    let pre_authentication = audit["user"]["username"].is_null()
        && audit["stage"] == "ResponseStarted"
        && audit["responseStatus"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("invalid timeout specified in the request URL"))
        && event["request"]["queryParameters"]["timeout"].is_array();
    let ext = &event["kubescribe"];
    if pre_authentication {
        for field in ["user", "impersonatedUser", "impersonatedGroups"] {
            tally.legit(field, RULES[4].0, || {
                format!("{label}: {}", audit["responseStatus"]["message"])
            });
        }
    } else {
        // The API server authenticated the proxy's own credential, never the caller's.
        let user = &audit["user"];
        tally.check(
            "user",
            user["username"] == proxy["username"] && user["groups"] == proxy["groups"],
            || format!("{label}: audit user {user}, expected the proxy's own {proxy}"),
        );
        let ours = text(&ext["impersonatedUser"]);
        let imp = &audit["impersonatedUser"];
        let theirs = if imp.is_object() {
            Some(text(&imp["username"]))
        } else {
            None
        };
        let expected = (!ours.is_empty()).then(|| ours.clone());
        tally.check("impersonatedUser", expected == theirs, || {
            format!("{label}: kubescribe {expected:?}, audit {theirs:?}")
        });
        let ours_groups = strings(&ext["impersonatedGroups"]);
        let theirs_groups = strings(&imp["groups"]);
        if !imp.is_object() {
            tally.check("impersonatedGroups", ours_groups.is_empty(), || {
                format!("{label}: kubescribe {ours_groups:?}, audit has no impersonated user")
            });
        } else {
            let expected = golang::impersonated_groups(&ours, &ours_groups);
            if expected != theirs_groups {
                tally.differ(
                    "impersonatedGroups",
                    format!("{label}: kubescribe {ours_groups:?}, audit {theirs_groups:?}"),
                );
            } else if expected != ours_groups {
                tally.legit("impersonatedGroups", RULES[1].0, || {
                    format!("{label}: {ours_groups:?} → {theirs_groups:?}")
                });
            } else {
                tally.same("impersonatedGroups");
            }
        }
    }

    let ours = stored.response["status"].as_u64();
    let theirs = audit["responseStatus"]["code"].as_u64();
    tally.check(
        "responseStatus.code",
        ours.is_some() && ours == theirs,
        || {
            format!(
                "{label}: response record {ours:?}, audit {theirs:?} (stage {})",
                audit["stage"]
            )
        },
    );
}

/// A vector's expectations against the audit event of its request: the verb, whether it is a
/// resource request, and each objectRef field request info defines.
fn vector_audited(tally: &mut Tally, label: &str, vector: &Value, audit: &Value) {
    let expect = &vector["expect"];
    let object_ref = &audit["objectRef"];
    let mut wrong = Vec::new();
    if expect["verb"] != audit["verb"] {
        wrong.push(format!("verb {} vs {}", expect["verb"], audit["verb"]));
    }
    let resource = expect["is_resource_request"] == true;
    if resource != object_ref.is_object() {
        wrong.push(format!(
            "resource request {resource} vs objectRef {object_ref}"
        ));
    }
    if resource && object_ref.is_object() {
        for (ours, theirs) in [
            ("api_group", "apiGroup"),
            ("api_version", "apiVersion"),
            ("namespace", "namespace"),
            ("resource", "resource"),
            ("subresource", "subresource"),
            ("name", "name"),
        ] {
            let theirs_value = object_ref[theirs].as_str().unwrap_or("");
            if expect[ours].as_str().unwrap_or("") != theirs_value {
                wrong.push(format!("{ours} {} vs {theirs_value:?}", expect[ours]));
            }
        }
    }
    vector_result(tally, label, vector, wrong);
}

/// An error vector: kube-apiserver refused the request before auditing it, with the vector's
/// status when it gives one.
fn vector_refused(tally: &mut Tally, label: &str, vector: &Value, direct: Option<&Direct>) {
    let mut wrong = Vec::new();
    let status = direct.map(|d| d.status);
    if !matches!(status, Some(400 | 500)) {
        wrong.push(format!("kube-apiserver answered {status:?}"));
    }
    if let Some(expected) = vector["expect_extra"]["status"].as_u64() {
        if status.map(u64::from) != Some(expected) {
            wrong.push(format!(
                "status {expected} expected, kube-apiserver {status:?}"
            ));
        }
    }
    vector_result(tally, label, vector, wrong);
}

fn vector_result(tally: &mut Tally, label: &str, vector: &Value, wrong: Vec<String>) {
    let source = vector["source"].as_str().unwrap_or("").to_owned();
    let counts = tally.vectors.entry(source).or_default();
    counts.1 += 1;
    if wrong.is_empty() {
        counts.0 += 1;
        tally.same("vector expectations");
    } else {
        tally.differ(
            "vector expectations",
            format!(
                "{label}: vector #{} expects {}",
                vector["id"],
                wrong.join(", ")
            ),
        );
    }
}

/// `CONNECT`: the proxy answers 405 and forwards nothing (hyper's client would rewrite it to
/// `CONNECT host:port`); kube-apiserver's audit event of the same request sent directly checks a
/// vector's expectations.
fn refused_by_proxy(tally: &mut Tally, label: &str, sent: &Sent, inputs: &Inputs<'_>) {
    let mark = marker(sent.id);
    let forwarded = inputs
        .audit
        .values()
        .flatten()
        .any(|a| a["userAgent"] == mark.as_str());
    let evented = inputs
        .events
        .values()
        .any(|s| s.event["userAgent"] == mark.as_str());
    let direct = inputs.direct.get(&sent.id);
    if sent.status() == 405 && !forwarded && !evented {
        tally.legit(FIELDS[0], RULES[6].0, || {
            format!(
                "{label}: 405 from the proxy; kube-apiserver answers it with {:?}",
                direct.map(|d| d.status)
            )
        });
    } else {
        tally.differ(
            FIELDS[0],
            format!("{label}: CONNECT answered {} by the proxy, forwarded {forwarded}, recorded {evented}", sent.status()),
        );
    }
    if let Some(vector) = &sent.entry.vector {
        match direct.and_then(|d| inputs.audit.get(&d.audit_id)) {
            Some(audits) => vector_audited(tally, label, vector, final_stage(audits)),
            None => vector_result(
                tally,
                label,
                vector,
                vec!["no audit event of the direct request".to_owned()],
            ),
        }
    }
}

/// `OPTIONS *`: the proxy records and forwards it; Go's server answers 200 itself, so there is no
/// audit event (and no `Audit-Id` in the response).
fn answered_by_go(
    tally: &mut Tally,
    label: &str,
    sent: &Sent,
    inputs: &Inputs<'_>,
    claimed: &mut HashSet<String>,
) {
    let mark = marker(sent.id);
    let stored = inputs
        .events
        .values()
        .find(|s| s.event["userAgent"] == mark.as_str());
    if let Some(stored) = stored {
        claimed.insert(stored.key().to_owned());
    }
    let audited = stored.is_some_and(|s| inputs.audit.contains_key(s.audit_id()));
    if stored.is_some() && !audited && sent.status() == 200 && sent.audit_id().is_none() {
        tally.legit(FIELDS[0], RULES[7].0, || {
            format!("{label}: 200 from Go's server, recorded, not audited")
        });
    } else {
        tally.differ(
            FIELDS[0],
            format!(
                "{label}: status {}, kubescribe event {}, audited {audited}",
                sent.status(),
                stored.is_some()
            ),
        );
    }
}

fn refused(tally: &mut Tally, label: &str, sent: &Sent, inputs: &Inputs<'_>) {
    let parser = k8s_request_parse::request_info(&sent.entry.method, &sent.entry.target);
    let direct = inputs.direct.get(&sent.id);
    let parser_status = parser.as_ref().err().map(|e| e.http_status());
    let direct_status = direct.map(|d| d.status);
    let proxy_status = sent.status();
    let agree = parser_status.is_some()
        && parser_status == direct_status
        && Some(proxy_status) == parser_status;
    if agree {
        tally.legit(FIELDS[16], RULES[5].0, || {
            format!("{label}: kube-apiserver {direct_status:?}, parser {parser_status:?}, proxy {proxy_status}")
        });
    } else {
        tally.differ(
            FIELDS[16],
            format!(
                "{label}: kube-apiserver answered {direct_status:?}, kubescribe's parser {}, the proxy {proxy_status}",
                match &parser {
                    Ok(info) => format!("found no error (verb {:?})", info.verb),
                    Err(e) => format!("{}: {e}", e.http_status()),
                }
            ),
        );
    }
    let mark = marker(sent.id);
    let audited_direct = direct.is_some_and(|d| inputs.audit.contains_key(&d.audit_id));
    let audited_proxied = sent
        .audit_id()
        .is_some_and(|id| inputs.audit.contains_key(id))
        || inputs
            .audit
            .values()
            .flatten()
            .any(|a| a["userAgent"] == mark.as_str());
    let evented = inputs
        .events
        .values()
        .any(|s| s.event["userAgent"] == mark.as_str());
    tally.check(FIELDS[17], !audited_direct && !audited_proxied && !evented, || {
        format!("{label}: audited directly {audited_direct}, audited through the proxy {audited_proxied}, kubescribe event {evented}")
    });
}

/// The request body's `metadata` (`name`, `namespace`), when the event holds the whole body: JSON,
/// or Kubernetes protobuf (what kubectl sends for built-in types).
fn body_metadata(event: &Value) -> Option<Value> {
    if event["kubescribe"]["body"]["truncated"] == true {
        return None;
    }
    let body = base64::engine::general_purpose::STANDARD
        .decode(event["request"]["body"].as_str()?)
        .ok()?;
    match body.strip_prefix(b"k8s\0") {
        Some(envelope) => protobuf_metadata(envelope),
        None => {
            let object: Value = serde_json::from_slice(&body).ok()?;
            Some(object.get("metadata")?.clone())
        }
    }
}

/// `name` and `namespace` of a Kubernetes protobuf object: the envelope is a `runtime.Unknown`
/// whose field 2 holds the object's bytes; an object's field 1 is its `ObjectMeta`, whose fields 1
/// and 3 are `name` and `namespace` (k8s.io/apimachinery/pkg/apis/meta/v1/generated.proto).
fn protobuf_metadata(envelope: &[u8]) -> Option<Value> {
    let raw = protobuf_field(envelope, 2)?;
    let meta = protobuf_field(raw, 1)?;
    let text = |n| {
        protobuf_field(meta, n)
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .unwrap_or_default()
    };
    Some(serde_json::json!({"name": text(1), "namespace": text(3)}))
}

/// The first length-delimited field `number` of a protobuf message.
fn protobuf_field(mut message: &[u8], number: u64) -> Option<&[u8]> {
    fn varint(buf: &mut &[u8]) -> Option<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = buf.split_first()?;
            *buf = rest;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Some(value);
            }
        }
        None
    }
    while !message.is_empty() {
        let key = varint(&mut message)?;
        let skip = match key & 7 {
            0 => {
                varint(&mut message)?;
                0
            }
            1 => 8,
            2 => {
                let len = usize::try_from(varint(&mut message)?).ok()?;
                let (field, rest) = (message.get(..len)?, message.get(len..)?);
                if key >> 3 == number {
                    return Some(field);
                }
                message = rest;
                0
            }
            5 => 4,
            _ => return None,
        };
        message = message.get(skip..)?;
    }
    None
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect()
}

/// `#id METHOD target`, the target shortened.
pub(crate) fn label(id: usize, method: &str, target: &str) -> String {
    format!("#{id} {method} {}", shorten(target, 160))
}

pub(crate) fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        format!("{}…", text.chars().take(max).collect::<String>())
    }
}

fn snippet(body: &[u8]) -> String {
    shorten(&String::from_utf8_lossy(body), 200)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn proxy() -> Value {
        json!({"username": "kubescribe-proxy", "groups": ["system:authenticated"]})
    }

    fn pair(body: &[u8]) -> (Stored, Value) {
        let event = json!({
            "userAgent": "ua",
            "request": {"method": "POST", "path": "/api/v1/namespaces/ns/configmaps",
                        "body": base64::engine::general_purpose::STANDARD.encode(body), "queryParameters": {}},
            "kubernetes": {"IsResourceRequest": true, "Verb": "create", "APIGroup": "", "APIVersion": "v1",
                           "Namespace": "ns", "Resource": "configmaps", "Subresource": "", "Name": ""},
            "kubescribe": {"key": "k", "auditID": "k", "impersonatedUser": "alice", "impersonatedGroups": ["dev"]},
        });
        let audit = json!({
            "auditID": "k", "stage": "ResponseComplete", "verb": "create",
            "requestURI": "/api/v1/namespaces/ns/configmaps", "userAgent": "ua",
            "user": proxy(), "impersonatedUser": {"username": "alice", "groups": ["dev", "system:authenticated"]},
            "objectRef": {"resource": "configmaps", "namespace": "ns", "name": "cm", "apiVersion": "v1"},
            "responseStatus": {"code": 201},
        });
        let stored = Stored {
            event,
            response: json!({"status": 201}),
        };
        (stored, audit)
    }

    #[test]
    fn a_name_from_the_body_is_legitimate_only_when_the_body_has_it() {
        let (stored, audit) = pair(br#"{"metadata":{"name":"cm"}}"#);
        let mut tally = Tally::default();
        compare_pair(
            &mut tally,
            "t",
            &stored,
            std::slice::from_ref(&audit),
            &proxy(),
        );
        assert!(tally.mismatches.is_empty(), "{:?}", tally.mismatches);
        assert_eq!(tally.applied[RULES[0].0].0, 1);
        assert_eq!(tally.applied[RULES[1].0].0, 1);

        let (stored, _) = pair(br#"{"metadata":{"name":"other"}}"#);
        let mut tally = Tally::default();
        compare_pair(
            &mut tally,
            "t",
            &stored,
            std::slice::from_ref(&audit),
            &proxy(),
        );
        assert_eq!(tally.mismatched("objectRef.name").len(), 1);

        // Kubernetes protobuf: Unknown{raw: ConfigMap{metadata: {name: "cm", namespace: "ns"}}}.
        let meta = [&[0x0a, 2][..], b"cm", &[0x1a, 2], b"ns"].concat();
        let object = [&[0x0a, meta.len() as u8][..], &meta].concat();
        let envelope = [&b"k8s\0"[..], &[0x12, object.len() as u8], &object].concat();
        let (stored, _) = pair(&envelope);
        let mut tally = Tally::default();
        compare_pair(&mut tally, "t", &stored, &[audit], &proxy());
        assert!(tally.mismatches.is_empty(), "{:?}", tally.mismatches);
    }

    #[test]
    fn a_name_from_a_withheld_body_is_legitimate_only_when_the_event_says_it_was_withheld() {
        let (mut stored, audit) = pair(b"");
        let mut tally = Tally::default();
        compare_pair(
            &mut tally,
            "t",
            &stored,
            std::slice::from_ref(&audit),
            &proxy(),
        );
        assert_eq!(
            tally.mismatched("objectRef.name").len(),
            1,
            "no body, no reason"
        );

        stored.event["kubescribe"]["redaction"] = json!({"reason": "secret", "droppedBytes": 120});
        let mut tally = Tally::default();
        compare_pair(&mut tally, "t", &stored, &[audit], &proxy());
        assert!(tally.mismatches.is_empty(), "{:?}", tally.mismatches);
        assert_eq!(tally.applied[RULES[8].0].0, 1);
    }

    #[test]
    fn every_compared_field_can_mismatch() {
        let (stored, audit) = pair(br#"{"metadata":{"name":"cm"}}"#);
        for (pointer, value, field) in [
            ("/verb", json!("update"), "verb"),
            (
                "/objectRef/resource",
                json!("secrets"),
                "objectRef.resource",
            ),
            ("/objectRef/apiGroup", json!("apps"), "objectRef.apiGroup"),
            (
                "/objectRef/namespace",
                json!("other"),
                "objectRef.namespace",
            ),
            (
                "/requestURI",
                json!("/api/v1/namespaces/ns/configmaps?x"),
                "requestURI",
            ),
            ("/userAgent", json!("other"), "userAgent"),
            ("/user/username", json!("alice"), "user"),
            (
                "/impersonatedUser/username",
                json!("bob"),
                "impersonatedUser",
            ),
            (
                "/impersonatedUser/groups",
                json!(["dev"]),
                "impersonatedGroups",
            ),
            ("/responseStatus/code", json!(200), "responseStatus.code"),
        ] {
            let mut changed = audit.clone();
            let mut slot = &mut changed;
            for key in pointer.split('/').skip(1) {
                slot = &mut slot[key];
            }
            *slot = value;
            let mut tally = Tally::default();
            compare_pair(&mut tally, "t", &stored, &[changed], &proxy());
            assert_eq!(
                tally.mismatched(field).len(),
                1,
                "{field}: {:?}",
                tally.mismatches
            );
            assert_eq!(tally.mismatches.len(), 1, "{field}: {:?}", tally.mismatches);
        }
        let mut no_ref = audit;
        no_ref.as_object_mut().unwrap().remove("objectRef");
        let mut tally = Tally::default();
        compare_pair(&mut tally, "t", &stored, &[no_ref], &proxy());
        assert_eq!(tally.mismatched("objectRef (resource request)").len(), 1);
    }
}
