//! A real Kubernetes control plane for tests: etcd and the real
//! kube-apiserver (both built by `cargo xtask peers` from the Go module
//! proxy), on loopback ports of their own, with static-token users, RBAC and
//! an audit log of every request.
//!
//! There is no scheduler, controller-manager or kubelet: objects are stored
//! and served, pods are never run (exec, attach, logs and port-forward need
//! the simulator, `tests/kube-sim`).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};
use tempfile::TempDir;

use crate::http::{self, Reply, Tls};
use crate::net::free_port;
use crate::pki::{CertAndKey, ServingPki, SigningKey};
use crate::process::Spawned;
use crate::{peers, Error};

/// A user of the static token file (`--token-auth-file`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TestUser {
    /// The user name kube-apiserver authenticates the token as.
    pub name: &'static str,
    /// The bearer token.
    pub token: &'static str,
    /// The groups the user is in (besides `system:authenticated`).
    pub groups: &'static [&'static str],
}

impl TestUser {
    const fn new(name: &'static str, token: &'static str, groups: &'static [&'static str]) -> Self {
        Self {
            name,
            token,
            groups,
        }
    }
}

/// The cluster administrator: group `system:masters`, allowed everything.
pub const ADMIN: TestUser =
    TestUser::new("admin", "kubescribe-test-admin-token", &["system:masters"]);
/// A developer (group `developers`); no rights until a test binds some.
pub const ALICE: TestUser = TestUser::new("alice", "kubescribe-test-alice-token", &["developers"]);
/// A viewer (group `viewers`); no rights until a test binds some.
pub const BOB: TestUser = TestUser::new("bob", "kubescribe-test-bob-token", &["viewers"]);
/// On call (groups `developers` and `on-call`); no rights until a test binds some.
pub const CAROL: TestUser = TestUser::new(
    "carol",
    "kubescribe-test-carol-token",
    &["developers", "on-call"],
);
/// A proxy's own credential (no groups): allowed nothing until a test binds a role, typically one
/// that may impersonate users and groups.
pub const PROXY: TestUser = TestUser::new("kubescribe-proxy", "kubescribe-test-proxy-token", &[]);
/// Every user in the token file.
pub const USERS: &[TestUser] = &[ADMIN, ALICE, BOB, CAROL, PROXY];

/// The service-account token issuer (`--service-account-issuer`).
pub const SERVICE_ACCOUNT_ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

/// The audit policy: every request at `RequestResponse`, one event per
/// request (the `RequestReceived` stage is left out; the event written when
/// the response completes carries everything it had).
const AUDIT_POLICY: &str = "\
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [\"RequestReceived\"]
rules:
  - level: RequestResponse
";

/// How long etcd and kube-apiserver may take to become ready.
const START_TIMEOUT: Duration = Duration::from_secs(120);

/// How long a SIGTERM'd kube-apiserver or etcd may take to exit before it is
/// killed. kube-apiserver lets the requests it is serving finish (at most its
/// 60 s request timeout) before it exits.
const STOP_TIMEOUT: Duration = Duration::from_secs(90);

/// A running etcd and kube-apiserver; both are killed and their scratch
/// directory removed when this is dropped.
///
/// Either can be stopped (SIGTERM), killed (SIGKILL) and started again while
/// the other runs, as a fault test needs: a restarted process gets the same
/// port, command line, certificates, token file, audit log and etcd data, so
/// clients and kubeconfigs keep working and objects survive.
pub struct ControlPlane {
    // Dropped in this order: the API server, then its storage, then the files.
    apiserver: Spawned,
    etcd: Spawned,
    addr: SocketAddr,
    etcd_url: String,
    ca_pem: String,
    pki: ServingPki,
    tls: Tls,
    started_in: Duration,
    launch: Launch,
    dir: TempDir,
}

/// How etcd and kube-apiserver were started, kept to start them again the same way.
struct Launch {
    etcd_bin: PathBuf,
    etcd_args: Vec<String>,
    etcd_addr: SocketAddr,
    apiserver_bin: PathBuf,
    apiserver_args: Vec<String>,
    logs: PathBuf,
}

impl ControlPlane {
    /// Starts etcd and kube-apiserver on free 127.0.0.1 ports and waits until
    /// `/readyz` answers 200 (up to two minutes); writes a kubeconfig per
    /// user. Fails with a message naming `cargo xtask peers` when the
    /// binaries are not installed.
    pub fn start() -> Result<Self, Error> {
        Self::start_with_audit_policy(AUDIT_POLICY)
    }

    /// [`ControlPlane::start`], with `policy` (an `audit.k8s.io/v1` Policy, YAML) as
    /// kube-apiserver's `--audit-policy-file` instead of the built-in one (every request at
    /// `RequestResponse`, `RequestReceived` omitted).
    pub fn start_with_audit_policy(policy: &str) -> Result<Self, Error> {
        let etcd_bin = peers::etcd()?;
        let apiserver_bin = peers::kube_apiserver()?;
        let dir = tempfile::Builder::new()
            .prefix("control-plane-")
            .tempdir()
            .map_err(Error::io(
                "creating a temporary directory for the control plane",
            ))?;
        let files = Files::write(dir.path(), policy)?;

        let started = Instant::now();
        let etcd_client = free_port()?;
        let etcd_peer = free_port()?;
        let etcd_url = format!("http://127.0.0.1:{etcd_client}");
        let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), free_port()?);
        let launch = Launch {
            etcd_bin,
            etcd_args: etcd_args(&dir.path().join("etcd"), &etcd_url, etcd_peer),
            etcd_addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), etcd_client),
            apiserver_bin,
            apiserver_args: apiserver_args(&files, &etcd_url, addr.port()),
            logs: files.logs.clone(),
        };
        let etcd = launch.etcd()?;
        let tls = Tls::trusting(&files.pki.ca.cert_pem)?;
        let mut apiserver = launch.apiserver()?;
        wait_for_readyz(&mut apiserver, addr, &tls, START_TIMEOUT)?;
        let started_in = started.elapsed();

        let plane = Self {
            apiserver,
            etcd,
            addr,
            etcd_url,
            ca_pem: files.pki.ca.cert_pem.clone(),
            pki: files.pki.clone(),
            tls,
            started_in,
            launch,
            dir,
        };
        for user in USERS {
            plane.write_kubeconfig(user)?;
        }
        eprintln!(
            "control plane ready in {started_in:.1?}: kube-apiserver {} (etcd {}), admin kubeconfig {}, audit log {}",
            plane.url(),
            plane.etcd_url,
            plane.kubeconfig(&ADMIN).display(),
            plane.audit_log_path().display(),
        );
        Ok(plane)
    }

    /// `https://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// The API server's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// etcd's client URL, `http://127.0.0.1:PORT`.
    pub fn etcd_url(&self) -> &str {
        &self.etcd_url
    }

    /// The CA that signed the serving certificate (PEM).
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// A client certificate for `user` in `groups` (common name and
    /// organizations), signed by the CA kube-apiserver trusts for clients
    /// (`--client-ca-file`): the API server authenticates it as that user.
    pub fn client_certificate(&self, user: &str, groups: &[&str]) -> Result<CertAndKey, Error> {
        self.pki.client_certificate(user, groups)
    }

    /// The CA certificate's file.
    pub fn ca_path(&self) -> PathBuf {
        self.dir.path().join(Files::CA)
    }

    /// A kubeconfig that reaches the API server as `user` (with its token),
    /// written at start for every user in [`USERS`].
    pub fn kubeconfig(&self, user: &TestUser) -> PathBuf {
        self.dir.path().join(format!("{}.kubeconfig", user.name))
    }

    /// The audit log (JSON, one event per line).
    pub fn audit_log_path(&self) -> PathBuf {
        self.dir.path().join(Files::AUDIT_LOG)
    }

    /// Every audit event written so far, parsed (a last line still being
    /// written is left out).
    pub fn audit_events(&self) -> Result<Vec<Value>, Error> {
        crate::jsonl::read(&self.audit_log_path())
    }

    /// Waits (up to `timeout`) for an audit event that `matches`, and returns it.
    pub fn wait_for_audit_event(
        &self,
        timeout: Duration,
        mut matches: impl FnMut(&Value) -> bool,
    ) -> Result<Value, Error> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(event) = self.audit_events()?.into_iter().find(|e| matches(e)) {
                return Ok(event);
            }
            if Instant::now() > deadline {
                return Err(Error::Timeout {
                    name: "kube-apiserver".into(),
                    waiting_for: format!(
                        "a matching event in the audit log {}",
                        self.audit_log_path().display()
                    ),
                    timeout,
                    log_tail: String::new(),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends one request to the API server as `user` (bearer token, TLS
    /// verified against the test CA).
    pub fn request(
        &self,
        user: &TestUser,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> Result<Reply, Error> {
        let bearer = format!("Bearer {}", user.token);
        let mut headers = vec![("authorization", bearer.as_str())];
        if !body.is_empty() {
            headers.push(("content-type", "application/json"));
        }
        http::request(self.addr, Some(&self.tls), method, path, &headers, body)
    }

    /// Creates `object` (JSON) at the collection `path` as [`ADMIN`]; anything but 201 is an error.
    pub fn create(&self, path: &str, object: &Value) -> Result<(), Error> {
        let reply = self.request(&ADMIN, "POST", path, object.to_string().as_bytes())?;
        if reply.status == 201 {
            return Ok(());
        }
        Err(Error::Refused {
            method: "POST".into(),
            path: path.into(),
            status: reply.status,
            body: String::from_utf8_lossy(&reply.body)
                .chars()
                .take(400)
                .collect(),
        })
    }

    /// Lets `user` impersonate users and groups (and nothing more): what a proxy in auth mode
    /// needs. Creates the ClusterRole `kubescribe-proxy-impersonator` on first use.
    pub fn allow_impersonation(&self, user: &TestUser) -> Result<(), Error> {
        let role = "kubescribe-proxy-impersonator";
        let created = self.create(
            "/apis/rbac.authorization.k8s.io/v1/clusterroles",
            &serde_json::json!({
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRole",
                "metadata": {"name": role},
                "rules": [{"apiGroups": [""], "resources": ["users", "groups"], "verbs": ["impersonate"]}]
            }),
        );
        match created {
            Ok(()) | Err(Error::Refused { status: 409, .. }) => {}
            Err(e) => return Err(e),
        }
        self.create(
            "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
            &serde_json::json!({
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRoleBinding",
                "metadata": {"name": format!("{role}-{}", user.name)},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
                "subjects": [{"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": user.name}]
            }),
        )
    }

    /// From spawning etcd to kube-apiserver's first `/readyz` 200.
    pub fn started_in(&self) -> Duration {
        self.started_in
    }

    /// The kube-apiserver process (its log, PID, memory).
    pub fn apiserver(&self) -> &Spawned {
        &self.apiserver
    }

    /// The etcd process (its log, PID, memory).
    pub fn etcd(&self) -> &Spawned {
        &self.etcd
    }

    /// Stops kube-apiserver as an orchestrator would (SIGTERM): it reports
    /// not ready, stops listening, finishes the requests it is serving and
    /// exits; killed if it has not exited within 90 s. Returns once it has
    /// exited. Its port and files are kept for [`start_apiserver`](Self::start_apiserver).
    pub fn stop_apiserver(&mut self) -> Result<(), Error> {
        self.apiserver.stop(STOP_TIMEOUT)
    }

    /// Kills kube-apiserver at once (SIGKILL), as a crash or an OOM kill
    /// would: its connections are reset mid-request, the audit events of the
    /// requests it was serving are never written. Returns once it is reaped.
    pub fn kill_apiserver(&mut self) -> Result<(), Error> {
        self.apiserver.kill()
    }

    /// Starts kube-apiserver again (after [`stop_apiserver`](Self::stop_apiserver)
    /// or [`kill_apiserver`](Self::kill_apiserver)) on the same port with the
    /// same command line, certificates, token file and audit log (appended
    /// to), and waits until `/readyz` answers 200; etcd must be running for
    /// that. Returns how long that took. Does nothing if it is running.
    pub fn start_apiserver(&mut self) -> Result<Duration, Error> {
        if self.apiserver.is_running() {
            return Ok(Duration::ZERO);
        }
        let started = Instant::now();
        self.apiserver = self.launch.apiserver()?;
        self.wait_until_ready(START_TIMEOUT)?;
        Ok(started.elapsed())
    }

    /// Whether kube-apiserver is running (not stopped, killed or crashed).
    pub fn apiserver_running(&mut self) -> bool {
        self.apiserver.is_running()
    }

    /// Waits (up to `timeout`) until kube-apiserver answers 200 on `/readyz`,
    /// e.g. after etcd came back; fails early if kube-apiserver exits.
    pub fn wait_until_ready(&mut self, timeout: Duration) -> Result<(), Error> {
        wait_for_readyz(&mut self.apiserver, self.addr, &self.tls, timeout)
    }

    /// Stops etcd (SIGTERM, killed if it has not exited within 90 s) while
    /// kube-apiserver keeps running: the API server then answers what needs
    /// storage with its own errors (timeouts, 5xx Status objects) and
    /// reports `/readyz` unhealthy. Returns once etcd has exited.
    pub fn stop_etcd(&mut self) -> Result<(), Error> {
        self.etcd.stop(STOP_TIMEOUT)
    }

    /// Kills etcd at once (SIGKILL), as a crash would. Returns once it is reaped.
    pub fn kill_etcd(&mut self) -> Result<(), Error> {
        self.etcd.kill()
    }

    /// Starts etcd again (after [`stop_etcd`](Self::stop_etcd) or
    /// [`kill_etcd`](Self::kill_etcd)) on the same ports with the same data
    /// directory, so every object is still there, and waits until it accepts
    /// connections. kube-apiserver reconnects by itself; use
    /// [`wait_until_ready`](Self::wait_until_ready) to wait for it. Returns
    /// how long the start took. Does nothing if etcd is running.
    pub fn start_etcd(&mut self) -> Result<Duration, Error> {
        if self.etcd.is_running() {
            return Ok(Duration::ZERO);
        }
        let started = Instant::now();
        self.etcd = self.launch.etcd()?;
        Ok(started.elapsed())
    }

    /// Whether etcd is running (not stopped, killed or crashed).
    pub fn etcd_running(&mut self) -> bool {
        self.etcd.is_running()
    }

    /// The scratch directory: certificates, token file, audit policy and
    /// log, kubeconfigs, etcd's data, process logs.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn write_kubeconfig(&self, user: &TestUser) -> Result<(), Error> {
        let ca = base64::engine::general_purpose::STANDARD.encode(&self.ca_pem);
        let config = json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "test", "cluster": {"server": self.url(), "certificate-authority-data": ca}}],
            "users": [{"name": user.name, "user": {"token": user.token}}],
            "contexts": [{"name": "test", "context": {"cluster": "test", "user": user.name, "namespace": "default"}}],
            "current-context": "test",
        });
        let path = self.kubeconfig(user);
        std::fs::write(&path, format!("{config:#}\n"))
            .map_err(Error::io(format!("writing {}", path.display())))
    }
}

impl Launch {
    /// Spawns etcd (its log appended to) and waits until it accepts connections.
    fn etcd(&self) -> Result<Spawned, Error> {
        let mut etcd = Spawned::start("etcd", &self.etcd_bin, &self.etcd_args, &[], &self.logs)?;
        etcd.wait_for_tcp(self.etcd_addr, START_TIMEOUT)?;
        Ok(etcd)
    }

    /// Spawns kube-apiserver (its log appended to); not yet ready.
    fn apiserver(&self) -> Result<Spawned, Error> {
        Spawned::start(
            "kube-apiserver",
            &self.apiserver_bin,
            &self.apiserver_args,
            &[],
            &self.logs,
        )
    }
}

/// Waits until the kube-apiserver `process` answers 200 on `/readyz` at `addr`.
fn wait_for_readyz(
    process: &mut Spawned,
    addr: SocketAddr,
    tls: &Tls,
    timeout: Duration,
) -> Result<(), Error> {
    let tls = tls.clone();
    process.wait_until(
        &format!("answering 200 on https://{addr}/readyz"),
        timeout,
        Duration::from_millis(100),
        move || {
            http::request(addr, Some(&tls), "GET", "/readyz", &[], b"")
                .is_ok_and(|reply| reply.status == 200)
        },
    )
}

/// The files kube-apiserver reads, written into the scratch directory.
struct Files {
    dir: PathBuf,
    logs: PathBuf,
    pki: ServingPki,
}

impl Files {
    const CA: &'static str = "ca.crt";
    const SERVING_CERT: &'static str = "apiserver.crt";
    const SERVING_KEY: &'static str = "apiserver.key";
    const SA_PRIVATE: &'static str = "service-account.key";
    const SA_PUBLIC: &'static str = "service-account.pub";
    const TOKENS: &'static str = "tokens.csv";
    const AUDIT_POLICY: &'static str = "audit-policy.yaml";
    const AUDIT_LOG: &'static str = "audit.log";

    fn write(dir: &Path, audit_policy: &str) -> Result<Self, Error> {
        let pki = ServingPki::generate("kubescribe test control plane CA")?;
        let service_accounts = SigningKey::generate()?;
        let tokens: String = USERS
            .iter()
            .map(|user| {
                format!(
                    "{},{},{},\"{}\"\n",
                    user.token,
                    user.name,
                    user.name,
                    user.groups.join(",")
                )
            })
            .collect();
        let logs = dir.join("logs");
        for (name, text) in [
            (Self::CA, pki.ca.cert_pem.as_str()),
            (Self::SERVING_CERT, pki.serving.cert_pem.as_str()),
            (Self::SERVING_KEY, pki.serving.key_pem.as_str()),
            (Self::SA_PRIVATE, service_accounts.private_pem.as_str()),
            (Self::SA_PUBLIC, service_accounts.public_pem.as_str()),
            (Self::TOKENS, tokens.as_str()),
            (Self::AUDIT_POLICY, audit_policy),
        ] {
            let path = dir.join(name);
            std::fs::write(&path, text)
                .map_err(Error::io(format!("writing {}", path.display())))?;
        }
        std::fs::create_dir_all(&logs)
            .map_err(Error::io(format!("creating {}", logs.display())))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            logs,
            pki,
        })
    }

    fn arg(&self, flag: &str, name: &str) -> String {
        format!("{flag}={}", self.dir.join(name).display())
    }
}

/// A single-member etcd on loopback, with fsync off (test data is thrown away).
fn etcd_args(data_dir: &Path, client_url: &str, peer_port: u16) -> Vec<String> {
    let peer_url = format!("http://127.0.0.1:{peer_port}");
    vec![
        "--name=test".into(),
        format!("--data-dir={}", data_dir.display()),
        format!("--listen-client-urls={client_url}"),
        format!("--advertise-client-urls={client_url}"),
        format!("--listen-peer-urls={peer_url}"),
        format!("--initial-advertise-peer-urls={peer_url}"),
        format!("--initial-cluster=test={peer_url}"),
        "--unsafe-no-fsync".into(),
        "--log-level=warn".into(),
    ]
}

/// Everything a standalone kube-apiserver needs, and no more.
fn apiserver_args(files: &Files, etcd_url: &str, port: u16) -> Vec<String> {
    vec![
        format!("--etcd-servers={etcd_url}"),
        "--bind-address=127.0.0.1".into(),
        "--advertise-address=127.0.0.1".into(),
        format!("--secure-port={port}"),
        files.arg("--cert-dir", "apiserver-certs"),
        files.arg("--tls-cert-file", Files::SERVING_CERT),
        files.arg("--tls-private-key-file", Files::SERVING_KEY),
        files.arg("--client-ca-file", Files::CA),
        files.arg("--token-auth-file", Files::TOKENS),
        "--authorization-mode=Node,RBAC".into(),
        // Addresses for Services are only allocated: nothing routes to them.
        "--service-cluster-ip-range=10.0.0.0/24".into(),
        format!("--service-account-issuer={SERVICE_ACCOUNT_ISSUER}"),
        files.arg("--service-account-key-file", Files::SA_PUBLIC),
        files.arg("--service-account-signing-key-file", Files::SA_PRIVATE),
        files.arg("--audit-policy-file", Files::AUDIT_POLICY),
        files.arg("--audit-log-path", Files::AUDIT_LOG),
        "--audit-log-format=json".into(),
        "--audit-log-mode=blocking".into(),
        // No controller-manager creates the `default` ServiceAccount: without
        // this, every pod would be refused at admission.
        "--disable-admission-plugins=ServiceAccount".into(),
        // The built-in `kubernetes` Service's endpoints would name 127.0.0.1,
        // which endpoint validation refuses; nothing here needs them.
        "--endpoint-reconciler-type=none".into(),
        "--enable-priority-and-fairness=false".into(),
        "--profiling=false".into(),
    ]
}
