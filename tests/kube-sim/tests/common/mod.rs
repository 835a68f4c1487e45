//! Shared test harness: a simulator started in-process plus the real peers.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use kube_sim::{Credentials, KubeSim, RunningSim, SimConfig};
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

/// kubectl 1.37 from PyPI.
pub fn kubectl() -> PathBuf {
    test_support::peers::kubectl().unwrap_or_else(|e| panic!("{e}"))
}

/// The venv's python (with the `kubernetes` client).
pub fn python() -> PathBuf {
    test_support::peers::python().unwrap_or_else(|e| panic!("{e}"))
}

/// An older, SPDY-only kubectl from the machine image, if present.
pub fn old_kubectl(minor: u32) -> Option<PathBuf> {
    let mut dirs = vec![
        PathBuf::from("/usr/lib/google-cloud-sdk/bin"),
        PathBuf::from("/usr/bin"),
    ];
    if let Ok(real) = std::fs::canonicalize("/usr/bin/kubectl") {
        if let Some(dir) = real.parent() {
            dirs.insert(0, dir.to_path_buf());
        }
    }
    dirs.into_iter()
        .map(|d| d.join(format!("kubectl.1.{minor}")))
        .find(|p| p.exists())
}

/// A simulator plus a scratch directory and kubeconfig.
pub struct Harness {
    pub sim: RunningSim,
    pub dir: tempfile::TempDir,
    pub kubeconfig: PathBuf,
}

impl Harness {
    /// Starts a TLS simulator without auth, with a fast-growing pod log.
    pub async fn start() -> Self {
        Self::start_with(
            SimConfig {
                log_interval: Duration::from_millis(100),
                ..SimConfig::default()
            },
            Credentials::None,
        )
        .await
    }

    /// Starts a simulator with a config and kubeconfig credentials.
    pub async fn start_with(mut config: SimConfig, credentials: Credentials) -> Self {
        let dir = tempfile::tempdir().unwrap();
        if config.sandbox.is_none() {
            config.sandbox = Some(dir.path().join("sandbox"));
        }
        let sim = KubeSim::start(config).await.unwrap();
        let kubeconfig = dir.path().join("kubeconfig");
        sim.write_kubeconfig(&kubeconfig, &credentials).unwrap();
        Self {
            sim,
            dir,
            kubeconfig,
        }
    }

    /// Writes another kubeconfig for this simulator.
    pub fn kubeconfig_for(&self, name: &str, credentials: &Credentials) -> PathBuf {
        let path = self.dir.path().join(name);
        self.sim.write_kubeconfig(&path, credentials).unwrap();
        path
    }

    /// A kubectl command against the simulator.
    pub fn command(&self, binary: &Path, kubeconfig: &Path, args: &[&str]) -> Command {
        let mut command = Command::new(binary);
        command
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .arg("--cache-dir")
            .arg(self.dir.path().join(format!(
                "cache-{}",
                binary.file_name().unwrap().to_string_lossy()
            )))
            .args(args)
            .env_remove("KUBECONFIG")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        command
    }

    /// Runs kubectl 1.37 to completion (60 s hang guard).
    pub async fn kubectl(&self, args: &[&str]) -> Output {
        self.run(&kubectl(), &self.kubeconfig, args, None).await
    }

    /// Runs a kubectl binary with a kubeconfig and optional stdin.
    pub async fn run(
        &self,
        binary: &Path,
        kubeconfig: &Path,
        args: &[&str],
        stdin: Option<&[u8]>,
    ) -> Output {
        let mut child = self.command(binary, kubeconfig, args).spawn().unwrap();
        let mut pipe = child.stdin.take().unwrap();
        if let Some(data) = stdin {
            pipe.write_all(data).await.unwrap();
        }
        drop(pipe);
        tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
            .await
            .unwrap_or_else(|_| panic!("kubectl {args:?} hung"))
            .unwrap()
    }
}

/// stdout as text.
pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// stderr as text.
pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Asserts success and returns stdout.
pub fn ok(output: &Output) -> String {
    assert!(
        output.status.success(),
        "kubectl failed ({:?}): {}\n{}",
        output.status,
        stdout(output),
        stderr(output)
    );
    stdout(output)
}
