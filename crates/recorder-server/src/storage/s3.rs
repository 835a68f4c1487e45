//! The S3 back end (any S3-compatible store), through the `object_store` crate.
//!
//! Records are single PUTs (atomic and durable once the PUT completes).
//! Sessions are appended as numbered chunk objects under
//! `<key>.parts/<seq>`; each append is durable once its PUT completes. When a
//! session finishes (or, after a crash, at the next start) the chunks are
//! composed into `<key>` with a multipart upload and then deleted. Composition
//! is idempotent, so a crash during it is repaired by running it again.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path;
use object_store::{
    ClientOptions, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig, WriteMultipart,
};

use super::layout::{self, ObjectKey};
use super::requests::{CountingConnector, ObjectStoreRequests};
use super::{ObjectInfo, RecoveredSession, SessionSink, Storage, StorageError};
use crate::record::new_id;

const PARTS_INFIX: &str = ".parts/";

/// Where and how to reach the bucket.
#[derive(Debug, Clone)]
pub struct S3Config {
    /// `http(s)://host[:port]` of the S3 API.
    pub endpoint: String,
    /// The bucket (dedicated to the recorder).
    pub bucket: String,
    /// The region used for request signing.
    pub region: String,
    /// Whether a plain-http endpoint is allowed.
    pub allow_http: bool,
    /// Explicit access key and secret; `None` reads the standard AWS
    /// environment.
    pub credentials: Option<(String, String)>,
}

/// Storage in an S3 bucket.
#[derive(Debug, Clone)]
pub struct S3Storage {
    store: Arc<AmazonS3>,
    config: S3Config,
    requests: ObjectStoreRequests,
}

fn os_err(op: &'static str, key: &str) -> impl FnOnce(object_store::Error) -> StorageError {
    let key = key.to_owned();
    move |source| match source {
        object_store::Error::NotFound { .. } => StorageError::NotFound(key),
        source => StorageError::ObjectStore { op, key, source },
    }
}

impl S3Storage {
    /// Builds a client for `config`. Credentials come from the standard AWS environment
    /// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`,
    /// web identity / IRSA, instance metadata).
    pub fn new(config: S3Config) -> Result<Self, StorageError> {
        let retry = RetryConfig {
            max_retries: 3,
            retry_timeout: Duration::from_secs(20),
            ..RetryConfig::default()
        };
        let requests = ObjectStoreRequests::default();
        let mut builder =
            AmazonS3Builder::from_env().with_http_connector(CountingConnector(requests.clone()));
        if let Some((key, secret)) = &config.credentials {
            builder = builder
                .with_access_key_id(key)
                .with_secret_access_key(secret);
        }
        let store = builder
            .with_endpoint(&config.endpoint)
            .with_bucket_name(&config.bucket)
            .with_region(&config.region)
            .with_allow_http(config.allow_http)
            .with_virtual_hosted_style_request(false)
            .with_retry(retry)
            .with_client_options(
                ClientOptions::new()
                    .with_allow_http(config.allow_http)
                    .with_connect_timeout(Duration::from_secs(5))
                    .with_timeout(Duration::from_secs(60)),
            )
            .build()
            .map_err(|source| StorageError::S3Client {
                endpoint: config.endpoint.clone(),
                bucket: config.bucket.clone(),
                source,
            })?;
        Ok(Self {
            store: Arc::new(store),
            config,
            requests,
        })
    }

    fn parts_prefix(key: &str) -> String {
        format!("{key}{PARTS_INFIX}")
    }

    /// Concatenates a session's chunks into its final object, then deletes them.
    async fn compose(&self, key: &str, parts: &[String]) -> Result<u64, StorageError> {
        let target = Path::from(key);
        let upload = self
            .store
            .put_multipart(&target)
            .await
            .map_err(os_err("start multipart upload", key))?;
        let mut writer = WriteMultipart::new(upload);
        let mut size = 0u64;
        for part in parts {
            let data = self.get(part).await?;
            size += data.len() as u64;
            writer
                .wait_for_capacity(4)
                .await
                .map_err(os_err("upload part of", key))?;
            writer.put(data);
        }
        writer
            .finish()
            .await
            .map_err(os_err("complete multipart upload", key))?;
        for part in parts {
            match self.store.delete(&Path::from(part.as_str())).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(os_err("delete chunk", part)(e)),
            }
        }
        Ok(size)
    }

    async fn list_all(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StorageError> {
        let path = (!prefix.is_empty()).then(|| Path::from(prefix.trim_end_matches('/')));
        self.store
            .list(path.as_ref())
            .map_ok(|meta| ObjectInfo {
                key: meta.location.to_string(),
                size: meta.size,
            })
            .try_collect()
            .await
            .map_err(os_err("list", prefix))
    }
}

#[async_trait]
impl Storage for S3Storage {
    fn describe(&self) -> String {
        format!("s3:{}/{}", self.config.endpoint, self.config.bucket)
    }

    fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        self.requests.register(registry);
    }

    async fn check(&self) -> Result<(), StorageError> {
        let hint = |e: StorageError| StorageError::Bucket {
            bucket: self.config.bucket.clone(),
            endpoint: self.config.endpoint.clone(),
            source: Box::new(e),
        };
        self.list_all("_kubescribe").await.map_err(hint)?;
        let probe = Path::from(format!("_kubescribe/probe-{}", new_id().simple()));
        self.store
            .put(&probe, PutPayload::from_static(b"ok"))
            .await
            .map_err(os_err("write probe object", probe.as_ref()))
            .map_err(hint)?;
        self.store
            .delete(&probe)
            .await
            .map_err(os_err("delete probe object", probe.as_ref()))
            .map_err(hint)?;
        Ok(())
    }

    async fn put(&self, key: &ObjectKey, data: Bytes) -> Result<(), StorageError> {
        self.store
            .put(&Path::from(key.as_str()), PutPayload::from_bytes(data))
            .await
            .map_err(os_err("put", key.as_str()))?;
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        match self.store.delete(&Path::from(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(os_err("delete", key)(e)),
        }
    }

    async fn get(&self, key: &str) -> Result<Bytes, StorageError> {
        let result = self
            .store
            .get(&Path::from(key))
            .await
            .map_err(os_err("get", key))?;
        result.bytes().await.map_err(os_err("read", key))
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes, StorageError> {
        let path = Path::from(key);
        let size = self
            .store
            .head(&path)
            .await
            .map_err(os_err("head", key))?
            .size;
        let start = range.start.min(size);
        let end = range.end.min(size).max(start);
        if start == end {
            return Ok(Bytes::new());
        }
        self.store
            .get_range(&path, start..end)
            .await
            .map_err(os_err("get range of", key))
    }

    /// One `GET`, its body streamed as it arrives.
    fn get_chunks<'a>(&'a self, key: &'a str) -> BoxStream<'a, Result<Bytes, StorageError>> {
        let path = Path::from(key);
        futures_util::stream::once(async move {
            let result = self.store.get(&path).await.map_err(os_err("get", key))?;
            let body = result
                .into_stream()
                .map(move |chunk| chunk.map_err(os_err("read", key)));
            Ok::<_, StorageError>(body)
        })
        .try_flatten()
        .boxed()
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StorageError> {
        let mut all = self.list_all(prefix).await?;
        all.retain(|info| !info.key.contains(PARTS_INFIX));
        Ok(all)
    }

    async fn create_session(&self, key: &ObjectKey) -> Result<Box<dyn SessionSink>, StorageError> {
        Ok(Box::new(S3Session {
            storage: self.clone(),
            key: key.clone(),
            parts: Vec::new(),
            durable: 0,
        }))
    }

    async fn recover_sessions(&self) -> Result<Vec<RecoveredSession>, StorageError> {
        let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for info in self.list_all(layout::SESSIONS).await? {
            if let Some((key, _seq)) = info.key.split_once(PARTS_INFIX) {
                groups
                    .entry(key.to_owned())
                    .or_default()
                    .push(info.key.clone());
            }
        }
        let mut recovered = Vec::new();
        for (key, mut parts) in groups {
            let Some(object_key) = ObjectKey::parse(&key) else {
                tracing::warn!(%key, "ignoring unexpected chunk objects in sessions/");
                continue;
            };
            parts.sort();
            let size = self.compose(&key, &parts).await?;
            recovered.push(RecoveredSession {
                key: object_key,
                size,
            });
        }
        Ok(recovered)
    }
}

struct S3Session {
    storage: S3Storage,
    key: ObjectKey,
    parts: Vec<String>,
    durable: u64,
}

#[async_trait]
impl SessionSink for S3Session {
    async fn append(&mut self, data: Bytes) -> Result<u64, StorageError> {
        let part = format!(
            "{}{:010}",
            S3Storage::parts_prefix(self.key.as_str()),
            self.parts.len()
        );
        let len = data.len() as u64;
        self.storage
            .store
            .put(&Path::from(part.as_str()), PutPayload::from_bytes(data))
            .await
            .map_err(os_err("put session chunk", &part))?;
        self.parts.push(part);
        self.durable += len;
        Ok(self.durable)
    }

    async fn finish(self: Box<Self>) -> Result<u64, StorageError> {
        self.storage.compose(self.key.as_str(), &self.parts).await
    }
}
