//! Auth-mode impersonation (`docs/tailscale-protocol.md#impersonation`): strip the client's own
//! credentials, then act as the caller through `Impersonate-User` / `Impersonate-Group` headers.

use http::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION};
use serde::Serialize;

use crate::caller::Caller;
use crate::grants::{parse_rules, GrantError, KUBERNETES_CAP, LEGACY_KUBERNETES_CAP};

/// `Impersonate-User`.
const IMPERSONATE_USER: &str = "impersonate-user";
/// `Impersonate-Group`.
const IMPERSONATE_GROUP: &str = "impersonate-group";
/// What every impersonation header's name starts with.
const IMPERSONATE_PREFIX: &str = "impersonate-";

/// Whether a header is a client credential that auth mode removes: `Authorization` and every
/// `Impersonate-*` header (case-insensitive). kube-apiserver today reads `Impersonate-User`,
/// `-Group`, `-Uid` and `-Extra-*`; any other `Impersonate-` name is removed too, so that a header a
/// future API server learns can never let a caller act as someone else.
pub(crate) fn is_client_credential_header(name: &HeaderName) -> bool {
    // `HeaderName`s are stored lower-case.
    let name = name.as_str();
    name == AUTHORIZATION.as_str() || name.starts_with(IMPERSONATE_PREFIX)
}

/// Removes every client credential header (`Authorization`, any `Impersonate-*`) from a request that
/// is about to be forwarded in auth mode.
pub fn strip_client_credentials(headers: &mut HeaderMap) {
    let doomed: Vec<HeaderName> = headers
        .keys()
        .filter(|name| is_client_credential_header(name))
        .cloned()
        .collect();
    for name in doomed {
        headers.remove(&name);
    }
}

/// The impersonation headers auth mode sends for one caller. Built only by
/// [`impersonation_headers`], so every value is a valid header value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Impersonation {
    /// `Impersonate-User`.
    user: String,
    /// `Impersonate-Group`, one header line each, in order.
    groups: Vec<String>,
    /// The header lines as sent, for operators (`Impersonate-User: alice@example.com`, …).
    headers: Vec<String>,
    #[serde(skip)]
    user_value: HeaderValue,
    #[serde(skip)]
    group_values: Vec<HeaderValue>,
}

impl Impersonation {
    /// The impersonated user: the login name, or for a tagged node its FQDN without the dot.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The impersonated groups, in the order they are sent.
    pub fn groups(&self) -> &[String] {
        &self.groups
    }

    /// The header lines as they are sent, e.g. `Impersonate-User: alice@example.com`.
    pub fn header_lines(&self) -> &[String] {
        &self.headers
    }

    /// Writes the headers: removes any `Impersonate-*` header already present, then sets
    /// `Impersonate-User` and appends one `Impersonate-Group` per group. `Authorization` is left
    /// alone (call [`strip_client_credentials`] first for the client's).
    pub fn apply(&self, headers: &mut HeaderMap) {
        let doomed: Vec<HeaderName> = headers
            .keys()
            .filter(|name| {
                name.as_str() != AUTHORIZATION.as_str() && is_client_credential_header(name)
            })
            .cloned()
            .collect();
        for name in doomed {
            headers.remove(&name);
        }
        headers.insert(
            HeaderName::from_static(IMPERSONATE_USER),
            self.user_value.clone(),
        );
        for group in &self.group_values {
            headers.append(HeaderName::from_static(IMPERSONATE_GROUP), group.clone());
        }
    }
}

/// Computes the impersonation headers for a caller (auth mode).
///
/// * Groups: the union of `impersonate.groups` across the `tailscale.com/cap/kubernetes` rules,
///   de-duplicated in first-seen order (rules without groups are ignored). The legacy capability
///   name is consulted only when the new one yields no rules at all.
/// * User: the login name; for a tagged node its FQDN without the trailing dot, and, if the
///   grants gave no groups, one group per tag.
///
/// Unlike upstream, a rule that does not parse (or an empty/unsendable user or group) is an
/// error: the request must be refused, never sent without impersonation.
pub fn impersonation_headers(caller: &Caller) -> Result<Impersonation, GrantError> {
    let mut rules = parse_rules(&caller.caps, KUBERNETES_CAP)?;
    if rules.is_empty() {
        rules = parse_rules(&caller.caps, LEGACY_KUBERNETES_CAP)?;
    }
    let mut groups = first_seen_unique(
        rules
            .iter()
            .filter_map(|rule| rule.impersonate.as_ref())
            .flat_map(|imp| imp.groups.iter()),
    );
    let identity = &caller.identity;
    let user = if identity.is_tagged() {
        if groups.is_empty() {
            groups = first_seen_unique(identity.tags.iter());
        }
        identity.node_name.clone()
    } else {
        identity.login_name.clone()
    };
    let user_value = header_value("Impersonate-User", &user)?;
    let group_values = groups
        .iter()
        .map(|g| header_value("Impersonate-Group", g))
        .collect::<Result<Vec<_>, _>>()?;
    let headers = std::iter::once(format!("Impersonate-User: {user}"))
        .chain(groups.iter().map(|g| format!("Impersonate-Group: {g}")))
        .collect();
    Ok(Impersonation {
        user,
        groups,
        headers,
        user_value,
        group_values,
    })
}

fn first_seen_unique<'a>(items: impl Iterator<Item = &'a String>) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    items
        .filter(|item| seen.insert(item.as_str()))
        .cloned()
        .collect()
}

fn header_value(header: &'static str, value: &str) -> Result<HeaderValue, GrantError> {
    let invalid = || GrantError::InvalidImpersonationValue {
        header,
        value: value.to_owned(),
    };
    if value.is_empty() {
        return Err(invalid());
    }
    HeaderValue::from_bytes(value.as_bytes()).map_err(|_| invalid())
}
