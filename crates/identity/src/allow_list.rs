//! Who may upload to (or read from) a recorder: an allow list of tags and user login names.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

use crate::caller::Identity;

/// An allow list of identities, written `tag:k8s,user:alice@example.com`.
///
/// * `tag:NAME` permits any node carrying that tag (`tag:*` permits any tagged node);
/// * `user:LOGIN` permits untagged nodes owned by that user (exact login name; tagged nodes have
///   no user identity of their own and never match a `user:` entry).
///
/// The default for recorder uploaders is [`AllowList::tagged_nodes`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AllowList {
    any_tag: bool,
    tags: Vec<String>,
    users: Vec<String>,
}

/// An allow-list string that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AllowListError {
    /// The list has no entries.
    #[error("the allow list is empty; write e.g. \"tag:*\" or \"tag:k8s,user:alice@example.com\"")]
    Empty,
    /// An entry is neither `tag:…` nor `user:…`.
    #[error(
        "allow-list entry {0:?} must be \"tag:NAME\", \"tag:*\" or \"user:LOGIN\" \
         (e.g. \"tag:k8s,user:alice@example.com\")"
    )]
    BadEntry(String),
}

impl AllowList {
    /// Permits every tagged node (any tag) and no user: the default for recorder uploaders, which
    /// are kubescribe proxies running as tagged nodes.
    pub fn tagged_nodes() -> Self {
        AllowList {
            any_tag: true,
            tags: Vec::new(),
            users: Vec::new(),
        }
    }

    /// Builds a list from tags (each `tag:…`) and user login names.
    pub fn new(tags: Vec<String>, users: Vec<String>) -> Self {
        AllowList {
            any_tag: false,
            tags,
            users,
        }
    }

    /// Parses `tag:k8s,user:alice@example.com` (comma separated; spaces around entries ignored).
    pub fn parse(spec: &str) -> Result<Self, AllowListError> {
        let mut list = AllowList::new(Vec::new(), Vec::new());
        for entry in spec.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            if entry == "tag:*" {
                list.any_tag = true;
            } else if let Some(tag) = entry.strip_prefix("tag:").filter(|t| valid_name(t)) {
                list.tags.push(format!("tag:{tag}"));
            } else if let Some(user) = entry.strip_prefix("user:").filter(|u| valid_name(u)) {
                list.users.push(user.to_owned());
            } else {
                return Err(AllowListError::BadEntry(entry.to_owned()));
            }
        }
        if !list.any_tag && list.tags.is_empty() && list.users.is_empty() {
            return Err(AllowListError::Empty);
        }
        Ok(list)
    }

    /// Whether the identity is allowed.
    pub fn permits(&self, identity: &Identity) -> bool {
        if identity.is_tagged() {
            self.any_tag || identity.tags.iter().any(|t| self.tags.contains(t))
        } else {
            !identity.login_name.is_empty() && self.users.contains(&identity.login_name)
        }
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && !name.contains(char::is_whitespace) && name != "*"
}

impl FromStr for AllowList {
    type Err = AllowListError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        AllowList::parse(s)
    }
}

impl fmt::Display for AllowList {
    /// The list in the form [`AllowList::parse`] reads.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut entries: Vec<String> = Vec::new();
        if self.any_tag {
            entries.push("tag:*".to_owned());
        }
        entries.extend(self.tags.iter().cloned());
        entries.extend(self.users.iter().map(|u| format!("user:{u}")));
        f.write_str(&entries.join(","))
    }
}
