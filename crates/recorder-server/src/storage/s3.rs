//! The S3 back end (any S3-compatible store), through the `object_store` crate.
//!
//! Records are single PUTs (atomic and durable once the PUT completes).
//! Sessions are appended as numbered chunk objects under
//! `<key>.parts/<owner>/<seq>` (`<owner>` the writing replica's name,
//! [`Fence::owner`]); each append is durable once its PUT completes and, on a
//! shared bucket, acknowledged only while the writer holds its lease. When a
//! session finishes (or, after a crash, when recovery may take its owner's
//! sessions) the chunks are composed into `<key>` with a multipart upload and
//! then deleted. A session whose `<key>` already exists was composed before
//! a crash cut the deletion short: only its leftover chunks are deleted.
//!
//! Leases ([`LeaseStore`]) use conditional PUTs (`If-None-Match`, `If-Match`)
//! and the store's modification times, so replicas never compare their own
//! clocks.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder, S3ConditionalPut};
use object_store::path::Path;
use object_store::{
    ClientOptions, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, RetryConfig,
    UpdateVersion, WriteMultipart,
};

use super::fence::{is_valid_owner, Fence};
use super::layout::{self, ObjectKey};
use super::requests::{CountingConnector, ObjectStoreRequests};
use super::{
    LeaseStore, MayRecover, ObjectInfo, PutCondition, RecoveredSession, SessionSink, Storage,
    StorageError, Versioned,
};
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
            .with_conditional_put(S3ConditionalPut::ETagMatch)
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
        let size = self.concatenate(key, parts).await?;
        self.delete_parts(parts).await?;
        Ok(size)
    }

    async fn delete_parts(&self, parts: &[String]) -> Result<(), StorageError> {
        for part in parts {
            match self.store.delete(&Path::from(part.as_str())).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(os_err("delete chunk", part)(e)),
            }
        }
        Ok(())
    }

    /// Writes the chunks `parts`, in order, as the object `key` (one multipart upload).
    async fn concatenate(&self, key: &str, parts: &[String]) -> Result<u64, StorageError> {
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
        Ok(size)
    }

    /// The size of object `key`, `None` if it does not exist.
    async fn size_of(&self, key: &str) -> Result<Option<u64>, StorageError> {
        match self.store.head(&Path::from(key)).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(os_err("head", key)(e)),
        }
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

    /// Batch objects are one commit each (small): 16 GETs at a time.
    fn read_parallelism(&self) -> usize {
        16
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

    /// One listing that starts after `after` (S3 `start-after`).
    async fn list_after(&self, prefix: &str, after: &str) -> Result<Vec<ObjectInfo>, StorageError> {
        let path = (!prefix.is_empty()).then(|| Path::from(prefix.trim_end_matches('/')));
        let mut all: Vec<ObjectInfo> = self
            .store
            .list_with_offset(path.as_ref(), &Path::from(after))
            .map_ok(|meta| ObjectInfo {
                key: meta.location.to_string(),
                size: meta.size,
            })
            .try_collect()
            .await
            .map_err(os_err("list", prefix))?;
        all.retain(|info| !info.key.contains(PARTS_INFIX) && info.key.as_str() > after);
        Ok(all)
    }

    async fn create_session(
        &self,
        key: &ObjectKey,
        fence: &Arc<Fence>,
    ) -> Result<Box<dyn SessionSink>, StorageError> {
        if !is_valid_owner(fence.owner()) {
            return Err(StorageError::Unusable(format!(
                "{:?} is not a valid replica name (1-63 of a-z, 0-9, -)",
                fence.owner()
            )));
        }
        Ok(Box::new(S3Session {
            storage: self.clone(),
            key: key.clone(),
            prefix: format!("{}{}/", Self::parts_prefix(key.as_str()), fence.owner()),
            fence: fence.clone(),
            parts: Vec::new(),
            durable: 0,
        }))
    }

    async fn recover_sessions(
        &self,
        may_recover: MayRecover<'_>,
    ) -> Result<Vec<RecoveredSession>, StorageError> {
        // (session key, owner) -> its chunks.
        let mut groups: BTreeMap<(String, Option<String>), Vec<String>> = BTreeMap::new();
        for info in self.list_all(layout::SESSIONS).await? {
            let Some((key, rest)) = info.key.split_once(PARTS_INFIX) else {
                continue;
            };
            let owner = match rest.split_once('/') {
                Some((owner, _seq)) if is_valid_owner(owner) => Some(owner.to_owned()),
                Some(_) => {
                    tracing::warn!(key = %info.key, "ignoring a chunk object with an invalid owner");
                    continue;
                }
                None => None,
            };
            groups
                .entry((key.to_owned(), owner))
                .or_default()
                .push(info.key.clone());
        }
        let mut recovered = Vec::new();
        for ((key, owner), mut parts) in groups {
            if !may_recover(owner.as_deref()) {
                continue;
            }
            let Some(object_key) = ObjectKey::parse(&key) else {
                tracing::warn!(%key, "ignoring unexpected chunk objects in sessions/");
                continue;
            };
            parts.sort();
            if self.size_of(&key).await?.is_some() {
                // Composed before a crash cut the deletion of its chunks short.
                self.delete_parts(&parts).await?;
                continue;
            }
            let size = self.compose(&key, &parts).await?;
            recovered.push(RecoveredSession {
                key: object_key,
                size,
            });
        }
        Ok(recovered)
    }

    fn leases(&self) -> Option<&dyn LeaseStore> {
        Some(self)
    }
}

#[async_trait]
impl LeaseStore for S3Storage {
    async fn read_versioned(&self, key: &ObjectKey) -> Result<Option<Versioned>, StorageError> {
        let result = match self.store.get(&Path::from(key.as_str())).await {
            Ok(result) => result,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(os_err("get", key.as_str())(e)),
        };
        let meta = result.meta.clone();
        let data = result.bytes().await.map_err(os_err("read", key.as_str()))?;
        Ok(Some(Versioned {
            data,
            etag: meta.e_tag.unwrap_or_default(),
            modified_ms: meta.last_modified.timestamp_millis(),
        }))
    }

    async fn put_if(
        &self,
        key: &ObjectKey,
        data: Bytes,
        condition: PutCondition,
    ) -> Result<bool, StorageError> {
        let mode = match condition {
            PutCondition::Always => PutMode::Overwrite,
            PutCondition::Absent => PutMode::Create,
            PutCondition::Matches(etag) => PutMode::Update(UpdateVersion {
                e_tag: Some(etag),
                version: None,
            }),
        };
        let options = PutOptions {
            mode,
            ..PutOptions::default()
        };
        match self
            .store
            .put_opts(
                &Path::from(key.as_str()),
                PutPayload::from_bytes(data),
                options,
            )
            .await
        {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. })
            | Err(object_store::Error::Precondition { .. }) => Ok(false),
            Err(e) => Err(os_err("conditional put", key.as_str())(e)),
        }
    }

    async fn list_modified(&self, prefix: &str) -> Result<Vec<(String, i64)>, StorageError> {
        let path = Path::from(prefix.trim_end_matches('/'));
        self.store
            .list(Some(&path))
            .map_ok(|meta| {
                (
                    meta.location.to_string(),
                    meta.last_modified.timestamp_millis(),
                )
            })
            .try_collect()
            .await
            .map_err(os_err("list", prefix))
    }
}

struct S3Session {
    storage: S3Storage,
    key: ObjectKey,
    /// `<key>.parts/<owner>/`.
    prefix: String,
    fence: Arc<Fence>,
    parts: Vec<String>,
    durable: u64,
}

impl S3Session {
    fn check_lease(&self) -> Result<(), StorageError> {
        if self.fence.holds() {
            Ok(())
        } else {
            Err(StorageError::LeaseLost {
                owner: self.fence.owner().to_owned(),
            })
        }
    }
}

#[async_trait]
impl SessionSink for S3Session {
    /// Checks the lease before the PUT and again after it: a chunk is
    /// acknowledged only if it landed while this replica held its lease, so
    /// before any other replica may finalise the session.
    async fn append(&mut self, data: Bytes) -> Result<u64, StorageError> {
        self.check_lease()?;
        let part = format!("{}{:010}", self.prefix, self.parts.len());
        let len = data.len() as u64;
        self.storage
            .store
            .put(&Path::from(part.as_str()), PutPayload::from_bytes(data))
            .await
            .map_err(os_err("put session chunk", &part))?;
        self.parts.push(part);
        self.check_lease()?;
        self.durable += len;
        Ok(self.durable)
    }

    async fn finish(self: Box<Self>) -> Result<u64, StorageError> {
        self.check_lease()?;
        self.storage.compose(self.key.as_str(), &self.parts).await
    }
}
