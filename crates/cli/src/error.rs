//! What can go wrong, as the operator reads it, with the exit status each gives.

use std::path::PathBuf;

/// A failure of a `kubescribe` command.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A flag's value cannot be used.
    #[error("{flag}: {reason}")]
    Usage {
        /// The flag at fault.
        flag: &'static str,
        /// Why.
        reason: String,
    },
    /// A file named by a flag could not be read.
    #[error("{flag} {path}: {source}")]
    File {
        /// The flag naming the file.
        flag: &'static str,
        /// The file.
        path: PathBuf,
        /// Why it could not be read.
        #[source]
        source: std::io::Error,
    },
    /// The recorder could not be reached, or the exchange broke off.
    #[error("cannot reach the recorder at {url}: {source}")]
    Unreachable {
        /// What was asked.
        url: String,
        /// Why.
        #[source]
        source: reqwest::Error,
    },
    /// The recorder refused the read: no reader identity or token it admits.
    #[error("the recorder refused to let this caller read ({status}): {message}; a reader needs a tailnet identity in the recorder's --allow-readers, or --token-file with its read token")]
    Refused {
        /// 401 or 403.
        status: u16,
        /// The recorder's reason.
        message: String,
    },
    /// The event or session does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// Any other answer than success.
    #[error("the recorder answered {status}: {message}")]
    Status {
        /// The HTTP status.
        status: u16,
        /// The recorder's message.
        message: String,
    },
    /// The recorder's answer is not what its API documents.
    #[error("unexpected answer from the recorder: {0}")]
    Protocol(String),
    /// Writing to the terminal failed (for example, the pipe was closed).
    #[error("writing the output: {0}")]
    Output(#[source] std::io::Error),
}

impl CliError {
    /// The process exit status: 2 for usage, 3 for refused, 4 for not found, 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::Usage { .. } | CliError::File { .. } => 2,
            CliError::Refused { .. } => 3,
            CliError::NotFound(_) => 4,
            _ => 1,
        }
    }
}
