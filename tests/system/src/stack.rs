//! The whole system on one machine: the upstream API server (the simulator or
//! the real kube-apiserver, see [`crate::upstream`]), the recorder and the
//! proxy as real processes, a fake LocalAPI with the identities below, and a
//! `tailscale serve` stand-in per caller so each reaches the proxy from its
//! own tailnet address.
//!
//! | who | tailnet address | policy |
//! | --- | --- | --- |
//! | alice (a user's laptop) | 100.64.0.1 | events on, **fail closed**, impersonates group `system:masters` |
//! | ci (a tagged node, `tag:ci`) | 100.64.0.2 | events on, **fail open**, impersonates group `ci-deployers` |
//! | bob (a user's laptop) | 100.64.0.3 | events **off**, sessions recorded, **fail closed** |
//! | dave (a user's laptop) | 100.64.0.4 | no grants: nothing recorded (the pass-through baseline) |
//! | the proxy itself (`tag:k8s-proxy`), as the recorder sees it | 127.0.0.1 | may upload |
//!
//! A test may add callers of its own ([`StackOptions::caller`]), and a second
//! proxy in `--mode noauth` ([`StackOptions::noauth`]) that every caller also
//! reaches through a forwarder of its own ([`Stack::noauth`]); it serves TLS,
//! since kubectl sends a bearer token only over TLS.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tempfile::TempDir;

use crate::fake_localapi::FakeLocalApi;
use crate::identities::TestIdentity;
use crate::proxy_protocol::ProxyProtocolForwarder;
use crate::upstream::{SeenRequest, Upstream, UpstreamKind};
use crate::Error;
use base64::Engine as _;
use test_support::net::{free_port, free_ports};
use test_support::pki::ServingPki;
use test_support::process::{workspace_bin, Spawned};
use test_support::{http, peers};

/// A token callers put in their kubeconfig; auth mode must strip it.
pub const CALLER_TOKEN: &str = "caller-token-must-not-reach-upstream";

/// Where the recorder keeps what it stores.
#[derive(Debug, Clone)]
pub enum Storage {
    /// A local directory.
    Disk,
    /// An S3 endpoint (`host:port`, plain http) and bucket, with SigV4 credentials.
    S3 {
        /// `host:port`.
        endpoint: String,
        /// The bucket.
        bucket: String,
        /// Access key ID.
        access_key: String,
        /// Secret key.
        secret_key: String,
    },
}

/// One caller: its identity and a kubeconfig that reaches the proxy through
/// its own PROXY-protocol forwarder.
pub struct Caller {
    /// The caller's short name (`alice`, or what [`StackOptions::caller`] was given).
    pub name: String,
    /// Who the fake LocalAPI says this is.
    pub identity: TestIdentity,
    /// kubeconfig pointing at this caller's forwarder, with the token [`CALLER_TOKEN`].
    pub kubeconfig: PathBuf,
    forwarder: ProxyProtocolForwarder,
    /// The CA of the proxy's TLS listener (None: plain HTTP).
    ca_pem: Option<String>,
}

impl Caller {
    /// Where this caller's kubectl connects.
    pub fn addr(&self) -> SocketAddr {
        self.forwarder.addr()
    }

    /// The CA that signed the certificate of the proxy listener this caller reaches, when that
    /// listener serves TLS (the noauth proxy's does).
    pub fn ca_pem(&self) -> Option<&str> {
        self.ca_pem.as_deref()
    }

    /// A kubeconfig like [`Caller::kubeconfig`] whose user presents `token` (a real user's token, for
    /// noauth mode, where the caller's own credential reaches the API server), written beside it
    /// as `<its stem>-<label>.kubeconfig`.
    pub fn kubeconfig_with_token(&self, label: &str, token: &str) -> Result<PathBuf, Error> {
        let dir = self
            .kubeconfig
            .parent()
            .ok_or("a caller's kubeconfig has a parent directory")?;
        let stem = self
            .kubeconfig
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| self.name.clone());
        write_kubeconfig(
            &dir.join(format!("{stem}-{label}.kubeconfig")),
            &self.name,
            &self.addr().to_string(),
            self.ca_pem(),
            token,
            None,
        )
    }
}

/// What [`Stack::start_with_options`] starts besides the four callers.
pub struct StackOptions {
    upstream: UpstreamKind,
    storage: Storage,
    recorder_addr: SocketAddr,
    callers: Vec<(String, TestIdentity)>,
    noauth: bool,
    recorder_args: Vec<String>,
    audit_policy: Option<String>,
    replicas: usize,
}

impl StackOptions {
    /// In front of an upstream of `kind`, the recorder storing to `storage`; the recorder's address
    /// is chosen now, so grants can name it ([`StackOptions::recorder_addrs`]).
    pub fn new(upstream: UpstreamKind, storage: Storage) -> Result<Self, Error> {
        Ok(Self {
            upstream,
            storage,
            // Below the ephemeral range: no outgoing connection takes it while the recorder restarts.
            recorder_addr: SocketAddr::new(
                IpAddr::V4(Ipv4Addr::LOCALHOST),
                free_ports(1, u16::MAX)?[0],
            ),
            callers: Vec::new(),
            noauth: false,
            recorder_args: Vec::new(),
            audit_policy: None,
            replicas: 1,
        })
    }

    /// Runs `n` (at least 1) auth-mode proxy replicas, each with a spool of its own, behind the
    /// callers' forwarders, which spread connections over them as a load balancer would (a
    /// connection goes to the next replica that accepts it). The first is [`Stack::proxy`], the
    /// others [`Stack::replicas`].
    pub fn proxy_replicas(mut self, n: usize) -> Self {
        self.replicas = n.max(1);
        self
    }

    /// Gives the recorder these flags too (limits, timeouts), at every start.
    pub fn recorder_args(mut self, args: &[&str]) -> Self {
        self.recorder_args
            .extend(args.iter().map(|arg| (*arg).to_owned()));
        self
    }

    /// The recorder's address as a grant's `recorderAddrs` names it.
    pub fn recorder_addrs(&self) -> Value {
        json!([self.recorder_addr.to_string()])
    }

    /// Adds a caller named `name` (its kubeconfig's stem; unique, not one of alice, ci, bob,
    /// dave) with `identity` (a tailnet address of its own).
    pub fn caller(mut self, name: &str, identity: TestIdentity) -> Self {
        self.callers.push((name.to_owned(), identity));
        self
    }

    /// Gives the proxies (`--audit-policy`) and the real API server (`--audit-policy-file`) this
    /// audit Policy (YAML), the same file for both.
    pub fn audit_policy(mut self, policy: &str) -> Self {
        self.audit_policy = Some(policy.to_owned());
        self
    }

    /// Also runs a second proxy in `--mode noauth`, in front of the same upstream, with the same
    /// identities and recorder.
    pub fn noauth(mut self) -> Self {
        self.noauth = true;
        self
    }
}

/// The second proxy, in `--mode noauth`: the caller's own `Authorization` reaches the API
/// server, the proxy adds no credential and no impersonation. Its API listener serves TLS (a
/// certificate for 127.0.0.1 from a CA of its own, [`NoauthProxy::ca_pem`]), as a caller reaches
/// the proxy through `tailscale serve` with HTTPS: kubectl sends a bearer token only over TLS.
pub struct NoauthProxy {
    /// The process.
    pub proxy: Spawned,
    /// Its API listener (PROXY protocol required, then TLS).
    pub proxy_addr: SocketAddr,
    /// The CA that signed its serving certificate (PEM).
    pub ca_pem: String,
    /// Its admin listener.
    pub admin_addr: SocketAddr,
    callers: Vec<Caller>,
}

impl NoauthProxy {
    /// Caller `name` (alice, ci, bob, dave or an added one), reaching this proxy.
    pub fn caller(&self, name: &str) -> Result<&Caller, Error> {
        find_caller(&self.callers, name)
    }
}

/// An auth-mode proxy replica besides the first ([`StackOptions::proxy_replicas`]): killed and
/// restarted on the same addresses and spool by [`Stack::kill_replica`] and
/// [`Stack::start_replica`].
pub struct ProxyReplica {
    /// The process (None while killed).
    pub proxy: Option<Spawned>,
    /// Its API listener (PROXY protocol required).
    pub proxy_addr: SocketAddr,
    /// Its admin listener.
    pub admin_addr: SocketAddr,
    /// Its number: logs `kubescribe-proxy-<n>.log`, spool `spool-<n>`.
    number: usize,
}

/// The running system. Everything stops when it is dropped.
pub struct Stack {
    /// Scratch space: logs, kubeconfigs, storage, spool.
    pub dir: TempDir,
    runtime: tokio::runtime::Runtime,
    localapi: Option<FakeLocalApi>,
    /// The API server behind the proxy.
    pub upstream: Upstream,
    /// The recorder (None while stopped).
    pub recorder: Option<Spawned>,
    /// The recorder's address.
    pub recorder_addr: SocketAddr,
    recorder_storage: Storage,
    recorder_args: Vec<String>,
    /// The proxy.
    pub proxy: Spawned,
    /// The proxy's API listener (PROXY protocol required).
    pub proxy_addr: SocketAddr,
    /// The proxy's admin listener.
    pub admin_addr: SocketAddr,
    /// The other auth-mode proxy replicas ([`StackOptions::proxy_replicas`]).
    pub replicas: Vec<ProxyReplica>,
    /// Where replicas find the identity source and the audit Policy, for restarts.
    policy_file: Option<PathBuf>,
    /// A user's laptop: fail closed.
    pub alice: Caller,
    /// A tagged CI node: fail open.
    pub ci: Caller,
    /// A user whose sessions must be recorded (fail closed) but who sends no events.
    pub bob: Caller,
    /// A user without grants: nothing is recorded for him.
    pub dave: Caller,
    /// The callers the test added ([`StackOptions::caller`]).
    pub callers: Vec<Caller>,
    /// The second proxy, in noauth mode, when asked for ([`StackOptions::noauth`]).
    pub noauth: Option<NoauthProxy>,
}

impl Stack {
    /// Starts everything in front of the simulator, with the recorder storing to `storage`.
    pub fn start(storage: Storage) -> Result<Self, Error> {
        Self::start_with(UpstreamKind::Sim, storage)
    }

    /// Starts everything in front of an upstream of `kind`, with the recorder storing to `storage`.
    pub fn start_with(kind: UpstreamKind, storage: Storage) -> Result<Self, Error> {
        Self::start_with_options(StackOptions::new(kind, storage)?)
    }

    /// Starts everything `options` asks for.
    pub fn start_with_options(options: StackOptions) -> Result<Self, Error> {
        let StackOptions {
            upstream: kind,
            storage,
            recorder_addr,
            callers: extra,
            noauth,
            recorder_args,
            audit_policy,
            replicas: replica_count,
        } = options;
        let mut dir = tempfile::Builder::new()
            .prefix("kubescribe-e2e-")
            .tempdir()?;
        // KUBESCRIBE_E2E_KEEP=1 keeps logs, storage and kubeconfigs for a post-mortem.
        dir.disable_cleanup(std::env::var_os("KUBESCRIBE_E2E_KEEP").is_some());
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let logs = dir.path().join("logs");
        std::fs::create_dir_all(&logs)?;
        let upstream =
            Upstream::start_with_audit_policy(kind, dir.path(), &logs, audit_policy.as_deref())?;
        let policy_file = match &audit_policy {
            Some(policy) => {
                let path = dir.path().join("audit-policy.yaml");
                std::fs::write(&path, policy)?;
                Some(path)
            }
            None => None,
        };

        // Identities.
        let recorder_addrs = json!([recorder_addr.to_string()]);
        let alice = TestIdentity {
            node_name: "alice-laptop.tail1234.ts.net.".into(),
            stable_id: "nALICE1CNTRL".into(),
            address: IpAddr::V4(Ipv4Addr::new(100, 64, 0, 1)),
            tags: vec![],
            user_id: 4242,
            login_name: "alice@example.com".into(),
            grants: vec![json!({
                "recorder": ["tag:kubescribe-recorder"],
                "recorderAddrs": recorder_addrs,
                "enforceRecorder": true,
                "enableEvents": true,
                "impersonate": {"groups": ["system:masters"]}
            })],
        };
        let ci = TestIdentity {
            node_name: "ci-runner.tail1234.ts.net.".into(),
            stable_id: "nCI1CNTRL".into(),
            address: IpAddr::V4(Ipv4Addr::new(100, 64, 0, 2)),
            tags: vec!["tag:ci".into()],
            user_id: 7,
            login_name: String::new(),
            grants: vec![
                json!({"recorderAddrs": recorder_addrs, "enableEvents": true}),
                json!({"impersonate": {"groups": ["ci-deployers"]}}),
            ],
        };
        let bob = TestIdentity {
            node_name: "bob-laptop.tail1234.ts.net.".into(),
            stable_id: "nBOB1CNTRL".into(),
            address: IpAddr::V4(Ipv4Addr::new(100, 64, 0, 3)),
            tags: vec![],
            user_id: 4343,
            login_name: "bob@example.com".into(),
            grants: vec![json!({"recorderAddrs": recorder_addrs, "enforceRecorder": true})],
        };
        let dave = TestIdentity {
            node_name: "dave-laptop.tail1234.ts.net.".into(),
            stable_id: "nDAVE1CNTRL".into(),
            address: IpAddr::V4(Ipv4Addr::new(100, 64, 0, 4)),
            tags: vec![],
            user_id: 4444,
            login_name: "dave@example.com".into(),
            grants: vec![],
        };
        let proxy_node = TestIdentity {
            node_name: "k8s-proxy.tail1234.ts.net.".into(),
            stable_id: "nPROXY1CNTRL".into(),
            address: IpAddr::V4(Ipv4Addr::LOCALHOST),
            tags: vec!["tag:k8s-proxy".into()],
            user_id: 7,
            login_name: String::new(),
            grants: vec![],
        };
        let named: Vec<(String, TestIdentity)> =
            [("alice", alice), ("ci", ci), ("bob", bob), ("dave", dave)]
                .into_iter()
                .map(|(name, identity)| (name.to_owned(), identity))
                .chain(extra)
                .collect();
        let mut answers = HashMap::from([(proxy_node.address, proxy_node.whois_response())]);
        for (name, identity) in &named {
            if answers
                .insert(identity.address, identity.whois_response())
                .is_some()
            {
                return Err(format!(
                    "caller {name}'s address {} is already taken",
                    identity.address
                )
                .into());
            }
        }
        let socket = dir.path().join("tailscaled.sock");
        let localapi = {
            let _guard = runtime.enter();
            FakeLocalApi::start(&socket, answers)?
        };

        // The proxy: plain HTTP behind PROXY protocol, auth mode, in front of the upstream.
        let (proxy, proxy_addr, admin_addr, _) = start_proxy(
            dir.path(),
            &upstream,
            &socket,
            Mode::Auth,
            policy_file.as_deref(),
        )?;
        let mut replicas = Vec::new();
        for number in 1..replica_count {
            let (proxy_addr, admin_addr) = (loopback_addr()?, loopback_addr()?);
            let proxy = spawn_proxy(
                dir.path(),
                &upstream,
                &socket,
                Mode::Replica(number),
                policy_file.as_deref(),
                proxy_addr,
                admin_addr,
            )?
            .0;
            replicas.push(ProxyReplica {
                proxy: Some(proxy),
                proxy_addr,
                admin_addr,
                number,
            });
        }
        let backends: Vec<SocketAddr> = std::iter::once(proxy_addr)
            .chain(replicas.iter().map(|r| r.proxy_addr))
            .collect();
        let mut callers = start_callers(&runtime, dir.path(), &backends, None, &named, "")?;
        let noauth = if noauth {
            let (proxy, proxy_addr, admin_addr, ca_pem) = start_proxy(
                dir.path(),
                &upstream,
                &socket,
                Mode::Noauth,
                policy_file.as_deref(),
            )?;
            let ca_pem = ca_pem.ok_or("the noauth proxy serves TLS")?;
            Some(NoauthProxy {
                callers: start_callers(
                    &runtime,
                    dir.path(),
                    &[proxy_addr],
                    Some(&ca_pem),
                    &named,
                    "noauth-",
                )?,
                proxy,
                proxy_addr,
                ca_pem,
                admin_addr,
            })
        } else {
            None
        };
        let mut take = |name: &str| -> Result<Caller, Error> {
            let at = callers
                .iter()
                .position(|c| c.name == name)
                .ok_or_else(|| format!("no caller {name}"))?;
            Ok(callers.remove(at))
        };
        let (alice, ci, bob, dave) = (take("alice")?, take("ci")?, take("bob")?, take("dave")?);

        let mut stack = Self {
            dir,
            runtime,
            localapi: Some(localapi),
            upstream,
            recorder: None,
            recorder_addr,
            recorder_storage: storage,
            recorder_args,
            proxy,
            proxy_addr,
            admin_addr,
            replicas,
            policy_file,
            alice,
            ci,
            bob,
            dave,
            callers,
            noauth,
        };
        stack.start_recorder()?;
        Ok(stack)
    }

    /// Caller `name`: alice, ci, bob, dave or one the test added.
    pub fn caller(&self, name: &str) -> Result<&Caller, Error> {
        [&self.alice, &self.ci, &self.bob, &self.dave]
            .into_iter()
            .find(|c| c.name == name)
            .map_or_else(|| find_caller(&self.callers, name), Ok)
    }

    /// Starts (or restarts) the recorder on its fixed address and storage.
    pub fn start_recorder(&mut self) -> Result<(), Error> {
        if self.recorder.is_some() {
            return Ok(());
        }
        let logs = self.dir.path().join("logs");
        let socket = self.dir.path().join("tailscaled.sock");
        let mut args = vec![
            "--listen".into(),
            self.recorder_addr.to_string(),
            "--localapi-socket".into(),
            path_arg(&socket),
            "--allow-uploaders".into(),
            "tag:k8s-proxy".into(),
            // The harness reads back over loopback; stacks run in parallel, so no fixed admin port.
            "--allow-readers".into(),
            "loopback".into(),
            "--admin-listen".into(),
            "off".into(),
            "--ui".into(),
        ];
        args.extend(self.recorder_args.iter().cloned());
        // A signing key of this stack's own (kept across recorder restarts), so that manifests
        // are signed as in production.
        args.extend([
            "--signing-key".into(),
            path_arg(&self.dir.path().join("signing.key")),
            "--generate-signing-key".into(),
        ]);
        let mut envs: Vec<(&str, &str)> = vec![("RUST_LOG", "info")];
        let disk = self.dir.path().join("recordings");
        match &self.recorder_storage {
            Storage::Disk => {
                args.push("--dst".into());
                args.push(path_arg(&disk));
            }
            Storage::S3 {
                endpoint,
                bucket,
                access_key,
                secret_key,
            } => {
                args.extend([
                    "--dst".into(),
                    format!("s3://{endpoint}"),
                    "--bucket".into(),
                    bucket.clone(),
                    "--s3-allow-http".into(),
                ]);
                envs.push(("AWS_ACCESS_KEY_ID", access_key));
                envs.push(("AWS_SECRET_ACCESS_KEY", secret_key));
            }
        }
        let mut recorder = Spawned::start(
            "kubescribe-recorder",
            &workspace_bin("kubescribe-recorder")?,
            &args,
            &envs,
            &logs,
        )?;
        recorder.wait_for_tcp(self.recorder_addr, Duration::from_secs(30))?;
        self.recorder = Some(recorder);
        Ok(())
    }

    /// Kills proxy replica `i` of [`Stack::replicas`] at once (SIGKILL), as a crash would.
    pub fn kill_replica(&mut self, i: usize) -> Result<(), Error> {
        let replica = self.replicas.get_mut(i).ok_or("no such proxy replica")?;
        if let Some(mut proxy) = replica.proxy.take() {
            proxy.kill()?;
        }
        Ok(())
    }

    /// Starts (or restarts) proxy replica `i` of [`Stack::replicas`] on its addresses and spool.
    pub fn start_replica(&mut self, i: usize) -> Result<(), Error> {
        let socket = self.dir.path().join("tailscaled.sock");
        let replica = self.replicas.get_mut(i).ok_or("no such proxy replica")?;
        if replica.proxy.is_some() {
            return Ok(());
        }
        let (proxy, ..) = spawn_proxy(
            self.dir.path(),
            &self.upstream,
            &socket,
            Mode::Replica(replica.number),
            self.policy_file.as_deref(),
            replica.proxy_addr,
            replica.admin_addr,
        )?;
        replica.proxy = Some(proxy);
        Ok(())
    }

    /// The admin listeners of every auth-mode proxy replica running now, the first included.
    pub fn replica_admin_addrs(&self) -> Vec<SocketAddr> {
        std::iter::once(self.admin_addr)
            .chain(
                self.replicas
                    .iter()
                    .filter(|r| r.proxy.is_some())
                    .map(|r| r.admin_addr),
            )
            .collect()
    }

    /// Kills the recorder at once (SIGKILL), as a crash would.
    pub fn kill_recorder(&mut self) -> Result<(), Error> {
        if let Some(mut recorder) = self.recorder.take() {
            recorder.kill()?;
        }
        Ok(())
    }

    /// Stops the recorder (SIGTERM, then SIGKILL after 10 s).
    pub fn stop_recorder(&mut self) -> Result<(), Error> {
        if let Some(mut recorder) = self.recorder.take() {
            recorder.stop(Duration::from_secs(10))?;
        }
        Ok(())
    }

    /// Freezes the recorder (SIGSTOP): its sockets stay open and the kernel keeps accepting
    /// connections, but nothing is answered: a hung recorder, not a dead one.
    pub fn pause_recorder(&self) -> Result<(), Error> {
        self.signal_recorder("STOP")
    }

    /// Lets a paused recorder run again (SIGCONT).
    pub fn resume_recorder(&self) -> Result<(), Error> {
        self.signal_recorder("CONT")
    }

    fn signal_recorder(&self, signal: &str) -> Result<(), Error> {
        let recorder = self
            .recorder
            .as_ref()
            .ok_or("the recorder is not running")?;
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(recorder.pid().to_string())
            .status()
            .map_err(|e| format!("running kill -{signal}: {e}"))?;
        if !status.success() {
            return Err(format!("kill -{signal} {} failed: {status}", recorder.pid()).into());
        }
        Ok(())
    }

    /// Runs real kubectl (`version`, e.g. `peers::kubectl()`) as `caller`.
    pub fn kubectl(&self, kubectl: &Path, caller: &Caller, args: &[&str]) -> Result<Output, Error> {
        let output = Command::new(kubectl)
            .arg("--kubeconfig")
            .arg(&caller.kubeconfig)
            .arg("--request-timeout=20s")
            .args(args)
            .output()
            .map_err(|e| format!("running {}: {e}", kubectl.display()))?;
        Ok(output)
    }

    /// kubectl 1.37 from the peers.
    pub fn kubectl_path() -> Result<PathBuf, Error> {
        Ok(peers::kubectl()?)
    }

    /// Events from the recorder's query API (`query` like `verb=list&resource=pods`).
    pub fn events(&self, query: &str) -> Result<Vec<Value>, Error> {
        let reply = http::get(
            self.recorder_addr,
            &format!("/api/v1/events?limit=1000&{query}"),
        )?;
        if reply.status != 200 {
            return Err(format!(
                "GET /api/v1/events?{query}: {} {}",
                reply.status,
                String::from_utf8_lossy(&reply.body)
            )
            .into());
        }
        Ok(reply.json()?["events"]
            .as_array()
            .cloned()
            .unwrap_or_default())
    }

    /// Every event for `query` (all pages), newest first.
    pub fn all_events(&self, query: &str) -> Result<Vec<Value>, Error> {
        let mut events = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let page = match &cursor {
                Some(c) => format!("/api/v1/events?limit=1000&{query}&cursor={c}"),
                None => format!("/api/v1/events?limit=1000&{query}"),
            };
            let reply = http::get(self.recorder_addr, &page)?;
            if reply.status != 200 {
                return Err(format!("GET {page}: {} {}", reply.status, reply.text()).into());
            }
            let body = reply.json()?;
            events.extend(body["events"].as_array().cloned().unwrap_or_default());
            match body["nextCursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => return Ok(events),
            }
        }
    }

    /// Waits until the query API returns at least `count` events for `query`.
    pub fn wait_for_events(
        &self,
        query: &str,
        count: usize,
        timeout: Duration,
    ) -> Result<Vec<Value>, Error> {
        let deadline = Instant::now() + timeout;
        loop {
            let events = self.events(query)?;
            if events.len() >= count || Instant::now() > deadline {
                return Ok(events);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// How many WhoIs questions the fake LocalAPI was asked about addresses of `ip` (the proxy's,
    /// 127.0.0.1, are asked by the recorder about its uploads).
    pub fn whois_asked(&self, ip: IpAddr) -> u64 {
        self.localapi.as_ref().map_or(0, |api| api.whois_asked(ip))
    }

    /// Sessions from the recorder's query API.
    pub fn sessions(&self) -> Result<Vec<Value>, Error> {
        let reply = http::get(self.recorder_addr, "/api/v1/sessions?limit=1000")?;
        if reply.status != 200 {
            return Err(format!(
                "GET /api/v1/sessions: {} {}",
                reply.status,
                String::from_utf8_lossy(&reply.body)
            )
            .into());
        }
        Ok(reply.json()?["sessions"]
            .as_array()
            .cloned()
            .unwrap_or_default())
    }

    /// A session's raw cast.
    pub fn session_cast(&self, id: &str) -> Result<Vec<u8>, Error> {
        let reply = http::get(self.recorder_addr, &format!("/api/v1/sessions/{id}/cast"))?;
        if reply.status != 200 {
            return Err(format!("GET cast {id}: {}", reply.status).into());
        }
        Ok(reply.body)
    }

    /// What the upstream API server received, oldest first (see [`Upstream::seen`]).
    pub fn upstream_requests(&self) -> Result<Vec<SeenRequest>, Error> {
        self.upstream.seen()
    }

    /// The proxy's Prometheus metrics text.
    pub fn proxy_metrics(&self) -> Result<String, Error> {
        metrics_text(self.admin_addr)
    }

    /// The Prometheus metrics text of every auth-mode proxy replica running now.
    pub fn replica_metrics(&self) -> Result<Vec<String>, Error> {
        self.replica_admin_addrs()
            .into_iter()
            .map(metrics_text)
            .collect()
    }

    /// The runtime the fake LocalAPI and forwarders run on.
    pub fn runtime(&self) -> &tokio::runtime::Runtime {
        &self.runtime
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.localapi.take();
    }
}

fn metrics_text(admin: SocketAddr) -> Result<String, Error> {
    Ok(String::from_utf8_lossy(&http::get(admin, "/metrics")?.body).into_owned())
}

fn loopback_addr() -> Result<SocketAddr, Error> {
    Ok(SocketAddr::new(
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        free_port()?,
    ))
}

pub(crate) fn path_arg(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

fn find_caller<'a>(callers: &'a [Caller], name: &str) -> Result<&'a Caller, Error> {
    callers
        .iter()
        .find(|c| c.name == name)
        .ok_or_else(|| format!("no caller named {name}").into())
}

/// Which proxy to start: auth mode (plain HTTP; the proxy's log is `kubescribe-proxy.log`),
/// another auth-mode replica (`kubescribe-proxy-<n>.log`, spool `spool-<n>`) or noauth (TLS;
/// `kubescribe-proxy-noauth.log`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Auth,
    Replica(usize),
    Noauth,
}

/// Starts a proxy in `mode` behind PROXY protocol, in front of `upstream`; returns it with its API
/// and admin addresses and, for a TLS listener, the CA of its certificate.
fn start_proxy(
    dir: &Path,
    upstream: &Upstream,
    socket: &Path,
    mode: Mode,
    audit_policy: Option<&Path>,
) -> Result<(Spawned, SocketAddr, SocketAddr, Option<String>), Error> {
    let (proxy_addr, admin_addr) = (loopback_addr()?, loopback_addr()?);
    let (proxy, ca_pem) = spawn_proxy(
        dir,
        upstream,
        socket,
        mode,
        audit_policy,
        proxy_addr,
        admin_addr,
    )?;
    Ok((proxy, proxy_addr, admin_addr, ca_pem))
}

/// Starts a proxy in `mode` on the given addresses; returns it with the CA of its certificate
/// for a TLS listener.
fn spawn_proxy(
    dir: &Path,
    upstream: &Upstream,
    socket: &Path,
    mode: Mode,
    audit_policy: Option<&Path>,
    proxy_addr: SocketAddr,
    admin_addr: SocketAddr,
) -> Result<(Spawned, Option<String>), Error> {
    let (name, mode_arg, spool) = match mode {
        Mode::Auth => ("kubescribe-proxy".to_owned(), "auth", "spool".to_owned()),
        Mode::Replica(n) => (
            format!("kubescribe-proxy-{n}"),
            "auth",
            format!("spool-{n}"),
        ),
        Mode::Noauth => (
            "kubescribe-proxy-noauth".to_owned(),
            "noauth",
            "spool-noauth".to_owned(),
        ),
    };
    let mut args = vec![
        "--listen".into(),
        proxy_addr.to_string(),
        "--proxy-protocol".into(),
        "--kubeconfig".into(),
        path_arg(&upstream.proxy_kubeconfig()),
        "--mode".into(),
        mode_arg.into(),
        "--localapi-socket".into(),
        path_arg(socket),
        "--admin-listen".into(),
        admin_addr.to_string(),
        "--spool-dir".into(),
        path_arg(&dir.join(spool)),
    ];
    if let Some(policy) = audit_policy {
        args.extend(["--audit-policy".into(), path_arg(policy)]);
    }
    let mut ca_pem = None;
    if mode == Mode::Noauth {
        let pki = ServingPki::generate("kubescribe noauth proxy test CA")?;
        let (cert, key) = (
            dir.join(format!("{name}.crt")),
            dir.join(format!("{name}.key")),
        );
        std::fs::write(&cert, &pki.serving.cert_pem)?;
        std::fs::write(&key, &pki.serving.key_pem)?;
        args.extend([
            "--tls-cert".into(),
            path_arg(&cert),
            "--tls-key".into(),
            path_arg(&key),
        ]);
        ca_pem = Some(pki.ca.cert_pem);
    }
    let mut proxy = Spawned::start(
        &name,
        &workspace_bin("kubescribe-proxy")?,
        &args,
        &[("RUST_LOG", "info")],
        &dir.join("logs"),
    )?;
    proxy.wait_for_tcp(admin_addr, Duration::from_secs(20))?;
    proxy.wait_for_tcp(proxy_addr, Duration::from_secs(20))?;
    Ok((proxy, ca_pem))
}

/// A forwarder to the proxy replicas at `proxy_addrs` (connections spread over them in turn) and
/// a kubeconfig (`<prefix><name>.kubeconfig`) for each caller; `ca_pem` is the CA of the
/// proxies' TLS listener (None: plain HTTP).
fn start_callers(
    runtime: &tokio::runtime::Runtime,
    dir: &Path,
    proxy_addrs: &[SocketAddr],
    ca_pem: Option<&str>,
    named: &[(String, TestIdentity)],
    prefix: &str,
) -> Result<Vec<Caller>, Error> {
    named
        .iter()
        .map(|(name, identity)| {
            let forwarder = runtime.block_on(ProxyProtocolForwarder::start_balanced(
                proxy_addrs.to_vec(),
                identity.address,
            ))?;
            let kubeconfig = write_kubeconfig(
                &dir.join(format!("{prefix}{name}.kubeconfig")),
                name,
                &forwarder.addr().to_string(),
                ca_pem,
                CALLER_TOKEN,
                None,
            )?;
            Ok(Caller {
                name: name.clone(),
                identity: identity.clone(),
                kubeconfig,
                forwarder,
                ca_pem: ca_pem.map(str::to_owned),
            })
        })
        .collect()
}

/// A kubeconfig for `name` reaching `server` (`HOST:PORT`; over TLS trusting `ca_pem`, or plain
/// HTTP) with `token`, through `proxy_url` (kubectl's `proxy-url`, e.g. a tailnet node's
/// `socks5://…`) when given. kubectl sends a bearer token only over TLS.
pub(crate) fn write_kubeconfig(
    path: &Path,
    name: &str,
    server: &str,
    ca_pem: Option<&str>,
    token: &str,
    proxy_url: Option<&str>,
) -> Result<PathBuf, Error> {
    let mut cluster = match ca_pem {
        Some(ca) => format!(
            "    server: https://{server}\n    certificate-authority-data: {}\n",
            base64::engine::general_purpose::STANDARD.encode(ca)
        ),
        None => format!("    server: http://{server}\n"),
    };
    if let Some(proxy_url) = proxy_url {
        cluster.push_str(&format!("    proxy-url: {proxy_url}\n"));
    }
    std::fs::write(
        path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: kubescribe\n  cluster:\n{cluster}users:\n- name: {name}\n  user:\n    token: {token}\ncontexts:\n- name: {name}\n  context:\n    cluster: kubescribe\n    user: {name}\n    namespace: default\ncurrent-context: {name}\n"
        ),
    )?;
    Ok(path.to_path_buf())
}
