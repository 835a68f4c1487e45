//! `GROUP/RESOURCE`, the operator's way to name a resource (`--redact-resource`).

use std::borrow::Cow;
use std::str::FromStr;

/// A resource in an API group: `""` is the core group. Written
/// `GROUP/RESOURCE`: `/configmaps`, `example.com/credentials`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GroupResource {
    group: Cow<'static, str>,
    resource: Cow<'static, str>,
}

/// Why a `GROUP/RESOURCE` was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GroupResourceError {
    /// No `/` between group and resource.
    #[error("{0:?} is not GROUP/RESOURCE: write /RESOURCE for the core group (e.g. /configmaps) or GROUP/RESOURCE (e.g. example.com/credentials)")]
    NoSlash(String),
    /// The resource part is empty or not a plain name.
    #[error("{0:?}: the resource must be a plain lower-case resource name (e.g. configmaps), not empty, without '/' or '*'")]
    BadResource(String),
}

impl GroupResource {
    /// `group`/`resource`, known valid.
    pub(crate) const fn const_new(group: &'static str, resource: &'static str) -> Self {
        GroupResource {
            group: Cow::Borrowed(group),
            resource: Cow::Borrowed(resource),
        }
    }

    /// The API group (`""`: core).
    pub fn group(&self) -> &str {
        &self.group
    }

    /// The resource (plural, e.g. `secrets`).
    pub fn resource(&self) -> &str {
        &self.resource
    }

    /// Whether a request's group and resource are this one (ignoring ASCII case).
    pub fn matches(&self, group: &str, resource: &str) -> bool {
        self.group.eq_ignore_ascii_case(group) && self.resource.eq_ignore_ascii_case(resource)
    }
}

impl FromStr for GroupResource {
    type Err = GroupResourceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (group, resource) = s
            .rsplit_once('/')
            .ok_or_else(|| GroupResourceError::NoSlash(s.to_owned()))?;
        if resource.is_empty() || resource.contains('*') || group.contains('/') {
            return Err(GroupResourceError::BadResource(s.to_owned()));
        }
        Ok(GroupResource {
            group: Cow::Owned(group.to_owned()),
            resource: Cow::Owned(resource.to_owned()),
        })
    }
}

impl std::fmt::Display for GroupResource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.group, self.resource)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse() {
        let core: GroupResource = "/configmaps".parse().expect("valid");
        assert_eq!((core.group(), core.resource()), ("", "configmaps"));
        let crd: GroupResource = "example.com/credentials".parse().expect("valid");
        assert_eq!(crd.to_string(), "example.com/credentials");
        assert!("configmaps".parse::<GroupResource>().is_err());
        assert!("a/".parse::<GroupResource>().is_err());
        assert!("a/b/c".parse::<GroupResource>().is_err());
        assert!("/*".parse::<GroupResource>().is_err());
    }
}
