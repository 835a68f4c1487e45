//! The JSON lines sink: audit Events one per line in
//! `<dir>/audit-YYYY-MM-DD.jsonl` (UTC day of export), a new file
//! `audit-YYYY-MM-DD.N.jsonl` when one reaches the size limit. A batch is
//! appended and `fsync`ed (and the directory, when a file is new) before it
//! counts as delivered.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use time::OffsetDateTime;

use super::SinkError;

/// Where and how big.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JsonlTarget {
    /// The directory (created if missing).
    pub(crate) dir: PathBuf,
    /// A file is closed and the next one started beyond this many bytes.
    pub(crate) max_file_bytes: u64,
}

/// The open file.
pub(crate) struct JsonlSink {
    target: JsonlTarget,
    open: Option<(String, u32, File, u64)>,
}

fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> SinkError {
    let path = path.display().to_string();
    move |source| SinkError::Io { op, path, source }
}

fn today() -> String {
    let t = OffsetDateTime::now_utc();
    format!("{:04}-{:02}-{:02}", t.year(), u8::from(t.month()), t.day())
}

impl JsonlSink {
    pub(crate) fn new(target: JsonlTarget) -> Self {
        Self { target, open: None }
    }

    fn file_name(day: &str, n: u32) -> String {
        if n == 0 {
            format!("audit-{day}.jsonl")
        } else {
            format!("audit-{day}.{n}.jsonl")
        }
    }

    /// Appends `lines` (each ending in `\n`) durably.
    pub(crate) fn append(&mut self, lines: &[u8]) -> Result<(), SinkError> {
        let dir = self.target.dir.clone();
        let day = today();
        let reuse = matches!(&self.open, Some((d, _, _, size)) if *d == day
            && (*size == 0 || *size + lines.len() as u64 <= self.target.max_file_bytes));
        if !reuse {
            std::fs::create_dir_all(&dir).map_err(io("create", &dir))?;
            // The next file of the day that is not full (after a restart,
            // the last one written).
            let mut n = match &self.open {
                Some((d, n, _, _)) if *d == day => n + 1,
                _ => 0,
            };
            loop {
                let path = dir.join(Self::file_name(&day, n));
                let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
                let next = dir.join(Self::file_name(&day, n + 1));
                if next.exists()
                    || (size > 0 && size + lines.len() as u64 > self.target.max_file_bytes)
                {
                    n += 1;
                    continue;
                }
                let file = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
                    .map_err(io("open", &path))?;
                File::open(&dir)
                    .and_then(|d| d.sync_all())
                    .map_err(io("fsync directory", &dir))?;
                self.open = Some((day.clone(), n, file, size));
                break;
            }
        }
        let Some((day, n, file, size)) = self.open.as_mut() else {
            return Ok(());
        };
        let path = dir.join(Self::file_name(day, *n));
        let written = file.write_all(lines).and_then(|()| file.sync_data());
        if let Err(e) = written {
            // Start a new file next time: this one may end in a torn line.
            self.open = None;
            return Err(io("append to", &path)(e));
        }
        *size += lines.len() as u64;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_and_rotates_by_size() {
        let dir = tempfile::tempdir().unwrap();
        let mut sink = JsonlSink::new(JsonlTarget {
            dir: dir.path().join("out"),
            max_file_bytes: 10,
        });
        sink.append(b"{\"a\":1}\n").unwrap();
        sink.append(b"{\"b\":2}\n").unwrap();
        sink.append(b"{\"c\":3}\n").unwrap();
        let day = today();
        let read = |n| {
            std::fs::read_to_string(dir.path().join("out").join(JsonlSink::file_name(&day, n)))
                .unwrap()
        };
        assert_eq!(read(0), "{\"a\":1}\n");
        assert_eq!(read(1), "{\"b\":2}\n");
        assert_eq!(read(2), "{\"c\":3}\n");
        // A restarted sink continues in the last file that has room.
        let mut again = JsonlSink::new(JsonlTarget {
            dir: dir.path().join("out"),
            max_file_bytes: 100,
        });
        again.append(b"{\"d\":4}\n").unwrap();
        assert_eq!(read(2), "{\"c\":3}\n{\"d\":4}\n");
    }
}
