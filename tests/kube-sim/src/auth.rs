//! Authentication (bearer tokens from an allow-list, optional client certificates)
//! and impersonation (`Impersonate-User`, `-Group`, `-Uid`, `-Extra-*`), as
//! kube-apiserver does them.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use http::HeaderMap;
use serde::{Deserialize, Serialize};

use crate::status::ApiError;

/// Who a request runs as.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct UserInfo {
    /// User name.
    pub username: String,
    /// User UID (empty if none).
    #[serde(default)]
    pub uid: String,
    /// Groups.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Extra attributes (`Impersonate-Extra-*`).
    #[serde(default)]
    pub extra: BTreeMap<String, Vec<String>>,
}

/// One allowed bearer token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenEntry {
    /// The bearer token.
    pub token: String,
    /// The user it authenticates as.
    #[serde(alias = "username")]
    pub user: String,
    /// The user's groups.
    #[serde(default)]
    pub groups: Vec<String>,
}

/// Errors reading a token file.
#[derive(Debug, thiserror::Error)]
pub enum TokenFileError {
    /// The file could not be read.
    #[error("cannot read token file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A line or the JSON is malformed.
    #[error("token file {path}: {message} (expected lines `token,username,group1|group2` or a JSON array of {{\"token\",\"user\",\"groups\"}})")]
    Malformed {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
}

/// Parses a token file: JSON (`[{"token":…,"user":…,"groups":[…]}]`) or lines of
/// `token,username,group1|group2` (`#` comments and blank lines ignored).
pub fn parse_token_file(path: &Path) -> Result<Vec<TokenEntry>, TokenFileError> {
    let display = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| TokenFileError::Read {
        path: display.clone(),
        source,
    })?;
    parse_tokens(&text).map_err(|message| TokenFileError::Malformed {
        path: display,
        message,
    })
}

/// Parses token file contents (see [`parse_token_file`]).
pub fn parse_tokens(text: &str) -> Result<Vec<TokenEntry>, String> {
    if text.trim_start().starts_with('[') {
        return serde_json::from_str(text).map_err(|e| e.to_string());
    }
    let mut entries = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        if fields.len() < 2 || fields.len() > 3 || fields[0].is_empty() || fields[1].is_empty() {
            return Err(format!(
                "line {}: expected 2 or 3 comma-separated fields",
                number + 1
            ));
        }
        let groups = fields
            .get(2)
            .map(|g| {
                g.split('|')
                    .filter(|g| !g.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        entries.push(TokenEntry {
            token: fields[0].to_string(),
            user: fields[1].to_string(),
            groups,
        });
    }
    Ok(entries)
}

/// The group whose members may impersonate anyone (besides the configured users).
pub const MASTERS_GROUP: &str = "system:masters";

/// The user every request runs as when no token list is configured.
pub fn open_admin() -> UserInfo {
    UserInfo {
        username: "kube-sim-admin".into(),
        groups: vec![MASTERS_GROUP.into(), "system:authenticated".into()],
        ..UserInfo::default()
    }
}

/// Decides who a request is.
#[derive(Debug, Clone, Default)]
pub struct Authenticator {
    tokens: Option<HashMap<String, UserInfo>>,
    impersonators: Vec<String>,
}

impl Authenticator {
    /// `tokens == None` disables authentication (every request is [`open_admin`]).
    /// `impersonators` are user names allowed to impersonate (members of
    /// `system:masters` always may).
    pub fn new(tokens: Option<&[TokenEntry]>, impersonators: Vec<String>) -> Self {
        let tokens = tokens.map(|entries| {
            entries
                .iter()
                .map(|e| {
                    let mut groups = e.groups.clone();
                    if !groups.iter().any(|g| g == "system:authenticated") {
                        groups.push("system:authenticated".into());
                    }
                    (
                        e.token.clone(),
                        UserInfo {
                            username: e.user.clone(),
                            groups,
                            ..UserInfo::default()
                        },
                    )
                })
                .collect()
        });
        Self {
            tokens,
            impersonators,
        }
    }

    /// Authenticates from the `Authorization` header, else from a verified client
    /// certificate's user; unknown or missing credentials are 401.
    pub fn authenticate(
        &self,
        headers: &HeaderMap,
        cert_user: Option<&UserInfo>,
    ) -> Result<UserInfo, ApiError> {
        let bearer = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim);
        let Some(tokens) = &self.tokens else {
            return Ok(cert_user.cloned().unwrap_or_else(open_admin));
        };
        match bearer {
            Some(token) => tokens
                .get(token)
                .cloned()
                .ok_or_else(ApiError::unauthorized),
            None => cert_user.cloned().ok_or_else(ApiError::unauthorized),
        }
    }

    fn may_impersonate(&self, user: &UserInfo) -> bool {
        self.tokens.is_none()
            || user.groups.iter().any(|g| g == MASTERS_GROUP)
            || self.impersonators.contains(&user.username)
    }

    /// Applies `Impersonate-*` headers: returns the effective user.
    pub fn impersonate(&self, user: UserInfo, headers: &HeaderMap) -> Result<UserInfo, ApiError> {
        let values = |name: &str| -> Vec<String> {
            headers
                .get_all(name)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .map(str::to_string)
                .collect()
        };
        let target_user = values("impersonate-user").into_iter().next();
        let groups = values("impersonate-group");
        let uid = values("impersonate-uid").into_iter().next();
        let mut extra: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (name, value) in headers {
            if let Some(key) = name.as_str().strip_prefix("impersonate-extra-") {
                let key = percent_encoding::percent_decode_str(key)
                    .decode_utf8_lossy()
                    .to_lowercase();
                if let Ok(value) = value.to_str() {
                    extra.entry(key).or_default().push(value.to_string());
                }
            }
        }
        let Some(target) = target_user else {
            if !groups.is_empty() || uid.is_some() || !extra.is_empty() {
                return Err(ApiError::bad_request(
                    "requested impersonation of groups, uid or extra without impersonating a user",
                ));
            }
            return Ok(user);
        };
        if !self.may_impersonate(&user) {
            return Err(ApiError::forbidden(format!(
                "users \"{target}\" is forbidden: User \"{}\" cannot impersonate resource \"users\" in API group \"\" at the cluster scope",
                user.username
            )));
        }
        let mut groups = groups;
        if !target.starts_with("system:serviceaccount:")
            && !groups.iter().any(|g| g == "system:authenticated")
            && target != "system:anonymous"
        {
            groups.push("system:authenticated".into());
        }
        Ok(UserInfo {
            username: target,
            uid: uid.unwrap_or_default(),
            groups,
            extra,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn auth() -> Authenticator {
        let tokens =
            parse_tokens("# comment\nproxytoken,proxy,proxies\nalicetoken,alice,devs|ops\n")
                .unwrap();
        Authenticator::new(Some(&tokens), vec!["proxy".into()])
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(*k, HeaderValue::from_static(v));
        }
        map
    }

    #[test]
    fn tokens_and_401() {
        let a = auth();
        let alice = a
            .authenticate(&headers(&[("authorization", "Bearer alicetoken")]), None)
            .unwrap();
        assert_eq!(alice.groups, ["devs", "ops", "system:authenticated"]);
        assert_eq!(
            a.authenticate(&headers(&[("authorization", "Bearer nope")]), None)
                .unwrap_err()
                .code,
            401
        );
        assert_eq!(a.authenticate(&headers(&[]), None).unwrap_err().code, 401);
    }

    #[test]
    fn impersonation_needs_permission() {
        let a = auth();
        let h = headers(&[
            ("impersonate-user", "bob@example.com"),
            ("impersonate-group", "g1"),
            ("impersonate-group", "g2"),
            ("impersonate-uid", "u-1"),
            ("impersonate-extra-scopes%2Fx", "read"),
        ]);
        let proxy = a
            .authenticate(&headers(&[("authorization", "Bearer proxytoken")]), None)
            .unwrap();
        let effective = a.impersonate(proxy, &h).unwrap();
        assert_eq!(effective.username, "bob@example.com");
        assert_eq!(effective.groups, ["g1", "g2", "system:authenticated"]);
        assert_eq!(effective.uid, "u-1");
        assert_eq!(effective.extra["scopes/x"], ["read"]);
        let alice = a
            .authenticate(&headers(&[("authorization", "Bearer alicetoken")]), None)
            .unwrap();
        assert_eq!(a.impersonate(alice, &h).unwrap_err().code, 403);
        assert_eq!(
            a.impersonate(UserInfo::default(), &headers(&[("impersonate-group", "g")]))
                .unwrap_err()
                .code,
            400
        );
    }
}
