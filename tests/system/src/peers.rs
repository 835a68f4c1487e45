//! Locating the real peers installed by `cargo xtask peers`.

use std::path::{Path, PathBuf};

use crate::Error;

/// The peers directory: `$KUBESCRIBE_PEERS`, else `<workspace>/target/peers`.
pub fn dir() -> PathBuf {
    std::env::var_os("KUBESCRIBE_PEERS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/peers"))
}

/// A program from the peers' Python virtualenv (`kubectl`, `weed`, `asciinema`, `python`).
pub fn venv_bin(name: &str) -> Result<PathBuf, Error> {
    let path = dir().join("venv/bin").join(name);
    if path.exists() {
        Ok(path)
    } else {
        Err(format!("{} is missing: run `cargo xtask peers`", path.display()).into())
    }
}

/// kubectl 1.37 from PyPI (WebSocket exec).
pub fn kubectl() -> Result<PathBuf, Error> {
    venv_bin("kubectl")
}

/// An older kubectl from the machine image (SPDY exec), if this machine has
/// it: `kubectl.<minor>` beside the resolved `kubectl` on PATH.
pub fn image_kubectl(minor: &str) -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")?
        .to_string_lossy()
        .split(':')
        .map(|dir| Path::new(dir).join("kubectl"))
        .find(|candidate| candidate.is_file())?;
    let real = std::fs::canonicalize(on_path).ok()?;
    let path = real.parent()?.join(format!("kubectl.{minor}"));
    path.is_file().then_some(path)
}

/// The SeaweedFS server binary.
pub fn weed() -> Result<PathBuf, Error> {
    venv_bin("weed")
}

/// asciinema 2.4 (cast validation).
pub fn asciinema() -> Result<PathBuf, Error> {
    venv_bin("asciinema")
}
