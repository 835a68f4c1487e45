//! Thin adapter over the identity crate: connection → who is calling, with what
//! recorder policy and (auth mode) which impersonation headers.

use std::net::SocketAddr;
use std::sync::Arc;

use http::HeaderMap;
use identity::{Identity, Impersonation, RecorderPolicy, WhoIs};

use crate::caller_cache::CallerCache;
use crate::config::Mode;
use crate::listener::ConnInfo;

/// Everything the proxy needs about a caller for one request.
#[derive(Debug, Clone)]
pub struct CallerInfo {
    /// The caller's identity.
    pub identity: Identity,
    /// The event's `source` object.
    pub source: event_model::Source,
    /// Merged recorder policy from the grants.
    pub policy: RecorderPolicy,
    /// Auth mode: the headers to send upstream. None in noauth mode.
    pub impersonation: Option<Impersonation>,
}

/// Why a caller cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum CallerError {
    /// WhoIs failed: answered `500 failed to authenticate caller`.
    #[error("WhoIs failed: {0}")]
    Authenticate(String),
    /// A grant does not parse (or yields unsendable headers): answered 403 with the reason.
    #[error("{0}")]
    Grant(String),
}

/// Resolves callers through a [`WhoIs`] source.
pub struct CallerResolver {
    whois: Arc<dyn WhoIs>,
    mode: Mode,
    trust_forwarded_for: bool,
    cache: CallerCache,
}

impl std::fmt::Debug for CallerResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallerResolver")
            .field("mode", &self.mode)
            .field("trust_forwarded_for", &self.trust_forwarded_for)
            .finish()
    }
}

/// The event `source` for an identity (tailscale-behaviour §3.1): tagged nodes
/// carry tags and no user; untagged nodes carry `UserProfile.ID` and login name.
pub fn event_source(identity: &Identity) -> event_model::Source {
    let mut s = event_model::Source {
        node: identity.node_name.clone(),
        node_id: identity.stable_node_id.clone(),
        ..Default::default()
    };
    if identity.is_tagged() {
        s.node_tags = identity.tags.clone();
    } else {
        s.node_user_id = identity.user_id;
        s.node_user = identity.login_name.clone();
    }
    s
}

impl CallerResolver {
    /// A resolver. `trust_forwarded_for` enables the X-Forwarded-For WhoIs
    /// fallback on plain-HTTP listeners without PROXY protocol.
    pub fn new(
        whois: Arc<dyn WhoIs>,
        mode: Mode,
        trust_forwarded_for: bool,
        cache_ttl: std::time::Duration,
    ) -> Self {
        CallerResolver {
            whois,
            mode,
            trust_forwarded_for,
            cache: CallerCache::new(cache_ttl),
        }
    }

    /// Who is calling on `conn`, and what their grants say.
    pub async fn resolve(
        &self,
        conn: &ConnInfo,
        headers: &HeaderMap,
    ) -> Result<Arc<CallerInfo>, CallerError> {
        if let Some(known) = self.cache.get(conn.caller) {
            return Ok(known);
        }
        let (caller, by_address) = match self.whois.whois(conn.caller).await {
            Ok(c) => (c, true),
            Err(first) => {
                let fallback = self.forwarded_for(conn, headers);
                match fallback {
                    Some(addr) => (
                        self.whois.whois(addr).await.map_err(|second| {
                            CallerError::Authenticate(format!(
                                "{first}; X-Forwarded-For {addr}: {second}"
                            ))
                        })?,
                        false,
                    ),
                    None => return Err(CallerError::Authenticate(first.to_string())),
                }
            }
        };
        let policy = RecorderPolicy::from_caps(&caller.caps)
            .map_err(|e| CallerError::Grant(e.to_string()))?;
        let impersonation = match self.mode {
            Mode::Auth => Some(
                identity::impersonation_headers(&caller)
                    .map_err(|e| CallerError::Grant(e.to_string()))?,
            ),
            Mode::Noauth => None,
        };
        let info = Arc::new(CallerInfo {
            source: event_source(&caller.identity),
            identity: caller.identity,
            policy,
            impersonation,
        });
        // Only an answer about the connection's own address is remembered: a
        // header-derived one could differ from request to request.
        if by_address {
            self.cache.insert(conn.caller, info.clone());
        }
        Ok(info)
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
