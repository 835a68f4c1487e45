//! Command line and environment: one clap definition, validated into one [`Config`].
//!
//! Every flag also reads an environment variable (`KUBESCRIBE_…`), and the
//! Tailscale operator's own variables are honoured where they exist:
//! `APISERVER_PROXY=true|noauth` picks the mode and `TS_EXPERIMENTAL_KUBE_API_EVENTS`
//! turns events on for every caller that has recorders.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::mode::Mode;
use crate::recorder_dial::RecorderDial;
use crate::upstream::UpstreamSource;
use audit_policy::{GroupResource, Policy, Redactor};
use identity::IdentitySource;
use recorder_client::{FailOpenDelivery, SpoolFullPolicy};
use service::cli::ConnectionArgs;
use service::conn::ConnectionLimits;
use service::{LogFormat, TlsFiles};

/// Default cap on the request body bytes copied into an event (1 MiB).
const DEFAULT_MAX_BODY_CAPTURE: usize = 1024 * 1024;

/// Default bound on the spool's segment files (256 MiB).
const DEFAULT_SPOOL_MAX_BYTES: u64 = 256 * 1024 * 1024;

/// The smallest spool bound accepted (1 MiB).
const MIN_SPOOL_MAX_BYTES: u64 = 1024 * 1024;

/// `kubescribe-proxy`: an identity-aware Kubernetes API server proxy that records
/// every API request as an event (Tailscale `kubernetes-api-request` compatible).
#[derive(Debug, Parser)]
#[command(name = "kubescribe-proxy", version, about, long_about = None)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Cli {
    /// A one-off command instead of serving.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Options for serving (the default command).
    #[command(flatten)]
    pub serve: ServeArgs,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show who a tailnet address is and which grants apply to it, as JSON on stdout.
    Whois(WhoisArgs),
}

/// Arguments of `kubescribe-proxy whois`.
#[derive(Debug, Args)]
pub struct WhoisArgs {
    /// tailscaled's LocalAPI unix socket to ask.
    #[arg(long, value_name = "PATH", conflicts_with = "identity_file")]
    pub localapi_socket: Option<PathBuf>,
    /// Static identity file to look the address up in (instead of the LocalAPI).
    #[arg(long, value_name = "FILE")]
    pub identity_file: Option<PathBuf>,
    /// The caller address to explain, as `IP:PORT` (IPv6 as `[addr]:port`).
    #[arg(value_name = "IP:PORT")]
    pub address: SocketAddr,
}

/// Flags of the serving command.
#[derive(Debug, Args, Clone)]
pub struct ServeArgs {
    /// Address the API proxy listens on.
    #[arg(
        long,
        env = "KUBESCRIBE_LISTEN",
        value_name = "ADDR",
        default_value = "127.0.0.1:8443"
    )]
    pub listen: SocketAddr,

    /// PEM certificate chain for HTTPS on --listen (with --tls-key). Without it the listener is plain HTTP.
    #[arg(
        long,
        env = "KUBESCRIBE_TLS_CERT",
        value_name = "FILE",
        requires = "tls_key"
    )]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key for --tls-cert.
    #[arg(
        long,
        env = "KUBESCRIBE_TLS_KEY",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    pub tls_key: Option<PathBuf>,

    /// Require a PROXY protocol (v2, or v1) header on every connection, as `tailscale serve`
    /// sends with `ProxyProtocol: 2`; its source address is the caller. Connections without
    /// a valid header within 10 s are closed.
    #[arg(long, env = "KUBESCRIBE_PROXY_PROTOCOL", default_value_t = false)]
    pub proxy_protocol: bool,

    /// Kubeconfig of the upstream API server (default: in-cluster service account).
    #[arg(long, env = "KUBECONFIG", value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,

    /// Kubeconfig context to use (default: the file's current-context).
    #[arg(
        long,
        env = "KUBESCRIBE_CONTEXT",
        value_name = "NAME",
        requires = "kubeconfig"
    )]
    pub context: Option<String>,

    /// Seconds one run of the kubeconfig user's exec credential plugin may take before it is
    /// killed and the requests waiting for it are answered 502.
    #[arg(
        long = "exec-plugin-timeout",
        env = "KUBESCRIBE_EXEC_PLUGIN_TIMEOUT",
        value_name = "SECONDS",
        default_value_t = crate::upstream::DEFAULT_EXEC_TIMEOUT.as_secs()
    )]
    pub exec_plugin_timeout_secs: u64,

    /// auth: impersonate the caller with the proxy's credentials; noauth: pass the caller's
    /// credentials through. Default auth, or from APISERVER_PROXY (true → auth, noauth → noauth).
    #[arg(long, value_enum, value_name = "MODE")]
    pub mode: Option<Mode>,

    /// Tailscale operator compatibility: `true` → auth, `noauth` → noauth.
    #[arg(long = "apiserver-proxy-env", env = "APISERVER_PROXY", hide = true)]
    pub apiserver_proxy_env: Option<String>,

    /// tailscaled's LocalAPI socket for WhoIs (the tailnet deployment).
    #[arg(
        long,
        env = "KUBESCRIBE_LOCALAPI_SOCKET",
        value_name = "PATH",
        conflicts_with = "identity_file"
    )]
    pub localapi_socket: Option<PathBuf>,

    /// Static identity file mapping caller addresses to identities and grants (the standalone deployment).
    #[arg(long, env = "KUBESCRIBE_IDENTITY_FILE", value_name = "FILE")]
    pub identity_file: Option<PathBuf>,

    /// How recorders are reached: `direct` (TCP from this host: needs a tailnet interface, i.e.
    /// tailscaled with a TUN device), `localapi` (through tailscaled's LocalAPI, --localapi-socket
    /// or its default socket; works in userspace-networking mode), `socks5://HOST:PORT` (through
    /// tailscaled's --socks5-server), or `auto`: direct when an interface has a tailnet address,
    /// else, when WhoIs uses the LocalAPI, tailnet addresses through it and any other address
    /// directly, else direct. The start-up log says which.
    #[arg(
        long,
        env = "KUBESCRIBE_RECORDER_DIAL",
        value_name = "auto|direct|localapi|socks5://HOST:PORT",
        default_value = "auto"
    )]
    pub recorder_dial: RecorderDial,

    /// Address of the admin listener serving /metrics, /healthz and /readyz.
    #[arg(
        long,
        env = "KUBESCRIBE_ADMIN_LISTEN",
        value_name = "ADDR",
        default_value = "127.0.0.1:9102"
    )]
    pub admin_listen: SocketAddr,

    /// Largest request body copied into an event; larger bodies are forwarded whole and
    /// recorded truncated (prefix, `truncated` marker; full size and SHA-256 in the response record).
    #[arg(long, env = "KUBESCRIBE_MAX_BODY_CAPTURE", value_name = "BYTES", default_value_t = DEFAULT_MAX_BODY_CAPTURE)]
    pub max_body_capture: usize,

    /// A resource whose request bodies are never recorded, besides core `secrets` (always
    /// redacted): GROUP/RESOURCE, `/configmaps` for the core group, `example.com/credentials`.
    /// Repeatable. Its events carry no body and say `kubescribe.redaction.reason = "resource"`.
    #[arg(
        long = "redact-resource",
        env = "KUBESCRIBE_REDACT_RESOURCES",
        value_name = "GROUP/RESOURCE",
        value_delimiter = ','
    )]
    pub redact_resources: Vec<GroupResource>,

    /// An audit.k8s.io/v1 Policy file (kube-apiserver's format and rule semantics) deciding what is
    /// recorded of each request: None (nothing: no event, no response record, forwarded even when
    /// the caller's grant says fail closed), Metadata (event without body), Request or
    /// RequestResponse (event with body; Secrets stay redacted). The first matching rule wins; no
    /// match → None. `users`/`userGroups` match the impersonated user and groups plus
    /// system:authenticated (auth mode), or, in noauth mode, the caller's tailnet login name (a
    /// tagged node: its node name) and its tags. omitStages ResponseComplete drops the response
    /// record; RequestReceived is ignored (the event is the record). Reloaded on SIGHUP and when
    /// the file changes; an invalid new file keeps the old policy. Default: Request for every
    /// request.
    #[arg(long, env = "KUBESCRIBE_AUDIT_POLICY", value_name = "FILE")]
    pub audit_policy: Option<PathBuf>,

    /// Largest request head (request line plus headers) accepted from a caller; larger → 431.
    #[arg(long, env = "KUBESCRIBE_MAX_HEADER_BYTES", value_name = "BYTES", default_value_t = 256 * 1024)]
    pub max_header_bytes: usize,

    /// Connection limits of --listen.
    #[command(flatten)]
    pub connections: ConnectionArgs,

    /// Send an event for every caller that has recorders, not only callers whose grant says
    /// `enableEvents` (Tailscale v1.90–v1.94 semantics; any Go ParseBool true value).
    #[arg(
        long = "events-for-all-callers",
        env = "TS_EXPERIMENTAL_KUBE_API_EVENTS",
        value_name = "BOOL"
    )]
    pub events_for_all_callers: Option<String>,

    /// When WhoIs of the connection's address fails, retry with the `X-Forwarded-For` header
    /// (one `IP:PORT`). Only for a plain-HTTP listener behind a trusted L7 proxy. Off by default.
    #[arg(long, env = "KUBESCRIBE_TRUST_FORWARDED_FOR", default_value_t = false)]
    pub trust_forwarded_for: bool,

    /// How long a caller's WhoIs answer and parsed grants are reused for further requests
    /// from the same address (seconds; 0: WhoIs on every request). A change of grants
    /// reaches new requests within this time.
    #[arg(
        long = "whois-cache-ttl",
        env = "KUBESCRIBE_WHOIS_CACHE_TTL",
        value_name = "SECONDS",
        default_value_t = 5
    )]
    pub whois_cache_ttl_secs: u64,

    /// Directory for the proxy's state (the spool). Default: /var/lib/kubescribe-proxy, or, when
    /// that cannot be created or written, $XDG_STATE_HOME/kubescribe-proxy (~/.local/state/…).
    #[arg(long, env = "KUBESCRIBE_STATE_DIR", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,

    /// Where records no recorder took wait for redelivery (events and response records of fail-open
    /// callers, records of refused requests); bounded, crash-safe, redelivered in order. Default:
    /// <state dir>/spool. `none`: no spool; such records are then dropped (counted and logged).
    #[arg(long, env = "KUBESCRIBE_SPOOL_DIR", value_name = "DIR|none")]
    pub spool_dir: Option<PathBuf>,

    /// Most bytes the spool's files may take. When full, --spool-full-policy decides which records
    /// are dropped (each drop is counted and logged).
    #[arg(long, env = "KUBESCRIBE_SPOOL_MAX_BYTES", value_name = "BYTES", default_value_t = DEFAULT_SPOOL_MAX_BYTES)]
    pub spool_max_bytes: u64,

    /// What a full spool drops: `drop-oldest` (the oldest records, a segment of up to 4 MiB at a
    /// time, so the newest are kept) or `refuse` (the new record; the oldest are kept).
    #[arg(
        long,
        env = "KUBESCRIBE_SPOOL_FULL_POLICY",
        value_name = "POLICY",
        default_value = "drop-oldest",
        value_parser = parse_full_policy
    )]
    pub spool_full_policy: SpoolFullPolicy,

    /// What a fail-open request waits for before it is forwarded: `queued` (nothing: its event is
    /// written to the spool and delivered from there in the background, in batches with the response
    /// records; it survives the proxy's crash, and is synced to disk before the proxy waits on a
    /// recorder that did not take it) or `acknowledged` (a recorder's durable acknowledgement, or the
    /// spool's fsync when none answers). Fail closed always waits for the acknowledgement.
    #[arg(
        long,
        env = "KUBESCRIBE_FAIL_OPEN_DELIVERY",
        value_name = "queued|acknowledged",
        default_value = "queued"
    )]
    pub fail_open_delivery: FailOpenDelivery,

    /// How long shutdown waits for in-flight requests and exec/attach sessions, and then as long
    /// again for the spool's records to be delivered (seconds). What a recorder did not take by
    /// then stays in the spool for the next proxy on the same spool directory.
    #[arg(
        long = "shutdown-grace",
        env = "KUBESCRIBE_SHUTDOWN_GRACE",
        value_name = "SECONDS",
        default_value_t = 10
    )]
    pub shutdown_grace_secs: u64,

    /// Log format.
    #[arg(
        long,
        env = "KUBESCRIBE_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    pub log_format: LogFormat,
}

/// The validated configuration of a serving proxy.
#[derive(Debug, Clone)]
pub struct Config {
    /// API listener address.
    pub listen: SocketAddr,
    /// TLS for the API listener (None: plain HTTP).
    pub tls: Option<TlsFiles>,
    /// Whether a PROXY protocol header is required.
    pub proxy_protocol: bool,
    /// Upstream configuration source.
    pub upstream: UpstreamSource,
    /// auth or noauth.
    pub mode: Mode,
    /// Identity source.
    pub identity: IdentitySource,
    /// How recorders are reached (`auto` is decided at start-up).
    pub recorder_dial: RecorderDial,
    /// Admin listener address.
    pub admin_listen: SocketAddr,
    /// Body capture cap.
    pub max_body_capture: usize,
    /// Request head cap.
    pub max_header_bytes: usize,
    /// Which request bodies are never recorded (core `secrets` and --redact-resource).
    pub redactor: Redactor,
    /// The audit Policy (`--audit-policy`) and its file; `None`: `Request` for every request.
    pub audit_policy: Option<(PathBuf, Policy)>,
    /// Connection limits of the API listener.
    pub connections: ConnectionLimits,
    /// Events for every caller with recorders.
    pub events_for_all_callers: bool,
    /// Honour X-Forwarded-For as a WhoIs fallback.
    pub trust_forwarded_for: bool,
    /// How long a resolved caller is reused (zero: never).
    pub whois_cache_ttl: Duration,
    /// State directory (`None`: the default, resolved at start-up).
    pub state_dir: Option<PathBuf>,
    /// The spool of records no recorder took.
    pub spool: SpoolOptions,
    /// What a fail-open request waits for (`--fail-open-delivery`).
    pub fail_open_delivery: FailOpenDelivery,
    /// Shutdown grace period.
    pub shutdown_grace: Duration,
    /// Log format.
    pub log_format: LogFormat,
}

/// Where the spool is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpoolDir {
    /// `--spool-dir none`: no spool; records no recorder takes are dropped.
    Off,
    /// `--spool-dir DIR`.
    Dir(PathBuf),
    /// `spool` in the state directory (the default).
    InStateDir,
}

/// The spool's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolOptions {
    /// Where it is.
    pub dir: SpoolDir,
    /// Bound on its files, in bytes.
    pub max_bytes: u64,
    /// What a full spool drops.
    pub full_policy: SpoolFullPolicy,
}

impl SpoolOptions {
    /// No spool (tests and embedders that want none).
    pub fn off() -> Self {
        SpoolOptions {
            dir: SpoolDir::Off,
            max_bytes: DEFAULT_SPOOL_MAX_BYTES,
            full_policy: SpoolFullPolicy::DropOldest,
        }
    }
}

fn parse_full_policy(s: &str) -> Result<SpoolFullPolicy, String> {
    s.parse()
}

/// A configuration that cannot run, naming the flag and what is wrong.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// APISERVER_PROXY has a value we do not know.
    #[error("APISERVER_PROXY={0:?} is not valid: use \"true\" (auth mode) or \"noauth\"")]
    BadApiserverProxy(String),
    /// APISERVER_PROXY=false means "no proxy".
    #[error("APISERVER_PROXY={0:?} disables the API server proxy; unset it or set it to \"true\" or \"noauth\" to run kubescribe-proxy")]
    ProxyDisabled(String),
    /// --mode and APISERVER_PROXY disagree.
    #[error("--mode {flag} contradicts APISERVER_PROXY={env:?}; set only one of them")]
    ModeConflict {
        /// The flag's mode.
        flag: &'static str,
        /// The env value.
        env: String,
    },
    /// No identity source.
    #[error("no identity source: pass --localapi-socket PATH (tailnet) or --identity-file FILE (standalone)")]
    NoIdentitySource,
    /// Bad bool for TS_EXPERIMENTAL_KUBE_API_EVENTS.
    #[error("--events-for-all-callers / TS_EXPERIMENTAL_KUBE_API_EVENTS={0:?} is not a boolean (use true/false, 1/0, t/f)")]
    BadEventsBool(String),
    /// The audit Policy file is unreadable or invalid.
    #[error("--audit-policy {path}: {message}")]
    AuditPolicy {
        /// The file.
        path: PathBuf,
        /// What is wrong (with the line, where the parser knows it).
        message: String,
    },
    /// Body capture cap too large.
    #[error("--max-body-capture {0} is too large; at most 64 MiB is allowed")]
    BodyCaptureTooLarge(usize),
    /// Head cap out of range.
    #[error("--max-header-bytes {0} is out of range; use 8192 ..= 16777216")]
    HeaderBytesOutOfRange(usize),
    /// A connection limit is zero.
    #[error("{flag} {message}")]
    ConnectionLimit {
        /// The flag.
        flag: &'static str,
        /// What is wrong.
        message: &'static str,
    },
    /// The spool bound is too small.
    #[error("--spool-max-bytes {0} is too small; at least 1048576 (1 MiB) is needed")]
    SpoolTooSmall(u64),
    /// Neither kubeconfig nor in-cluster environment.
    #[error("no upstream: pass --kubeconfig PATH (or set KUBECONFIG), or run in a pod where KUBERNETES_SERVICE_HOST is set")]
    NoUpstream,
}

/// Go's `strconv.ParseBool`.
fn parse_go_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

impl ServeArgs {
    /// Validate into a [`Config`]. `in_cluster_available` says whether
    /// `KUBERNETES_SERVICE_HOST` is set (passed in so tests need no process env).
    pub fn validate(self, in_cluster_available: bool) -> Result<Config, ConfigError> {
        let env_mode = match self.apiserver_proxy_env.as_deref() {
            None | Some("") => None,
            Some("true") => Some(Mode::Auth),
            Some("noauth") => Some(Mode::Noauth),
            Some(v @ "false") => return Err(ConfigError::ProxyDisabled(v.to_string())),
            Some(v) => return Err(ConfigError::BadApiserverProxy(v.to_string())),
        };
        let mode = match (self.mode, env_mode) {
            (Some(flag), Some(env)) if flag != env => {
                return Err(ConfigError::ModeConflict {
                    flag: flag.as_str(),
                    env: self.apiserver_proxy_env.unwrap_or_default(),
                })
            }
            (Some(m), _) | (None, Some(m)) => m,
            (None, None) => Mode::Auth,
        };
        let identity = IdentitySource::from_flags(self.localapi_socket, self.identity_file)
            .ok_or(ConfigError::NoIdentitySource)?;
        let events_for_all_callers = match self.events_for_all_callers.as_deref() {
            None | Some("") => false,
            Some(v) => parse_go_bool(v).ok_or_else(|| ConfigError::BadEventsBool(v.into()))?,
        };
        let audit_policy = match self.audit_policy {
            Some(path) => {
                let policy = Policy::load(&path).map_err(|e| ConfigError::AuditPolicy {
                    path: path.clone(),
                    message: e.to_string(),
                })?;
                Some((path, policy))
            }
            None => None,
        };
        if self.max_body_capture > 64 * 1024 * 1024 {
            return Err(ConfigError::BodyCaptureTooLarge(self.max_body_capture));
        }
        if !(8192..=16 * 1024 * 1024).contains(&self.max_header_bytes) {
            return Err(ConfigError::HeaderBytesOutOfRange(self.max_header_bytes));
        }
        let connections = self
            .connections
            .limits()
            .map_err(|(flag, message)| ConfigError::ConnectionLimit { flag, message })?;
        let upstream = match self.kubeconfig {
            Some(path) => UpstreamSource::Kubeconfig {
                path,
                context: self.context,
                exec_timeout: Duration::from_secs(self.exec_plugin_timeout_secs.max(1)),
            },
            None if in_cluster_available => UpstreamSource::InCluster,
            None => return Err(ConfigError::NoUpstream),
        };
        if self.spool_max_bytes < MIN_SPOOL_MAX_BYTES {
            return Err(ConfigError::SpoolTooSmall(self.spool_max_bytes));
        }
        let spool = SpoolOptions {
            dir: match self.spool_dir {
                Some(dir) if dir.as_os_str() == "none" => SpoolDir::Off,
                Some(dir) => SpoolDir::Dir(dir),
                None => SpoolDir::InStateDir,
            },
            max_bytes: self.spool_max_bytes,
            full_policy: self.spool_full_policy,
        };
        let tls = match (self.tls_cert, self.tls_key) {
            (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
            _ => None,
        };
        Ok(Config {
            listen: self.listen,
            tls,
            proxy_protocol: self.proxy_protocol,
            upstream,
            mode,
            identity,
            recorder_dial: self.recorder_dial,
            admin_listen: self.admin_listen,
            max_body_capture: self.max_body_capture,
            max_header_bytes: self.max_header_bytes,
            redactor: Redactor::new(self.redact_resources),
            audit_policy,
            connections,
            events_for_all_callers,
            trust_forwarded_for: self.trust_forwarded_for,
            whois_cache_ttl: Duration::from_secs(self.whois_cache_ttl_secs),
            state_dir: self.state_dir,
            spool,
            fail_open_delivery: self.fail_open_delivery,
            shutdown_grace: Duration::from_secs(self.shutdown_grace_secs),
            log_format: self.log_format,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> ServeArgs {
        let mut v = vec![
            "kubescribe-proxy",
            "--identity-file",
            "/x",
            "--kubeconfig",
            "/k",
        ];
        v.extend_from_slice(extra);
        Cli::try_parse_from(v)
            .map(|c| c.serve)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn apiserver_proxy_env_maps_to_modes() {
        let mut a = args(&[]);
        a.apiserver_proxy_env = Some("true".into());
        assert_eq!(a.clone().validate(false).map(|c| c.mode), Ok(Mode::Auth));
        a.apiserver_proxy_env = Some("noauth".into());
        assert_eq!(a.clone().validate(false).map(|c| c.mode), Ok(Mode::Noauth));
        a.apiserver_proxy_env = Some("false".into());
        assert!(matches!(
            a.clone().validate(false),
            Err(ConfigError::ProxyDisabled(_))
        ));
        a.apiserver_proxy_env = Some("yes".into());
        assert!(matches!(
            a.validate(false),
            Err(ConfigError::BadApiserverProxy(_))
        ));
    }

    #[test]
    fn mode_flag_conflicting_with_env_is_rejected() {
        let mut a = args(&["--mode", "auth"]);
        a.apiserver_proxy_env = Some("noauth".into());
        assert!(matches!(
            a.validate(false),
            Err(ConfigError::ModeConflict { .. })
        ));
    }

    #[test]
    fn identity_and_upstream_are_required() {
        let a = Cli::try_parse_from(["kubescribe-proxy"]).map(|c| c.serve);
        let a = a.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            a.clone().validate(true).err(),
            Some(ConfigError::NoIdentitySource)
        );
        let mut a = a;
        a.identity_file = Some("/x".into());
        assert_eq!(
            a.clone().validate(false).err(),
            Some(ConfigError::NoUpstream)
        );
        assert_eq!(
            a.validate(true).map(|c| c.upstream),
            Ok(UpstreamSource::InCluster)
        );
    }

    #[test]
    fn events_bool_uses_go_parse_bool() {
        let mut a = args(&[]);
        a.events_for_all_callers = Some("T".into());
        assert_eq!(
            a.clone().validate(false).map(|c| c.events_for_all_callers),
            Ok(true)
        );
        a.events_for_all_callers = Some("nope".into());
        assert!(matches!(
            a.validate(false),
            Err(ConfigError::BadEventsBool(_))
        ));
    }

    #[test]
    fn the_spool_is_on_by_default_in_the_state_dir_and_none_turns_it_off() {
        let c = args(&[]).validate(false).unwrap();
        assert_eq!(c.spool.dir, SpoolDir::InStateDir);
        assert_eq!(c.state_dir, None);
        assert_eq!(c.spool.max_bytes, 256 * 1024 * 1024);
        assert_eq!(c.spool.full_policy, SpoolFullPolicy::DropOldest);
        let c = args(&["--spool-dir", "none"]).validate(false).unwrap();
        assert_eq!(c.spool.dir, SpoolDir::Off);
        let c = args(&[
            "--spool-dir",
            "/s",
            "--state-dir",
            "/st",
            "--spool-max-bytes",
            "2097152",
            "--spool-full-policy",
            "refuse",
        ])
        .validate(false)
        .unwrap();
        assert_eq!(c.spool.dir, SpoolDir::Dir("/s".into()));
        assert_eq!(c.state_dir, Some("/st".into()));
        assert_eq!(c.spool.max_bytes, 2 * 1024 * 1024);
        assert_eq!(c.spool.full_policy, SpoolFullPolicy::Refuse);
        assert_eq!(
            args(&["--spool-max-bytes", "1000"]).validate(false).err(),
            Some(ConfigError::SpoolTooSmall(1000))
        );
        assert!(
            Cli::try_parse_from(["kubescribe-proxy", "--spool-full-policy", "newest"]).is_err()
        );
    }

    #[test]
    fn tls_needs_both_files_and_whois_parses() {
        assert!(Cli::try_parse_from(["kubescribe-proxy", "--tls-cert", "/c"]).is_err());
        let cli = Cli::try_parse_from([
            "kubescribe-proxy",
            "whois",
            "--identity-file",
            "/f",
            "100.64.0.1:1234",
        ]);
        assert!(matches!(
            cli.map(|c| c.command),
            Ok(Some(Command::Whois(WhoisArgs { .. })))
        ));
    }
}
