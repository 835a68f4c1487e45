//! `cargo xtask demo`: the Kubernetes API simulator, the recorder (local disk
//! storage, UI on) and the proxy on localhost, for a newcomer to try.
//! `--upstream apiserver` puts a real kube-apiserver (with etcd, built by
//! `cargo xtask peers`) behind the proxy instead: real RBAC, validation and
//! audit log, but no kubelet, so exec, attach and logs do not work.
//!
//! Without a tailnet, identities come from two small identity files: the
//! proxy sees every local caller as `demo@example.com` (events on, fail
//! closed, impersonating `system:masters`), and the recorder sees the proxy
//! as a tagged node allowed to upload. Ctrl-C (or SIGTERM) stops everything.

use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::cmd::{cargo, exec, peers_dir, target_dir, workspace_root, Result};
use crate::e2e::Upstream;
use crate::peers;

const SIM: &str = "127.0.0.1:16443";
const RECORDER: &str = "127.0.0.1:18080";
const PROXY: &str = "127.0.0.1:8443";
const ADMIN: &str = "127.0.0.1:9102";
const PROXY_TOKEN: &str = "demo-proxy-token";

/// Builds the binaries, starts the three services and waits for Ctrl-C.
pub fn run(upstream: Upstream) -> Result<()> {
    let upstream_package = match upstream {
        Upstream::Sim => {
            peers::install_kubectl()?;
            "kubescribe-kube-sim"
        }
        Upstream::Apiserver => {
            peers::install_kubectl()?;
            peers::install_control_plane()?;
            "kubescribe-test-support"
        }
    };
    exec(cargo().args([
        "build",
        "-p",
        upstream_package,
        "-p",
        "kubescribe-recorder",
        "-p",
        "kubescribe-proxy",
        "--bins",
    ]))?;
    let root = workspace_root();
    let bin = target_dir().join("debug");
    let dir = root.join("target/demo");
    std::fs::create_dir_all(dir.join("logs"))
        .map_err(|e| format!("creating {}: {e}", dir.display()))?;
    write(
        &dir.join("sim-tokens.csv"),
        &format!("{PROXY_TOKEN},kubescribe-proxy,system:authenticated\n"),
    )?;
    write(&dir.join("proxy-identities.yaml"), &proxy_identities())?;
    write(&dir.join("recorder-identities.yaml"), RECORDER_IDENTITIES)?;
    let kubeconfig = dir.join("kubeconfig");
    write(&kubeconfig, &format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: kubescribe-demo\n  cluster:\n    server: http://{PROXY}\nusers:\n- name: demo\n  user: {{}}\ncontexts:\n- name: kubescribe-demo\n  context:\n    cluster: kubescribe-demo\n    user: demo\n    namespace: default\ncurrent-context: kubescribe-demo\n"
    ))?;

    let mut services = Services::default();
    let upstream_kubeconfig = match upstream {
        Upstream::Sim => start_sim(&mut services, &dir, &bin)?,
        Upstream::Apiserver => start_control_plane(&mut services, &dir, &bin)?,
    };
    services.start(
        &dir,
        "kubescribe-recorder",
        &bin.join("kubescribe-recorder"),
        &[
            "--listen",
            RECORDER,
            "--dst",
            &path(&dir.join("recordings")),
            "--signing-key",
            &path(&dir.join("signing.key")),
            "--generate-signing-key",
            "--ui",
            "--identity-file",
            &path(&dir.join("recorder-identities.yaml")),
            "--allow-uploaders",
            "tag:k8s-proxy",
            // A laptop demo: the browser on this machine reads the UI.
            "--allow-readers",
            "loopback",
        ],
    )?;
    services.wait_for(RECORDER, "kubescribe-recorder")?;
    services.start(
        &dir,
        "kubescribe-proxy",
        &bin.join("kubescribe-proxy"),
        &[
            "--listen",
            PROXY,
            "--kubeconfig",
            &path(&upstream_kubeconfig),
            "--identity-file",
            &path(&dir.join("proxy-identities.yaml")),
            "--admin-listen",
            ADMIN,
            "--spool-dir",
            &path(&dir.join("spool")),
        ],
    )?;
    services.wait_for(PROXY, "kubescribe-proxy")?;

    let kubectl = peers_dir().join("venv/bin/kubectl");
    println!();
    println!(
        "kubescribe demo is running (logs in {}).",
        dir.join("logs").display()
    );
    println!();
    println!("  export KUBECONFIG={}", kubeconfig.display());
    println!(
        "  export PATH={}:$PATH   # kubectl 1.37",
        kubectl
            .parent()
            .map(|p| p.display().to_string())
            .unwrap_or_default()
    );
    println!("  kubectl get pods");
    match upstream {
        Upstream::Sim => println!("  kubectl exec -it demo -- sh"),
        Upstream::Apiserver => println!(
            "  (the real kube-apiserver has no kubelet: exec, attach and logs do not work;\n   its audit log is {})",
            dir.join("control-plane/audit.log").display()
        ),
    }
    println!();
    println!("  recorder UI:    http://{RECORDER}/");
    println!("  proxy metrics:  http://{ADMIN}/metrics");
    println!("  recordings:     {}", dir.join("recordings").display());
    println!();
    println!(
        "Every request is recorded as demo@example.com (fail closed). Ctrl-C stops everything."
    );
    services.wait_for_signal_or_exit()
}

/// The simulator, which writes the proxy's kubeconfig; returns its path.
fn start_sim(services: &mut Services, dir: &Path, bin: &Path) -> Result<std::path::PathBuf> {
    let sim_kubeconfig = dir.join("sim.kubeconfig");
    let _ = std::fs::remove_file(&sim_kubeconfig);
    services.start(
        dir,
        "kube-sim",
        &bin.join("kube-sim"),
        &[
            "--listen",
            SIM,
            "--tokens",
            &path(&dir.join("sim-tokens.csv")),
            "--impersonator",
            "kubescribe-proxy",
            "--kubeconfig-out",
            &path(&sim_kubeconfig),
            "--sandbox",
            &path(&dir.join("sandbox")),
        ],
    )?;
    services.wait_for(SIM, "kube-sim")?;
    services.wait_for_file("kube-sim", &sim_kubeconfig, Duration::from_secs(10))?;
    Ok(sim_kubeconfig)
}

/// etcd and kube-apiserver (the `control-plane` runner of tests/support), whose `kubescribe-proxy`
/// user may impersonate; returns that user's kubeconfig.
fn start_control_plane(
    services: &mut Services,
    dir: &Path,
    bin: &Path,
) -> Result<std::path::PathBuf> {
    let out = dir.join("control-plane");
    let _ = std::fs::remove_dir_all(&out);
    services.start_with_env(
        dir,
        "control-plane",
        &bin.join("control-plane"),
        &["--out", &path(&out)],
        &[("KUBESCRIBE_PEERS", peers_dir().as_os_str())],
    )?;
    services.wait_for_file(
        "control-plane",
        &out.join("ready"),
        Duration::from_secs(120),
    )?;
    Ok(out.join("kubescribe-proxy.kubeconfig"))
}

fn proxy_identities() -> String {
    format!(
        r#"# The proxy sees every local caller as one demo user.
entries:
  - name: local-demo-user
    sources: ["127.0.0.0/8", "::1/128"]
    Node: {{ID: 1, StableID: nDEMO1CNTRL, Name: demo-laptop.example.ts.net., User: 1}}
    UserProfile: {{ID: 1, LoginName: demo@example.com, DisplayName: Demo User}}
    CapMap:
      tailscale.com/cap/kubernetes:
        - recorderAddrs: ["{RECORDER}"]
          enableEvents: true
          enforceRecorder: true
          impersonate: {{groups: ["system:masters"]}}
"#
    )
}

const RECORDER_IDENTITIES: &str = r#"# The recorder sees the local proxy as a tagged node allowed to upload.
entries:
  - name: local-proxy
    sources: ["127.0.0.0/8", "::1/128"]
    Node: {ID: 2, StableID: nPROXY1CNTRL, Name: kubescribe-proxy.example.ts.net., Tags: ["tag:k8s-proxy"]}
    UserProfile: {ID: 2, LoginName: tagged-devices}
"#;

/// The demo's child processes, stopped together.
#[derive(Default)]
struct Services {
    children: Vec<(String, Child)>,
}

impl Services {
    fn start(&mut self, dir: &Path, name: &str, program: &Path, args: &[&str]) -> Result<()> {
        self.start_with_env(dir, name, program, args, &[])
    }

    fn start_with_env(
        &mut self,
        dir: &Path,
        name: &str,
        program: &Path,
        args: &[&str],
        envs: &[(&str, &std::ffi::OsStr)],
    ) -> Result<()> {
        let log = std::fs::File::create(dir.join("logs").join(format!("{name}.log")))
            .map_err(|e| format!("creating the {name} log: {e}"))?;
        let err = log.try_clone().map_err(|e| e.to_string())?;
        let child = Command::new(program)
            .args(args)
            .envs(envs.iter().copied())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("starting {name}: {e}"))?;
        println!("started {name} (pid {})", child.id());
        self.children.push((name.to_owned(), child));
        Ok(())
    }

    fn wait_for(&mut self, addr: &str, name: &str) -> Result<()> {
        let addr: SocketAddr = addr.parse().map_err(|e| format!("{addr}: {e}"))?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            if let Some((_, child)) = self.children.iter_mut().find(|(n, _)| n == name) {
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(format!("{name} exited ({status}); see target/demo/logs/{name}.log (is {addr} already in use?)"));
                }
            }
            if Instant::now() > deadline {
                return Err(format!("{name} did not listen on {addr} within 30 s"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }

    /// Waits for `name` to write `file`; fails at once if it exits first.
    fn wait_for_file(&mut self, name: &str, file: &Path, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        while !file.exists() {
            if let Some((_, child)) = self.children.iter_mut().find(|(n, _)| n == name) {
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(format!(
                        "{name} exited ({status}); see target/demo/logs/{name}.log"
                    ));
                }
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{} did not appear within {timeout:?}",
                    file.display()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }

    fn wait_for_signal_or_exit(&mut self) -> Result<()> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        let exited = runtime.block_on(async {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .map_err(|e| e.to_string())?;
            let mut poll = tokio::time::interval(Duration::from_millis(500));
            loop {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => return Ok::<_, String>(None),
                    _ = term.recv() => return Ok(None),
                    _ = poll.tick() => {
                        for (name, child) in &mut self.children {
                            if let Ok(Some(status)) = child.try_wait() {
                                return Ok(Some(format!("{name} exited unexpectedly ({status})")));
                            }
                        }
                    }
                }
            }
        })?;
        println!("\nstopping…");
        self.stop();
        match exited {
            Some(message) => Err(message),
            None => Ok(()),
        }
    }

    /// SIGTERM to each (proxy first), then SIGKILL whatever is left after 10 s.
    fn stop(&mut self) {
        for (_, child) in self.children.iter().rev() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        for (name, child) in &mut self.children {
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            if let Ok(None) = child.try_wait() {
                eprintln!("{name} did not stop in time; killing it");
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

impl Drop for Services {
    fn drop(&mut self) {
        for (_, child) in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn write(file: &Path, text: &str) -> Result<()> {
    std::fs::write(file, text).map_err(|e| format!("writing {}: {e}", file.display()))
}

fn path(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}
