//! Who may upload and who may read: the one place where a request's
//! credentials (a bearer token, or the peer's WhoIs identity) are checked.
//!
//! * `UploadAccess`: a valid `Authorization: Bearer` upload token, or (with
//!   an identity source) a WhoIs identity permitted by `--allow-uploaders`
//!   (default: tagged nodes), or anyone with `--insecure-allow-any-uploader`.
//!   Every upload endpoint asks it, through one function.
//! * `ReadAccess`: the read token, a loopback connection (with
//!   `--allow-readers loopback`, the default), or a WhoIs identity permitted
//!   by `--allow-readers`.
//!
//! Anyone else is refused (`Denied`) and nothing is stored or shown. A
//! WhoIs source that cannot answer refuses too (fail closed).

use std::net::SocketAddr;
use std::sync::Arc;

use http::{HeaderMap, StatusCode};
use identity::{AllowList, WhoIs, WhoIsError};

use crate::config::Readers;

/// The authenticated uploading peer, as written into `destination`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Uploader {
    /// The peer's node FQDN (empty for token or anonymous uploads).
    pub node: String,
    /// The peer's stable node ID (empty for token or anonymous uploads).
    pub node_id: String,
    /// How it was authenticated, for logs and session metadata.
    pub label: String,
}

/// Who an authorised reader is (recorded in the session-view audit record).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Reader {
    /// Presented the read token.
    Token,
    /// Connected from a loopback address.
    Loopback(SocketAddr),
    /// A WhoIs identity permitted by `--allow-readers`.
    Identity(identity::Identity),
}

/// A refused request, worded for the caller and for the operator's log.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Denied {
    /// A bearer token was presented, but not the right one.
    #[error("forbidden: the bearer token is not a valid {0} token")]
    WrongToken(&'static str),
    /// The identity source does not know the peer.
    #[error("forbidden: {0}")]
    Unknown(#[source] WhoIsError),
    /// The identity source could not answer (fail closed).
    #[error("cannot verify the caller's identity: {0}")]
    Unverifiable(#[source] WhoIsError),
    /// An identified peer that `--allow-uploaders` does not permit.
    #[error("forbidden: {who} may not upload to this recorder (allowed: {allowed})")]
    UploaderNotAllowed {
        /// The peer, as the log should name it.
        who: String,
        /// `--allow-uploaders`.
        allowed: String,
    },
    /// A peer that presented nothing this recorder accepts for uploads.
    #[error("forbidden: {peer} presented no upload credentials (this recorder needs {needs})")]
    NoUploadCredentials {
        /// The peer's address.
        peer: SocketAddr,
        /// What it would have needed.
        needs: &'static str,
    },
    /// An identified peer that `--allow-readers` does not permit.
    #[error("forbidden: {node} may not read recordings (allowed: {allowed})")]
    ReaderNotAllowed {
        /// The peer's node name.
        node: String,
        /// The identities of `--allow-readers`.
        allowed: String,
    },
    /// A peer that is no reader by any rule.
    #[error("forbidden: {peer} may not read recordings (see --allow-readers)")]
    NotAReader {
        /// The peer's address.
        peer: SocketAddr,
    },
}

impl Denied {
    /// The HTTP status of the refusal: `503` when the caller's identity could
    /// not be checked, `403` otherwise.
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            Denied::Unverifiable(_) => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::FORBIDDEN,
        }
    }
}

/// The bearer token of `Authorization: Bearer <token>`, if any.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Whether `presented` is `want`, compared in time independent of where the
/// first difference is.
fn token_matches(want: &str, presented: &str) -> bool {
    let (a, b) = (want.as_bytes(), presented.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The verdict on the bearer token in `headers`, if one was presented: it
/// must be `want` (the `kind` token). A wrong token is refused even where
/// another rule would admit the peer.
fn bearer_verdict(
    headers: &HeaderMap,
    want: Option<&str>,
    kind: &'static str,
) -> Option<Result<(), Denied>> {
    let token = bearer(headers)?;
    Some(match want {
        Some(want) if token_matches(want, token) => Ok(()),
        _ => Err(Denied::WrongToken(kind)),
    })
}

/// The peer's WhoIs identity (`None` without an identity source).
async fn whois(
    source: Option<&Arc<dyn WhoIs>>,
    peer: SocketAddr,
) -> Result<Option<identity::Identity>, Denied> {
    let Some(source) = source else {
        return Ok(None);
    };
    match source.whois(peer).await {
        Ok(caller) => Ok(Some(caller.identity)),
        Err(e @ WhoIsError::NoMatch { .. }) => Err(Denied::Unknown(e)),
        Err(e) => Err(Denied::Unverifiable(e)),
    }
}

/// Who may upload.
pub(crate) struct UploadAccess {
    /// The identity source, if any.
    pub(crate) whois: Option<Arc<dyn WhoIs>>,
    /// `--allow-uploaders`.
    pub(crate) uploaders: AllowList,
    /// `--upload-token-file`'s token.
    pub(crate) token: Option<String>,
    /// `--insecure-allow-any-uploader`.
    pub(crate) anyone: bool,
}

impl UploadAccess {
    /// Who may upload, for the start-up log.
    pub(crate) fn describe(&self) -> String {
        let mut parts = Vec::new();
        if self.whois.is_some() {
            parts.push(format!("WhoIs identities allowed by [{}]", self.uploaders));
        }
        if self.token.is_some() {
            parts.push("bearer upload token".to_owned());
        }
        if self.anyone {
            parts.push("ANYONE (--insecure-allow-any-uploader)".to_owned());
        }
        parts.join(" or ")
    }

    /// Authenticates the uploader `peer` that sent `headers`.
    pub(crate) async fn check(
        &self,
        peer: SocketAddr,
        headers: &HeaderMap,
    ) -> Result<Uploader, Denied> {
        if let Some(verdict) = bearer_verdict(headers, self.token.as_deref(), "upload") {
            return verdict.map(|()| Uploader {
                label: "token".to_owned(),
                ..Uploader::default()
            });
        }
        if let Some(identity) = whois(self.whois.as_ref(), peer).await? {
            if self.uploaders.permits(&identity) {
                return Ok(Uploader {
                    label: identity.node_name.clone(),
                    node: identity.node_name,
                    node_id: identity.stable_node_id,
                });
            }
            let who = if identity.is_tagged() {
                format!(
                    "node {} (tags {})",
                    identity.node_name,
                    identity.tags.join(",")
                )
            } else {
                format!(
                    "node {} of user {}",
                    identity.node_name, identity.login_name
                )
            };
            return Err(Denied::UploaderNotAllowed {
                who,
                allowed: self.uploaders.to_string(),
            });
        }
        if self.anyone {
            return Ok(Uploader {
                label: format!("anonymous {}", peer.ip()),
                ..Uploader::default()
            });
        }
        Err(Denied::NoUploadCredentials {
            peer,
            needs: if self.token.is_some() {
                "an Authorization: Bearer upload token"
            } else {
                "a tailnet identity"
            },
        })
    }
}

/// Who may read (the query API, the web UI and casts).
pub(crate) struct ReadAccess {
    /// The identity source, if any.
    pub(crate) whois: Option<Arc<dyn WhoIs>>,
    /// `--allow-readers`.
    pub(crate) readers: Readers,
    /// `--read-token-file`'s token.
    pub(crate) token: Option<String>,
}

impl ReadAccess {
    /// Who may read, for the start-up log.
    pub(crate) fn describe(&self) -> String {
        let mut readers = Vec::new();
        if self.readers.loopback {
            readers.push("loopback".to_owned());
        }
        if let Some(list) = &self.readers.identities {
            readers.push(format!("WhoIs [{list}]"));
        }
        if self.token.is_some() {
            readers.push("bearer read token".to_owned());
        }
        if readers.is_empty() {
            readers.push("nobody".to_owned());
        }
        readers.join(" or ")
    }

    /// Authorises the reader `peer` that sent `headers`.
    pub(crate) async fn check(
        &self,
        peer: SocketAddr,
        headers: &HeaderMap,
    ) -> Result<Reader, Denied> {
        if let Some(verdict) = bearer_verdict(headers, self.token.as_deref(), "read") {
            return verdict.map(|()| Reader::Token);
        }
        if self.readers.loopback && peer.ip().to_canonical().is_loopback() {
            return Ok(Reader::Loopback(peer));
        }
        if let Some(list) = &self.readers.identities {
            if let Some(identity) = whois(self.whois.as_ref(), peer).await? {
                if list.permits(&identity) {
                    return Ok(Reader::Identity(identity));
                }
                return Err(Denied::ReaderNotAllowed {
                    node: identity.node_name,
                    allowed: list.to_string(),
                });
            }
        }
        Err(Denied::NotAReader { peer })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uploads(token: Option<&str>) -> UploadAccess {
        UploadAccess {
            whois: None,
            uploaders: AllowList::tagged_nodes(),
            token: token.map(str::to_owned),
            anyone: false,
        }
    }

    fn reads() -> ReadAccess {
        ReadAccess {
            whois: None,
            readers: Readers {
                loopback: true,
                identities: None,
            },
            token: None,
        }
    }

    fn headers(auth: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(http::header::AUTHORIZATION, auth.parse().unwrap());
        h
    }

    #[tokio::test]
    async fn tokens() {
        let a = uploads(Some("0123456789abcdef"));
        let peer: SocketAddr = "10.0.0.1:5".parse().unwrap();
        assert!(a
            .check(peer, &headers("Bearer 0123456789abcdef"))
            .await
            .is_ok());
        let err = a.check(peer, &headers("Bearer nope")).await.unwrap_err();
        assert_eq!(err.status(), StatusCode::FORBIDDEN);
        let err = a.check(peer, &HeaderMap::new()).await.unwrap_err();
        assert!(err.to_string().contains("no upload credentials"), "{err}");
    }

    #[tokio::test]
    async fn readers_default_to_loopback() {
        let a = reads();
        let peer: SocketAddr = "127.0.0.1:1".parse().unwrap();
        assert_eq!(
            a.check(peer, &HeaderMap::new()).await.unwrap(),
            Reader::Loopback(peer)
        );
        assert!(a
            .check("[::ffff:127.0.0.1]:1".parse().unwrap(), &HeaderMap::new())
            .await
            .is_ok());
        assert!(a
            .check("10.1.1.1:1".parse().unwrap(), &HeaderMap::new())
            .await
            .is_err());
    }
}
