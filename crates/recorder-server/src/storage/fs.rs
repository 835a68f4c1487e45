//! File-system helpers of the disk back end: errors that name the operation
//! and the path, directory fsyncs, directory walks, and running blocking
//! file work off the async threads.

use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};

use super::StorageError;

/// Turns an OS error of `op` on `path` into a [`StorageError`].
pub(super) fn io_err(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> StorageError {
    let path = path.display().to_string();
    move |source| StorageError::Io { op, path, source }
}

/// Makes the entries of `dir` (files created, renamed or removed in it) durable.
pub(super) fn fsync_dir(dir: &Path) -> Result<(), StorageError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("fsync directory", dir))
}

/// Opens `path` for reading and writing, with its length; `open` and `stat`
/// name those steps in errors.
pub(super) fn open_rw(
    path: &Path,
    open: &'static str,
    stat: &'static str,
) -> Result<(File, u64), StorageError> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(io_err(open, path))?;
    let len = file.metadata().map_err(io_err(stat, path))?.len();
    Ok((file, len))
}

/// Runs blocking file work on tokio's blocking pool.
pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StorageError> + Send + 'static,
) -> Result<T, StorageError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(StorageError::Worker)?
}

/// Visits every file below `dir` (depth first, in no particular order) with
/// its name and metadata. Entries whose name `skip` refuses are passed over,
/// directories with everything in them. A directory that does not exist
/// (or vanishes during the walk) holds nothing.
pub(super) fn walk_files(
    dir: &Path,
    skip: impl Fn(&str) -> bool,
    mut visit: impl FnMut(PathBuf, &str, &fs::Metadata) -> Result<(), StorageError>,
) -> Result<(), StorageError> {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_err("list directory", &dir)(e)),
        };
        for entry in entries {
            let entry = entry.map_err(io_err("list directory", &dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if skip(&name) {
                continue;
            }
            let path = entry.path();
            let meta = entry.metadata().map_err(io_err("stat", &path))?;
            if meta.is_dir() {
                stack.push(path);
            } else {
                visit(path, &name, &meta)?;
            }
        }
    }
    Ok(())
}
