//! WhoIs from a static identity file: for deployments without a tailnet, and for tests.
//!
//! Format (YAML, or JSON when the document starts with `{`); each entry carries `Node`,
//! `UserProfile` and `CapMap` exactly as tailscaled's WhoIs answer does, plus what to match:
//!
//! ```yaml
//! entries:
//!   - name: alice-laptop            # optional label, used in logs
//!     sources: ["100.64.0.7/32", "127.0.0.1/32"]   # peer CIDRs (any port)
//!     certSubject: "CN=alice,O=eng" # optional: also require this mTLS client cert subject
//!     Node: {ID: 7, StableID: nAlice, Name: alice-laptop.example.ts.net., User: 42}
//!     UserProfile: {ID: 42, LoginName: alice@example.com, DisplayName: Alice}
//!     CapMap:
//!       tailscale.com/cap/kubernetes:
//!         - {impersonate: {groups: [system:masters]}, recorderAddrs: ["127.0.0.1:8080"]}
//! ```
//!
//! The first entry (in file order) whose every stated condition holds wins. The whole file is
//! validated on load: unknown keys at entry level, entries that match nothing, and grants that do
//! not parse are errors, so a typo cannot silently loosen policy.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::caller::Caller;
use crate::grants::GrantError;
use crate::impersonation::impersonation_headers;
use crate::recording_rules::RecordingRules;
use crate::whois::{WhoIs, WhoIsError};
use crate::whois_response::{cap_map, null_default, CapMap, Node, UserProfile, WhoIsResponse};

/// Largest identity file accepted (a thousand entries take about 200 KiB).
pub const MAX_IDENTITY_FILE_BYTES: usize = 1024 * 1024;

/// Deepest `[`/`{` nesting accepted in a YAML identity file (the YAML parser's cost grows with
/// nesting depth; real files need fewer than ten levels).
const MAX_FLOW_DEPTH: usize = 64;

/// A parsed identity file: an ordered list of entries.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityFile {
    /// The entries, in match order.
    #[serde(default, deserialize_with = "null_default")]
    pub entries: Vec<IdentityFileEntry>,
}

/// One identity: what it matches, and the WhoIs answer it stands for.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityFileEntry {
    /// Optional label for logs and errors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Peer CIDRs this entry matches (any port). Empty: the entry matches by `certSubject` only.
    #[serde(default, deserialize_with = "null_default")]
    pub sources: Vec<IpNet>,
    /// If set, the entry also requires an mTLS client certificate with exactly this subject
    /// (RFC 4514 string as the proxy renders it, e.g. `CN=alice,O=eng`).
    #[serde(
        rename = "certSubject",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub cert_subject: Option<String>,
    /// The node, as in a WhoIs answer (`Node.Name` with or without the trailing dot).
    #[serde(rename = "Node", default, deserialize_with = "null_default")]
    pub node: Node,
    /// The user, as in a WhoIs answer.
    #[serde(rename = "UserProfile", default, deserialize_with = "null_default")]
    pub user_profile: UserProfile,
    /// The grants, as in a WhoIs answer.
    #[serde(rename = "CapMap", default, deserialize_with = "cap_map")]
    pub cap_map: CapMap,
}

impl IdentityFileEntry {
    /// The WhoIs answer this entry stands for.
    pub fn to_response(&self) -> WhoIsResponse {
        WhoIsResponse {
            node: self.node.clone(),
            user_profile: self.user_profile.clone(),
            cap_map: self.cap_map.clone(),
        }
    }

    /// Whether every condition the entry states holds for this peer (and certificate subject).
    pub fn matches(&self, peer: IpAddr, cert_subject: Option<&str>) -> bool {
        let peer = peer.to_canonical();
        let source_ok =
            self.sources.is_empty() || self.sources.iter().any(|net| net.contains(&peer));
        let subject_ok = match &self.cert_subject {
            None => true,
            Some(required) => cert_subject == Some(required.as_str()),
        };
        source_ok && subject_ok
    }

    fn label(&self, index: usize) -> String {
        match &self.name {
            Some(name) => format!("entry #{index} ({name:?})"),
            None => format!("entry #{index}"),
        }
    }
}

/// Why an identity file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum IdentityFileError {
    /// The file could not be read.
    #[error("cannot read identity file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is larger than this crate will parse.
    #[error("identity file {path} is {size} bytes; the limit is {limit} bytes")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        size: u64,
        /// The limit.
        limit: usize,
    },
    /// The file is not valid YAML/JSON of the documented shape.
    #[error("identity file {path} does not parse: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's error (with line and column).
        #[source]
        source: IdentityFileSyntaxError,
    },
    /// An entry is unusable (matches nothing, or has no node name / user to impersonate).
    #[error("identity file {path}, {entry}: {reason}")]
    InvalidEntry {
        /// The file.
        path: PathBuf,
        /// Which entry.
        entry: String,
        /// What is wrong.
        reason: String,
    },
    /// The SIGHUP handler could not be installed.
    #[error("cannot watch identity file {path} for SIGHUP: {source}")]
    Watch {
        /// The file.
        path: PathBuf,
        /// The error installing the signal handler.
        #[source]
        source: std::io::Error,
    },
    /// An entry's grants do not parse.
    #[error("identity file {path}, {entry}: {source}")]
    Grant {
        /// The file.
        path: PathBuf,
        /// Which entry.
        entry: String,
        /// The grant error.
        #[source]
        source: GrantError,
    },
}

/// Why the text of an identity file does not parse.
#[derive(Debug, thiserror::Error)]
pub enum IdentityFileSyntaxError {
    /// The file is not UTF-8.
    #[error(transparent)]
    Utf8(#[from] std::str::Utf8Error),
    /// The JSON does not parse, or is not of the documented shape.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// The YAML does not parse, or is not of the documented shape.
    #[error(transparent)]
    Yaml(#[from] serde_yaml_ng::Error),
    /// The YAML nests `[`/`{` deeper than the parser is allowed to go.
    #[error("more than {max} nested '[' or '{{' (is a bracket unbalanced?)")]
    TooDeep {
        /// The deepest nesting accepted.
        max: usize,
    },
}

impl IdentityFile {
    /// Parses and validates a document (YAML, or JSON if it starts with `{`). `path` only labels
    /// errors.
    pub fn parse(bytes: &[u8], path: &Path) -> Result<Self, IdentityFileError> {
        if bytes.len() > MAX_IDENTITY_FILE_BYTES {
            return Err(IdentityFileError::TooLarge {
                path: path.to_owned(),
                size: bytes.len() as u64,
                limit: MAX_IDENTITY_FILE_BYTES,
            });
        }
        let file = Self::parse_text(bytes).map_err(|source| IdentityFileError::Parse {
            path: path.to_owned(),
            source,
        })?;
        file.validate(path)?;
        Ok(file)
    }

    /// Parses a document without validating it.
    fn parse_text(bytes: &[u8]) -> Result<Self, IdentityFileSyntaxError> {
        let text = std::str::from_utf8(bytes)?;
        if text.trim_start().starts_with('{') {
            Ok(serde_json::from_str(text)?)
        } else {
            check_flow_depth(text)?;
            Ok(serde_yaml_ng::from_str(text)?)
        }
    }

    /// Reads, parses and validates the file at `path`.
    pub fn read(path: &Path) -> Result<Self, IdentityFileError> {
        let bytes = read_bounded(path)?;
        Self::parse(&bytes, path)
    }

    /// Checks every entry: it must match something, name its node, have a user to impersonate,
    /// and carry grants that parse.
    pub fn validate(&self, path: &Path) -> Result<(), IdentityFileError> {
        for (index, entry) in self.entries.iter().enumerate() {
            let invalid = |reason: &str| IdentityFileError::InvalidEntry {
                path: path.to_owned(),
                entry: entry.label(index),
                reason: reason.to_owned(),
            };
            if entry.sources.is_empty() && entry.cert_subject.is_none() {
                return Err(invalid(
                    "it has neither \"sources\" nor \"certSubject\", so it can never match",
                ));
            }
            if entry.cert_subject.as_deref() == Some("") {
                return Err(invalid("\"certSubject\" is empty"));
            }
            if entry.node.name.trim_end_matches('.').is_empty() {
                return Err(invalid("\"Node.Name\" (the node's FQDN) is missing"));
            }
            let grant = |source: GrantError| IdentityFileError::Grant {
                path: path.to_owned(),
                entry: entry.label(index),
                source,
            };
            RecordingRules::from_caps(&entry.cap_map).map_err(grant)?;
            impersonation_headers(&Caller::from(entry.to_response())).map_err(grant)?;
        }
        Ok(())
    }

    /// The first entry matching the peer (and certificate subject, if any).
    pub fn lookup(&self, peer: IpAddr, cert_subject: Option<&str>) -> Option<&IdentityFileEntry> {
        self.entries
            .iter()
            .find(|entry| entry.matches(peer, cert_subject))
    }
}

/// When an [`IdentityFileWhoIs`] re-reads its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadOptions {
    /// Check the file's modification time, size and inode this often; `None` disables polling.
    /// Default 2 s.
    pub poll_interval: Option<Duration>,
    /// Re-read on SIGHUP. Default true. (Installing the handler replaces SIGHUP's default action,
    /// termination, for the whole process.)
    pub reload_on_sighup: bool,
}

impl Default for ReloadOptions {
    fn default() -> Self {
        ReloadOptions {
            poll_interval: Some(Duration::from_secs(2)),
            reload_on_sighup: true,
        }
    }
}

/// [`WhoIs`] answered from an identity file (see the module docs for the format). Cheap to
/// clone; clones share the loaded file. A reload that fails keeps the previous contents and logs
/// an error.
#[derive(Debug, Clone)]
pub struct IdentityFileWhoIs {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    state: RwLock<State>,
    /// Dropped with the last clone; that ends the reload task.
    _stop: Option<tokio::sync::oneshot::Sender<()>>,
}

#[derive(Debug)]
struct State {
    file: Arc<IdentityFile>,
    /// The file version last looked at (loaded or rejected).
    stamp: Option<FileStamp>,
    generation: u64,
}

/// What identifies one version of the file on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: i64,
    mtime_nsec: i64,
    ctime: i64,
    ctime_nsec: i64,
}

impl FileStamp {
    fn of(path: &Path) -> Option<FileStamp> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(path).ok()?;
        Some(FileStamp {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime: m.mtime(),
            mtime_nsec: m.mtime_nsec(),
            ctime: m.ctime(),
            ctime_nsec: m.ctime_nsec(),
        })
    }
}

impl IdentityFileWhoIs {
    /// Loads the file once; it is re-read only by [`IdentityFileWhoIs::reload`].
    pub fn load(path: impl Into<PathBuf>) -> Result<Self, IdentityFileError> {
        Self::open(path.into(), None)
    }

    /// Loads the file and keeps it current: re-reads it when it changes on disk or on SIGHUP, as
    /// `options` says. Must be called inside a tokio runtime; the background task ends when the
    /// last clone is dropped.
    pub fn watch(
        path: impl Into<PathBuf>,
        options: ReloadOptions,
    ) -> Result<Self, IdentityFileError> {
        Self::open(path.into(), Some(options))
    }

    fn open(path: PathBuf, options: Option<ReloadOptions>) -> Result<Self, IdentityFileError> {
        let stamp = FileStamp::of(&path);
        let file = IdentityFile::read(&path)?;
        tracing::info!(
            path = %path.display(),
            entries = file.entries.len(),
            "loaded identity file"
        );
        let state = RwLock::new(State {
            file: Arc::new(file),
            stamp,
            generation: 1,
        });
        let Some(options) = options else {
            return Ok(IdentityFileWhoIs {
                inner: Arc::new(Inner {
                    path,
                    state,
                    _stop: None,
                }),
            });
        };
        let hangup = if options.reload_on_sighup {
            let signal = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
                .map_err(|source| IdentityFileError::Watch {
                    path: path.clone(),
                    source,
                })?;
            Some(signal)
        } else {
            None
        };
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
        let this = IdentityFileWhoIs {
            inner: Arc::new(Inner {
                path,
                state,
                _stop: Some(stop_tx),
            }),
        };
        tokio::spawn(reload_task(
            Arc::downgrade(&this.inner),
            options.poll_interval,
            hangup,
            stop_rx,
        ));
        Ok(this)
    }

    /// The file being served.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The contents currently in force.
    pub fn current(&self) -> Arc<IdentityFile> {
        Arc::clone(&self.read_state().file)
    }

    /// How many times the file has been loaded successfully (1 after construction).
    pub fn generation(&self) -> u64 {
        self.read_state().generation
    }

    /// Re-reads the file now. On error the previous contents stay in force.
    pub fn reload(&self) -> Result<(), IdentityFileError> {
        self.reload_inner(true)
    }

    /// Resolves a peer by address only (entries that require a certificate subject never match).
    pub fn lookup(&self, peer: SocketAddr) -> Result<Caller, WhoIsError> {
        self.resolve(peer, None)
    }

    /// Resolves a peer that presented an mTLS client certificate with `cert_subject`. Entries
    /// without `sources` match any address; entries without `certSubject` match any subject.
    pub fn lookup_with_cert_subject(
        &self,
        peer: SocketAddr,
        cert_subject: &str,
    ) -> Result<Caller, WhoIsError> {
        self.resolve(peer, Some(cert_subject))
    }

    fn resolve(&self, peer: SocketAddr, subject: Option<&str>) -> Result<Caller, WhoIsError> {
        let file = self.current();
        match file.lookup(peer.ip(), subject) {
            Some(entry) => Ok(Caller::from(entry.to_response())),
            None => Err(WhoIsError::NoMatch {
                peer,
                detail: match subject {
                    None => format!(
                        "no entry of identity file {} matches {}",
                        self.inner.path.display(),
                        peer.ip()
                    ),
                    Some(subject) => format!(
                        "no entry of identity file {} matches {} with certificate subject {subject:?}",
                        self.inner.path.display(),
                        peer.ip()
                    ),
                },
            }),
        }
    }

    fn read_state(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.inner.state.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Reloads if forced or if the file changed since last looked at.
    fn reload_inner(&self, force: bool) -> Result<(), IdentityFileError> {
        let path = &self.inner.path;
        let stamp = FileStamp::of(path);
        if !force && stamp == self.read_state().stamp {
            return Ok(());
        }
        let result = IdentityFile::read(path);
        let mut state = self.inner.state.write().unwrap_or_else(|e| e.into_inner());
        state.stamp = stamp;
        let file = result?;
        state.file = Arc::new(file);
        state.generation += 1;
        tracing::info!(
            path = %path.display(),
            entries = state.file.entries.len(),
            generation = state.generation,
            "reloaded identity file"
        );
        Ok(())
    }
}

#[async_trait]
impl WhoIs for IdentityFileWhoIs {
    async fn whois(&self, peer: SocketAddr) -> Result<Caller, WhoIsError> {
        self.lookup(peer)
    }
}

async fn reload_task(
    inner: std::sync::Weak<Inner>,
    poll_interval: Option<Duration>,
    mut hangup: Option<tokio::signal::unix::Signal>,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    let mut ticker = poll_interval.map(|every| {
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        ticker
    });
    loop {
        let force = tokio::select! {
            _ = &mut stop => return,
            _ = async {
                match ticker.as_mut() {
                    Some(t) => { t.tick().await; }
                    None => std::future::pending::<()>().await,
                }
            } => false,
            received = async {
                match hangup.as_mut() {
                    Some(h) => h.recv().await,
                    None => std::future::pending().await,
                }
            } => {
                if received.is_none() {
                    hangup = None;
                    continue;
                }
                true
            }
        };
        let Some(inner) = inner.upgrade() else { return };
        let this = IdentityFileWhoIs { inner };
        if force {
            tracing::info!(path = %this.path().display(), "SIGHUP: re-reading identity file");
        }
        // Reading and parsing is blocking work; keep it off the async workers.
        let outcome = tokio::task::spawn_blocking(move || this.reload_inner(force)).await;
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::error!(
                %error,
                "identity file not reloaded; the previous version stays in force"
            ),
            Err(error) => tracing::error!(%error, "identity file reload task failed"),
        }
    }
}

/// Rejects YAML whose `[`/`{` nesting exceeds [`MAX_FLOW_DEPTH`] before the parser sees it.
/// Brackets inside quoted strings are counted too, which can only reject more, never less.
fn check_flow_depth(text: &str) -> Result<(), IdentityFileSyntaxError> {
    let mut depth = 0usize;
    for byte in text.bytes() {
        match byte {
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_FLOW_DEPTH {
                    return Err(IdentityFileSyntaxError::TooDeep {
                        max: MAX_FLOW_DEPTH,
                    });
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

fn read_bounded(path: &Path) -> Result<Vec<u8>, IdentityFileError> {
    use std::io::Read;
    let read_error = |source| IdentityFileError::Read {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read_error)?;
    let mut bytes = Vec::new();
    file.take(MAX_IDENTITY_FILE_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(read_error)?;
    if bytes.len() > MAX_IDENTITY_FILE_BYTES {
        return Err(IdentityFileError::TooLarge {
            path: path.to_owned(),
            size: std::fs::metadata(path)
                .map(|m| m.len())
                .unwrap_or(bytes.len() as u64),
            limit: MAX_IDENTITY_FILE_BYTES,
        });
    }
    Ok(bytes)
}
