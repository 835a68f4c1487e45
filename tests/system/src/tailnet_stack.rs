//! The whole system on a real tailnet (`test_support::tailnet`): real
//! tailscaled nodes, identities and grants from a real LocalAPI, the proxy
//! and the recorders each behind real `tailscale serve` with PROXY protocol
//! v2, kubectl on caller nodes reaching the proxy through their tailscaled's
//! SOCKS5 proxy, and the harness reading the recorders as a granted reader
//! node. Runs only inside a sealed network namespace
//! (`test_support::netns::run_isolated`).
//!
//! | node | tags | role |
//! | --- | --- | --- |
//! | `k8s-proxy` | `tag:k8s-proxy` | runs kubescribe-proxy (TLS, auth mode), served on :443 |
//! | `rec-1`, `rec-2` | `tag:k8s-recorder` | each runs a kubescribe-recorder, served on :80 |
//! | `alice` | (a user's node) | **fail closed**, events on, impersonates `system:masters`; reaches the proxy by name |
//! | `ci` | `tag:ci` | **fail open**, events on, impersonates `ci-deployers`; its grant keeps recorder *tags* for the proxy to resolve; reaches the proxy by address |
//! | `eve` | (a user's node) | no grants: nothing recorded, may neither upload nor read |
//! | `auditor` | (a user's node) | the recorders' `--allow-readers` user: the harness reads through it |
//! | `ts-k8s-proxy` | `tag:ts-k8s-proxy` | with [`TailnetStackOptions::tailscale_proxy`]: Tailscale's own API server proxy (a tsnet node, [`crate::tailscale_proxy`]), plain HTTP on :443; every grant to `tag:k8s-proxy` names it too |

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tempfile::TempDir;
use test_support::http::{self, Reply};
use test_support::net::free_port;
use test_support::pki::ServingPki;
use test_support::process::{workspace_bin, Spawned};
use test_support::tailnet::{NodeInfo, NodeSpec, Tailnet};

use crate::run::with_deadline;
use crate::stack::{path_arg, write_kubeconfig};
use crate::tailscale_proxy::{TailscaleProxy, TS_PROXY_NODE, TS_PROXY_TAG};
use crate::upstream::{Upstream, UpstreamKind};
use crate::Error;

/// The proxy's node.
pub const PROXY_NODE: &str = "k8s-proxy";

/// The capability carrying Kubernetes grants.
pub const KUBERNETES_CAP: &str = "tailscale.com/cap/kubernetes";

/// A capability of ours in every grant set, so the harness can tell when a
/// new set has reached the proxy's node.
const GENERATION_CAP: &str = "kubescribe.test/generation";

const NODES: &[NodeSpec] = &[
    NodeSpec {
        hostname: PROXY_NODE,
        tags: &["tag:k8s-proxy"],
    },
    NodeSpec {
        hostname: "rec-1",
        tags: &["tag:k8s-recorder"],
    },
    NodeSpec {
        hostname: "rec-2",
        tags: &["tag:k8s-recorder"],
    },
    NodeSpec {
        hostname: "alice",
        tags: &[],
    },
    NodeSpec {
        hostname: "ci",
        tags: &["tag:ci"],
    },
    NodeSpec {
        hostname: "eve",
        tags: &[],
    },
    NodeSpec {
        hostname: "auditor",
        tags: &[],
    },
];

/// What [`TailnetStack::start`] starts.
#[derive(Debug, Clone)]
pub struct TailnetStackOptions {
    /// The API server behind the proxy.
    pub upstream: UpstreamKind,
    /// How many recorders (on `rec-1`, `rec-2`): 1 or 2.
    pub recorders: usize,
    /// Extra flags for kubescribe-proxy.
    pub proxy_args: Vec<String>,
    /// Dial recorders through the proxy node's SOCKS5 proxy
    /// (`--recorder-dial socks5://…`) instead of the default (`auto`: its LocalAPI).
    pub recorder_dial_socks5: bool,
    /// Also run Tailscale's own API server proxy on node `ts-k8s-proxy`, in front of the same
    /// upstream, allowed to upload to the recorders, with the same grants as kubescribe-proxy.
    pub tailscale_proxy: bool,
    /// Serve kubescribe-proxy's API as plain HTTP (behind the PROXY header) instead of TLS, as
    /// Tailscale's proxy serves it in these tests: for comparing the two on equal terms. The
    /// kubeconfigs of [`TailnetStack::kubeconfig`] assume TLS.
    pub plain_http_proxy: bool,
}

impl TailnetStackOptions {
    /// One recorder in front of `upstream`, default proxy flags.
    pub fn new(upstream: UpstreamKind) -> Self {
        Self {
            upstream,
            recorders: 1,
            proxy_args: Vec::new(),
            recorder_dial_socks5: false,
            tailscale_proxy: false,
            plain_http_proxy: false,
        }
    }
}

/// One kubescribe-recorder on its tailnet node.
#[derive(Debug)]
pub struct TailnetRecorder {
    /// The node it runs on (`rec-1`, `rec-2`).
    pub node: &'static str,
    /// Where it listens locally (`tailscale serve` forwards :80 here).
    pub local_addr: SocketAddr,
    /// Its storage directory.
    pub storage: PathBuf,
    /// Its `--allow-uploaders`.
    uploaders: String,
    /// Flags added after the usual ones.
    extra_args: Vec<String>,
    process: Option<Spawned>,
}

/// The running system on a tailnet.
pub struct TailnetStack {
    /// Scratch space: logs, kubeconfigs, storage, spool.
    pub dir: TempDir,
    /// The tailnet (control and nodes).
    pub tailnet: Tailnet,
    /// The API server behind the proxy.
    pub upstream: Upstream,
    /// kubescribe-proxy.
    pub proxy: Spawned,
    /// Where the proxy listens locally (`tailscale serve` forwards :443 here).
    pub proxy_local: SocketAddr,
    /// The proxy's admin listener (metrics).
    pub admin_addr: SocketAddr,
    /// The CA of the proxy's serving certificate.
    pub proxy_ca_pem: String,
    /// The recorders, in the order control lists them (lowest address first).
    pub recorders: Vec<TailnetRecorder>,
    /// Tailscale's own API server proxy, when [`TailnetStackOptions::tailscale_proxy`].
    pub tailscale_proxy: Option<TailscaleProxy>,
    generation: AtomicU64,
}

impl TailnetStack {
    /// Starts the tailnet, the upstream, the recorders and the proxy, and
    /// sets [`default_grants`](Self::default_grants).
    pub fn start(options: TailnetStackOptions) -> Result<Self, Error> {
        let mut dir = tempfile::Builder::new()
            .prefix("kubescribe-tailnet-e2e-")
            .tempdir()?;
        dir.disable_cleanup(std::env::var_os("KUBESCRIBE_E2E_KEEP").is_some());
        let logs = dir.path().join("logs");
        std::fs::create_dir_all(&logs)?;
        let tailnet = Tailnet::start(NODES)?;
        let upstream = Upstream::start(options.upstream, dir.path(), &logs)?;

        let auditor = tailnet.node("auditor")?.info().user_login.clone();
        let uploaders = if options.tailscale_proxy {
            format!("tag:k8s-proxy,{TS_PROXY_TAG}")
        } else {
            "tag:k8s-proxy".to_owned()
        };
        let mut recorders = Vec::new();
        for node in ["rec-1", "rec-2"]
            .into_iter()
            .take(options.recorders.clamp(1, 2))
        {
            let mut recorder = TailnetRecorder {
                node,
                local_addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), free_port()?),
                storage: dir.path().join(format!("recordings-{node}")),
                uploaders: uploaders.clone(),
                extra_args: Vec::new(),
                process: None,
            };
            recorder.start(&tailnet, &logs, &auditor)?;
            tailnet.node(node)?.serve_tcp(80, recorder.local_addr, 2)?;
            recorders.push(recorder);
        }

        let proxy_node = tailnet.node(PROXY_NODE)?.info().clone();
        let pki = ServingPki::generate_for(
            "kubescribe tailnet proxy test CA",
            &[
                proxy_node.ipv4.to_string(),
                proxy_node.fqdn.trim_end_matches('.').to_owned(),
            ],
        )?;
        let (cert, key) = (dir.path().join("proxy.crt"), dir.path().join("proxy.key"));
        std::fs::write(&cert, &pki.serving.cert_pem)?;
        std::fs::write(&key, &pki.serving.key_pem)?;
        let proxy_local = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), free_port()?);
        let admin_addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), free_port()?);
        let mut args = vec![
            "--listen".to_owned(),
            proxy_local.to_string(),
            "--proxy-protocol".to_owned(),
        ];
        if !options.plain_http_proxy {
            args.extend(["--tls-cert".to_owned(), path_arg(&cert)]);
            args.extend(["--tls-key".to_owned(), path_arg(&key)]);
        }
        args.extend([
            "--kubeconfig".to_owned(),
            path_arg(&upstream.proxy_kubeconfig()),
            "--mode".to_owned(),
            "auth".to_owned(),
            "--localapi-socket".to_owned(),
            path_arg(tailnet.node(PROXY_NODE)?.socket()),
            "--admin-listen".to_owned(),
            admin_addr.to_string(),
            "--spool-dir".to_owned(),
            path_arg(&dir.path().join("spool")),
        ]);
        if options.recorder_dial_socks5 {
            args.push("--recorder-dial".to_owned());
            args.push(format!("socks5://{}", tailnet.node(PROXY_NODE)?.socks5()));
        }
        args.extend(options.proxy_args.iter().cloned());
        let mut proxy = Spawned::start(
            "kubescribe-proxy",
            &workspace_bin("kubescribe-proxy")?,
            &args,
            &[("RUST_LOG", "info")],
            &logs,
        )?;
        proxy.wait_for_tcp(admin_addr, Duration::from_secs(20))?;
        proxy.wait_for_tcp(proxy_local, Duration::from_secs(20))?;
        tailnet.node(PROXY_NODE)?.serve_tcp(443, proxy_local, 2)?;

        let tailscale_proxy = if options.tailscale_proxy {
            let proxy = TailscaleProxy::start(
                &tailnet.control_url(),
                &dir.path().join("ts-k8s-proxy-state"),
                TS_PROXY_NODE,
                &[TS_PROXY_TAG],
                &upstream.proxy_kubeconfig(),
                &logs,
            )?;
            // Every node must know the new node before it calls or is called by it.
            let address = proxy.node.ipv4.to_string();
            for node in tailnet.nodes() {
                wait_known(node, &address)?;
            }
            Some(proxy)
        } else {
            None
        };

        let stack = Self {
            dir,
            tailnet,
            upstream,
            proxy,
            proxy_local,
            admin_addr,
            proxy_ca_pem: pki.ca.cert_pem,
            recorders,
            tailscale_proxy,
            generation: AtomicU64::new(0),
        };
        stack.set_grants(&stack.default_grants()?)?;
        Ok(stack)
    }

    /// The grants of the table in the module documentation.
    pub fn default_grants(&self) -> Result<Value, Error> {
        let alice = self.tailnet.node("alice")?.info().user_login.clone();
        Ok(json!([
            {
                "src": [format!("user:{alice}")],
                "dst": ["tag:k8s-proxy"],
                "app": {KUBERNETES_CAP: [{
                    "impersonate": {"groups": ["system:masters"]},
                    "recorder": ["tag:k8s-recorder"],
                    "enforceRecorder": true,
                    "enableEvents": true
                }]}
            },
            {
                "src": ["tag:ci"],
                "dst": ["tag:k8s-proxy"],
                "keepRecorderTags": true,
                "app": {KUBERNETES_CAP: [
                    {"recorder": ["tag:k8s-recorder"], "enableEvents": true},
                    {"impersonate": {"groups": ["ci-deployers"]}}
                ]}
            }
        ]))
    }

    /// Replaces the tailnet's grants (see `Tailnet::set_grants`) and waits
    /// until the proxy's node has them. With Tailscale's proxy, every grant to
    /// `tag:k8s-proxy` is also a grant to `tag:ts-k8s-proxy`, and its node must
    /// have them too.
    pub fn set_grants(&self, grants: &Value) -> Result<(), Error> {
        let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        let mut grants = grants.as_array().cloned().unwrap_or_default();
        grants.push(json!({
            "src": ["*"],
            "dst": ["tag:k8s-proxy"],
            "app": {GENERATION_CAP: [generation]}
        }));
        if self.tailscale_proxy.is_some() {
            for grant in &mut grants {
                if let Some(dst) = grant["dst"].as_array_mut() {
                    if dst.contains(&json!("tag:k8s-proxy")) && !dst.contains(&json!(TS_PROXY_TAG))
                    {
                        dst.push(json!(TS_PROXY_TAG));
                    }
                }
            }
        }
        self.tailnet.set_grants(&Value::Array(grants))?;
        let reached = |caps: &Value| caps[GENERATION_CAP][0] == json!(generation);
        self.tailnet.wait_for_caps(PROXY_NODE, "eve", reached)?;
        if let Some(proxy) = &self.tailscale_proxy {
            proxy.wait_for_caps(self.tailnet.node("eve")?.ipv4(), reached)?;
        }
        Ok(())
    }

    /// A kubeconfig for `caller` that reaches Tailscale's proxy over the tailnet by address,
    /// through the caller's SOCKS5 proxy: plain HTTP on port 443 (see [`crate::tailscale_proxy`]).
    pub fn tailscale_proxy_kubeconfig(&self, caller: &str) -> Result<PathBuf, Error> {
        let proxy = self
            .tailscale_proxy
            .as_ref()
            .ok_or("the stack runs no Tailscale proxy")?;
        let socks = self.tailnet.node(caller)?.socks5();
        write_kubeconfig(
            &self.dir.path().join(format!("{caller}-ts.kubeconfig")),
            caller,
            &format!("{}:443", proxy.node.ipv4),
            None,
            "a-caller-token-the-proxy-must-strip",
            Some(&format!("socks5://{socks}")),
        )
    }

    /// Runs `kubectl` as `caller` through Tailscale's proxy, with a deadline.
    pub fn kubectl_via_tailscale(
        &self,
        kubectl: &Path,
        caller: &str,
        args: &[&str],
    ) -> Result<Output, Error> {
        let kubeconfig = self.tailscale_proxy_kubeconfig(caller)?;
        with_deadline(
            Command::new(kubectl)
                .arg("--kubeconfig")
                .arg(kubeconfig)
                .arg("--request-timeout=30s")
                .args(args),
            Duration::from_secs(90),
        )
    }

    /// A kubeconfig for `caller` that reaches the proxy over the tailnet through the caller's
    /// SOCKS5 proxy: by MagicDNS name when `by_name`, else by address.
    pub fn kubeconfig(&self, caller: &str, by_name: bool) -> Result<PathBuf, Error> {
        let proxy = self.tailnet.node(PROXY_NODE)?.info();
        let host = if by_name {
            proxy.fqdn.trim_end_matches('.').to_owned()
        } else {
            proxy.ipv4.to_string()
        };
        let socks = self.tailnet.node(caller)?.socks5();
        let suffix = if by_name { "name" } else { "addr" };
        write_kubeconfig(
            &self
                .dir
                .path()
                .join(format!("{caller}-{suffix}.kubeconfig")),
            caller,
            &format!("{host}:443"),
            Some(&self.proxy_ca_pem),
            "a-caller-token-the-proxy-must-strip",
            Some(&format!("socks5://{socks}")),
        )
    }

    /// Runs `kubectl` (e.g. `peers::kubectl()`) as `caller` through the tailnet (by name for
    /// alice, by address otherwise), with a deadline.
    pub fn kubectl(&self, kubectl: &Path, caller: &str, args: &[&str]) -> Result<Output, Error> {
        let kubeconfig = self.kubeconfig(caller, caller == "alice")?;
        with_deadline(
            Command::new(kubectl)
                .arg("--kubeconfig")
                .arg(kubeconfig)
                .arg("--request-timeout=30s")
                .args(args),
            Duration::from_secs(90),
        )
    }

    /// `GET path` from recorder `index` as tailnet node `reader` (through its SOCKS5 proxy and
    /// the recorder node's `tailscale serve`).
    pub fn read_as(&self, reader: &str, index: usize, path: &str) -> Result<Reply, Error> {
        let recorder = self
            .recorders
            .get(index)
            .ok_or_else(|| format!("no recorder {index}"))?;
        let target = SocketAddr::new(IpAddr::V4(self.tailnet.node(recorder.node)?.ipv4()), 80);
        Ok(http::request_via_socks5(
            self.tailnet.node(reader)?.socks5(),
            target,
            None,
            "GET",
            path,
            &[],
            b"",
        )?)
    }

    /// Events stored by recorder `index` (`query` like `verb=list`), read as the auditor.
    pub fn events(&self, index: usize, query: &str) -> Result<Vec<Value>, Error> {
        let path = format!("/api/v1/events?limit=1000&{query}");
        let reply = self.read_as("auditor", index, &path)?;
        if reply.status != 200 {
            return Err(format!("GET {path}: {} {}", reply.status, reply.text()).into());
        }
        Ok(reply.json()?["events"]
            .as_array()
            .cloned()
            .unwrap_or_default())
    }

    /// Waits until recorder `index` has at least `count` events for `query`.
    pub fn wait_for_events(
        &self,
        index: usize,
        query: &str,
        count: usize,
        timeout: Duration,
    ) -> Result<Vec<Value>, Error> {
        let deadline = Instant::now() + timeout;
        loop {
            let events = self.events(index, query)?;
            if events.len() >= count || Instant::now() > deadline {
                return Ok(events);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Sessions stored by recorder `index`.
    pub fn sessions(&self, index: usize) -> Result<Vec<Value>, Error> {
        let reply = self.read_as("auditor", index, "/api/v1/sessions?limit=1000")?;
        if reply.status != 200 {
            return Err(format!("GET /api/v1/sessions: {} {}", reply.status, reply.text()).into());
        }
        Ok(reply.json()?["sessions"]
            .as_array()
            .cloned()
            .unwrap_or_default())
    }

    /// A session's raw cast from recorder `index`.
    pub fn session_cast(&self, index: usize, id: &str) -> Result<Vec<u8>, Error> {
        let reply = self.read_as("auditor", index, &format!("/api/v1/sessions/{id}/cast"))?;
        if reply.status != 200 {
            return Err(format!("GET cast {id}: {} {}", reply.status, reply.text()).into());
        }
        Ok(reply.body)
    }

    /// Session `id` of recorder `index`, checked and played: its cast header must name `caller`
    /// (node, stable ID and login, as WhoIs reports them) and `asciinema cat` must play it; the
    /// played output is returned.
    pub fn play_session(&self, index: usize, id: &str, caller: &NodeInfo) -> Result<String, Error> {
        let cast = self.session_cast(index, id)?;
        let first_line = cast.split(|b| *b == b'\n').next().unwrap_or_default();
        let header: Value = serde_json::from_slice(first_line)?;
        let expected = [
            ("srcNode", json!(caller.fqdn.trim_end_matches('.'))),
            ("srcNodeID", json!(caller.stable_id)),
            ("srcNodeUser", json!(caller.user_login)),
        ];
        for (field, want) in expected {
            if header[field] != want {
                return Err(format!(
                    "cast {id}: {field} is {}, not {want}: {header}",
                    header[field]
                )
                .into());
            }
        }
        let file = self.dir.path().join(format!("{id}.cast"));
        std::fs::write(&file, &cast)?;
        let played = with_deadline(
            Command::new(test_support::peers::asciinema()?)
                .arg("cat")
                .arg(&file),
            Duration::from_secs(30),
        )?;
        if !played.status.success() {
            return Err(format!(
                "asciinema cat {id}: {}{}",
                String::from_utf8_lossy(&played.stdout),
                String::from_utf8_lossy(&played.stderr)
            )
            .into());
        }
        Ok(String::from_utf8_lossy(&played.stdout).into_owned())
    }

    /// Stops recorder `index`'s process (SIGTERM).
    pub fn stop_recorder(&mut self, index: usize) -> Result<(), Error> {
        if let Some(mut process) = self.recorder_process(index)?.take() {
            process.stop(Duration::from_secs(10))?;
        }
        Ok(())
    }

    /// Kills recorder `index`'s process at once (SIGKILL), as a crash would.
    pub fn kill_recorder(&mut self, index: usize) -> Result<(), Error> {
        if let Some(mut process) = self.recorder_process(index)?.take() {
            process.kill()?;
        }
        Ok(())
    }

    fn recorder_process(&mut self, index: usize) -> Result<&mut Option<Spawned>, Error> {
        Ok(&mut self
            .recorders
            .get_mut(index)
            .ok_or_else(|| format!("no recorder {index}"))?
            .process)
    }

    /// Starts recorder `index`'s process again, on the same address and storage.
    pub fn start_recorder(&mut self, index: usize) -> Result<(), Error> {
        let auditor = self.tailnet.node("auditor")?.info().user_login.clone();
        let logs = self.dir.path().join("logs");
        let recorder = self
            .recorders
            .get_mut(index)
            .ok_or_else(|| format!("no recorder {index}"))?;
        recorder.start(&self.tailnet, &logs, &auditor)
    }

    /// Recorder `index`'s process ID, while it runs (to stop and continue it).
    pub fn recorder_pid(&self, index: usize) -> Option<u32> {
        self.recorders
            .get(index)?
            .process
            .as_ref()
            .map(Spawned::pid)
    }

    /// Restarts recorder `index` with `--allow-uploaders uploaders` (e.g. to refuse one proxy)
    /// and `extra_args` (e.g. `--ack-interval 45s`), on the same address and storage.
    pub fn restart_recorder_with(
        &mut self,
        index: usize,
        uploaders: &str,
        extra_args: &[&str],
    ) -> Result<(), Error> {
        self.stop_recorder(index)?;
        let recorder = self
            .recorders
            .get_mut(index)
            .ok_or_else(|| format!("no recorder {index}"))?;
        recorder.uploaders = uploaders.to_owned();
        recorder.extra_args = extra_args.iter().map(|a| (*a).to_owned()).collect();
        self.start_recorder(index)
    }

    /// The proxy's Prometheus metrics text.
    pub fn proxy_metrics(&self) -> Result<String, Error> {
        Ok(http::get(self.admin_addr, "/metrics")?.text())
    }
}

impl TailnetRecorder {
    fn start(&mut self, tailnet: &Tailnet, logs: &Path, auditor: &str) -> Result<(), Error> {
        if self.process.is_some() {
            return Ok(());
        }
        let mut args = vec![
            "--listen".to_owned(),
            self.local_addr.to_string(),
            "--proxy-protocol".to_owned(),
            "--localapi-socket".to_owned(),
            path_arg(tailnet.node(self.node)?.socket()),
            "--allow-uploaders".to_owned(),
            self.uploaders.clone(),
            "--allow-readers".to_owned(),
            format!("user:{auditor}"),
            "--admin-listen".to_owned(),
            "off".to_owned(),
            "--ui".to_owned(),
            "--dst".to_owned(),
            path_arg(&self.storage),
            "--signing-key".to_owned(),
            path_arg(&self.storage.with_extension("signing-key")),
            "--generate-signing-key".to_owned(),
        ];
        args.extend(self.extra_args.iter().cloned());
        let mut process = Spawned::start(
            &format!("kubescribe-recorder-{}", self.node),
            &workspace_bin("kubescribe-recorder")?,
            &args,
            &[("RUST_LOG", "info")],
            logs,
        )?;
        process.wait_for_tcp(self.local_addr, Duration::from_secs(30))?;
        self.process = Some(process);
        Ok(())
    }

    /// The recorder's log so far.
    pub fn log(&self) -> String {
        self.process.as_ref().map(Spawned::log).unwrap_or_default()
    }
}

/// Waits until `node`'s tailscaled can say who is at `address` (a node that joined after it).
fn wait_known(node: &test_support::tailnet::Node, address: &str) -> Result<(), Error> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if node.tailscale(&["whois", "--json", address]).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Err(format!("{} never learned of {address}", node.hostname()).into())
}
