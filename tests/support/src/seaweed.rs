//! A real SeaweedFS S3 server (`weed mini`) for tests, with SigV4 credentials.

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use futures_util::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use tempfile::TempDir;

use crate::net::free_ports;
use crate::process::Spawned;
use crate::{peers, Error};

/// The access key ID SeaweedFS accepts.
pub const ACCESS_KEY: &str = "RECORDERKEY";
/// Its secret.
pub const SECRET_KEY: &str = "recordersecret";
/// The region to sign requests for (SeaweedFS accepts any).
pub const REGION: &str = "us-east-1";

/// The object written and deleted to prove the bucket accepts writes.
const READY_PROBE: &str = "_test-support/ready-probe";

/// A running SeaweedFS with one bucket, on loopback ports of its own; killed
/// when dropped.
///
/// Every method blocks (each S3 call runs on a runtime of its own, on a
/// thread of its own), so it is usable from sync code and from async tests
/// alike.
pub struct Seaweed {
    dir: TempDir,
    process: Spawned,
    /// The command line, to restart it on the same ports and data.
    args: Vec<String>,
    s3_port: u16,
    bucket: String,
}

impl Seaweed {
    /// Starts SeaweedFS on free loopback ports and waits (up to 60 s) until
    /// `bucket` exists and accepts writes.
    pub fn start(bucket: &str) -> Result<Self, Error> {
        let weed = peers::weed()?;
        let dir = tempfile::Builder::new()
            .prefix("seaweed-")
            .tempdir()
            .map_err(Error::io("creating a temporary directory for SeaweedFS"))?;
        let ids = dir.path().join("ids.json");
        std::fs::write(
            &ids,
            format!(
                r#"{{"identities":[{{"name":"recorder","credentials":[{{"accessKey":"{ACCESS_KEY}","secretKey":"{SECRET_KEY}"}}],"actions":["Admin","Read","Write","List","Tagging"]}}]}}"#
            ),
        )
        .map_err(Error::io(format!("writing {}", ids.display())))?;
        // SeaweedFS derives gRPC ports as port + 10000: keep those below the ephemeral range too, so
        // that a restart ([`Seaweed::restart`]) finds every port free.
        let ports = free_ports(15, 22_768)?;
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data)
            .map_err(Error::io(format!("creating {}", data.display())))?;
        let args: Vec<String> = vec![
            "mini".into(),
            format!("-dir={}", data.display()),
            "-ip=127.0.0.1".into(),
            "-ip.bind=127.0.0.1".into(),
            format!("-s3.port={}", ports[0]),
            format!("-s3.port.grpc={}", ports[1]),
            format!("-s3.config={}", ids.display()),
            format!("-master.port={}", ports[2]),
            format!("-master.port.grpc={}", ports[3]),
            format!("-volume.port={}", ports[4]),
            format!("-volume.port.grpc={}", ports[5]),
            format!("-filer.port={}", ports[6]),
            format!("-filer.port.grpc={}", ports[7]),
            format!("-webdav.port={}", ports[8]),
            format!("-admin.port={}", ports[9]),
            format!("-admin.port.grpc={}", ports[10]),
            "-s3.port.iceberg=0".into(),
            "-s3.port.lance=0".into(),
            format!("-debug.port={}", ports[11]),
            format!("-metricsPort={}", ports[12]),
            format!("-volume.port.public={}", ports[13]),
            format!("-filer.port.public={}", ports[14]),
            "-admin.ui=false".into(),
            "-master.telemetry=false".into(),
            format!("-bucket={bucket}"),
        ];
        let process = Spawned::start("seaweedfs", &weed, &args, &[], dir.path())?;
        let mut weed = Self {
            dir,
            process,
            args,
            s3_port: ports[0],
            bucket: bucket.to_owned(),
        };
        weed.wait_ready()?;
        Ok(weed)
    }

    /// `127.0.0.1:PORT` of the S3 API (plain http).
    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.s3_port)
    }

    /// The S3 API's URL, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.endpoint())
    }

    /// The bucket created at start.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// An S3 client for the bucket, signing with [`ACCESS_KEY`] and [`SECRET_KEY`].
    pub fn store(&self) -> Result<AmazonS3, Error> {
        Ok(AmazonS3Builder::new()
            .with_endpoint(self.url())
            .with_bucket_name(&self.bucket)
            .with_region(REGION)
            .with_access_key_id(ACCESS_KEY)
            .with_secret_access_key(SECRET_KEY)
            .with_allow_http(true)
            .with_virtual_hosted_style_request(false)
            .build()?)
    }

    /// Object keys under `prefix` in the bucket.
    pub fn list(&self, prefix: &str) -> Result<Vec<String>, Error> {
        Ok(self
            .list_modified(prefix)?
            .into_iter()
            .map(|(key, _)| key)
            .collect())
    }

    /// Object keys under `prefix` with when each was last written (Unix milliseconds; S3 gives
    /// whole seconds).
    pub fn list_modified(&self, prefix: &str) -> Result<Vec<(String, i64)>, Error> {
        let store = self.store()?;
        let prefix = ObjectPath::from(prefix.trim_end_matches('/'));
        on_own_runtime(async move {
            let items: Vec<_> = store.list(Some(&prefix)).try_collect().await?;
            Ok(items
                .into_iter()
                .map(|meta| {
                    (
                        meta.location.to_string(),
                        meta.last_modified.timestamp_millis(),
                    )
                })
                .collect())
        })
    }

    fn wait_ready(&mut self) -> Result<(), Error> {
        let store = self.store()?;
        self.process.wait_until(
            &format!("bucket {:?} accepting writes", self.bucket),
            Duration::from_secs(60),
            Duration::from_millis(500),
            move || accepts_writes(store.clone()),
        )
    }

    /// Every object under `prefix` with its contents, by key (read 16 at a time).
    pub fn read_all(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, Error> {
        let store = self.store()?;
        let prefix = ObjectPath::from(prefix.trim_end_matches('/'));
        on_own_runtime(async move {
            let items: Vec<_> = store.list(Some(&prefix)).try_collect().await?;
            futures_util::stream::iter(items.into_iter().map(|meta| {
                let store = store.clone();
                async move {
                    let data = store.get(&meta.location).await?.bytes().await?;
                    Ok::<_, Error>((meta.location.to_string(), data.to_vec()))
                }
            }))
            .buffer_unordered(16)
            .try_collect()
            .await
        })
    }

    /// The server's process ID (to stop and continue it).
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Kills the server at once (SIGKILL), as a crash would; [`Seaweed::restart`] brings it back.
    pub fn kill(&mut self) -> Result<(), Error> {
        self.process.kill()
    }

    /// Starts the server again on the same ports and data (after [`Seaweed::kill`]; a running
    /// one is killed first) and waits (up to 60 s) until the bucket accepts writes again.
    pub fn restart(&mut self) -> Result<(), Error> {
        self.process.kill()?;
        self.process = Spawned::start(
            "seaweedfs",
            &peers::weed()?,
            &self.args,
            &[],
            self.dir.path(),
        )?;
        self.wait_ready()
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        self.process.log()
    }

    /// The scratch directory (data, identities, log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// Whether the bucket can be listed, written and deleted from.
fn accepts_writes(store: AmazonS3) -> bool {
    on_own_runtime(async move {
        let _: Vec<_> = store.list(None).try_collect().await?;
        let probe = ObjectPath::from(READY_PROBE);
        store.put(&probe, PutPayload::from_static(b"ok")).await?;
        store.delete(&probe).await?;
        Ok(())
    })
    .is_ok()
}

/// Runs `future` to completion on a fresh current-thread runtime on its own
/// thread, so that blocking callers work inside an async test too.
fn on_own_runtime<T: Send>(
    future: impl Future<Output = Result<T, Error>> + Send,
) -> Result<T, Error> {
    std::thread::scope(|scope| {
        let worker = scope.spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(Error::io("starting a runtime for the S3 client"))?
                .block_on(future)
        });
        match worker.join() {
            Ok(result) => result,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}
