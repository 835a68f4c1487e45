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
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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

/// How long a connection's WhoIs identity is trusted before the identity
/// source is asked again: a tag removed from the uploading node, or the node
/// removed, takes effect on its open connections within this time.
const IDENTITY_REUSE: Duration = Duration::from_secs(60);

/// The peer of one connection: its address (the PROXY header's source behind
/// a forwarder, else the TCP peer), and its WhoIs identity once the identity
/// source has answered for it. Uploads come over long-lived pooled
/// connections, so the source (tailscaled's LocalAPI) is asked once per
/// connection and [`IDENTITY_REUSE`], not once per request. Only answers are
/// kept: a refusal or a source that cannot answer is asked again next time.
#[derive(Debug, Clone)]
pub(crate) struct Peer {
    addr: SocketAddr,
    identity: Arc<Mutex<Option<(Instant, identity::Identity)>>>,
}

impl Peer {
    /// The peer of a new connection from `addr`, not yet looked up.
    pub(crate) fn new(addr: SocketAddr) -> Self {
        Peer {
            addr,
            identity: Arc::default(),
        }
    }

    /// The peer's address.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn remembered(&self) -> Option<identity::Identity> {
        let slot = self.identity.lock().unwrap_or_else(|p| p.into_inner());
        slot.as_ref()
            .filter(|(at, _)| at.elapsed() < IDENTITY_REUSE)
            .map(|(_, identity)| identity.clone())
    }

    fn remember(&self, identity: &identity::Identity) {
        let mut slot = self.identity.lock().unwrap_or_else(|p| p.into_inner());
        *slot = Some((Instant::now(), identity.clone()));
    }
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.addr.fmt(f)
    }
}

/// The peer's WhoIs identity (`None` without an identity source): the one
/// its connection remembers, else the source's answer (then remembered).
async fn whois(
    source: Option<&Arc<dyn WhoIs>>,
    peer: &Peer,
) -> Result<Option<identity::Identity>, Denied> {
    let Some(source) = source else {
        return Ok(None);
    };
    if let Some(identity) = peer.remembered() {
        return Ok(Some(identity));
    }
    match source.whois(peer.addr).await {
        Ok(caller) => {
            peer.remember(&caller.identity);
            Ok(Some(caller.identity))
        }
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
    pub(crate) async fn check(&self, peer: &Peer, headers: &HeaderMap) -> Result<Uploader, Denied> {
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
                label: format!("anonymous {}", peer.addr.ip()),
                ..Uploader::default()
            });
        }
        Err(Denied::NoUploadCredentials {
            peer: peer.addr,
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
    pub(crate) async fn check(&self, peer: &Peer, headers: &HeaderMap) -> Result<Reader, Denied> {
        if let Some(verdict) = bearer_verdict(headers, self.token.as_deref(), "read") {
            return verdict.map(|()| Reader::Token);
        }
        if self.readers.loopback && peer.addr.ip().to_canonical().is_loopback() {
            return Ok(Reader::Loopback(peer.addr));
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
        Err(Denied::NotAReader { peer: peer.addr })
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
        let peer = Peer::new("10.0.0.1:5".parse().unwrap());
        assert!(a
            .check(&peer, &headers("Bearer 0123456789abcdef"))
            .await
            .is_ok());
        let err = a.check(&peer, &headers("Bearer nope")).await.unwrap_err();
        assert_eq!(err.status(), StatusCode::FORBIDDEN);
        let err = a.check(&peer, &HeaderMap::new()).await.unwrap_err();
        assert!(err.to_string().contains("no upload credentials"), "{err}");
    }

    #[tokio::test]
    async fn readers_default_to_loopback() {
        let a = reads();
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        assert_eq!(
            a.check(&Peer::new(addr), &HeaderMap::new()).await.unwrap(),
            Reader::Loopback(addr)
        );
        let mapped = Peer::new("[::ffff:127.0.0.1]:1".parse().unwrap());
        assert!(a.check(&mapped, &HeaderMap::new()).await.is_ok());
        let remote = Peer::new("10.1.1.1:1".parse().unwrap());
        assert!(a.check(&remote, &HeaderMap::new()).await.is_err());
    }

    /// A WhoIs source that knows one tagged node, counts its questions and
    /// can be made to fail.
    #[derive(Default)]
    struct Counting {
        asked: std::sync::atomic::AtomicUsize,
        down: std::sync::atomic::AtomicBool,
    }

    #[async_trait::async_trait]
    impl WhoIs for Counting {
        async fn whois(&self, peer: SocketAddr) -> Result<identity::Caller, WhoIsError> {
            use std::sync::atomic::Ordering::SeqCst;
            self.asked.fetch_add(1, SeqCst);
            if self.down.load(SeqCst) {
                return Err(WhoIsError::Unreachable {
                    path: "/run/tailscale/tailscaled.sock".into(),
                    source: std::io::Error::other("LocalAPI down"),
                });
            }
            let identity = identity::Identity {
                node_name: format!("proxy-{}.example.ts.net", peer.ip()),
                stable_node_id: "nPROXY".into(),
                tags: vec!["tag:k8s-proxy".into()],
                ..Default::default()
            };
            Ok(identity::Caller {
                identity,
                caps: Default::default(),
            })
        }
    }

    #[tokio::test]
    async fn whois_is_asked_once_per_connection() {
        use std::sync::atomic::Ordering::SeqCst;
        let source = Arc::new(Counting::default());
        let a = UploadAccess {
            whois: Some(source.clone()),
            ..uploads(None)
        };
        let conn = Peer::new("100.64.0.7:40000".parse().unwrap());
        for _ in 0..5 {
            let up = a.check(&conn, &HeaderMap::new()).await.unwrap();
            assert_eq!(up.node, "proxy-100.64.0.7.example.ts.net");
        }
        assert_eq!(source.asked.load(SeqCst), 1);
        // A second connection from the same node is looked up on its own.
        let other = Peer::new("100.64.0.7:40001".parse().unwrap());
        a.check(&other, &HeaderMap::new()).await.unwrap();
        assert_eq!(source.asked.load(SeqCst), 2);
        // A source that could not answer is asked again, and refuses meanwhile.
        source.down.store(true, SeqCst);
        let fresh = Peer::new("100.64.0.8:40000".parse().unwrap());
        for _ in 0..2 {
            let err = a.check(&fresh, &HeaderMap::new()).await.unwrap_err();
            assert_eq!(err.status(), StatusCode::SERVICE_UNAVAILABLE);
        }
        assert_eq!(source.asked.load(SeqCst), 4);
        source.down.store(false, SeqCst);
        a.check(&fresh, &HeaderMap::new()).await.unwrap();
        a.check(&fresh, &HeaderMap::new()).await.unwrap();
        assert_eq!(source.asked.load(SeqCst), 5);
    }
}
