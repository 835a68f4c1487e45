//! A real tailnet on one machine: Tailscale's test control server with an
//! in-process DERP relay (`tailnet-control`, built from `tailscale.com`
//! v1.102.5 with our grants API, see `tests/peers-go/tailscale`) and real
//! tailscaled nodes in userspace-networking mode, each with its own state
//! directory, LocalAPI socket, SOCKS5 and HTTP outbound proxies.
//!
//! Start it only inside a sealed network namespace ([`crate::netns`]):
//! [`Tailnet::start`] refuses to run outside one, so tailscaled can never
//! reach Tailscale's public servers. Nodes join with
//! `tailscale up --login-server=<control>`; tags come from
//! `--advertise-tags`, each untagged node is a user of its own
//! (`user-<ID>@fake-control.example.net`); grants are set through the
//! control server ([`Tailnet::set_grants`]) and reach the nodes within
//! seconds.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

use crate::net::free_port;
use crate::netns::{last_lines, INSIDE_ENV};
use crate::process::{with_deadline, Spawned};
use crate::{http, peers, Error};

/// One tailscaled that joins no tailnet, in userspace-networking mode, alone in
/// a network namespace of its own (`unshare -n`): for checking what its
/// LocalAPI accepts and answers. Killed on drop.
#[derive(Debug)]
pub struct LoneTailscaled {
    process: Spawned,
    dir: TempDir,
}

impl LoneTailscaled {
    /// Starts `binary` (e.g. [`peers::tailscaled`] or [`peers::tailscaled_1_96`]).
    pub fn start(binary: &Path) -> Result<Self, Error> {
        let dir = tempfile::tempdir().map_err(Error::io("creating tailscaled's directory"))?;
        let args = vec![
            "-n".to_owned(),
            binary.display().to_string(),
            "--tun=userspace-networking".to_owned(),
            format!("--statedir={}", dir.path().display()),
            format!("--socket={}", dir.path().join("ts.sock").display()),
            "--no-logs-no-support".to_owned(),
        ];
        let process = Spawned::start("tailscaled", Path::new("unshare"), &args, &[], dir.path())?;
        Ok(Self { process, dir })
    }

    /// Its LocalAPI socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("ts.sock")
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        self.process.log()
    }

    /// Whether it is still running (false: it died; see [`log`](Self::log)).
    pub fn is_running(&mut self) -> bool {
        self.process.is_running()
    }

    /// Waits until `answers` (a probe of the LocalAPI with the caller's own
    /// client) says it answered, for up to a minute; fails at once, with
    /// the log, if tailscaled dies.
    pub async fn wait_ready<F, Fut>(&mut self, mut answers: F) -> Result<(), Error>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let timeout = Duration::from_secs(60);
        let deadline = Instant::now() + timeout;
        loop {
            if !self.is_running() {
                return Err(Error::Namespace(format!(
                    "tailscaled exited before its LocalAPI answered:\n{}",
                    self.log()
                )));
            }
            if answers().await {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(Error::Timeout {
                    name: "tailscaled".to_owned(),
                    waiting_for: "its LocalAPI answering".to_owned(),
                    timeout,
                    log_tail: self.process.log_tail(),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// How long a node may take to join, or to come back after a restart.
const JOIN_TIMEOUT: Duration = Duration::from_secs(60);

/// One node to start: its hostname and the tags it advertises (none: a
/// user-owned node).
#[derive(Debug, Clone, Copy)]
pub struct NodeSpec {
    /// The node's hostname (its MagicDNS name is `<hostname>.<suffix>.`).
    pub hostname: &'static str,
    /// The tags it advertises (`tag:…`).
    pub tags: &'static [&'static str],
}

/// What the control server says about a node once it joined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    /// The MagicDNS name with its trailing dot, as WhoIs reports it.
    pub fqdn: String,
    /// The numeric node ID.
    pub id: i64,
    /// The stable node ID (`TESTCTRL…`).
    pub stable_id: String,
    /// The node's IPv4 tailnet address.
    pub ipv4: Ipv4Addr,
    /// Every tailnet address (IPv4 and IPv6), as text.
    pub addresses: Vec<String>,
    /// The node's tags.
    pub tags: Vec<String>,
    /// The owning user's ID.
    pub user_id: i64,
    /// The owning user's login name.
    pub user_login: String,
}

impl NodeInfo {
    fn unknown() -> Self {
        Self {
            fqdn: String::new(),
            id: 0,
            stable_id: String::new(),
            ipv4: Ipv4Addr::UNSPECIFIED,
            addresses: Vec::new(),
            tags: Vec::new(),
            user_id: 0,
            user_login: String::new(),
        }
    }
}

/// One tailscaled node.
#[derive(Debug)]
pub struct Node {
    spec: NodeSpec,
    dir: PathBuf,
    socket: PathBuf,
    socks5: SocketAddr,
    http_proxy: SocketAddr,
    process: Option<Spawned>,
    /// Filled in once the node joined ([`NodeInfo::id`] 0 until then).
    info: NodeInfo,
}

impl Node {
    /// The hostname it was started with.
    pub fn hostname(&self) -> &str {
        self.spec.hostname
    }

    /// Its LocalAPI unix socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Its SOCKS5 proxy into the tailnet (what kubectl's `proxy-url` names).
    pub fn socks5(&self) -> SocketAddr {
        self.socks5
    }

    /// Its HTTP CONNECT proxy into the tailnet.
    pub fn http_proxy(&self) -> SocketAddr {
        self.http_proxy
    }

    /// What control knows of it.
    pub fn info(&self) -> &NodeInfo {
        &self.info
    }

    /// Its IPv4 tailnet address.
    pub fn ipv4(&self) -> Ipv4Addr {
        self.info().ipv4
    }

    /// Runs the `tailscale` CLI against this node (`tailscale --socket=… ARGS`)
    /// and returns its stdout; a failure is an error with its output.
    pub fn tailscale(&self, args: &[&str]) -> Result<String, Error> {
        let output = with_deadline(
            Command::new(peers::tailscale()?)
                .arg(format!("--socket={}", self.socket.display()))
                .args(args),
            Duration::from_secs(60),
        )?;
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        if output.status.success() {
            Ok(stdout)
        } else {
            Err(Error::Command {
                what: format!("tailscale {} (node {})", args.join(" "), self.spec.hostname),
                status: output.status.to_string(),
                output: last_lines(
                    &format!("{stdout}\n{}", String::from_utf8_lossy(&output.stderr)),
                    30,
                ),
            })
        }
    }

    /// `tailscale serve --bg --tcp=PORT --proxy-protocol=VERSION tcp://TARGET`:
    /// TCP to `port` on this node's tailnet addresses is forwarded to
    /// `target`, prefixed by a PROXY protocol header naming the tailnet
    /// caller (version 0: none).
    pub fn serve_tcp(
        &self,
        port: u16,
        target: SocketAddr,
        proxy_protocol: u8,
    ) -> Result<(), Error> {
        let mut args = vec![
            "serve".to_owned(),
            "--bg".to_owned(),
            format!("--tcp={port}"),
        ];
        if proxy_protocol != 0 {
            args.push(format!("--proxy-protocol={proxy_protocol}"));
        }
        args.push(format!("tcp://{target}"));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.tailscale(&args).map(drop)
    }

    /// tailscaled's process ID, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(Spawned::pid)
    }

    /// Whether tailscaled is running.
    pub fn is_running(&mut self) -> bool {
        self.process.as_mut().is_some_and(Spawned::is_running)
    }

    /// Stops tailscaled (SIGTERM, then SIGKILL), keeping its state: the
    /// node is offline until [`start`](Self::start).
    pub fn stop(&mut self) -> Result<(), Error> {
        if let Some(mut process) = self.process.take() {
            process.stop(Duration::from_secs(10))?;
        }
        Ok(())
    }

    /// Starts (or restarts) tailscaled with its state, ports and socket, and
    /// waits until it is running on the tailnet again.
    pub fn start(&mut self) -> Result<(), Error> {
        self.stop()?;
        let _ = std::fs::remove_file(&self.socket);
        let args = vec![
            "--tun=userspace-networking".to_owned(),
            format!("--statedir={}", self.dir.display()),
            format!("--socket={}", self.socket.display()),
            "--no-logs-no-support".to_owned(),
            "--port=0".to_owned(),
            format!("--socks5-server={}", self.socks5),
            format!("--outbound-http-proxy-listen={}", self.http_proxy),
        ];
        let mut process = Spawned::start(
            &format!("tailscaled-{}", self.spec.hostname),
            &peers::tailscaled()?,
            &args,
            &[],
            &self.dir,
        )?;
        process.wait_for_path(&self.socket, Duration::from_secs(20))?;
        self.process = Some(process);
        if self.info.id != 0 {
            self.wait_running()?;
        }
        Ok(())
    }

    /// Waits until tailscaled reports `BackendState: Running`.
    pub fn wait_running(&mut self) -> Result<(), Error> {
        let socket = self.socket.clone();
        let tailscale = peers::tailscale()?;
        let process = self.process.as_mut().ok_or_else(|| {
            Error::Namespace(format!(
                "tailscaled of {} is not started",
                self.spec.hostname
            ))
        })?;
        process.wait_until(
            "reporting BackendState Running",
            JOIN_TIMEOUT,
            Duration::from_millis(200),
            || backend_state(&tailscale, &socket).as_deref() == Some("Running"),
        )
    }

    /// The tail of tailscaled's log.
    pub fn log_tail(&self) -> String {
        self.process
            .as_ref()
            .map(Spawned::log_tail)
            .unwrap_or_default()
    }

    fn join(&mut self, control_url: &str) -> Result<(), Error> {
        let mut args = vec![
            "up".to_owned(),
            format!("--login-server={control_url}"),
            format!("--hostname={}", self.spec.hostname),
            "--timeout=60s".to_owned(),
        ];
        if !self.spec.tags.is_empty() {
            args.push(format!("--advertise-tags={}", self.spec.tags.join(",")));
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.tailscale(&args).map_err(|e| {
            Error::Namespace(format!("{e}\ntailscaled's log:\n{}", self.log_tail()))
        })?;
        Ok(())
    }
}

fn backend_state(tailscale: &Path, socket: &Path) -> Option<String> {
    let output = with_deadline(
        Command::new(tailscale)
            .arg(format!("--socket={}", socket.display()))
            .args(["status", "--json", "--peers=false"]),
        Duration::from_secs(10),
    )
    .ok()?;
    let status: Value = serde_json::from_slice(&output.stdout).ok()?;
    status["BackendState"].as_str().map(str::to_owned)
}

/// A running tailnet: the control server and its nodes, all stopped on drop.
#[derive(Debug)]
pub struct Tailnet {
    dir: TempDir,
    control: Spawned,
    control_addr: SocketAddr,
    nodes: Vec<Node>,
}

impl Tailnet {
    /// Starts control and one tailscaled per spec, joins them all, and waits
    /// until every node has every other one in its netmap. Fails outside a
    /// private network namespace ([`crate::netns::run_isolated`]).
    pub fn start(specs: &[NodeSpec]) -> Result<Self, Error> {
        if std::env::var_os(INSIDE_ENV).is_none() {
            return Err(Error::Namespace(
                "a tailnet runs only inside a sealed network namespace: call \
                 test_support::netns::run_isolated first"
                    .to_owned(),
            ));
        }
        let mut dir = tempfile::Builder::new()
            .prefix("kubescribe-tailnet-")
            .tempdir()
            .map_err(Error::io("creating the tailnet's directory"))?;
        dir.disable_cleanup(std::env::var_os("KUBESCRIBE_E2E_KEEP").is_some());
        let control_port = free_port()?;
        let control_addr = SocketAddr::from((Ipv4Addr::LOCALHOST, control_port));
        let mut control = Spawned::start(
            "tailnet-control",
            &peers::tailnet_control()?,
            &[format!("-listen={control_addr}")],
            &[],
            dir.path(),
        )?;
        control.wait_for_tcp(control_addr, Duration::from_secs(20))?;
        let control_url = format!("http://{control_addr}");

        let mut nodes = Vec::new();
        for spec in specs {
            let node_dir = dir.path().join(spec.hostname);
            std::fs::create_dir_all(&node_dir)
                .map_err(Error::io(format!("creating {}", node_dir.display())))?;
            let mut node = Node {
                spec: *spec,
                socket: node_dir.join("tailscaled.sock"),
                dir: node_dir,
                socks5: SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()?)),
                http_proxy: SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()?)),
                process: None,
                info: NodeInfo::unknown(),
            };
            node.start()?;
            nodes.push(node);
        }
        for node in &mut nodes {
            node.join(&control_url)?;
        }
        let mut tailnet = Self {
            dir,
            control,
            control_addr,
            nodes,
        };
        tailnet.refresh_info()?;
        tailnet.wait_meshed()?;
        Ok(tailnet)
    }

    /// The tailnet's scratch directory (logs, node state).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The control server's URL (what `--login-server` takes).
    pub fn control_url(&self) -> String {
        format!("http://{}", self.control_addr)
    }

    /// Node `hostname`.
    pub fn node(&self, hostname: &str) -> Result<&Node, Error> {
        self.nodes
            .iter()
            .find(|n| n.spec.hostname == hostname)
            .ok_or_else(|| Error::Namespace(format!("no tailnet node {hostname}")))
    }

    /// Node `hostname`, to stop or restart it.
    pub fn node_mut(&mut self, hostname: &str) -> Result<&mut Node, Error> {
        self.nodes
            .iter_mut()
            .find(|n| n.spec.hostname == hostname)
            .ok_or_else(|| Error::Namespace(format!("no tailnet node {hostname}")))
    }

    /// Every node.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// Replaces the tailnet's grants. Each is an object
    /// `{"src": [..], "dst": [..], "app": {"<capability>": [values]}}` whose
    /// selectors are `"*"`, `"tag:NAME"`, `"user:LOGIN"` or `"host:HOSTNAME"`;
    /// as a real control server does, `recorder` tags in a
    /// `tailscale.com/cap/kubernetes` value are resolved into `recorderAddrs`
    /// unless the grant has `"keepRecorderTags": true`. Nodes reconnect to
    /// control and have the new grants within a few seconds.
    pub fn set_grants(&self, grants: &Value) -> Result<(), Error> {
        let body = serde_json::to_vec(grants).map_err(|source| Error::Json {
            what: "the grants".to_owned(),
            text: grants.to_string(),
            source,
        })?;
        let reply = http::request(
            self.control_addr,
            None,
            "PUT",
            "/kubescribe/grants",
            &[("Content-Type", "application/json")],
            &body,
        )?;
        if reply.status != 200 {
            return Err(Error::Command {
                what: "PUT /kubescribe/grants".to_owned(),
                status: reply.status.to_string(),
                output: reply.text(),
            });
        }
        Ok(())
    }

    /// Waits until `observer`'s tailscaled reports, for `peer`'s address,
    /// a WhoIs whose capability map satisfies `ready` (grants arrive a few
    /// seconds after [`set_grants`](Self::set_grants)).
    pub fn wait_for_caps(
        &self,
        observer: &str,
        peer: &str,
        mut ready: impl FnMut(&Value) -> bool,
    ) -> Result<(), Error> {
        let observer = self.node(observer)?;
        let address = self.node(peer)?.ipv4().to_string();
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut last = Value::Null;
        while Instant::now() < deadline {
            if let Ok(text) = observer.tailscale(&["whois", "--json", &address]) {
                if let Ok(whois) = serde_json::from_str::<Value>(&text) {
                    if ready(&whois["CapMap"]) {
                        return Ok(());
                    }
                    last = whois["CapMap"].clone();
                }
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Err(Error::Timeout {
            name: format!("tailscaled on {}", observer.spec.hostname),
            waiting_for: format!(
                "the expected grants from {peer} ({address}); last CapMap: {last}"
            ),
            timeout: Duration::from_secs(30),
            log_tail: self.control.log_tail(),
        })
    }

    fn refresh_info(&mut self) -> Result<(), Error> {
        let reply = http::get(self.control_addr, "/kubescribe/nodes")?;
        let nodes = reply.json()?;
        for node in &mut self.nodes {
            let found = nodes
                .as_array()
                .into_iter()
                .flatten()
                .find(|n| n["hostname"] == node.spec.hostname)
                .ok_or_else(|| {
                    Error::Namespace(format!(
                        "control does not list node {} after it joined: {nodes}",
                        node.spec.hostname
                    ))
                })?;
            node.info = node_info(found)?;
        }
        Ok(())
    }

    /// Waits until every node lists every other node as a peer.
    fn wait_meshed(&mut self) -> Result<(), Error> {
        let expected = self.nodes.len().saturating_sub(1);
        let tailscale = peers::tailscale()?;
        for node in &mut self.nodes {
            let socket = node.socket.clone();
            let process = node.process.as_mut().ok_or_else(|| {
                Error::Namespace(format!(
                    "tailscaled of {} is not started",
                    node.spec.hostname
                ))
            })?;
            process.wait_until(
                &format!("seeing all {expected} peers"),
                JOIN_TIMEOUT,
                Duration::from_millis(200),
                || peer_count(&tailscale, &socket) >= expected,
            )?;
        }
        Ok(())
    }
}

fn peer_count(tailscale: &Path, socket: &Path) -> usize {
    let Ok(output) = with_deadline(
        Command::new(tailscale)
            .arg(format!("--socket={}", socket.display()))
            .args(["status", "--json"]),
        Duration::from_secs(10),
    ) else {
        return 0;
    };
    serde_json::from_slice::<Value>(&output.stdout)
        .ok()
        .and_then(|status| status["Peer"].as_object().map(serde_json::Map::len))
        .unwrap_or(0)
}

fn node_info(node: &Value) -> Result<NodeInfo, Error> {
    let strings = |key: &str| -> Vec<String> {
        node[key]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect()
    };
    let addresses = strings("addresses");
    let ipv4 = addresses
        .iter()
        .find_map(|a| a.parse::<Ipv4Addr>().ok())
        .ok_or_else(|| Error::Namespace(format!("node without an IPv4 address: {node}")))?;
    Ok(NodeInfo {
        fqdn: node["name"].as_str().unwrap_or_default().to_owned(),
        id: node["id"].as_i64().unwrap_or_default(),
        stable_id: node["stableId"].as_str().unwrap_or_default().to_owned(),
        ipv4,
        addresses,
        tags: strings("tags"),
        user_id: node["userId"].as_i64().unwrap_or_default(),
        user_login: node["userLogin"].as_str().unwrap_or_default().to_owned(),
    })
}
