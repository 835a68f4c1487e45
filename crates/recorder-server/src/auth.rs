//! Who may upload and who may read.
//!
//! Uploaders: a valid `Authorization: Bearer` upload token, or (with an
//! identity source) a WhoIs identity permitted by `--allow-uploaders`
//! (default: tagged nodes). Readers: loopback connections (by default), a
//! WhoIs identity permitted by `--allow-readers`, or the read token.
//! Anyone else gets a clear 403 and nothing is stored.

use std::net::SocketAddr;
use std::sync::Arc;

use http::{HeaderMap, StatusCode};
use identity::{AllowList, WhoIs, WhoIsError};

use crate::config::ReaderPolicy;

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
pub enum Reader {
    /// Presented the read token.
    Token,
    /// Connected from a loopback address.
    Loopback(SocketAddr),
    /// A WhoIs identity permitted by `--allow-readers`.
    Identity(identity::Identity),
}

/// A refused request.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct Denied {
    /// 401, 403 or 503.
    pub status: StatusCode,
    /// What the caller (and the operator) should know.
    pub message: String,
}

fn forbidden(message: String) -> Denied {
    Denied {
        status: StatusCode::FORBIDDEN,
        message,
    }
}

/// The authentication policy.
pub struct Auth {
    whois: Option<Arc<dyn WhoIs>>,
    uploaders: AllowList,
    readers: ReaderPolicy,
    upload_token: Option<String>,
    read_token: Option<String>,
    any_uploader: bool,
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Compares in time independent of where the first difference is.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Auth {
    /// Builds the policy.
    pub fn new(
        whois: Option<Arc<dyn WhoIs>>,
        uploaders: AllowList,
        readers: ReaderPolicy,
        upload_token: Option<String>,
        read_token: Option<String>,
        any_uploader: bool,
    ) -> Self {
        Self {
            whois,
            uploaders,
            readers,
            upload_token,
            read_token,
            any_uploader,
        }
    }

    /// A one-line description for start-up logs.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if self.whois.is_some() {
            parts.push(format!("WhoIs identities allowed by [{}]", self.uploaders));
        }
        if self.upload_token.is_some() {
            parts.push("bearer upload token".to_owned());
        }
        if self.any_uploader {
            parts.push("ANYONE (--insecure-allow-any-uploader)".to_owned());
        }
        let mut readers = Vec::new();
        if self.readers.loopback {
            readers.push("loopback".to_owned());
        }
        if let Some(list) = &self.readers.identities {
            readers.push(format!("WhoIs [{list}]"));
        }
        if self.read_token.is_some() {
            readers.push("bearer read token".to_owned());
        }
        if readers.is_empty() {
            readers.push("nobody".to_owned());
        }
        format!(
            "uploads: {}; reads: {}",
            parts.join(" or "),
            readers.join(" or ")
        )
    }

    async fn whois(&self, peer: SocketAddr) -> Result<Option<identity::Identity>, Denied> {
        let Some(whois) = &self.whois else {
            return Ok(None);
        };
        match whois.whois(peer).await {
            Ok(caller) => Ok(Some(caller.identity)),
            Err(e @ WhoIsError::NoMatch { .. }) => Err(forbidden(format!("forbidden: {e}"))),
            Err(e) => Err(Denied {
                status: StatusCode::SERVICE_UNAVAILABLE,
                message: format!("cannot verify the caller's identity: {e}"),
            }),
        }
    }

    /// Authenticates an uploader.
    pub async fn uploader(
        &self,
        peer: SocketAddr,
        headers: &HeaderMap,
    ) -> Result<Uploader, Denied> {
        if let Some(token) = bearer(headers) {
            return match &self.upload_token {
                Some(want) if constant_time_eq(want.as_bytes(), token.as_bytes()) => Ok(Uploader {
                    label: "token".to_owned(),
                    ..Uploader::default()
                }),
                _ => Err(forbidden(
                    "forbidden: the bearer token is not a valid upload token".to_owned(),
                )),
            };
        }
        if self.whois.is_some() {
            let identity = self.whois(peer).await?;
            if let Some(identity) = identity {
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
                return Err(forbidden(format!(
                    "forbidden: {who} may not upload to this recorder (allowed: {})",
                    self.uploaders
                )));
            }
        }
        if self.any_uploader {
            return Ok(Uploader {
                label: format!("anonymous {peer}"),
                ..Uploader::default()
            });
        }
        Err(forbidden(format!(
            "forbidden: {peer} presented no upload credentials (this recorder needs {})",
            if self.upload_token.is_some() {
                "an Authorization: Bearer upload token"
            } else {
                "a tailnet identity"
            }
        )))
    }

    /// Authorises a reader.
    pub async fn reader(&self, peer: SocketAddr, headers: &HeaderMap) -> Result<Reader, Denied> {
        if let Some(token) = bearer(headers) {
            return match &self.read_token {
                Some(want) if constant_time_eq(want.as_bytes(), token.as_bytes()) => {
                    Ok(Reader::Token)
                }
                _ => Err(forbidden(
                    "forbidden: the bearer token is not a valid read token".to_owned(),
                )),
            };
        }
        if self.readers.loopback && peer.ip().to_canonical().is_loopback() {
            return Ok(Reader::Loopback(peer));
        }
        if let Some(list) = &self.readers.identities {
            if let Some(identity) = self.whois(peer).await? {
                if list.permits(&identity) {
                    return Ok(Reader::Identity(identity));
                }
                return Err(forbidden(format!(
                    "forbidden: {} may not read recordings (allowed: {list})",
                    identity.node_name
                )));
            }
        }
        Err(forbidden(format!(
            "forbidden: {peer} may not read recordings (see --allow-readers)"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(token: Option<&str>, any: bool) -> Auth {
        Auth::new(
            None,
            AllowList::tagged_nodes(),
            ReaderPolicy {
                loopback: true,
                identities: None,
            },
            token.map(str::to_owned),
            None,
            any,
        )
    }

    fn headers(auth: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(http::header::AUTHORIZATION, auth.parse().unwrap());
        h
    }

    #[tokio::test]
    async fn tokens() {
        let a = auth(Some("0123456789abcdef"), false);
        let peer: SocketAddr = "10.0.0.1:5".parse().unwrap();
        assert!(a
            .uploader(peer, &headers("Bearer 0123456789abcdef"))
            .await
            .is_ok());
        let err = a.uploader(peer, &headers("Bearer nope")).await.unwrap_err();
        assert_eq!(err.status, StatusCode::FORBIDDEN);
        let err = a.uploader(peer, &HeaderMap::new()).await.unwrap_err();
        assert!(err.message.contains("no upload credentials"), "{err}");
    }

    #[tokio::test]
    async fn readers_default_to_loopback() {
        let a = auth(None, true);
        let peer: SocketAddr = "127.0.0.1:1".parse().unwrap();
        assert_eq!(
            a.reader(peer, &HeaderMap::new()).await.unwrap(),
            Reader::Loopback(peer)
        );
        assert!(a
            .reader("[::ffff:127.0.0.1]:1".parse().unwrap(), &HeaderMap::new())
            .await
            .is_ok());
        assert!(a
            .reader("10.1.1.1:1".parse().unwrap(), &HeaderMap::new())
            .await
            .is_err());
    }
}
