//! The binaries as users run them, for the flood: the simulator as the API server, the recorder
//! on disk with its upload and admin listeners (uploaders by WhoIs from an identity file), and the
//! proxy serving TLS on its API listener, with its admin listener, recording every request of its
//! caller fail closed. Each listener is a [`Target`]: where it is, which process owns it, and the
//! legitimate request that must keep being answered.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use test_support::http::{self, Tls};
use test_support::net::free_port;
use test_support::pki::ServingPki;
use test_support::process::{workspace_bin, Spawned};

use crate::upstream::{Upstream, UpstreamKind};
use crate::Error;

/// The legitimate request a listener must keep answering during a flood.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// `GET /api/v1/namespaces/default/pods/demo` through the proxy, over TLS, as an identified
    /// caller whose requests are recorded fail closed (so the recorder is on its path).
    ProxyGet,
    /// `POST /v2/event`: one event stored durably, as the proxy uploads it.
    PostEvent,
    /// `GET /healthz` on an admin listener.
    Healthz,
}

/// One listener under test.
#[derive(Debug, Clone)]
pub struct Target {
    /// How the report names it.
    pub name: &'static str,
    /// Where it listens.
    pub addr: SocketAddr,
    /// The process that owns it (its file descriptors and RSS are measured).
    pub pid: u32,
    /// The CA of its TLS certificate (PEM), when it serves TLS.
    pub tls_ca: Option<String>,
    /// Its legitimate request.
    pub probe: Probe,
    /// Most connections it keeps being set up (the set-up pool's bound).
    pub max_pending: usize,
    /// Where the connections it closed itself are counted.
    pub counters: ClosedCounters,
}

/// Where a listener counts the connections it closed itself (refused over a limit, timed out,
/// evicted): `<prefix>_connections_closed_total{listener, reason}` on its process's admin
/// `/metrics`.
#[derive(Debug, Clone)]
pub struct ClosedCounters {
    /// The owning process's admin listener.
    pub admin: SocketAddr,
    /// The metric's full name.
    pub metric: &'static str,
    /// The `listener` label.
    pub listener: &'static str,
}

impl ClosedCounters {
    /// The counts now, by reason.
    pub fn read(&self) -> Result<BTreeMap<String, u64>, Error> {
        let reply = http::get(self.admin, "/metrics")?;
        if reply.status != 200 {
            return Err(format!("{}/metrics answered {}", self.admin, reply.status).into());
        }
        Ok(closed_counts(&reply.text(), self.metric, self.listener))
    }
}

/// The samples of `metric` with label `listener="<listener>"` in a Prometheus text page, by their
/// `reason` label.
pub fn closed_counts(page: &str, metric: &str, listener: &str) -> BTreeMap<String, u64> {
    let want = format!("listener=\"{listener}\"");
    let mut counts = BTreeMap::new();
    for line in page.lines() {
        let Some(rest) = line.strip_prefix(metric) else {
            continue;
        };
        let Some((labels, value)) = rest.strip_prefix('{').and_then(|r| r.split_once("} ")) else {
            continue;
        };
        if !labels.split(',').any(|l| l == want) {
            continue;
        }
        let reason = labels
            .split(',')
            .find_map(|l| l.strip_prefix("reason=\""))
            .map(|r| r.trim_end_matches('"').to_owned())
            .unwrap_or_default();
        if let Ok(n) = value.trim().parse::<f64>() {
            *counts.entry(reason).or_insert(0) += n as u64;
        }
    }
    counts
}

const EVENT: &str = r#"{"type":"kubernetes-api-request","id":"","timestamp":1767225600,"userAgent":"flood-probe","request":{"method":"GET","path":"/api/v1/namespaces/default/pods/demo","body":"","queryParameters":{}},"kubernetes":{"IsResourceRequest":true,"Path":"/api/v1/namespaces/default/pods/demo","Verb":"get","APIPrefix":"api","APIGroup":"","APIVersion":"v1","Namespace":"default","Resource":"pods","Subresource":"","Name":"demo","Parts":["pods","demo"],"FieldSelector":"","LabelSelector":""},"source":{"node":"probe.tail1234.ts.net","nodeID":"nProbe","nodeUserID":4242,"nodeUser":"alice@example.com"},"destination":{"node":"","nodeID":""}}"#;

impl Target {
    /// The TLS client for its legitimate request (built once: building it is not the server's
    /// latency).
    pub fn client_tls(&self) -> Result<Option<Tls>, Error> {
        Ok(match &self.tls_ca {
            Some(ca) => Some(Tls::trusting(ca)?),
            None => None,
        })
    }

    /// Sends the legitimate request once (over `tls`, from [`Target::client_tls`]): `Ok` when it
    /// was answered `200`.
    pub fn probe(&self, tls: Option<&Tls>) -> Result<(), Error> {
        let reply = match self.probe {
            Probe::ProxyGet => http::request(
                self.addr,
                tls,
                "GET",
                "/api/v1/namespaces/default/pods/demo",
                &[],
                b"",
            )?,
            Probe::PostEvent => http::request(
                self.addr,
                None,
                "POST",
                "/v2/event",
                &[("Content-Type", "application/json")],
                EVENT.as_bytes(),
            )?,
            Probe::Healthz => http::get(self.addr, "/healthz")?,
        };
        if reply.status == 200 {
            Ok(())
        } else {
            Err(format!("{} answered {}: {}", self.name, reply.status, reply.text()).into())
        }
    }
}

/// The set-up pool of an admin listener (`ConnectionLimits::admin()`).
const ADMIN_MAX_PENDING: usize = 64;

/// The running binaries.
pub struct Servers {
    /// The API server behind the proxy.
    pub upstream: Upstream,
    /// The recorder.
    pub recorder: Spawned,
    /// The proxy.
    pub proxy: Spawned,
    targets: Vec<Target>,
}

impl Servers {
    /// Starts the simulator, the recorder and the proxy (the workspace's binaries beside the running
    /// executable: release ones from a release build), with scratch files and logs under `dir`.
    /// `limits` are connection-limit flags given to both binaries (their main listeners); `None`
    /// leaves the defaults, as users run them. `max_pending` is what `limits` set for
    /// `--max-pending-connections` (1024 by default).
    pub fn start(dir: &Path, limits: &[String], max_pending: usize) -> Result<Self, Error> {
        let logs = dir.join("logs");
        std::fs::create_dir_all(&logs)?;
        let upstream = Upstream::start(UpstreamKind::Sim, dir, &logs)?;
        let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let recorder_addr = SocketAddr::new(loopback, free_port()?);
        let recorder_admin = SocketAddr::new(loopback, free_port()?);
        let proxy_addr = SocketAddr::new(loopback, free_port()?);
        let proxy_admin = SocketAddr::new(loopback, free_port()?);
        let path = |p: &Path| p.to_string_lossy().into_owned();

        // Who is who: only 127.0.0.1 (the probes, and the proxy as an uploader) has an identity;
        // the flood comes from 127.0.0.10 and up and never gets as far as being identified.
        let uploaders = dir.join("recorder-identities.yaml");
        std::fs::write(
            &uploaders,
            "entries:\n  - name: proxy\n    sources: [\"127.0.0.1/32\"]\n    Node: {ID: 7, StableID: nProxy, Name: proxy.tail1234.ts.net., User: 1, Tags: [\"tag:k8s\"]}\n    UserProfile: {ID: 1, LoginName: tagged-devices}\n",
        )?;
        let callers = dir.join("proxy-identities.yaml");
        std::fs::write(
            &callers,
            format!(
                "entries:\n  - name: alice\n    sources: [\"127.0.0.1/32\"]\n    Node: {{ID: 8, StableID: nAlice, Name: alice-laptop.tail1234.ts.net., User: 42}}\n    UserProfile: {{ID: 42, LoginName: alice@example.com}}\n    CapMap:\n      tailscale.com/cap/kubernetes:\n        - {{impersonate: {{groups: [\"system:masters\"]}}, recorderAddrs: [\"{recorder_addr}\"], enforceRecorder: true, enableEvents: true}}\n"
            ),
        )?;

        let mut recorder_args = vec![
            "--listen".to_owned(),
            recorder_addr.to_string(),
            "--admin-listen".to_owned(),
            recorder_admin.to_string(),
            "--dst".to_owned(),
            path(&dir.join("recordings")),
            "--signing-key".to_owned(),
            path(&dir.join("signing.key")),
            "--generate-signing-key".to_owned(),
            "--identity-file".to_owned(),
            path(&uploaders),
            "--allow-uploaders".to_owned(),
            "tag:k8s".to_owned(),
        ];
        recorder_args.extend(limits.iter().cloned());
        let mut recorder = Spawned::start(
            "kubescribe-recorder",
            &workspace_bin("kubescribe-recorder")?,
            &recorder_args,
            &[("RUST_LOG", "warn")],
            &logs,
        )?;
        recorder.wait_for_tcp(recorder_addr, Duration::from_secs(30))?;

        let pki = ServingPki::generate("kubescribe flood test CA")?;
        let (cert, key) = (dir.join("proxy.crt"), dir.join("proxy.key"));
        std::fs::write(&cert, &pki.serving.cert_pem)?;
        std::fs::write(&key, &pki.serving.key_pem)?;
        let mut proxy_args = vec![
            "--listen".to_owned(),
            proxy_addr.to_string(),
            "--tls-cert".to_owned(),
            path(&cert),
            "--tls-key".to_owned(),
            path(&key),
            "--kubeconfig".to_owned(),
            path(&upstream.proxy_kubeconfig()),
            "--identity-file".to_owned(),
            path(&callers),
            "--admin-listen".to_owned(),
            proxy_admin.to_string(),
        ];
        proxy_args.extend(limits.iter().cloned());
        let mut proxy = Spawned::start(
            "kubescribe-proxy",
            &workspace_bin("kubescribe-proxy")?,
            &proxy_args,
            &[("RUST_LOG", "warn")],
            &logs,
        )?;
        proxy.wait_for_tcp(proxy_admin, Duration::from_secs(20))?;
        proxy.wait_for_tcp(proxy_addr, Duration::from_secs(20))?;

        let targets = vec![
            Target {
                name: "proxy API (TLS)",
                addr: proxy_addr,
                pid: proxy.pid(),
                tls_ca: Some(pki.ca.cert_pem.clone()),
                probe: Probe::ProxyGet,
                max_pending,
                counters: ClosedCounters {
                    admin: proxy_admin,
                    metric: "kubescribe_proxy_connections_closed_total",
                    listener: "api",
                },
            },
            Target {
                name: "proxy admin",
                addr: proxy_admin,
                pid: proxy.pid(),
                tls_ca: None,
                probe: Probe::Healthz,
                max_pending: ADMIN_MAX_PENDING,
                counters: ClosedCounters {
                    admin: proxy_admin,
                    metric: "kubescribe_proxy_connections_closed_total",
                    listener: "admin",
                },
            },
            Target {
                name: "recorder upload",
                addr: recorder_addr,
                pid: recorder.pid(),
                tls_ca: None,
                probe: Probe::PostEvent,
                max_pending,
                counters: ClosedCounters {
                    admin: recorder_admin,
                    metric: "kubescribe_recorder_connections_closed_total",
                    listener: "recorder",
                },
            },
            Target {
                name: "recorder admin",
                addr: recorder_admin,
                pid: recorder.pid(),
                tls_ca: None,
                probe: Probe::Healthz,
                max_pending: ADMIN_MAX_PENDING,
                counters: ClosedCounters {
                    admin: recorder_admin,
                    metric: "kubescribe_recorder_connections_closed_total",
                    listener: "admin",
                },
            },
        ];
        Ok(Self {
            upstream,
            recorder,
            proxy,
            targets,
        })
    }

    /// The four listeners: the proxy's API and admin, the recorder's upload and admin.
    pub fn targets(&self) -> &[Target] {
        &self.targets
    }
}

#[cfg(test)]
mod tests {
    use super::closed_counts;

    #[test]
    fn closed_counts_reads_one_listeners_samples_by_reason() {
        let page = "# HELP kubescribe_proxy_connections_closed Connections\n\
            kubescribe_proxy_connections_closed_total{listener=\"api\",reason=\"evicted\"} 12\n\
            kubescribe_proxy_connections_closed_total{reason=\"tls\",listener=\"api\"} 3\n\
            kubescribe_proxy_connections_closed_total{listener=\"admin\",reason=\"evicted\"} 7\n\
            kubescribe_proxy_connections_open{listener=\"api\"} 5\n";
        let api = closed_counts(page, "kubescribe_proxy_connections_closed_total", "api");
        assert_eq!(api.get("evicted"), Some(&12));
        assert_eq!(api.get("tls"), Some(&3));
        assert_eq!(api.len(), 2);
        let admin = closed_counts(page, "kubescribe_proxy_connections_closed_total", "admin");
        assert_eq!(admin.get("evicted"), Some(&7));
    }
}
