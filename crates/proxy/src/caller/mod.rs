//! Who is calling: the connection's caller address → WhoIs → identity, the
//! event's `source`, the merged recording rules from the grants and (auth
//! mode) the impersonation headers. Answers are reused for a few seconds per
//! address ([`cache`]). See docs/tailscale-protocol.md#whois.

mod cache;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderMap;
use identity::{GrantError, Identity, Impersonation, RecordingRules, WhoIs, WhoIsError};
use localapi::StatusCache;

use crate::mode::Mode;
use cache::AddressCache;
use service::conn::ConnInfo;

/// Everything the proxy needs about a caller for one request.
#[derive(Debug, Clone)]
pub struct CallerInfo {
    /// The caller's identity.
    pub identity: Identity,
    /// The event's `source` object.
    pub source: event_model::Source,
    /// Merged recording rules from the grants, with the recorders found from
    /// their `recorder` tags when no grant carries addresses.
    pub policy: RecordingRules,
    /// Auth mode: the headers to send upstream. None in noauth mode.
    pub impersonation: Option<Impersonation>,
}

/// Why a caller cannot be served.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CallerError {
    /// WhoIs of the connection's caller address failed.
    #[error("WhoIs failed: {0}")]
    WhoIs(#[source] WhoIsError),
    /// WhoIs failed for the caller address and for its `X-Forwarded-For` too.
    #[error("WhoIs failed: {first}; X-Forwarded-For {forwarded_for}: {source}")]
    WhoIsForwardedFor {
        /// Why WhoIs of the connection's caller address failed.
        first: WhoIsError,
        /// The address the `X-Forwarded-For` header named.
        forwarded_for: SocketAddr,
        /// Why WhoIs of that address failed.
        source: WhoIsError,
    },
    /// A grant does not parse, or yields headers that cannot be sent.
    #[error("{0}")]
    Grant(#[from] GrantError),
}

/// Resolves callers through a [`WhoIs`] source.
pub(crate) struct CallerResolver {
    whois: Arc<dyn WhoIs>,
    mode: Mode,
    trust_forwarded_for: bool,
    cache: AddressCache<Arc<CallerInfo>>,
    netmap: Option<Arc<StatusCache>>,
}

impl std::fmt::Debug for CallerResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallerResolver")
            .field("mode", &self.mode)
            .field("trust_forwarded_for", &self.trust_forwarded_for)
            .finish()
    }
}

impl CallerResolver {
    /// A resolver. `trust_forwarded_for` enables the X-Forwarded-For WhoIs
    /// fallback on plain-HTTP listeners without PROXY protocol; answers are
    /// reused for `cache_ttl`.
    pub(crate) fn new(
        whois: Arc<dyn WhoIs>,
        mode: Mode,
        trust_forwarded_for: bool,
        cache_ttl: Duration,
    ) -> Self {
        CallerResolver {
            whois,
            mode,
            trust_forwarded_for,
            cache: AddressCache::new(cache_ttl),
            netmap: None,
        }
    }

    /// Resolves grants' `recorder` tags in this tailscaled's netmap when no
    /// grant carries `recorderAddrs` (None: such callers have no recorders).
    pub(crate) fn with_netmap(mut self, netmap: Option<Arc<StatusCache>>) -> Self {
        self.netmap = netmap;
        self
    }

    /// Who is calling on `conn`, and what their grants say.
    pub(crate) async fn resolve(
        &self,
        conn: &ConnInfo,
        headers: &HeaderMap,
    ) -> Result<Arc<CallerInfo>, CallerError> {
        if let Some(known) = self.cache.get(conn.peer) {
            return Ok(known);
        }
        let (caller, by_address) = match self.whois.whois(conn.peer).await {
            Ok(c) => (c, true),
            Err(first) => match self.forwarded_for(conn, headers) {
                Some(forwarded_for) => match self.whois.whois(forwarded_for).await {
                    Ok(c) => (c, false),
                    Err(source) => {
                        return Err(CallerError::WhoIsForwardedFor {
                            first,
                            forwarded_for,
                            source,
                        })
                    }
                },
                None => return Err(CallerError::WhoIs(first)),
            },
        };
        let (policy, complete) = self
            .recorders(RecordingRules::from_caps(&caller.caps)?)
            .await;
        let impersonation = match self.mode {
            Mode::Auth => Some(identity::impersonation_headers(&caller)?),
            Mode::Noauth => None,
        };
        let info = Arc::new(CallerInfo {
            source: caller.identity.event_source(),
            identity: caller.identity,
            policy,
            impersonation,
        });
        // Only an answer about the connection's own address is remembered: a
        // header-derived one could differ from request to request.
        // Nor one whose recorder tags could not be resolved: the next request asks again.
        if by_address && complete {
            self.cache.insert(conn.peer, info.clone());
        }
        Ok(info)
    }

    /// The rules with the recorders their tags name, when they need that;
    /// and whether they are complete (false: the netmap could not be read,
    /// and the caller has no recorders for this request, which refuses it
    /// under `enforceRecorder`).
    async fn recorders(&self, rules: RecordingRules) -> (RecordingRules, bool) {
        if !rules.needs_tag_resolution() {
            return (rules, true);
        }
        let Some(netmap) = &self.netmap else {
            tracing::warn!(
                tags = ?rules.recorder_tags,
                "the caller's grants name recorder tags but no recorderAddrs, and without a \
                 LocalAPI socket the tags cannot be resolved: no recorders"
            );
            return (rules, true);
        };
        let fallback = rules.clone();
        match rules.resolve_tags(netmap).await {
            Ok(resolved) => {
                tracing::debug!(
                    tags = ?resolved.recorder_tags,
                    recorders = ?resolved.recorder_addrs,
                    "recorder tags resolved in tailscaled's netmap"
                );
                if resolved.recorder_addrs.is_empty() {
                    tracing::warn!(
                        tags = ?resolved.recorder_tags,
                        "no peer in tailscaled's netmap carries the grant's recorder tags: no recorders"
                    );
                }
                (resolved, true)
            }
            Err(error) => {
                tracing::warn!(
                    tags = ?fallback.recorder_tags,
                    %error,
                    "cannot resolve the grant's recorder tags in tailscaled's netmap: no recorders for this request"
                );
                (fallback, false)
            }
        }
    }

    fn forwarded_for(&self, conn: &ConnInfo, headers: &HeaderMap) -> Option<SocketAddr> {
        if !self.trust_forwarded_for || conn.tls || conn.via_proxy_protocol {
            return None;
        }
        // One value, `IP:PORT` or the usual bare `IP` (port 0, which tailscaled accepts).
        headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(identity::peer_from_forwarded_for)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use async_trait::async_trait;
    use identity::{Caller, WhoIsResponse};
    use localapi::LocalApi;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Answers every address with one caller whose grant names only `recorder` tags; counts lookups.
    struct TagsOnly(AtomicUsize);

    #[async_trait]
    impl WhoIs for TagsOnly {
        async fn whois(&self, _peer: SocketAddr) -> Result<Caller, WhoIsError> {
            self.0.fetch_add(1, Ordering::SeqCst);
            let json = r#"{"Node":{"ID":7,"StableID":"nA","Name":"a.ts.net.","User":1},
                "UserProfile":{"ID":1,"LoginName":"alice@example.com"},
                "CapMap":{"tailscale.com/cap/kubernetes":[
                  {"recorder":["tag:k8s-recorder"],"enforceRecorder":true}]}}"#;
            Ok(Caller::from(
                WhoIsResponse::from_json(json.as_bytes()).unwrap(),
            ))
        }
    }

    /// A LocalAPI that answers every request with `status` (one HTTP/1.1 exchange per connection).
    fn status_server(dir: &std::path::Path, status: &'static str) -> LocalApi {
        let socket = dir.join("ts.sock");
        let listener = tokio::net::UnixListener::bind(&socket).unwrap();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf).await;
                let answer = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
                     Connection: close\r\n\r\n{status}",
                    status.len()
                );
                let _ = stream.write_all(answer.as_bytes()).await;
            }
        });
        LocalApi::new(socket)
    }

    fn conn() -> ConnInfo {
        let peer: SocketAddr = "100.101.102.103:5000".parse().unwrap();
        ConnInfo {
            peer,
            tcp_peer: peer,
            tls: false,
            via_proxy_protocol: false,
        }
    }

    fn resolver(netmap: Option<LocalApi>) -> (CallerResolver, Arc<TagsOnly>) {
        let whois = Arc::new(TagsOnly(AtomicUsize::new(0)));
        let resolver =
            CallerResolver::new(whois.clone(), Mode::Noauth, false, Duration::from_secs(60))
                .with_netmap(
                    netmap.map(|api| Arc::new(StatusCache::new(api, Duration::from_secs(60)))),
                );
        (resolver, whois)
    }

    #[tokio::test]
    async fn recorder_tags_are_resolved_in_the_netmap_and_the_answer_is_cached() {
        let dir = tempfile::tempdir().unwrap();
        let api = status_server(
            dir.path(),
            r#"{"Peer":{"nodekey:1":{"TailscaleIPs":["100.64.0.3"],"Tags":["tag:k8s-recorder"]}}}"#,
        );
        let (resolver, whois) = resolver(Some(api));
        let info = resolver.resolve(&conn(), &HeaderMap::new()).await.unwrap();
        assert_eq!(
            info.policy.recorder_addrs,
            ["100.64.0.3:80".parse().unwrap()]
        );
        assert!(!info.policy.refuses_everything());
        resolver.resolve(&conn(), &HeaderMap::new()).await.unwrap();
        assert_eq!(whois.0.load(Ordering::SeqCst), 1, "cached");
    }

    #[tokio::test]
    async fn an_unreadable_netmap_gives_no_recorders_and_is_not_cached() {
        let (resolver, whois) = resolver(Some(LocalApi::new("/nonexistent/ts.sock")));
        let info = resolver.resolve(&conn(), &HeaderMap::new()).await.unwrap();
        assert!(info.policy.recorder_addrs.is_empty());
        assert!(info.policy.refuses_everything(), "enforceRecorder: refused");
        resolver.resolve(&conn(), &HeaderMap::new()).await.unwrap();
        assert_eq!(whois.0.load(Ordering::SeqCst), 2, "asked again");
    }

    #[tokio::test]
    async fn without_a_netmap_tags_mean_no_recorders() {
        let (resolver, _) = resolver(None);
        let info = resolver.resolve(&conn(), &HeaderMap::new()).await.unwrap();
        assert!(info.policy.refuses_everything());
    }
}
