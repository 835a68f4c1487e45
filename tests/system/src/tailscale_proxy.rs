//! Tailscale's own Kubernetes API server proxy (`tailscale.com/k8s-operator/api-proxy`
//! v1.102.5) as one more node of a test tailnet: the `tailscale-k8s-proxy` peer
//! (`tests/peers-go/tailscale/tsproxy`), a tsnet node that runs the proxy as Tailscale's
//! `cmd/k8s-proxy` does outside a cluster (plain HTTP on `localhost:80` behind PROXY protocol
//! v2) and forwards its tailnet port 443 there with PROXY protocol v2.
//!
//! Callers reach it with plain HTTP on port 443 (no TLS: Tailscale's proxy with `https=false`
//! relies on `TerminateTLS` in a Tailscale Service serve config, which needs Let's Encrypt
//! certificates a sealed tailnet cannot get). It takes grants like kubescribe-proxy does
//! (`tailscale.com/cap/kubernetes`), sends events to the recorders named by `recorderAddrs`
//! (`HEAD` then `POST /v2/event`, one connection each) and sessions to `/v2/record` or
//! `/record`.
//!
//! Nothing here assumes a test: a benchmark binary starts it the same way, inside the tailnet's
//! network namespace. Only one can run per network namespace (it binds `localhost:80`).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;
use test_support::http;
use test_support::net::free_port;
use test_support::peers;
use test_support::process::Spawned;

use crate::Error;

/// The tag the proxy's node advertises.
pub const TS_PROXY_TAG: &str = "tag:ts-k8s-proxy";

/// The proxy's node hostname.
pub const TS_PROXY_NODE: &str = "ts-k8s-proxy";

/// Where Tailscale's proxy listens (fixed in `apiproxy.Run` when `https=false`).
pub const TS_PROXY_LOCAL: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 80);

/// How long the node may take to join and start serving.
const START_TIMEOUT: Duration = Duration::from_secs(90);

/// The proxy's tailnet node as its tsnet server reports itself.
#[derive(Debug, Clone)]
pub struct TsProxyNode {
    /// The node's IPv4 tailnet address.
    pub ipv4: Ipv4Addr,
    /// Its MagicDNS name with the trailing dot.
    pub fqdn: String,
    /// Its stable node ID.
    pub stable_id: String,
}

/// A running Tailscale API server proxy.
pub struct TailscaleProxy {
    /// Its tailnet node.
    pub node: TsProxyNode,
    /// Its `/self` and `/whois` listener (loopback).
    pub debug_addr: SocketAddr,
    process: Spawned,
}

impl TailscaleProxy {
    /// Joins a tsnet node named `hostname` with `tags` to the tailnet of `control_url` (state
    /// under `state_dir`), runs Tailscale's proxy in auth mode in front of the API server of
    /// `kubeconfig`, and waits until it serves. Its log goes to `logs`.
    pub fn start(
        control_url: &str,
        state_dir: &Path,
        hostname: &str,
        tags: &[&str],
        kubeconfig: &Path,
        logs: &Path,
    ) -> Result<Self, Error> {
        std::fs::create_dir_all(state_dir)?;
        let debug_addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), free_port()?);
        let args = vec![
            format!("-control-url={control_url}"),
            format!("-state-dir={}", state_dir.display()),
            format!("-hostname={hostname}"),
            format!("-tags={}", tags.join(",")),
            format!("-kubeconfig={}", kubeconfig.display()),
            "-mode=auth".to_owned(),
            format!("-debug-listen={debug_addr}"),
        ];
        let mut process = Spawned::start(
            "tailscale-k8s-proxy",
            &peers::tailscale_k8s_proxy()?,
            &args,
            &[("TS_NO_LOGS_NO_SUPPORT", "true")],
            logs,
        )?;
        process.wait_for_tcp(debug_addr, START_TIMEOUT)?;
        process.wait_for_tcp(TS_PROXY_LOCAL, START_TIMEOUT)?;
        let me = http::get(debug_addr, "/self")?.json()?;
        let node = TsProxyNode {
            ipv4: me["ipv4"]
                .as_str()
                .and_then(|a| a.parse().ok())
                .ok_or_else(|| format!("tailscale-k8s-proxy has no IPv4 address: {me}"))?,
            fqdn: me["fqdn"].as_str().unwrap_or_default().to_owned(),
            stable_id: me["stableId"].as_str().unwrap_or_default().to_owned(),
        };
        Ok(Self {
            node,
            debug_addr,
            process,
        })
    }

    /// What the proxy's node says about the tailnet address `addr` (tailscaled's `WhoIs`
    /// response JSON), or `None` when it does not know it.
    pub fn whois(&self, addr: Ipv4Addr) -> Option<Value> {
        let reply = http::get(self.debug_addr, &format!("/whois?addr={addr}")).ok()?;
        (reply.status == 200).then(|| reply.json().ok()).flatten()
    }

    /// Waits until the proxy's node reports, for `peer`, a capability map that satisfies
    /// `ready` (grants reach tsnet nodes a few seconds after they are set).
    pub fn wait_for_caps(
        &self,
        peer: Ipv4Addr,
        mut ready: impl FnMut(&Value) -> bool,
    ) -> Result<(), Error> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut last = Value::Null;
        while Instant::now() < deadline {
            if let Some(whois) = self.whois(peer) {
                if ready(&whois["CapMap"]) {
                    return Ok(());
                }
                last = whois["CapMap"].clone();
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Err(format!(
            "Tailscale's proxy node never had the expected grants from {peer}; last CapMap: {last}"
        )
        .into())
    }

    /// The proxy's log so far (zap JSON lines).
    pub fn log(&self) -> String {
        self.process.log()
    }

    /// Its log file.
    pub fn log_path(&self) -> PathBuf {
        self.process.log_path().to_path_buf()
    }

    /// Tailscale's client metric `name` in the proxy's process (0 until first counted):
    /// `k8s_auth_proxy_requests_proxied`, `k8s_auth_proxy_api_request_event_recording_attempted`,
    /// `k8s_auth_proxy_session_recordings_attempted`, `k8s_auth_proxy_session_recordings_uploaded`.
    pub fn metric(&self, name: &str) -> Result<i64, Error> {
        let metrics = http::get(self.debug_addr, "/metrics")?.json()?;
        Ok(metrics[name].as_i64().unwrap_or(0))
    }

    /// Its log lines that report a failure to record (an event or a session).
    pub fn recording_failures(&self) -> Vec<String> {
        self.log()
            .lines()
            .filter(|l| {
                l.contains("error recording Kubernetes API request")
                    || l.contains("failed to send event")
                    || l.contains("error starting recording")
            })
            .map(str::to_owned)
            .collect()
    }

    /// Its process ID.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Stops it (SIGTERM).
    pub fn stop(&mut self) -> Result<(), Error> {
        Ok(self.process.stop(Duration::from_secs(15))?)
    }
}
