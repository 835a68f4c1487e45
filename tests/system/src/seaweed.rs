//! A real SeaweedFS S3 server (`weed mini`) for tests, with SigV4 credentials.

use std::path::Path;
use std::time::{Duration, Instant};

use futures_util::TryStreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::ObjectStore;
use tempfile::TempDir;

use crate::process::{free_port, Spawned};
use crate::{peers, Error};

/// The access key ID SeaweedFS accepts.
pub const ACCESS_KEY: &str = "RECORDERKEY";
/// Its secret.
pub const SECRET_KEY: &str = "recordersecret";

/// A running SeaweedFS with one bucket; killed when dropped.
pub struct Seaweed {
    _dir: TempDir,
    process: Spawned,
    s3_port: u16,
    bucket: String,
}

impl Seaweed {
    /// Starts SeaweedFS on free loopback ports and waits until `bucket` exists.
    pub fn start(bucket: &str) -> Result<Self, Error> {
        let weed = peers::weed()?;
        let dir = tempfile::Builder::new().prefix("seaweed-").tempdir()?;
        let ids = dir.path().join("ids.json");
        std::fs::write(
            &ids,
            format!(
                r#"{{"identities":[{{"name":"recorder","credentials":[{{"accessKey":"{ACCESS_KEY}","secretKey":"{SECRET_KEY}"}}],"actions":["Admin","Read","Write","List","Tagging"]}}]}}"#
            ),
        )?;
        // SeaweedFS derives gRPC ports as port+10000: keep every port below 50000.
        let mut ports = Vec::new();
        while ports.len() < 16 {
            let port = free_port()?;
            if port < 50000 && !ports.contains(&port) {
                ports.push(port);
            }
        }
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data)?;
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
            _dir: dir,
            process,
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

    /// Object keys under `prefix` in the bucket.
    pub fn list(&self, prefix: &str) -> Result<Vec<String>, Error> {
        let store = self.store()?;
        let prefix = object_store::path::Path::from(prefix.trim_end_matches('/'));
        block_on(async move {
            let items: Vec<_> = store.list(Some(&prefix)).try_collect().await?;
            Ok(items
                .into_iter()
                .map(|meta| meta.location.to_string())
                .collect())
        })
    }

    fn store(&self) -> Result<AmazonS3, Error> {
        Ok(AmazonS3Builder::new()
            .with_endpoint(format!("http://{}", self.endpoint()))
            .with_bucket_name(&self.bucket)
            .with_region("us-east-1")
            .with_access_key_id(ACCESS_KEY)
            .with_secret_access_key(SECRET_KEY)
            .with_allow_http(true)
            .with_virtual_hosted_style_request(false)
            .build()?)
    }

    fn wait_ready(&mut self) -> Result<(), Error> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if !self.process.is_running() {
                return Err(format!("weed mini exited:\n{}", self.process.log_tail()).into());
            }
            if self.list("").is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(
                    format!("SeaweedFS not ready in 60 s:\n{}", self.process.log_tail()).into(),
                );
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        self.process.log()
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        self._dir.path()
    }
}

fn block_on<T>(future: impl std::future::Future<Output = Result<T, Error>>) -> Result<T, Error> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(future)
}
