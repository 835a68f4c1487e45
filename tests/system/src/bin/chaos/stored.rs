//! What storage holds, read from the recorder's files (disk) or objects (S3) directly, not through
//! its index: every event and response record line, and every finished session cast.

use std::collections::HashMap;
use std::path::Path;

use event_model::Record;
use kubescribe_system_tests::stack::Stack;
use kubescribe_system_tests::Error;
use test_support::seaweed::Seaweed;

/// Everything stored.
#[derive(Debug, Default)]
pub(crate) struct Stored {
    /// Stored copies by idempotency key (`event:<key>`, `response:<key>`).
    pub(crate) copies: HashMap<String, usize>,
    /// When the first copy of each event was stored: the Unix milliseconds of its commit (the
    /// UUIDv7 in its id, `e-<commit>-<n>`, which the recorder takes before writing).
    pub(crate) event_stored_ms: HashMap<String, i64>,
    /// Events stored.
    pub(crate) events: usize,
    /// Response records stored.
    pub(crate) responses: usize,
    /// Lines that are not a record (a torn line would be one).
    pub(crate) bad_lines: Vec<String>,
    /// Records without an idempotency key.
    pub(crate) keyless: usize,
    /// Session casts (whole files or objects).
    pub(crate) casts: Vec<Vec<u8>>,
    /// Pieces of sessions the recorder has not finished: `<key>.partial` files (disk) and
    /// `<key>.parts/<replica>/<n>` chunk objects (S3), composed into a cast when the session ends or at the
    /// recorder's next start.
    pub(crate) unfinished: Vec<Vec<u8>>,
}

impl Stored {
    /// Copies of the event with key `key`.
    pub(crate) fn event_copies(&self, key: &str) -> usize {
        self.copies
            .get(&format!("event:{key}"))
            .copied()
            .unwrap_or(0)
    }

    /// When the event with key `key` was first stored (Unix ms), if it was.
    pub(crate) fn event_stored_at(&self, key: &str) -> Option<i64> {
        self.event_stored_ms.get(key).copied()
    }

    /// Copies of the response record of the event with key `key`.
    pub(crate) fn response_copies(&self, key: &str) -> usize {
        self.copies
            .get(&format!("response:{key}"))
            .copied()
            .unwrap_or(0)
    }

    fn add_lines(&mut self, name: &str, data: &[u8]) {
        for line in data.split(|b| *b == b'\n') {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match Record::from_slice(line) {
                Ok(record) => {
                    match &record {
                        Record::Event(event) => {
                            self.events += 1;
                            if let (Some(key), Some(ms)) = (event.key(), commit_ms(&event.id)) {
                                let first =
                                    self.event_stored_ms.entry(key.to_owned()).or_insert(ms);
                                *first = (*first).min(ms);
                            }
                        }
                        Record::Response(_) => self.responses += 1,
                    }
                    match record.idempotency_key() {
                        Some(key) => *self.copies.entry(key).or_default() += 1,
                        None => self.keyless += 1,
                    }
                }
                Err(e) => self.bad_lines.push(format!(
                    "{name}: {e}: {}",
                    String::from_utf8_lossy(&line[..line.len().min(120)])
                )),
            }
        }
    }
}

/// Reads everything the stack's recorder stored: its directory, or the bucket of `weed`.
pub(crate) fn read(stack: &Stack, weed: Option<&Seaweed>) -> Result<Stored, Error> {
    let mut stored = Stored::default();
    match weed {
        None => {
            let root = stack.dir.path().join("recordings");
            let mut files = Vec::new();
            walk(&root, &mut files)?;
            for file in files {
                let name = file
                    .strip_prefix(&root)
                    .unwrap_or(&file)
                    .to_string_lossy()
                    .into_owned();
                let hidden = file
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'));
                if hidden {
                    continue;
                }
                if name.starts_with("events/") || name.starts_with("responses/") {
                    if name.ends_with(".ndjson") {
                        stored.add_lines(&name, &std::fs::read(&file)?);
                    }
                } else if name.starts_with("sessions/") && name.ends_with(".cast") {
                    stored.casts.push(std::fs::read(&file)?);
                } else if name.starts_with("sessions/") && name.ends_with(".cast.partial") {
                    stored.unfinished.push(std::fs::read(&file)?);
                }
            }
        }
        Some(weed) => {
            for prefix in ["events/", "responses/"] {
                for (name, data) in weed.read_all(prefix)? {
                    if name.ends_with(".ndjson") {
                        stored.add_lines(&name, &data);
                    }
                }
            }
            for (name, data) in weed.read_all("sessions/")? {
                if name.ends_with(".cast") {
                    stored.casts.push(data);
                } else if name.contains(".cast.parts/") {
                    stored.unfinished.push(data);
                }
            }
        }
    }
    Ok(stored)
}

/// The Unix milliseconds of the commit that stored record `id` (`e-<32 hex digits>-<n>`): the
/// first 48 bits of its UUIDv7.
fn commit_ms(id: &str) -> Option<i64> {
    let hex = id.split('-').nth(1)?;
    let uuid = u128::from_str_radix(hex, 16).ok()?;
    i64::try_from(uuid >> 80).ok()
}

fn walk(dir: &Path, files: &mut Vec<std::path::PathBuf>) -> Result<(), Error> {
    if !dir.exists() {
        return Ok(());
    }
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            walk(&path, files)?;
        } else {
            files.push(path);
        }
    }
    Ok(())
}
