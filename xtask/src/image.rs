//! `cargo xtask image [--check] [BINARY…]`: container images of the binaries, built without a
//! container engine, as OCI image layouts under `target/images/<binary>/`.
//!
//! * **Contents** (one layer, distroless in spirit): the release binary, stripped, at
//!   `/usr/local/bin/<binary>`; exactly the shared libraries it links (found with `ldd`, copied
//!   from the build host, Debian's glibc and libgcc) with their copyright files; the CA bundle;
//!   `/etc/passwd` and `/etc/group` naming `nonroot` (65532); an empty `/tmp`. No shell, no
//!   package manager.
//! * **Config**: `User 65532:65532` (never root), the binary as entrypoint, its listening ports,
//!   OCI labels (title, description, version, revision, source, licences, created); read-only
//!   root filesystems work because every writable path is a flag (`--state-dir`, `--dst`).
//! * **Reproducible**: entries sorted, every timestamp the commit's time, owners 0:0, gzip at a
//!   fixed level: the same commit and host libraries give the same digests.
//! * **Layout**: `oci-layout`, `index.json` (ref name `kubescribe/<binary>:<version>`), blobs by
//!   SHA-256. `skopeo copy oci:target/images/kubescribe-proxy docker://REGISTRY/…` pushes one;
//!   `podman load` and `docker load` (of the layout as a tar) take one.
//! * `--check` proves each image works without a container engine: reads the layout back
//!   (digests, sizes, config), unpacks the layer into a scratch root and runs the entrypoint in
//!   it with `chroot` as user 65532 (`--version`, `--help`; the recorder also starts, answers
//!   `/healthz` and stops on SIGTERM), and checks the size budget.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oci_spec::image::{
    Arch, ConfigBuilder, DescriptorBuilder, Digest, ImageConfiguration, ImageConfigurationBuilder,
    ImageIndexBuilder, ImageManifest, ImageManifestBuilder, MediaType, OciLayoutBuilder, Os,
    RootFsBuilder,
};
use sha2::{Digest as _, Sha256};

use crate::cmd::{cargo, exec, target_dir, workspace_root, Result};

/// The user images run as: `nonroot`, as distroless images name it.
const UID: u32 = 65_532;
/// Each image's compressed size stays below this.
const MAX_IMAGE_BYTES: u64 = 30 * 1024 * 1024;

/// What `cargo xtask image` was asked to do.
#[derive(Debug, Clone)]
pub struct Options {
    /// Binaries to package (all when empty).
    pub binaries: Vec<String>,
    /// Check each image after building it.
    pub check: bool,
}

/// A binary the project ships as an image.
struct Product {
    binary: &'static str,
    package: &'static str,
    description: &'static str,
    ports: &'static [&'static str],
    /// A flag its `--help` names (checked by running it from the image).
    help_names: &'static str,
}

const PRODUCTS: [Product; 3] = [
    Product {
        binary: "kubescribe-proxy",
        package: "kubescribe-proxy",
        description: "kubescribe-proxy: an identity-aware proxy in front of the Kubernetes API server that records every request and exec session",
        ports: &["8443/tcp", "9102/tcp"],
        help_names: "--listen",
    },
    Product {
        binary: "kubescribe-recorder",
        package: "kubescribe-recorder",
        description: "kubescribe-recorder: stores kubescribe's events and session recordings durably on disk or S3, with a query API and UI",
        ports: &["80/tcp", "9103/tcp"],
        help_names: "--listen",
    },
    Product {
        binary: "kubescribe-operator",
        package: "kubescribe-operator",
        description: "kubescribe-operator: keeps Recorder and APIServerProxy resources true (the recorder and proxy workloads, Services, ServiceAccounts and impersonation RBAC)",
        ports: &["9104/tcp"],
        help_names: "--kubeconfig",
    },
];

/// A file or directory of the layer.
struct Entry {
    path: String,
    mode: u32,
    owner: u32,
    content: Option<Vec<u8>>,
}

/// Builds (and with `--check`, checks) the images.
pub fn run(options: &Options) -> Result<()> {
    let products: Vec<&Product> = PRODUCTS
        .iter()
        .filter(|p| options.binaries.is_empty() || options.binaries.iter().any(|b| b == p.binary))
        .collect();
    if products.is_empty() {
        return Err(format!(
            "no image named {:?}; known: kubescribe-proxy, kubescribe-recorder, kubescribe-operator",
            options.binaries
        ));
    }
    let mut build = cargo();
    build.args(["build", "--release", "--locked"]);
    for product in &products {
        build.args(["-p", product.package, "--bin", product.binary]);
    }
    exec(&mut build)?;
    let facts = Facts::read()?;
    let mut report = Vec::new();
    for product in products {
        let dir = target_dir().join("images").join(product.binary);
        let size = build_image(product, &facts, &dir)?;
        if options.check {
            check_reproducible(product, &facts, &dir)?;
            check_image(product, &dir)?;
        }
        report.push((product.binary, size, dir));
    }
    println!("\n| image | layer + config (compressed) | layout |\n| --- | ---: | --- |");
    for (binary, size, dir) in report {
        println!(
            "| {binary} | {:.1} MiB | {} |",
            size as f64 / 1_048_576.0,
            dir.display()
        );
    }
    Ok(())
}

/// What every image's labels say about the build.
struct Facts {
    version: String,
    revision: String,
    /// The commit's time (Unix seconds): every timestamp in the layer.
    epoch: u64,
    created: String,
    source: String,
    licenses: String,
}

impl Facts {
    fn read() -> Result<Self> {
        let git = |args: &[&str]| -> Result<String> {
            let out = Command::new("git")
                .args(args)
                .current_dir(workspace_root())
                .output()
                .map_err(|e| format!("git: {e}"))?;
            if !out.status.success() {
                return Err(format!("git {args:?} failed"));
            }
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
        };
        let manifest = std::fs::read_to_string(workspace_root().join("Cargo.toml"))
            .map_err(|e| format!("Cargo.toml: {e}"))?;
        let field = |name: &str| -> String {
            manifest
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{name} = ")))
                .map(|v| v.trim().trim_matches('"').to_owned())
                .unwrap_or_default()
        };
        Ok(Self {
            version: field("version"),
            revision: git(&["rev-parse", "HEAD"])?,
            epoch: git(&["log", "-1", "--format=%ct"])?
                .parse()
                .map_err(|e| format!("commit time: {e}"))?,
            created: git(&["log", "-1", "--format=%cI"])?,
            source: field("repository"),
            licenses: field("license"),
        })
    }
}

/// The shared libraries `binary` loads, as `ldd` resolves them on this host.
fn linked_libraries(binary: &Path) -> Result<Vec<PathBuf>> {
    let out = Command::new("ldd")
        .arg(binary)
        .output()
        .map_err(|e| format!("ldd: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut libraries = Vec::new();
    for line in text.lines() {
        // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x…)" or "/lib64/ld-linux-x86-64.so.2 (0x…)".
        let path = match line.split_once("=>") {
            Some((_, right)) => right.split_whitespace().next(),
            None => line
                .split_whitespace()
                .next()
                .filter(|p| p.starts_with('/')),
        };
        if let Some(path) = path.filter(|p| p.starts_with('/')) {
            libraries.push(PathBuf::from(path));
        }
    }
    if libraries.is_empty() {
        return Err(format!("ldd found no libraries for {}", binary.display()));
    }
    Ok(libraries)
}

/// The Debian package owning `path`, for its copyright file.
fn owning_package(path: &Path) -> Option<String> {
    let out = Command::new("dpkg").arg("-S").arg(path).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let package = text.lines().next()?.split(':').next()?.trim().to_owned();
    (!package.is_empty()).then_some(package)
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// Everything in the image's one layer.
fn layer_entries(product: &Product) -> Result<Vec<Entry>> {
    let binary = target_dir().join("release").join(product.binary);
    let stripped = target_dir()
        .join("images")
        .join(format!("{}.stripped", product.binary));
    if let Some(parent) = stripped.parent() {
        std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    }
    exec(
        Command::new("strip")
            .arg("--strip-all")
            .arg("-o")
            .arg(&stripped)
            .arg(&binary),
    )?;
    let file = |path: &str, mode: u32, content: Vec<u8>| Entry {
        path: path.to_owned(),
        mode,
        owner: 0,
        content: Some(content),
    };
    let dir = |path: &str, mode: u32| Entry {
        path: path.to_owned(),
        mode,
        owner: 0,
        content: None,
    };
    let mut entries = vec![
        file(
            &format!("usr/local/bin/{}", product.binary),
            0o755,
            read(&stripped)?,
        ),
        file(
            "etc/passwd",
            0o644,
            format!("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:{UID}:{UID}:nonroot:/home/nonroot:/sbin/nologin\n").into_bytes(),
        ),
        file(
            "etc/group",
            0o644,
            format!("root:x:0:\nnonroot:x:{UID}:\n").into_bytes(),
        ),
        file(
            "etc/nsswitch.conf",
            0o644,
            b"passwd: files\ngroup: files\nhosts: files dns\n".to_vec(),
        ),
        file(
            "etc/ssl/certs/ca-certificates.crt",
            0o644,
            read(Path::new("/etc/ssl/certs/ca-certificates.crt"))?,
        ),
        dir("tmp", 0o1777),
        Entry {
            path: "home/nonroot".to_owned(),
            mode: 0o700,
            owner: UID,
            content: None,
        },
    ];
    let mut packages = BTreeMap::new();
    for library in linked_libraries(&binary)? {
        let resolved =
            std::fs::canonicalize(&library).map_err(|e| format!("{}: {e}", library.display()))?;
        let path = library.to_string_lossy().trim_start_matches('/').to_owned();
        entries.push(file(&path, 0o755, read(&resolved)?));
        if let Some(package) = owning_package(&resolved).or_else(|| owning_package(&library)) {
            packages.insert(package, ());
        }
    }
    for package in packages.keys() {
        let copyright = Path::new("/usr/share/doc").join(package).join("copyright");
        if copyright.is_file() {
            entries.push(file(
                &format!("usr/share/doc/{package}/copyright"),
                0o644,
                read(&copyright)?,
            ));
        }
    }
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(entries)
}

/// The layer as a gzipped tar, with its parent directories, reproducibly.
fn layer_tar(entries: &[Entry], epoch: u64) -> Result<(Vec<u8>, Vec<u8>)> {
    let mut tar = tar::Builder::new(Vec::new());
    let mut dirs_done = std::collections::BTreeSet::new();
    let header = |mode: u32, owner: u32, size: u64, kind: tar::EntryType| {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(kind);
        header.set_mode(mode);
        header.set_uid(u64::from(owner));
        header.set_gid(u64::from(owner));
        header.set_mtime(epoch);
        header.set_size(size);
        header
    };
    for entry in entries {
        // Parent directories first, once each (root-owned, 0755).
        let mut parent = String::new();
        let parts: Vec<&str> = entry.path.split('/').collect();
        for part in &parts[..parts.len() - 1] {
            parent.push_str(part);
            parent.push('/');
            if dirs_done.insert(parent.clone()) {
                let mut h = header(0o755, 0, 0, tar::EntryType::Directory);
                tar.append_data(&mut h, &parent, std::io::empty())
                    .map_err(|e| format!("tar {parent}: {e}"))?;
            }
        }
        match &entry.content {
            Some(content) => {
                let mut h = header(
                    entry.mode,
                    entry.owner,
                    content.len() as u64,
                    tar::EntryType::Regular,
                );
                tar.append_data(&mut h, &entry.path, content.as_slice())
                    .map_err(|e| format!("tar {}: {e}", entry.path))?;
            }
            None => {
                let path = format!("{}/", entry.path);
                if dirs_done.insert(path.clone()) {
                    let mut h = header(entry.mode, entry.owner, 0, tar::EntryType::Directory);
                    tar.append_data(&mut h, &path, std::io::empty())
                        .map_err(|e| format!("tar {path}: {e}"))?;
                }
            }
        }
    }
    let plain = tar.into_inner().map_err(|e| format!("tar: {e}"))?;
    let mut gz = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::best());
    gz.write_all(&plain).map_err(|e| format!("gzip: {e}"))?;
    let compressed = gz.finish().map_err(|e| format!("gzip: {e}"))?;
    Ok((plain, compressed))
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn digest(bytes: &[u8]) -> Result<Digest> {
    format!("sha256:{}", sha256_hex(bytes))
        .parse()
        .map_err(|e| format!("digest: {e}"))
}

/// Writes `bytes` as a blob of the layout at `dir`.
/// `value` as JSON with every object's keys sorted: oci-spec keeps labels, annotations and ports
/// in hash maps, whose order changes from run to run, and a blob's digest must not.
fn canonical_json(value: &impl serde::Serialize) -> Result<Vec<u8>> {
    fn sort(value: &mut serde_json::Value) {
        match value {
            serde_json::Value::Object(map) => {
                map.sort_keys();
                map.values_mut().for_each(sort);
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(sort),
            _ => {}
        }
    }
    let mut tree = serde_json::to_value(value).map_err(|e| format!("image JSON: {e}"))?;
    sort(&mut tree);
    serde_json::to_vec(&tree).map_err(|e| format!("image JSON: {e}"))
}

fn write_blob(dir: &Path, bytes: &[u8]) -> Result<()> {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).map_err(|e| format!("{}: {e}", blobs.display()))?;
    let path = blobs.join(sha256_hex(bytes));
    std::fs::write(&path, bytes).map_err(|e| format!("{}: {e}", path.display()))
}

fn spec_error(e: oci_spec::OciSpecError) -> String {
    format!("OCI spec: {e}")
}

/// Builds one image into the layout `dir`; returns its compressed size (layer + config).
fn build_image(product: &Product, facts: &Facts, dir: &Path) -> Result<u64> {
    let entries = layer_entries(product)?;
    let (plain, layer) = layer_tar(&entries, facts.epoch)?;
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let labels: std::collections::HashMap<String, String> = [
        ("org.opencontainers.image.title", product.binary.to_owned()),
        (
            "org.opencontainers.image.description",
            product.description.to_owned(),
        ),
        ("org.opencontainers.image.version", facts.version.clone()),
        ("org.opencontainers.image.revision", facts.revision.clone()),
        ("org.opencontainers.image.source", facts.source.clone()),
        ("org.opencontainers.image.licenses", facts.licenses.clone()),
        ("org.opencontainers.image.created", facts.created.clone()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let config = ConfigBuilder::default()
        .user(format!("{UID}:{UID}"))
        .entrypoint(vec![format!("/usr/local/bin/{}", product.binary)])
        .env(vec!["PATH=/usr/local/bin".to_owned()])
        .exposed_ports(
            product
                .ports
                .iter()
                .map(|p| (*p).to_owned())
                .collect::<Vec<_>>(),
        )
        .working_dir("/".to_owned())
        .stop_signal("SIGTERM".to_owned())
        .labels(labels.clone())
        .build()
        .map_err(spec_error)?;
    let image_config = ImageConfigurationBuilder::default()
        .created(facts.created.clone())
        .architecture(Arch::Amd64)
        .os(Os::Linux)
        .config(config)
        .rootfs(
            RootFsBuilder::default()
                .typ("layers".to_owned())
                .diff_ids(vec![format!("sha256:{}", sha256_hex(&plain))])
                .build()
                .map_err(spec_error)?,
        )
        .build()
        .map_err(spec_error)?;
    let config_bytes = canonical_json(&image_config)?;
    write_blob(dir, &layer)?;
    write_blob(dir, &config_bytes)?;
    let manifest = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(
            DescriptorBuilder::default()
                .media_type(MediaType::ImageConfig)
                .size(config_bytes.len() as u64)
                .digest(digest(&config_bytes)?)
                .build()
                .map_err(spec_error)?,
        )
        .layers(vec![DescriptorBuilder::default()
            .media_type(MediaType::ImageLayerGzip)
            .size(layer.len() as u64)
            .digest(digest(&layer)?)
            .build()
            .map_err(spec_error)?])
        .annotations(labels)
        .build()
        .map_err(spec_error)?;
    let manifest_bytes = canonical_json(&manifest)?;
    write_blob(dir, &manifest_bytes)?;
    let reference = format!("kubescribe/{}:{}", product.binary, facts.version);
    let index = ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(vec![DescriptorBuilder::default()
            .media_type(MediaType::ImageManifest)
            .size(manifest_bytes.len() as u64)
            .digest(digest(&manifest_bytes)?)
            .annotations(std::collections::HashMap::from([(
                "org.opencontainers.image.ref.name".to_owned(),
                reference.clone(),
            )]))
            .build()
            .map_err(spec_error)?])
        .build()
        .map_err(spec_error)?;
    index
        .to_file_pretty(dir.join("index.json"))
        .map_err(spec_error)?;
    OciLayoutBuilder::default()
        .image_layout_version("1.0.0".to_owned())
        .build()
        .map_err(spec_error)?
        .to_file(dir.join("oci-layout"))
        .map_err(spec_error)?;
    let size = (layer.len() + config_bytes.len()) as u64;
    eprintln!(
        "image: {reference} at {} ({} files, layer {:.1} MiB compressed, {:.1} MiB unpacked)",
        dir.display(),
        entries.len(),
        layer.len() as f64 / 1_048_576.0,
        plain.len() as f64 / 1_048_576.0
    );
    Ok(size)
}

/// A blob of the layout, checked against its descriptor's digest and size.
/// Builds the image a second time, into a scratch layout, and requires the same `index.json`:
/// the same manifest digest, so the same config and layer bytes.
fn check_reproducible(product: &Product, facts: &Facts, dir: &Path) -> Result<()> {
    let again = tempfile_dir(&format!("{}-again", product.binary))?;
    build_image(product, facts, &again)?;
    let index = |d: &Path| read(&d.join("index.json"));
    let (first, second) = (index(dir)?, index(&again)?);
    let _ = std::fs::remove_dir_all(&again);
    if first != second {
        return Err(format!(
            "{}: a second build of the image gave other digests:\n{}\n{}",
            product.binary,
            String::from_utf8_lossy(&first),
            String::from_utf8_lossy(&second)
        ));
    }
    eprintln!(
        "image: {} is reproducible (a second build has the same digests)",
        product.binary
    );
    Ok(())
}

fn read_blob(dir: &Path, digest: &Digest, size: u64) -> Result<Vec<u8>> {
    let hex = digest.digest();
    let bytes = read(&dir.join("blobs/sha256").join(hex))?;
    if sha256_hex(&bytes) != hex || bytes.len() as u64 != size {
        return Err(format!(
            "blob {hex}: digest or size does not match its descriptor"
        ));
    }
    Ok(bytes)
}

/// Reads the layout back, checks the config, unpacks the layer and runs the entrypoint in it.
fn check_image(product: &Product, dir: &Path) -> Result<()> {
    let index =
        oci_spec::image::ImageIndex::from_file(dir.join("index.json")).map_err(spec_error)?;
    let [descriptor] = index.manifests().as_slice() else {
        return Err("the index must name exactly one manifest".to_owned());
    };
    let manifest: ImageManifest =
        serde_json::from_slice(&read_blob(dir, descriptor.digest(), descriptor.size())?)
            .map_err(|e| format!("manifest: {e}"))?;
    let config: ImageConfiguration = serde_json::from_slice(&read_blob(
        dir,
        manifest.config().digest(),
        manifest.config().size(),
    )?)
    .map_err(|e| format!("config: {e}"))?;
    let settings = config.config().as_ref().ok_or("the image has no config")?;
    let entrypoint = format!("/usr/local/bin/{}", product.binary);
    let problems: Vec<&str> = [
        (
            settings.user().as_deref() != Some("65532:65532"),
            "user is not 65532:65532",
        ),
        (
            settings.entrypoint().as_deref() != Some(&[entrypoint.clone()][..]),
            "entrypoint is not the binary",
        ),
        (
            settings.exposed_ports().as_ref().map(Vec::len) != Some(product.ports.len()),
            "exposed ports differ",
        ),
        (
            !settings
                .labels()
                .as_ref()
                .is_some_and(|l| l.contains_key("org.opencontainers.image.revision")),
            "no revision label",
        ),
        (
            config.os() != &Os::Linux || config.architecture() != &Arch::Amd64,
            "not linux/amd64",
        ),
    ]
    .into_iter()
    .filter_map(|(bad, what)| bad.then_some(what))
    .collect();
    if !problems.is_empty() {
        return Err(format!("{}: {}", product.binary, problems.join(", ")));
    }
    let [layer] = manifest.layers().as_slice() else {
        return Err("the image must have one layer".to_owned());
    };
    let compressed = read_blob(dir, layer.digest(), layer.size())?;
    let total = compressed.len() as u64 + manifest.config().size();
    if total > MAX_IMAGE_BYTES {
        return Err(format!(
            "{}: {total} bytes compressed, over the {MAX_IMAGE_BYTES} budget",
            product.binary
        ));
    }
    let mut plain = Vec::new();
    flate2::read::GzDecoder::new(compressed.as_slice())
        .read_to_end(&mut plain)
        .map_err(|e| format!("layer: {e}"))?;
    let diff_id = format!("sha256:{}", sha256_hex(&plain));
    if config.rootfs().diff_ids() != &vec![diff_id] {
        return Err("the layer's diff_id does not match the config".to_owned());
    }
    let root = tempfile_dir(product.binary)?;
    tar::Archive::new(plain.as_slice())
        .unpack(&root)
        .map_err(|e| format!("unpacking the layer: {e}"))?;
    run_in_root(&root, &[&entrypoint, "--version"], product.binary)?;
    run_in_root(&root, &[&entrypoint, "--help"], product.help_names)?;
    if product.binary == "kubescribe-recorder" {
        smoke_recorder(&root, &entrypoint)?;
    }
    std::fs::remove_dir_all(&root).map_err(|e| format!("{}: {e}", root.display()))?;
    eprintln!(
        "image: {} checked: config, layer, entrypoint runs as {UID} from the image alone",
        product.binary
    );
    Ok(())
}

fn tempfile_dir(name: &str) -> Result<PathBuf> {
    let root = target_dir()
        .join("images")
        .join(format!(".check-{name}-{}", std::process::id()));
    if root.exists() {
        std::fs::remove_dir_all(&root).map_err(|e| format!("{}: {e}", root.display()))?;
    }
    std::fs::create_dir_all(&root).map_err(|e| format!("{}: {e}", root.display()))?;
    Ok(root)
}

/// `chroot` as found on this machine's `PATH` (the child's environment is cleared, and Rust
/// would look the program up on the child's `PATH`, the image's).
fn chroot_program() -> PathBuf {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("chroot"))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| PathBuf::from("/usr/sbin/chroot"))
}

/// `chroot --userspec=65532:65532 ROOT ARGS…`: only the image's files are visible.
fn in_root(root: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(chroot_program());
    command
        .arg(format!("--userspec={UID}:{UID}"))
        .arg(root)
        .args(args)
        .env_clear()
        .env("PATH", "/usr/local/bin");
    command
}

fn run_in_root(root: &Path, args: &[&str], expect: &str) -> Result<()> {
    let out = in_root(root, args)
        .output()
        .map_err(|e| format!("chroot (needs root): {e}"))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() || !text.contains(expect) {
        return Err(format!("{args:?} in the image: {}\n{text}", out.status));
    }
    Ok(())
}

/// The recorder from the image starts (creating its signing key), answers `/healthz`, and stops
/// cleanly on SIGTERM; its data directory stands in for a volume (owned by 65532, the root
/// filesystem otherwise untouched).
fn smoke_recorder(root: &Path, entrypoint: &str) -> Result<()> {
    let data = root.join("data");
    std::fs::create_dir_all(&data).map_err(|e| format!("{}: {e}", data.display()))?;
    exec(Command::new("chown").arg(format!("{UID}:{UID}")).arg(&data))?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("a free port: {e}"))?
        .port();
    let listen = format!("127.0.0.1:{port}");
    let mut child = in_root(
        root,
        &[
            entrypoint,
            "--listen",
            &listen,
            "--admin-listen",
            "off",
            "--dst",
            "/data",
            "--insecure-allow-any-uploader",
            // The key is created in the volume, by the image's user: manifests are signed.
            "--signing-key",
            "/data/signing.key",
            "--generate-signing-key",
        ],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .map_err(|e| format!("starting the recorder in the image: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let healthy = loop {
        let answer = std::net::TcpStream::connect(&listen).and_then(|mut s| {
            s.set_read_timeout(Some(Duration::from_secs(2)))?;
            s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")?;
            let mut reply = String::new();
            s.read_to_string(&mut reply)?;
            Ok(reply)
        });
        if answer.is_ok_and(|r| r.starts_with("HTTP/1.1 200")) {
            break true;
        }
        if Instant::now() > deadline || child.try_wait().ok().flatten().is_some() {
            break false;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let out = child
        .wait_with_output()
        .map_err(|e| format!("the recorder: {e}"))?;
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !healthy {
        return Err(format!(
            "the recorder in the image did not answer /healthz:\n{log}"
        ));
    }
    if !out.status.success() {
        return Err(format!(
            "the recorder in the image did not stop cleanly ({}):\n{log}",
            out.status
        ));
    }
    if !data.join("signing.key").is_file() {
        return Err(format!(
            "the recorder in the image did not create its signing key in the volume:\n{log}"
        ));
    }
    Ok(())
}
