//! Command line and environment: [`Cli`] (clap) validated into one [`Config`].

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use identity::{AllowList, AllowListError};

use identity::IdentitySource;
use service::cli::{parse_duration, ConnectionArgs};
use service::conn::ConnectionLimits;
use service::{LogFormat, TlsFiles};

use crate::signing::{generate_signing_key, read_signing_key, Signing};

/// The default `--max-event-bytes`: 8 MiB. Tailscale's proxy puts a request's whole body into its
/// event, base64-encoded, and sends it before forwarding: kube-apiserver reads bodies up to 3 MiB,
/// whose base64 alone is 4 MiB, and the path and query appear up to three times beside it
/// (`request.path`, `request.queryParameters`, `kubernetes.Path`). At the former 4 MiB the
/// recorder refused the event of a body near 3 MiB, and Tailscale's proxy answered a fail-closed
/// caller `502` for a request kube-apiserver would have served (docs/compatibility.md).
pub const DEFAULT_MAX_EVENT_BYTES: usize = 8 * 1024 * 1024;

/// kubescribe-recorder: stores Kubernetes API request events and kubectl
/// exec/attach session recordings sent by kubescribe's or Tailscale's
/// Kubernetes API server proxy, on local disk or S3, and serves a query API.
#[derive(Debug, Clone, Parser)]
#[command(name = "kubescribe-recorder", version, about, long_about = None)]
pub struct Cli {
    /// Address to listen on: `HOST:PORT`, `[V6]:PORT`, or `:PORT` for all
    /// interfaces. Serves HTTP/1.1 and cleartext HTTP/2 (h2c, prior knowledge)
    /// on the same port, or TLS with ALPN h2/http/1.1 when --tls-cert is set.
    #[arg(long, default_value = ":80", value_name = "ADDR")]
    pub listen: String,

    /// Require a PROXY protocol (v2 or v1) header on every connection to --listen, as
    /// `tailscale serve` sends with `ProxyProtocol: 2`; its source address is the peer that WhoIs
    /// identifies. Loopback is then never a reader identity (every connection arrives from the
    /// forwarder).
    #[arg(long, env = "KUBESCRIBE_PROXY_PROTOCOL")]
    pub proxy_protocol: bool,

    /// Where `/metrics`, `/healthz` and `/readyz` are served (never on --listen), or `off`.
    #[arg(
        long,
        env = "KUBESCRIBE_ADMIN_LISTEN",
        default_value = "127.0.0.1:9103",
        value_name = "ADDR|off"
    )]
    pub admin_listen: String,

    /// Connection limits of --listen.
    #[command(flatten)]
    pub connections: ConnectionArgs,

    /// Where recordings are stored.
    #[command(flatten)]
    pub storage: StorageArgs,

    /// On S3, records batched through a local write-ahead log.
    #[command(flatten)]
    pub s3_batch: S3BatchArgs,

    /// Serve the web UI at `/`.
    #[arg(long, env = "TSRECORDER_UI")]
    pub ui: bool,

    /// tailscaled's LocalAPI socket: identify uploaders and readers by
    /// tailnet WhoIs.
    #[arg(long, value_name = "PATH", conflicts_with = "identity_file")]
    pub localapi_socket: Option<PathBuf>,

    /// A static identity file (WhoIs responses by address; see the identity
    /// crate): identify uploaders and readers without tailscaled.
    #[arg(long, value_name = "FILE")]
    pub identity_file: Option<PathBuf>,

    /// Who may upload, by WhoIs identity: comma-separated `tag:NAME`,
    /// `tag:*` (any tagged node) and `user:LOGIN` (untagged nodes of that
    /// user). Default: tagged nodes only.
    #[arg(long, value_name = "LIST", default_value = "tag:*")]
    pub allow_uploaders: String,

    /// A file holding a bearer token: uploads carrying
    /// `Authorization: Bearer <token>` are accepted (for deployments without
    /// a tailnet). Combinable with an identity source.
    #[arg(long, value_name = "FILE")]
    pub upload_token_file: Option<PathBuf>,

    /// Who may read the query API, UI and casts: comma-separated `tag:NAME`, `tag:*` and
    /// `user:LOGIN` (matched by WhoIs), `loopback` (any connection from 127.0.0.0/8 or ::1 — any
    /// local process or local forwarder: for a laptop demo only; refused with --proxy-protocol),
    /// or `none` (the default: only --read-token-file reads).
    #[arg(long, value_name = "LIST", default_value = "none")]
    pub allow_readers: String,

    /// A file holding a bearer token that grants read access.
    #[arg(long, value_name = "FILE")]
    pub read_token_file: Option<PathBuf>,

    /// Accept uploads from anyone (no identity, no token). For tests and
    /// trusted single-host setups only; logged loudly at start-up.
    #[arg(long)]
    pub insecure_allow_any_uploader: bool,

    /// Largest accepted event or response record (and largest line of a
    /// batch or cast), in bytes. The default takes the largest event
    /// Tailscale's proxy sends for a request kube-apiserver reads.
    #[arg(long, default_value_t = DEFAULT_MAX_EVENT_BYTES, value_name = "BYTES")]
    pub max_event_bytes: usize,

    /// Largest accepted batch request body (`POST /v2/events`), in bytes.
    #[arg(long, default_value_t = 64 * 1024 * 1024, value_name = "BYTES")]
    pub max_batch_bytes: usize,

    /// Memory budget for event and batch bodies being received or
    /// committed at once; requests beyond it wait (up to
    /// --upload-idle-timeout, then 503).
    #[arg(long, default_value_t = 512 * 1024 * 1024, value_name = "BYTES")]
    pub max_inflight_bytes: usize,

    /// Largest accepted session recording, in bytes; the upload fails with
    /// an error once it is exceeded (what was acknowledged is kept).
    #[arg(long, default_value_t = 8 * 1024 * 1024 * 1024, value_name = "BYTES")]
    pub max_session_bytes: u64,

    /// Most session uploads at once, from everyone; more get 503.
    #[arg(long, default_value_t = 256, value_name = "N")]
    pub max_concurrent_uploads: usize,

    /// Most session uploads at once from one uploader (a WhoIs node, the upload token, or one
    /// address under --insecure-allow-any-uploader); more get 429 naming the uploader. Default: half
    /// of --max-concurrent-uploads (with a single proxy uploading, set it to that).
    #[arg(long, value_name = "N")]
    pub max_uploads_per_uploader: Option<usize>,

    /// Most sessions recorded at once for one caller, as the cast header names them (`srcNodeUser`
    /// for a user's nodes, the node for tagged ones); one more is refused once its header arrives
    /// (429, or an error frame on /v2/record) naming the caller.
    #[arg(long, default_value_t = 32, value_name = "N")]
    pub max_uploads_per_caller: usize,

    /// A session upload must deliver its cast header (its first line, which names the caller)
    /// within this long, or it is cut off (408, or an error frame).
    #[arg(long, default_value = "15s", value_parser = parse_duration, value_name = "DURATION")]
    pub session_header_timeout: Duration,

    /// An event or batch upload that sends nothing for this long is cut off (408), and so is a
    /// `/record` (HTTP/1.1) session upload; a `/v2/record` session over HTTP/2 is not cut for
    /// silence (its connection's pings tell a live peer from a dead one). Humantime-like: `30s`,
    /// `5m`, `1h`.
    #[arg(long, default_value = "5m", value_parser = parse_duration, value_name = "DURATION")]
    pub upload_idle_timeout: Duration,

    /// Interval of `{"ack":N}` frames on /v2/record (at most 2 s keeps
    /// well inside the 30 s window of Tailscale's client).
    #[arg(long, default_value = "1s", value_parser = parse_duration, value_name = "DURATION")]
    pub ack_interval: Duration,

    /// Most records per group commit.
    #[arg(long, default_value_t = 8192, value_name = "N")]
    pub commit_max_records: usize,

    /// Idempotency keys are remembered (and rebuilt from storage at start-up)
    /// for this long; a retry older than this is stored again.
    #[arg(long, default_value = "24h", value_parser = parse_duration, value_name = "DURATION")]
    pub dedup_window: Duration,

    /// Most idempotency keys kept in memory (oldest dropped first).
    #[arg(long, default_value_t = 2_000_000, value_name = "N")]
    pub dedup_max_keys: usize,

    /// Memory budget of the query index (event lines kept in memory for
    /// /api/v1/events); older events stay in storage.
    #[arg(long, default_value_t = 256 * 1024 * 1024, value_name = "BYTES")]
    pub index_max_bytes: usize,

    /// TLS certificate chain (PEM). Enables TLS on --listen.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// TLS private key (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Log format.
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: LogFormat,

    /// The Ed25519 key that signs manifests (docs/storage.md, "Tamper evidence"): a file of 64
    /// hex digits, as `kubescribe-recorder keygen FILE` writes. Required unless --unsigned.
    #[arg(long, env = "KUBESCRIBE_SIGNING_KEY_FILE", value_name = "FILE")]
    pub signing_key: Option<PathBuf>,

    /// Create --signing-key (and FILE.pub) if it does not exist yet.
    #[arg(long, requires = "signing_key")]
    pub generate_signing_key: bool,

    /// Run without a signing key: manifests still carry every hash, unsigned (`verify` says so).
    #[arg(long, env = "KUBESCRIBE_UNSIGNED", conflicts_with = "signing_key")]
    pub unsigned: bool,

    /// How often sealed segments and finished sessions are covered by a new manifest.
    #[arg(long, default_value = "60s", value_parser = parse_duration, value_name = "DURATION")]
    pub manifest_interval: Duration,

    /// This replica's name among recorders sharing one S3 bucket (in the chunk
    /// names of its sessions and its lease; a random suffix is added per
    /// process). Default: the host name (the pod name in Kubernetes).
    #[arg(long, env = "KUBESCRIBE_REPLICA_NAME", value_name = "NAME")]
    pub replica_name: Option<String>,

    /// On S3: how long a replica's lease lasts without renewal (renewed every
    /// third of it). After it, the leader finalises the replica's sessions and
    /// may take over leading. Every replica of a bucket must use the same value.
    #[arg(long, env = "KUBESCRIBE_LEASE_TTL", default_value = "60s", value_parser = parse_duration, value_name = "DURATION")]
    pub lease_ttl: Duration,

    /// On S3: how often a replica reads the records and sessions other live
    /// replicas of its bucket stored into its query indexes (a few LISTs each
    /// time; none while it is alone), and checks the leader lease (a GET).
    #[arg(long, default_value = "5s", value_parser = parse_duration, value_name = "DURATION")]
    pub peer_sync_interval: Duration,

    /// Delete sealed event and response segments whose hour ended more than N days ago (and that
    /// every export cursor has passed). Default: keep forever.
    #[arg(long, env = "KUBESCRIBE_RETAIN_EVENTS_DAYS", value_name = "N")]
    pub retain_events_days: Option<u32>,

    /// Delete finished session casts that started more than N days ago. Default: keep forever.
    #[arg(long, env = "KUBESCRIBE_RETAIN_SESSIONS_DAYS", value_name = "N")]
    pub retain_sessions_days: Option<u32>,

    /// Legal hold: delete nothing, whatever the retention flags say (an object
    /// `_kubescribe/legal-hold` in the storage root does the same).
    #[arg(long, env = "KUBESCRIBE_LEGAL_HOLD")]
    pub legal_hold: bool,

    /// How often the retention sweep runs (it also runs at start-up).
    #[arg(long, default_value = "1h", value_parser = parse_duration, value_name = "DURATION")]
    pub retention_interval: Duration,

    /// Export stored events as audit.k8s.io/v1 Events to an audit webhook, in kube-apiserver's
    /// audit-webhook format (POSTs of EventList batches): a kubeconfig-style file like
    /// kube-apiserver's --audit-webhook-config-file (server URL, CA, client certificate and key or
    /// token). Delivery is at-least-once from a cursor kept in storage.
    #[arg(long, env = "KUBESCRIBE_EXPORT_WEBHOOK_CONFIG", value_name = "FILE")]
    pub export_webhook_config: Option<PathBuf>,

    /// Export stored events as audit.k8s.io/v1 Events, one JSON object per line, into files
    /// `DIR/audit-YYYY-MM-DD[.N].jsonl` (a new file each UTC day and at
    /// --export-jsonl-max-file-bytes), fsynced before the cursor advances.
    #[arg(long, env = "KUBESCRIBE_EXPORT_JSONL", value_name = "DIR")]
    pub export_jsonl: Option<PathBuf>,

    /// Size at which --export-jsonl starts a new file.
    #[arg(long, default_value_t = 256 * 1024 * 1024, value_name = "BYTES")]
    pub export_jsonl_max_file_bytes: u64,

    /// Most events per export batch (one webhook POST, one JSON lines append).
    #[arg(long, default_value_t = 400, value_name = "N")]
    pub export_batch_max_size: usize,

    /// Longest an exportable event waits for its batch to fill before the batch is sent.
    #[arg(long, default_value = "1s", value_parser = parse_duration, value_name = "DURATION")]
    pub export_batch_max_wait: Duration,

    /// First wait before an export batch that failed is sent again; doubled at each failure,
    /// up to 5 minutes. Export never skips a batch.
    #[arg(long, default_value = "1s", value_parser = parse_duration, value_name = "DURATION")]
    pub export_initial_backoff: Duration,

    /// How long after an event was stored the exporter waits for its response record (which
    /// gives responseStatus) before exporting it without one (a long watch, a proxy that died).
    #[arg(long, default_value = "60s", value_parser = parse_duration, value_name = "DURATION")]
    pub export_response_wait: Duration,
}

/// Where recordings are stored: `--dst`, `--bucket`, `--s3-region`, `--s3-allow-http` (the
/// recorder's and `kubescribe-recorder verify`'s).
#[derive(Debug, Clone, clap::Args)]
pub struct StorageArgs {
    /// Where to store recordings: a local directory, or `s3://HOST[:PORT]`
    /// for an S3-compatible endpoint (https unless --s3-allow-http).
    #[arg(
        long,
        env = "TSRECORDER_DST",
        default_value = "./recordings",
        value_name = "PATH|s3://ENDPOINT"
    )]
    pub dst: String,

    /// The S3 bucket (required with an s3:// destination; use a bucket
    /// dedicated to the recorder). Credentials come from the standard AWS
    /// environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN,
    /// web identity/IRSA, instance metadata).
    #[arg(long, env = "TSRECORDER_BUCKET", value_name = "NAME")]
    pub bucket: Option<String>,

    /// Region used to sign S3 requests.
    #[arg(
        long,
        env = "AWS_REGION",
        default_value = "us-east-1",
        value_name = "REGION"
    )]
    pub s3_region: String,

    /// Allow a plain-http S3 endpoint (`s3://` then means `http://`); for
    /// local S3 servers only.
    #[arg(long)]
    pub s3_allow_http: bool,
}

/// The batched S3 mode: `--s3-batch-dir`, `--s3-batch-max-bytes`, `--s3-batch-max-age`
/// (docs/storage.md, "Batched S3").
#[derive(Debug, Clone, clap::Args)]
pub struct S3BatchArgs {
    /// Batch records on S3: acknowledge each group commit once it is fsynced to a write-ahead log
    /// in DIR (on a volume that outlives the pod), and ship the log to S3 in objects of up to
    /// --s3-batch-max-bytes, each written at the latest --s3-batch-max-age after its first record.
    /// Without it every group commit is its own PUT. Only with an s3:// --dst.
    #[arg(long, env = "KUBESCRIBE_S3_BATCH_DIR", value_name = "DIR")]
    pub s3_batch_dir: Option<PathBuf>,

    /// Largest object the batched mode writes to S3.
    #[arg(
        long,
        env = "KUBESCRIBE_S3_BATCH_MAX_BYTES",
        default_value_t = 64 * 1024 * 1024,
        value_name = "BYTES"
    )]
    pub s3_batch_max_bytes: u64,

    /// Longest a record waits in the batched mode's log before its object is written to S3.
    #[arg(
        long,
        env = "KUBESCRIBE_S3_BATCH_MAX_AGE",
        default_value = "30s",
        value_parser = parse_duration,
        value_name = "DURATION"
    )]
    pub s3_batch_max_age: Duration,
}

/// The batched S3 mode's settings (`--s3-batch-*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Batch {
    /// The write-ahead log's directory.
    pub dir: PathBuf,
    /// Largest object written.
    pub max_bytes: u64,
    /// Longest a record waits before its object is written.
    pub max_age: Duration,
}

impl S3BatchArgs {
    /// The batched mode these flags ask for, on `destination`.
    fn validate(&self, destination: &Destination) -> Result<Option<S3Batch>, ConfigError> {
        let Some(dir) = &self.s3_batch_dir else {
            return Ok(None);
        };
        if !matches!(destination, Destination::S3 { .. }) {
            return Err(invalid(
                "--s3-batch-dir",
                "only meaningful with an s3:// --dst (a local --dst is already a log)",
            ));
        }
        if dir.as_os_str().is_empty() {
            return Err(invalid("--s3-batch-dir", "empty path"));
        }
        if self.s3_batch_max_bytes < 4096 {
            return Err(invalid("--s3-batch-max-bytes", "must be at least 4096"));
        }
        if self.s3_batch_max_age < Duration::from_millis(100) {
            return Err(invalid("--s3-batch-max-age", "must be at least 100ms"));
        }
        Ok(Some(S3Batch {
            dir: dir.clone(),
            max_bytes: self.s3_batch_max_bytes,
            max_age: self.s3_batch_max_age,
        }))
    }
}

impl StorageArgs {
    /// The storage these flags name.
    pub fn destination(&self) -> Result<Destination, ConfigError> {
        destination(
            &self.dst,
            self.bucket.clone(),
            &self.s3_region,
            self.s3_allow_http,
        )
    }
}

/// Parses `500ms`, `30s`, `5m`, `2h`, or plain seconds.
/// Where data is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// A local directory.
    Disk(PathBuf),
    /// An S3-compatible bucket.
    S3 {
        /// `http(s)://host[:port]`.
        endpoint: String,
        /// The bucket.
        bucket: String,
        /// Signing region.
        region: String,
        /// Plain http allowed.
        allow_http: bool,
    },
}

/// Export of stored events as `audit.k8s.io/v1` Events (docs/export.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Export {
    /// The audit webhook's kubeconfig-style file.
    pub webhook_config: Option<PathBuf>,
    /// The JSON lines directory.
    pub jsonl_dir: Option<PathBuf>,
    /// A new JSON lines file beyond this size.
    pub jsonl_max_file_bytes: u64,
    /// Most events per batch.
    pub batch_max_size: usize,
    /// Longest wait for a batch to fill.
    pub batch_max_wait: Duration,
    /// First retry wait after a failed batch.
    pub initial_backoff: Duration,
    /// Longest wait for an event's response record.
    pub response_wait: Duration,
}

/// Who may read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readers {
    /// Loopback connections may read.
    pub loopback: bool,
    /// Identities (by WhoIs) that may read.
    pub identities: Option<AllowList>,
}

/// The validated configuration of the recorder.
#[derive(Debug, Clone)]
pub struct Config {
    /// Listening address.
    pub listen: SocketAddr,
    /// Whether connections to `listen` start with a PROXY protocol header.
    pub proxy_protocol: bool,
    /// The connection limits of `listen`.
    pub connections: ConnectionLimits,
    /// Where `/metrics`, `/healthz` and `/readyz` are served (`None`: nowhere).
    pub admin_listen: Option<SocketAddr>,
    /// Storage.
    pub destination: Destination,
    /// On S3: records batched through a local log (`None`: one PUT per group commit).
    pub s3_batch: Option<S3Batch>,
    /// Serve the UI.
    pub ui: bool,
    /// Where uploader and reader identities come from (`None`: no WhoIs; tokens only).
    pub identity: Option<IdentitySource>,
    /// Uploader allow-list.
    pub allow_uploaders: AllowList,
    /// Reader allow-list.
    pub allow_readers: Readers,
    /// Bearer token for uploads.
    pub upload_token: Option<String>,
    /// Bearer token for reads.
    pub read_token: Option<String>,
    /// No upload authentication at all.
    pub insecure_allow_any_uploader: bool,
    /// Limits.
    pub limits: Limits,
    /// Group commit size.
    pub commit_max_records: usize,
    /// Idempotency key retention.
    pub dedup_window: Duration,
    /// Idempotency key count bound.
    pub dedup_max_keys: usize,
    /// Query index memory budget.
    pub index_max_bytes: usize,
    /// TLS files.
    pub tls: Option<TlsFiles>,
    /// Log format.
    pub log_format: LogFormat,
    /// How manifests are signed.
    pub signing: Signing,
    /// How often a manifest pass runs.
    pub manifest_interval: Duration,
    /// What retention deletes, and when.
    pub retention: Retention,
    /// Export to audit sinks.
    pub export: Export,
    /// Replicas sharing one bucket.
    pub replicas: Replicas,
}

/// Replicas sharing one S3 bucket (docs/storage.md, "Several recorders on one bucket").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replicas {
    /// This replica's name (`--replica-name`).
    pub name: String,
    /// `--lease-ttl`.
    pub lease_ttl: Duration,
    /// `--peer-sync-interval`.
    pub peer_sync_interval: Duration,
}

/// The host name (`HOSTNAME`, else `/etc/hostname`), else `recorder`.
fn host_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "recorder".to_owned())
}

/// Retention (docs/storage.md, "Retention").
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Retention {
    /// Days event and response segments are kept (`None`: forever).
    pub events_days: Option<u32>,
    /// Days session casts are kept (`None`: forever).
    pub sessions_days: Option<u32>,
    /// Delete nothing.
    pub legal_hold: bool,
    /// How often the sweep runs.
    pub interval: Duration,
}

/// Request limits.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Max single record / line size.
    pub max_event_bytes: usize,
    /// Max batch request size.
    pub max_batch_bytes: usize,
    /// Budget of event/batch bodies in memory at once.
    pub max_inflight_bytes: usize,
    /// Max session size.
    pub max_session_bytes: u64,
    /// Max concurrent session uploads.
    pub max_concurrent_uploads: usize,
    /// Max concurrent session uploads of one uploader.
    pub max_uploads_per_uploader: usize,
    /// Max sessions recorded at once for one caller (by the cast header's identity).
    pub max_uploads_per_caller: usize,
    /// Time a session upload has to deliver its cast header.
    pub session_header_timeout: Duration,
    /// Upload idle timeout (events, batches, `/record` sessions).
    pub upload_idle_timeout: Duration,
    /// Ack frame interval.
    pub ack_interval: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_event_bytes: DEFAULT_MAX_EVENT_BYTES,
            max_batch_bytes: 64 * 1024 * 1024,
            max_inflight_bytes: 512 * 1024 * 1024,
            max_session_bytes: 8 * 1024 * 1024 * 1024,
            max_concurrent_uploads: 256,
            max_uploads_per_uploader: 128,
            max_uploads_per_caller: 32,
            session_header_timeout: Duration::from_secs(15),
            upload_idle_timeout: Duration::from_secs(300),
            ack_interval: Duration::from_secs(1),
        }
    }
}

/// A configuration error naming the flag at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A flag's value is invalid.
    #[error("{flag}: {message}")]
    Invalid {
        /// The flag.
        flag: &'static str,
        /// What is wrong.
        message: String,
    },
    /// An allow-list flag does not parse.
    #[error("{flag}: {source}")]
    BadList {
        /// The flag.
        flag: &'static str,
        /// What is wrong with the list.
        source: AllowListError,
    },
    /// A token file cannot be read.
    #[error("{flag}: cannot read {path}: {source}")]
    TokenFile {
        /// The flag.
        flag: &'static str,
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
}

fn invalid(flag: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        flag,
        message: message.into(),
    }
}

/// Parses `--listen`: `HOST:PORT`, `[V6]:PORT` or `:PORT`.
fn parse_listen(text: &str) -> Result<SocketAddr, ConfigError> {
    parse_addr("--listen", text)
}

/// Parses `HOST:PORT`, `[V6]:PORT` or `:PORT` for `flag`.
fn parse_addr(flag: &'static str, text: &str) -> Result<SocketAddr, ConfigError> {
    if let Some(port) = text.strip_prefix(':') {
        let port: u16 = port
            .parse()
            .map_err(|_| invalid("--listen", format!("{text:?}: bad port")))?;
        return Ok(SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port));
    }
    if let Ok(addr) = text.parse() {
        return Ok(addr);
    }
    if let Some((host, port)) = text.rsplit_once(':') {
        if host == "localhost" {
            let port: u16 = port
                .parse()
                .map_err(|_| invalid(flag, format!("{text:?}: bad port")))?;
            return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
        }
    }
    Err(invalid(
        flag,
        format!("{text:?} is not HOST:PORT, [IPV6]:PORT or :PORT (HOST must be an IP address)"),
    ))
}

fn parse_readers(spec: &str) -> Result<Readers, ConfigError> {
    let mut loopback = false;
    let mut rest = Vec::new();
    for entry in spec.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        match entry {
            "loopback" => loopback = true,
            "none" => {}
            other => rest.push(other),
        }
    }
    let identities = if rest.is_empty() {
        None
    } else {
        Some(
            AllowList::parse(&rest.join(",")).map_err(|source| ConfigError::BadList {
                flag: "--allow-readers",
                source,
            })?,
        )
    };
    Ok(Readers {
        loopback,
        identities,
    })
}

fn read_token(flag: &'static str, path: &Option<PathBuf>) -> Result<Option<String>, ConfigError> {
    let Some(path) = path else { return Ok(None) };
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::TokenFile {
        flag,
        path: path.display().to_string(),
        source,
    })?;
    let token = text.trim().to_owned();
    if token.len() < 16 {
        return Err(invalid(
            flag,
            format!("{}: token must be at least 16 characters", path.display()),
        ));
    }
    Ok(Some(token))
}

/// The storage a `--dst` (and `--bucket`, `--s3-region`, `--s3-allow-http`) names.
fn destination(
    dst: &str,
    bucket: Option<String>,
    region: &str,
    allow_http: bool,
) -> Result<Destination, ConfigError> {
    Ok(if let Some(endpoint) = dst.strip_prefix("s3://") {
        let endpoint = endpoint.trim_end_matches('/');
        if endpoint.is_empty() || endpoint.contains('/') {
            return Err(invalid(
                "--dst",
                format!("{:?}: expected s3://HOST[:PORT]", dst),
            ));
        }
        let bucket = bucket.filter(|b| !b.is_empty()).ok_or_else(|| {
            invalid(
                "--bucket",
                "an s3:// destination needs --bucket (or TSRECORDER_BUCKET)",
            )
        })?;
        let scheme = if allow_http { "http" } else { "https" };
        Destination::S3 {
            endpoint: format!("{scheme}://{endpoint}"),
            bucket,
            region: region.to_owned(),
            allow_http,
        }
    } else {
        if dst.is_empty() {
            return Err(invalid("--dst", "empty path"));
        }
        if bucket.is_some() {
            return Err(invalid("--bucket", "only meaningful with an s3:// --dst"));
        }
        Destination::Disk(PathBuf::from(dst))
    })
}

impl Cli {
    /// Validates the flags into a [`Config`].
    pub fn validate(self) -> Result<Config, ConfigError> {
        let listen = parse_listen(&self.listen)?;
        let destination = self.storage.destination()?;
        let s3_batch = self.s3_batch.validate(&destination)?;
        let identity =
            IdentitySource::from_flags(self.localapi_socket.clone(), self.identity_file.clone());
        let upload_token = read_token("--upload-token-file", &self.upload_token_file)?;
        let read_token = read_token("--read-token-file", &self.read_token_file)?;
        if identity.is_none() && upload_token.is_none() && !self.insecure_allow_any_uploader {
            return Err(invalid(
                "--localapi-socket",
                "no way to authenticate uploaders: give --localapi-socket, --identity-file or --upload-token-file \
                 (or --insecure-allow-any-uploader for a trusted test setup)",
            ));
        }
        let allow_uploaders =
            AllowList::parse(&self.allow_uploaders).map_err(|source| ConfigError::BadList {
                flag: "--allow-uploaders",
                source,
            })?;
        let allow_readers = parse_readers(&self.allow_readers)?;
        if allow_readers.loopback && self.proxy_protocol {
            return Err(invalid(
                "--allow-readers",
                "loopback is not a reader identity behind PROXY protocol: every connection arrives \
                 from the forwarder; name readers by tag: or user:",
            ));
        }
        let connections = self
            .connections
            .limits()
            .map_err(|(flag, message)| invalid(flag, message))?;
        let admin_listen = match self.admin_listen.as_str() {
            "off" | "" => None,
            text => Some(parse_addr("--admin-listen", text)?),
        };
        if allow_readers.identities.is_some() && identity.is_none() {
            return Err(invalid(
                "--allow-readers",
                "tag:/user: entries need an identity source (--localapi-socket or --identity-file)",
            ));
        }
        let limits = Limits {
            max_event_bytes: self.max_event_bytes,
            max_batch_bytes: self.max_batch_bytes,
            max_inflight_bytes: self.max_inflight_bytes,
            max_session_bytes: self.max_session_bytes,
            max_concurrent_uploads: self.max_concurrent_uploads,
            max_uploads_per_uploader: self
                .max_uploads_per_uploader
                .unwrap_or((self.max_concurrent_uploads / 2).max(1)),
            max_uploads_per_caller: self.max_uploads_per_caller,
            session_header_timeout: self.session_header_timeout,
            upload_idle_timeout: self.upload_idle_timeout,
            ack_interval: self.ack_interval,
        };
        if limits.max_event_bytes < 1024 {
            return Err(invalid("--max-event-bytes", "must be at least 1024"));
        }
        if limits.max_batch_bytes < limits.max_event_bytes {
            return Err(invalid(
                "--max-batch-bytes",
                "must be at least --max-event-bytes",
            ));
        }
        if limits.max_inflight_bytes < limits.max_batch_bytes {
            return Err(invalid(
                "--max-inflight-bytes",
                "must be at least --max-batch-bytes",
            ));
        }
        if limits.max_concurrent_uploads == 0 {
            return Err(invalid("--max-concurrent-uploads", "must be at least 1"));
        }
        if limits.max_uploads_per_uploader == 0 {
            return Err(invalid("--max-uploads-per-uploader", "must be at least 1"));
        }
        if limits.max_uploads_per_caller == 0 {
            return Err(invalid("--max-uploads-per-caller", "must be at least 1"));
        }
        if limits.ack_interval > Duration::from_secs(10) {
            return Err(invalid(
                "--ack-interval",
                "must be at most 10s (clients give up after 30s without a frame)",
            ));
        }
        if self.commit_max_records == 0 {
            return Err(invalid("--commit-max-records", "must be at least 1"));
        }
        let signing = match (&self.signing_key, self.unsigned) {
            (Some(path), _) if self.generate_signing_key && !path.exists() => {
                Signing::Key(Box::new(generate_signing_key(path).map_err(|e| {
                    invalid("--signing-key", format!("cannot create it: {e}"))
                })?))
            }
            (Some(path), _) => Signing::Key(Box::new(
                read_signing_key(path).map_err(|e| invalid("--signing-key", e.to_string()))?,
            )),
            (None, true) => Signing::Unsigned,
            (None, false) => {
                return Err(invalid(
                    "--signing-key",
                    "manifests must be signed: give --signing-key FILE (KUBESCRIBE_SIGNING_KEY_FILE; create \
                     one with `kubescribe-recorder keygen FILE`, or add --generate-signing-key), or run \
                     --unsigned",
                ))
            }
        };
        if self.manifest_interval.is_zero() {
            return Err(invalid("--manifest-interval", "must be more than 0"));
        }
        if self.lease_ttl < Duration::from_secs(3) {
            return Err(invalid("--lease-ttl", "must be at least 3s"));
        }
        if self.peer_sync_interval.is_zero() {
            return Err(invalid("--peer-sync-interval", "must be more than 0"));
        }
        if self
            .replica_name
            .as_deref()
            .is_some_and(|n| n.trim().is_empty())
        {
            return Err(invalid("--replica-name", "must not be empty"));
        }
        if self.retention_interval.is_zero() {
            return Err(invalid("--retention-interval", "must be more than 0"));
        }
        if self.retain_events_days == Some(0) {
            return Err(invalid("--retain-events-days", "must be at least 1"));
        }
        if self.retain_sessions_days == Some(0) {
            return Err(invalid("--retain-sessions-days", "must be at least 1"));
        }
        if self.export_batch_max_size == 0 {
            return Err(invalid("--export-batch-max-size", "must be at least 1"));
        }
        if self.export_jsonl_max_file_bytes < 1024 {
            return Err(invalid(
                "--export-jsonl-max-file-bytes",
                "must be at least 1024",
            ));
        }
        if self.export_initial_backoff.is_zero() {
            return Err(invalid("--export-initial-backoff", "must be more than 0"));
        }
        let export = Export {
            webhook_config: self.export_webhook_config.clone(),
            jsonl_dir: self.export_jsonl.clone(),
            jsonl_max_file_bytes: self.export_jsonl_max_file_bytes,
            batch_max_size: self.export_batch_max_size,
            batch_max_wait: self.export_batch_max_wait,
            initial_backoff: self.export_initial_backoff,
            response_wait: self.export_response_wait,
        };
        Ok(Config {
            signing,
            manifest_interval: self.manifest_interval,
            replicas: Replicas {
                name: self.replica_name.clone().unwrap_or_else(host_name),
                lease_ttl: self.lease_ttl,
                peer_sync_interval: self.peer_sync_interval,
            },
            retention: Retention {
                events_days: self.retain_events_days,
                sessions_days: self.retain_sessions_days,
                legal_hold: self.legal_hold,
                interval: self.retention_interval,
            },
            listen,
            proxy_protocol: self.proxy_protocol,
            connections,
            admin_listen,
            destination,
            s3_batch,
            ui: self.ui,
            identity,
            allow_uploaders,
            allow_readers,
            upload_token,
            read_token,
            insecure_allow_any_uploader: self.insecure_allow_any_uploader,
            limits,
            commit_max_records: self.commit_max_records,
            dedup_window: self.dedup_window,
            dedup_max_keys: self.dedup_max_keys,
            index_max_bytes: self.index_max_bytes,
            tls: self
                .tls_cert
                .zip(self.tls_key)
                .map(|(cert, key)| TlsFiles { cert, key }),
            log_format: self.log_format,
            export,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli(args: &[&str]) -> Cli {
        let mut all = vec![
            "kubescribe-recorder",
            "--insecure-allow-any-uploader",
            "--unsigned",
        ];
        all.extend_from_slice(args);
        Cli::try_parse_from(all).unwrap()
    }

    #[test]
    fn listen_forms() {
        assert_eq!(parse_listen(":80").unwrap().port(), 80);
        assert_eq!(
            parse_listen("127.0.0.1:8080").unwrap(),
            "127.0.0.1:8080".parse().unwrap()
        );
        assert_eq!(parse_listen("[::1]:9").unwrap(), "[::1]:9".parse().unwrap());
        assert!(parse_listen("example.com:80").is_err());
        assert!(parse_listen(":http").is_err());
    }

    #[test]
    fn the_batched_mode_is_for_s3_only_and_off_by_default() {
        let s3 = ["--dst", "s3://127.0.0.1:8333", "--bucket", "b"];
        assert_eq!(cli(&s3).validate().unwrap().s3_batch, None);
        let mut args = s3.to_vec();
        args.extend([
            "--s3-batch-dir",
            "/var/lib/log",
            "--s3-batch-max-age",
            "10s",
        ]);
        assert_eq!(
            cli(&args).validate().unwrap().s3_batch,
            Some(S3Batch {
                dir: PathBuf::from("/var/lib/log"),
                max_bytes: 64 << 20,
                max_age: Duration::from_secs(10),
            })
        );
        let err = cli(&["--dst", "/data", "--s3-batch-dir", "/var/lib/log"])
            .validate()
            .unwrap_err();
        assert!(err.to_string().contains("--s3-batch-dir"), "{err}");
        let mut short = s3.to_vec();
        short.extend([
            "--s3-batch-dir",
            "/var/lib/log",
            "--s3-batch-max-age",
            "10ms",
        ]);
        let err = cli(&short).validate().unwrap_err();
        assert!(err.to_string().contains("--s3-batch-max-age"), "{err}");
    }

    #[test]
    fn s3_destination_needs_bucket() {
        let err = cli(&["--dst", "s3://127.0.0.1:8333"])
            .validate()
            .unwrap_err();
        assert!(err.to_string().contains("--bucket"), "{err}");
        let cfg = cli(&[
            "--dst",
            "s3://127.0.0.1:8333",
            "--bucket",
            "b",
            "--s3-allow-http",
        ])
        .validate()
        .unwrap();
        assert_eq!(
            cfg.destination,
            Destination::S3 {
                endpoint: "http://127.0.0.1:8333".into(),
                bucket: "b".into(),
                region: "us-east-1".into(),
                allow_http: true
            }
        );
    }

    #[test]
    fn defaults_are_safe() {
        let cfg = cli(&[]).validate().unwrap();
        assert_eq!(cfg.allow_uploaders, AllowList::tagged_nodes());
        assert_eq!(
            cfg.allow_readers,
            Readers {
                loopback: false,
                identities: None
            }
        );
        assert_eq!(cfg.listen.port(), 80);
        let err = Cli::try_parse_from(["kubescribe-recorder"])
            .unwrap()
            .validate()
            .unwrap_err();
        assert!(err.to_string().contains("authenticate uploaders"), "{err}");
    }

    #[test]
    fn bad_rules_name_the_flag() {
        let err = cli(&["--allow-uploaders", "loopback"])
            .validate()
            .unwrap_err();
        assert!(err.to_string().starts_with("--allow-uploaders"), "{err}");
        let err = cli(&["--allow-readers", "tag:ops"]).validate().unwrap_err();
        assert!(err.to_string().starts_with("--allow-readers"), "{err}");
        let err = cli(&["--allow-readers", "bob"]).validate().unwrap_err();
        assert!(err.to_string().starts_with("--allow-readers"), "{err}");
    }

    #[test]
    fn readers_default_to_none_and_loopback_is_refused_behind_proxy_protocol() {
        let cfg = cli(&[]).validate().unwrap();
        assert_eq!(
            cfg.allow_readers,
            Readers {
                loopback: false,
                identities: None
            }
        );
        let err = cli(&["--proxy-protocol", "--allow-readers", "loopback"])
            .validate()
            .unwrap_err();
        assert!(
            err.to_string().starts_with("--allow-readers: loopback"),
            "{err}"
        );
        assert!(
            cli(&["--proxy-protocol"])
                .validate()
                .unwrap()
                .proxy_protocol
        );
    }

    #[test]
    fn admin_listener_and_connection_limits() {
        let cfg = cli(&[]).validate().unwrap();
        assert_eq!(cfg.admin_listen, Some("127.0.0.1:9103".parse().unwrap()));
        assert_eq!(cfg.connections, ConnectionLimits::default());
        assert_eq!(
            cli(&["--admin-listen", "off"])
                .validate()
                .unwrap()
                .admin_listen,
            None
        );
        let err = cli(&["--admin-listen", "nowhere"]).validate().unwrap_err();
        assert!(err.to_string().starts_with("--admin-listen"), "{err}");
        let err = cli(&["--max-connections", "0"]).validate().unwrap_err();
        assert!(err.to_string().starts_with("--max-connections"), "{err}");
    }

    #[test]
    fn upload_fairness_limits() {
        let limits = cli(&[]).validate().unwrap().limits;
        assert_eq!(limits.max_concurrent_uploads, 256);
        assert_eq!(limits.max_uploads_per_uploader, 128);
        assert_eq!(limits.max_uploads_per_caller, 32);
        assert_eq!(limits.session_header_timeout, Duration::from_secs(15));
        // Per uploader follows the total unless given.
        let limits = cli(&["--max-concurrent-uploads", "1"])
            .validate()
            .unwrap()
            .limits;
        assert_eq!(limits.max_uploads_per_uploader, 1);
        let limits = cli(&[
            "--max-concurrent-uploads",
            "10",
            "--max-uploads-per-uploader",
            "10",
        ])
        .validate()
        .unwrap()
        .limits;
        assert_eq!(limits.max_uploads_per_uploader, 10);
        for flag in ["--max-uploads-per-uploader", "--max-uploads-per-caller"] {
            let err = cli(&[flag, "0"]).validate().unwrap_err();
            assert!(err.to_string().starts_with(flag), "{err}");
        }
        assert!(Cli::try_parse_from([
            "kubescribe-recorder",
            "--insecure-allow-any-uploader",
            "--session-header-timeout",
            "0s"
        ])
        .is_err());
    }
}
