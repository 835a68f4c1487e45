//! [`StatusCache`]: tailscaled's status reused for a few seconds, so that resolving recorder
//! tags costs one LocalAPI round trip per few seconds, not one per caller.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::client::LocalApi;
use crate::error::LocalApiError;
use crate::status::Status;

/// The status of one tailscaled, fetched at most once per `ttl` (one fetch at a time; concurrent
/// callers wait for it). Holds one document; failures are not remembered.
#[derive(Debug)]
pub struct StatusCache {
    api: LocalApi,
    ttl: Duration,
    timeout: Duration,
    last: Mutex<Option<(Instant, Arc<Status>)>>,
}

impl StatusCache {
    /// A cache over `api`, keeping each status for `ttl` (zero: ask every time). One fetch is
    /// bounded by 5 s.
    pub fn new(api: LocalApi, ttl: Duration) -> Self {
        StatusCache {
            api,
            ttl,
            timeout: Duration::from_secs(5),
            last: Mutex::new(None),
        }
    }

    /// The same, with `timeout` on each fetch.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The LocalAPI asked.
    pub fn api(&self) -> &LocalApi {
        &self.api
    }

    /// The status, from the cache when it is younger than the TTL.
    pub async fn status(&self) -> Result<Arc<Status>, LocalApiError> {
        let mut last = self.last.lock().await;
        if let Some((at, status)) = last.as_ref() {
            if at.elapsed() < self.ttl {
                return Ok(status.clone());
            }
        }
        let status = tokio::time::timeout(self.timeout, self.api.status())
            .await
            .map_err(|_| LocalApiError::Timeout(self.timeout))??;
        let status = Arc::new(status);
        *last = Some((Instant::now(), status.clone()));
        Ok(status)
    }

    /// The recorder addresses `tags` name in the current netmap
    /// ([`Status::recorders_for_tags`]).
    pub async fn recorders_for_tags(
        &self,
        tags: &[String],
    ) -> Result<Vec<SocketAddr>, LocalApiError> {
        Ok(self.status().await?.recorders_for_tags(tags))
    }
}
