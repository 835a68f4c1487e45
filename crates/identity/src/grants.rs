//! The `tailscale.com/cap/kubernetes` grant: one [`KubernetesCapRule`] per matching grant rule,
//! parsed strictly. A rule that does not parse is a [`GrantError`]; callers must refuse the request
//! rather than fall back to "no policy" (see `docs/tailscale-protocol.md#capability-grant` and
//! `#subtleties`).
//!
//! Keys are case-sensitive camelCase. Go's `encoding/json`, which upstream uses, matches keys
//! case-insensitively, so a key such as `EnforceRecorder` would take effect upstream; to never be
//! looser than upstream, a key that differs from a known one only by case is an error here, not an
//! ignored unknown key. Keys that are unknown in every spelling are ignored (forward compatibility).
//! A key given twice in one object keeps its last value, as in Go.

use std::net::SocketAddr;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::whois_response::CapMap;

/// The peer capability name carrying Kubernetes grants (`peercap.Kubernetes`).
pub const KUBERNETES_CAP: &str = "tailscale.com/cap/kubernetes";

/// The legacy capability name. Honoured for impersonation groups only, and only when
/// [`KUBERNETES_CAP`] yields no rules (`docs/tailscale-protocol.md#capability-grant`).
pub const LEGACY_KUBERNETES_CAP: &str = "https://tailscale.com/cap/kubernetes";

/// One grant rule of the Kubernetes capability (Go's `kubetypes.KubernetesCapRule`). All keys are
/// optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub(crate) struct KubernetesCapRule {
    /// `impersonate`: Kubernetes groups to impersonate in auth mode.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) impersonate: Option<ImpersonateRule>,
    /// `recorder`: recorder tags as the user wrote them. Control resolves them into
    /// `recorderAddrs`; kubescribe, like upstream, never reads this for policy.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) recorder: Vec<String>,
    /// `recorderAddrs`: resolved recorder addresses, in control's order.
    #[serde(rename = "recorderAddrs", skip_serializing_if = "Vec::is_empty")]
    pub(crate) recorder_addrs: Vec<SocketAddr>,
    /// `enforceRecorder`: fail closed when recording is impossible.
    #[serde(rename = "enforceRecorder")]
    pub(crate) enforce_recorder: bool,
    /// `enableEvents`: also send every API request as an event.
    #[serde(rename = "enableEvents")]
    pub(crate) enable_events: bool,
}

/// The `impersonate` object of a [`KubernetesCapRule`] (Go's `kubetypes.ImpersonateRule`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub(crate) struct ImpersonateRule {
    /// `groups`: Kubernetes groups to impersonate.
    pub(crate) groups: Vec<String>,
}

/// A capability grant that kubescribe cannot interpret. The proxy refuses the caller's request
/// (403) rather than guess; the operator fixes the tailnet policy file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrantError {
    /// A rule is not a JSON object, or one of its known keys has the wrong type or spelling.
    #[error(
        "grant rule CapMap[{cap:?}][{index}] is invalid: {reason}; \
         requests from this caller are refused until the tailnet policy grant is fixed"
    )]
    InvalidRule {
        /// The capability name.
        cap: String,
        /// Position of the rule in the capability's list (0-based).
        index: usize,
        /// What is wrong.
        reason: String,
    },
    /// A `recorderAddrs` entry is not `ip:port` (IPv6 as `[addr]:port`).
    #[error(
        "grant rule CapMap[{cap:?}][{index}] has recorder address {addr:?}, which is not \
         \"ip:port\" (IPv6 written \"[addr]:port\"); requests from this caller are refused \
         rather than recorded to fewer recorders than granted"
    )]
    InvalidRecorderAddr {
        /// The capability name.
        cap: String,
        /// Position of the rule in the capability's list (0-based).
        index: usize,
        /// The address as written.
        addr: String,
    },
    /// An impersonation value cannot be sent as an HTTP header value (control characters) or is
    /// empty.
    #[error(
        "cannot impersonate: {header} value {value:?} is empty or not a valid HTTP header value; \
         the request is refused rather than sent without impersonation"
    )]
    InvalidImpersonationValue {
        /// The header that would carry the value (`Impersonate-User` or `Impersonate-Group`).
        header: &'static str,
        /// The offending value.
        value: String,
    },
}

/// Parses every rule of capability `cap` in `caps`, in order. A missing capability yields no
/// rules. The first rule that does not parse is returned as the error.
pub(crate) fn parse_rules(caps: &CapMap, cap: &str) -> Result<Vec<KubernetesCapRule>, GrantError> {
    let Some(rules) = caps.get(cap) else {
        return Ok(Vec::new());
    };
    rules
        .iter()
        .enumerate()
        .map(|(index, raw)| KubernetesCapRule::from_json(cap, index, raw))
        .collect()
}

impl KubernetesCapRule {
    /// Parses one raw rule; `cap` and `index` only label the error.
    pub(crate) fn from_json(cap: &str, index: usize, raw: &Value) -> Result<Self, GrantError> {
        let invalid = |reason: String| GrantError::InvalidRule {
            cap: cap.to_owned(),
            index,
            reason,
        };
        let Value::Object(object) = raw else {
            return Err(invalid(format!(
                "expected a JSON object, found {}",
                kind_of(raw)
            )));
        };
        let mut rule = KubernetesCapRule::default();
        for (key, value) in object {
            match key.as_str() {
                "impersonate" => rule.impersonate = parse_impersonate(value).map_err(invalid)?,
                "recorder" => rule.recorder = string_list(key, value).map_err(invalid)?,
                "recorderAddrs" => {
                    for addr in string_list(key, value).map_err(invalid)? {
                        let parsed = addr.parse::<SocketAddr>().map_err(|_| {
                            GrantError::InvalidRecorderAddr {
                                cap: cap.to_owned(),
                                index,
                                addr: addr.clone(),
                            }
                        })?;
                        rule.recorder_addrs.push(parsed);
                    }
                }
                "enforceRecorder" => {
                    rule.enforce_recorder = boolean(key, value).map_err(invalid)?
                }
                "enableEvents" => rule.enable_events = boolean(key, value).map_err(invalid)?,
                other => reject_misspelling(other, RULE_KEYS).map_err(invalid)?,
            }
        }
        Ok(rule)
    }
}

const RULE_KEYS: &[&str] = &[
    "impersonate",
    "recorder",
    "recorderAddrs",
    "enforceRecorder",
    "enableEvents",
];
const IMPERSONATE_KEYS: &[&str] = &["groups"];

fn parse_impersonate(value: &Value) -> Result<Option<ImpersonateRule>, String> {
    let object: &Map<String, Value> = match value {
        Value::Null => return Ok(None),
        Value::Object(object) => object,
        other => {
            return Err(format!(
                "\"impersonate\" must be an object like {{\"groups\":[...]}}, found {}",
                kind_of(other)
            ))
        }
    };
    let mut rule = ImpersonateRule::default();
    for (key, value) in object {
        match key.as_str() {
            "groups" => rule.groups = string_list("impersonate.groups", value)?,
            other => reject_misspelling(other, IMPERSONATE_KEYS)
                .map_err(|reason| format!("in \"impersonate\": {reason}"))?,
        }
    }
    Ok(Some(rule))
}

/// A list of strings; `null` is an empty list (Go's nil slice).
fn string_list(key: &str, value: &Value) -> Result<Vec<String>, String> {
    match value {
        Value::Null => Ok(Vec::new()),
        Value::Array(items) => items
            .iter()
            .map(|item| match item {
                Value::String(s) => Ok(s.clone()),
                other => Err(format!(
                    "{key:?} must be a list of strings, found an element that is {}",
                    kind_of(other)
                )),
            })
            .collect(),
        other => Err(format!(
            "{key:?} must be a list of strings, found {}",
            kind_of(other)
        )),
    }
}

/// A boolean; `null` is false (Go leaves the zero value).
fn boolean(key: &str, value: &Value) -> Result<bool, String> {
    match value {
        Value::Null => Ok(false),
        Value::Bool(b) => Ok(*b),
        other => Err(format!(
            "{key:?} must be true or false, found {}",
            kind_of(other)
        )),
    }
}

/// Unknown keys are ignored unless Go's case-insensitive matching would take them as a known key.
fn reject_misspelling(key: &str, known: &[&str]) -> Result<(), String> {
    let folded = fold(key);
    match known.iter().find(|k| fold(k) == folded) {
        Some(k) => Err(format!(
            "key {key:?} must be spelled {k:?} (grant keys are case-sensitive)"
        )),
        None => {
            tracing::debug!(key, "ignoring unknown key in a Kubernetes grant rule");
            Ok(())
        }
    }
}

/// Case folding close to Go's `bytes.EqualFold` (which also folds U+017F to `s` and U+212A to `k`).
fn fold(s: &str) -> String {
    s.chars()
        .flat_map(char::to_lowercase)
        .map(|c| if c == '\u{17f}' { 's' } else { c })
        .collect()
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}
