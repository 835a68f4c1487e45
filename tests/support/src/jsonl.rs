//! Reading the JSON lines files peers write (kube-apiserver's audit log,
//! audit-sink's received events).

use std::path::Path;

use serde_json::Value;

use crate::Error;

/// Every complete line of `path` parsed as JSON (a last line still being
/// written is left out; blank lines are skipped).
pub(crate) fn read(path: &Path) -> Result<Vec<Value>, Error> {
    let text =
        std::fs::read_to_string(path).map_err(Error::io(format!("reading {}", path.display())))?;
    text.split_inclusive('\n')
        .filter(|line| line.ends_with('\n') && !line.trim().is_empty())
        .map(|line| {
            serde_json::from_str(line).map_err(|source| Error::Json {
                what: format!("a line of {}", path.display()),
                text: line.chars().take(400).collect(),
                source,
            })
        })
        .collect()
}
