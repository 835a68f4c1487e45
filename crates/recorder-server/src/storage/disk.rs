//! The local-directory back end: one file per object under a root directory.
//!
//! Event and response records are appended to per-hour segment files, one
//! `fdatasync` per group commit (see the `segment` module). Whole objects
//! ([`Storage::put`]) are written to a hidden temporary file, fsynced, renamed
//! into place, and the directory is fsynced, so a crash leaves either the
//! whole object or none of it. Sessions are appended to `<key>.partial` (fsynced on
//! every append) and renamed to `<key>` when they finish; a `.partial` left by
//! a crash is cut back to its last complete line and renamed at start-up.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;

use uuid::Uuid;

use super::fence::Fence;
use super::fs::{blocking, fsync_dir, io_err, open_rw, walk_files};
use super::layout::{self, ObjectKey, RecordLocation};
use super::segment::{self, Segments, DEFAULT_SEGMENT_MAX_BYTES, LANES};
use super::{MayRecover, ObjectInfo, RecoveredSession, SessionSink, Storage, StorageError};
use crate::record::{new_id, RecordKind};

const PARTIAL_SUFFIX: &str = ".partial";

/// The lock file a serving recorder holds in its storage directory (hidden: listings skip it).
const LOCK_FILE: &str = ".kubescribe-recorder.lock";

/// Storage in a local directory.
#[derive(Debug, Clone)]
pub struct DiskStorage {
    root: PathBuf,
    known_dirs: Arc<Mutex<HashSet<PathBuf>>>,
    segments: Arc<Segments>,
    /// The directory's lock, held while any clone lives (see [`DiskStorage::open_exclusive`]).
    lock: Option<Arc<File>>,
}

impl DiskStorage {
    /// Opens (creating if needed) the storage root `root`.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, StorageError> {
        let root = root.into();
        fs::create_dir_all(&root).map_err(io_err("create storage directory", &root))?;
        Ok(Self {
            root,
            known_dirs: Arc::new(Mutex::new(HashSet::new())),
            segments: Arc::new(Segments::new(DEFAULT_SEGMENT_MAX_BYTES, LANES)),
            lock: None,
        })
    }

    /// Opens the storage root like [`DiskStorage::open`] and takes its exclusive lock (an advisory
    /// `flock` on a hidden file, released when the process ends, however it ends), so that a second
    /// recorder on the same directory is refused instead of corrupting the first one's segments and
    /// live sessions.
    pub fn open_exclusive(root: impl Into<PathBuf>) -> Result<Self, StorageError> {
        let mut storage = Self::open(root)?;
        let path = storage.root.join(LOCK_FILE);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_err("open the lock file", &path))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                return Err(StorageError::Locked {
                    dir: storage.root.display().to_string(),
                    lock: path.display().to_string(),
                })
            }
            Err(fs::TryLockError::Error(e)) => return Err(io_err("lock", &path)(e)),
        }
        storage.lock = Some(Arc::new(file));
        Ok(storage)
    }

    /// Closes record segments once they reach `bytes` (default 64 MiB) and
    /// starts new ones.
    pub fn with_segment_max_bytes(mut self, bytes: u64) -> Self {
        self.segments = Arc::new(Segments::new(bytes, self.segments.lanes()));
        self
    }

    /// Makes this directory a write-ahead log of record segments (the
    /// batched S3 back end's): one lane per kind, segments closed at
    /// `max_bytes` or once their first batch is `max_age` old, and the closed
    /// ones listed for [`DiskStorage::segments`]`.take_closed()`.
    pub(super) fn into_log(mut self, max_bytes: u64, max_age: std::time::Duration) -> Self {
        self.segments = Arc::new(Segments::new(max_bytes, 1).with_max_age(max_age));
        self
    }

    /// The open segments.
    pub(super) fn segments(&self) -> &Segments {
        &self.segments
    }

    /// The storage root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path_of(&self, key: &str) -> Result<PathBuf, StorageError> {
        // Keys come from `layout`, but reads may name listed keys: refuse
        // anything that could leave the root.
        if key.is_empty()
            || key.starts_with('/')
            || key
                .split('/')
                .any(|c| c.is_empty() || c == "." || c == "..")
            || key.contains('\\')
        {
            return Err(StorageError::NotFound(key.to_owned()));
        }
        Ok(self.root.join(key))
    }

    /// The file of object `key` and its directory, created (durably) if needed.
    fn object_path(&self, key: &ObjectKey) -> Result<(PathBuf, PathBuf), StorageError> {
        let path = self.path_of(key.as_str())?;
        let dir = path
            .parent()
            .ok_or_else(|| StorageError::Unusable(format!("bad key {key}")))?
            .to_path_buf();
        self.ensure_dir(&dir)?;
        Ok((path, dir))
    }

    /// Creates `dir` and makes its entry durable in its parents.
    fn ensure_dir(&self, dir: &Path) -> Result<(), StorageError> {
        if let Ok(known) = self.known_dirs.lock() {
            if known.contains(dir) {
                return Ok(());
            }
        }
        if !dir.is_dir() {
            // Remember which ancestors are new so their entries get fsynced.
            let mut missing = Vec::new();
            let mut cursor = dir.to_path_buf();
            while !cursor.is_dir() && cursor.starts_with(&self.root) {
                missing.push(cursor.clone());
                if !cursor.pop() {
                    break;
                }
            }
            fs::create_dir_all(dir).map_err(io_err("create directory", dir))?;
            for created in missing.iter().rev() {
                if let Some(parent) = created.parent() {
                    fsync_dir(parent)?;
                }
            }
        }
        if let Ok(mut known) = self.known_dirs.lock() {
            known.insert(dir.to_path_buf());
        }
        Ok(())
    }

    fn put_blocking(&self, key: &ObjectKey, data: &[u8]) -> Result<(), StorageError> {
        let (path, dir) = self.object_path(key)?;
        let file_name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = dir.join(format!(".{file_name}.tmp-{}", new_id().simple()));
        let result = (|| {
            let mut file = File::create(&tmp).map_err(io_err("create", &tmp))?;
            file.write_all(data).map_err(io_err("write", &tmp))?;
            file.sync_all().map_err(io_err("fsync", &tmp))?;
            fs::rename(&tmp, &path).map_err(io_err("rename into place", &path))?;
            fsync_dir(&dir)
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    fn list_blocking(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StorageError> {
        let mut out = Vec::new();
        let start = if prefix.is_empty() {
            self.root.clone()
        } else {
            self.path_of(prefix.trim_end_matches('/'))?
        };
        if !start.exists() {
            return Ok(out);
        }
        walk_files(
            &start,
            |name| name.starts_with('.') || name.ends_with(PARTIAL_SUFFIX),
            |path, _, meta| {
                if let Ok(rel) = path.strip_prefix(&self.root) {
                    let key = rel
                        .components()
                        .map(|c| c.as_os_str().to_string_lossy().into_owned())
                        .collect::<Vec<_>>()
                        .join("/");
                    out.push(ObjectInfo {
                        key,
                        size: meta.len(),
                    });
                }
                Ok(())
            },
        )?;
        Ok(out)
    }

    fn recover_blocking(&self) -> Result<Vec<RecoveredSession>, StorageError> {
        let sessions = self.root.join(layout::SESSIONS);
        let mut recovered = Vec::new();
        let Ok(dates) = fs::read_dir(&sessions) else {
            return Ok(recovered);
        };
        for date in dates.flatten() {
            let dir = date.path();
            let Ok(files) = fs::read_dir(&dir) else {
                continue;
            };
            for file in files.flatten() {
                let name = file.file_name().to_string_lossy().into_owned();
                if name.starts_with('.') && name.contains(".tmp-") {
                    let _ = fs::remove_file(file.path());
                    continue;
                }
                let Some(final_name) = name.strip_suffix(PARTIAL_SUFFIX) else {
                    continue;
                };
                let rel = format!(
                    "{}/{}/{}",
                    layout::SESSIONS,
                    date.file_name().to_string_lossy(),
                    final_name
                );
                let Some(key) = ObjectKey::parse(&rel) else {
                    tracing::warn!(file = %file.path().display(), "ignoring unexpected file in sessions/");
                    continue;
                };
                let partial = file.path();
                let size = truncate_to_last_line(&partial)?;
                if size == 0 {
                    fs::remove_file(&partial).map_err(io_err("remove empty", &partial))?;
                    fsync_dir(&dir)?;
                    continue;
                }
                let target = dir.join(final_name);
                fs::rename(&partial, &target).map_err(io_err("rename into place", &target))?;
                fsync_dir(&dir)?;
                recovered.push(RecoveredSession { key, size });
            }
        }
        Ok(recovered)
    }
}

/// Cuts a crash-interrupted session back to its last `\n` (bytes after it were
/// never acknowledged) and returns the new size.
fn truncate_to_last_line(path: &Path) -> Result<u64, StorageError> {
    let (mut file, len) = open_rw(path, "open", "stat")?;
    let mut end = len;
    let mut buf = vec![0u8; 64 * 1024];
    while end > 0 {
        let start = end.saturating_sub(buf.len() as u64);
        let n = (end - start) as usize;
        file.seek(SeekFrom::Start(start))
            .map_err(io_err("seek", path))?;
        file.read_exact(&mut buf[..n])
            .map_err(io_err("read", path))?;
        if let Some(pos) = buf[..n].iter().rposition(|b| *b == b'\n') {
            let keep = start + pos as u64 + 1;
            if keep != len {
                file.set_len(keep).map_err(io_err("truncate", path))?;
                file.sync_all().map_err(io_err("fsync", path))?;
            }
            return Ok(keep);
        }
        end = start;
    }
    Ok(0)
}

#[async_trait]
impl Storage for DiskStorage {
    fn describe(&self) -> String {
        format!("disk:{}", self.root.display())
    }

    async fn check(&self) -> Result<(), StorageError> {
        let me = self.clone();
        blocking(move || {
            let probe = me.root.join(format!(".probe-{}", new_id().simple()));
            let mut file = File::create(&probe).map_err(io_err("write probe file in", &me.root))?;
            file.write_all(b"ok")
                .map_err(io_err("write probe file in", &me.root))?;
            file.sync_all()
                .map_err(io_err("fsync probe file in", &me.root))?;
            fs::remove_file(&probe).map_err(io_err("remove probe file", &probe))?;
            // Leftover temporary files from a crash are never part of an object.
            for info in walk_hidden_tmp(&me.root) {
                let _ = fs::remove_file(info);
            }
            Ok(())
        })
        .await
    }

    async fn put(&self, key: &ObjectKey, data: Bytes) -> Result<(), StorageError> {
        let me = self.clone();
        let key = key.clone();
        blocking(move || me.put_blocking(&key, &data)).await
    }

    async fn append_records(
        &self,
        kind: RecordKind,
        batch: &Uuid,
        data: Bytes,
    ) -> Result<(), StorageError> {
        let me = self.clone();
        let batch = *batch;
        blocking(move || {
            me.segments
                .append(&me.root, kind, &batch, &data, |dir| me.ensure_dir(dir))
        })
        .await
    }

    fn append_parallelism(&self) -> usize {
        self.segments.lanes()
    }

    /// Appending to a segment again would store the records twice.
    fn append_is_idempotent(&self) -> bool {
        false
    }

    async fn read_record(
        &self,
        loc: &RecordLocation,
        id: &str,
    ) -> Result<Option<Bytes>, StorageError> {
        let root = self.root.clone();
        let (kind, batch, id) = (loc.kind, loc.batch, id.to_owned());
        blocking(move || segment::read_record(&root, kind, &batch, &id)).await
    }

    async fn recover_records(&self) -> Result<usize, StorageError> {
        let root = self.root.clone();
        let repaired = blocking(move || segment::recover(&root)).await?;
        for (file, outcome) in &repaired {
            tracing::warn!(%file, ?outcome, "cut a record segment back to its last acknowledged line after a crash");
        }
        Ok(repaired.len())
    }

    async fn is_sealed(&self, key: &str) -> Result<bool, StorageError> {
        let path = self.path_of(key)?;
        let key = key.to_owned();
        blocking(move || match fs::metadata(&path) {
            Ok(meta) => Ok(meta.permissions().readonly()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(StorageError::NotFound(key)),
            Err(e) => Err(io_err("stat", &path)(e)),
        })
        .await
    }

    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        let path = self.path_of(key)?;
        blocking(move || {
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(io_err("delete", &path)(e)),
            }
            match path.parent() {
                Some(dir) => fsync_dir(dir),
                None => Ok(()),
            }
        })
        .await
    }

    async fn get(&self, key: &str) -> Result<Bytes, StorageError> {
        let path = self.path_of(key)?;
        let key = key.to_owned();
        blocking(move || match fs::read(&path) {
            Ok(data) => Ok(Bytes::from(data)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(StorageError::NotFound(key)),
            Err(e) => Err(io_err("read", &path)(e)),
        })
        .await
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes, StorageError> {
        let path = self.path_of(key)?;
        let key = key.to_owned();
        blocking(move || {
            let mut file = match File::open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(StorageError::NotFound(key))
                }
                Err(e) => return Err(io_err("open", &path)(e)),
            };
            let len = file.metadata().map_err(io_err("stat", &path))?.len();
            let start = range.start.min(len);
            let end = range.end.min(len).max(start);
            file.seek(SeekFrom::Start(start))
                .map_err(io_err("seek", &path))?;
            // Not zero-filled first: read straight into spare capacity.
            let want = end - start;
            let mut buf = Vec::with_capacity(want as usize);
            file.take(want)
                .read_to_end(&mut buf)
                .map_err(io_err("read", &path))?;
            if (buf.len() as u64) < want {
                let short = std::io::Error::from(std::io::ErrorKind::UnexpectedEof);
                return Err(io_err("read", &path)(short));
            }
            Ok(Bytes::from(buf))
        })
        .await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StorageError> {
        let me = self.clone();
        let prefix = prefix.to_owned();
        blocking(move || me.list_blocking(&prefix)).await
    }

    /// A directory is one process's alone: `fence` names no one in it.
    async fn create_session(
        &self,
        key: &ObjectKey,
        _fence: &Arc<Fence>,
    ) -> Result<Box<dyn SessionSink>, StorageError> {
        let me = self.clone();
        let key = key.clone();
        blocking(move || {
            let (path, dir) = me.object_path(&key)?;
            let partial = PathBuf::from(format!("{}{PARTIAL_SUFFIX}", path.display()));
            let file = OpenOptions::new()
                .create_new(true)
                .append(true)
                .open(&partial)
                .map_err(io_err("create session file", &partial))?;
            fsync_dir(&dir)?;
            let sink: Box<dyn SessionSink> = Box::new(DiskSession {
                file: Some(file),
                partial,
                path,
                dir,
                durable: 0,
            });
            Ok(sink)
        })
        .await
    }

    /// A directory's sessions name no owner (`may_recover(None)`).
    async fn recover_sessions(
        &self,
        may_recover: MayRecover<'_>,
    ) -> Result<Vec<RecoveredSession>, StorageError> {
        if !may_recover(None) {
            return Ok(Vec::new());
        }
        let me = self.clone();
        blocking(move || me.recover_blocking()).await
    }
}

fn walk_hidden_tmp(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                stack.push(path);
            } else if name.starts_with('.') && name.contains(".tmp-") {
                out.push(path);
            }
        }
    }
    out
}

struct DiskSession {
    file: Option<File>,
    partial: PathBuf,
    path: PathBuf,
    dir: PathBuf,
    durable: u64,
}

#[async_trait]
impl SessionSink for DiskSession {
    async fn append(&mut self, data: Bytes) -> Result<u64, StorageError> {
        let Some(mut file) = self.file.take() else {
            return Err(StorageError::Unusable("session file already failed".into()));
        };
        let partial = self.partial.clone();
        let (file, result) = tokio::task::spawn_blocking(move || {
            let r = file
                .write_all(&data)
                .map_err(io_err("append", &partial))
                .and_then(|_| file.sync_data().map_err(io_err("fsync", &partial)))
                .map(|_| data.len() as u64);
            (file, r)
        })
        .await
        .map_err(StorageError::Worker)?;
        let written = result?;
        self.file = Some(file);
        self.durable += written;
        Ok(self.durable)
    }

    async fn finish(self: Box<Self>) -> Result<u64, StorageError> {
        let DiskSession {
            file,
            partial,
            path,
            dir,
            durable,
        } = *self;
        blocking(move || {
            if let Some(file) = file {
                file.sync_all().map_err(io_err("fsync", &partial))?;
            }
            fs::rename(&partial, &path).map_err(io_err("rename into place", &path))?;
            fsync_dir(&dir)?;
            Ok(durable)
        })
        .await
    }
}
