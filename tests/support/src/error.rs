//! The one error type of the crate: each variant says what a test was waiting
//! for and, where a process is involved, ends with the tail of its log.

use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

/// Why a peer could not be found, started or used.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A peer program is not installed where `cargo xtask peers` puts it.
    #[error("{} is missing: run `cargo xtask peers` (or set KUBESCRIBE_PEERS to where the peers are installed)", path.display())]
    PeerMissing {
        /// Where the program was looked for.
        path: PathBuf,
    },
    /// A binary of this workspace has not been built.
    #[error("binary {name} not found near {searched}: run `cargo build --workspace --bins`")]
    WorkspaceBinMissing {
        /// The binary's name.
        name: String,
        /// The test executable whose neighbourhood was searched.
        searched: String,
    },
    /// A file or socket operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done, naming the path or address.
        what: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A process could not be started at all.
    #[error("starting {name} ({}): {source}", program.display())]
    Spawn {
        /// The process's name in logs.
        name: String,
        /// The program that was run.
        program: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A process exited while the test was waiting for it.
    #[error("{name} exited ({status}) before {waiting_for}:\n{log_tail}")]
    Exited {
        /// The process's name in logs.
        name: String,
        /// How it exited.
        status: ExitStatus,
        /// What it should have done first.
        waiting_for: String,
        /// The last lines of its log.
        log_tail: String,
    },
    /// Something did not happen in time.
    #[error(
        "{name}: {waiting_for} did not happen within {timeout:?}{}",
        tail_suffix(log_tail)
    )]
    Timeout {
        /// The process (or endpoint) waited on.
        name: String,
        /// What was waited for.
        waiting_for: String,
        /// How long the test waited.
        timeout: Duration,
        /// The last lines of the process's log (empty when there is no process).
        log_tail: String,
    },
    /// An HTTP reply could not be read.
    #[error("malformed HTTP reply from {from}: {problem}")]
    Http {
        /// The address asked.
        from: String,
        /// What was wrong with the reply.
        problem: String,
    },
    /// A reply or file was not the JSON it should be.
    #[error("{what} is not JSON ({source}): {text}")]
    Json {
        /// What was parsed.
        what: String,
        /// The start of the text that failed to parse.
        text: String,
        /// The parser's error.
        #[source]
        source: serde_json::Error,
    },
    /// The API server refused a request the test needed.
    #[error("{method} {path}: the API server answered {status}: {body}")]
    Refused {
        /// The request's method.
        method: String,
        /// Its path.
        path: String,
        /// The status.
        status: u16,
        /// The start of the response body.
        body: String,
    },
    /// A command the test ran (the `tailscale` CLI, `ip`, `unshare`) failed.
    #[error("{what} failed ({status}):\n{output}")]
    Command {
        /// The command line, as the log should show it.
        what: String,
        /// How it exited.
        status: String,
        /// The end of its stdout and stderr.
        output: String,
    },
    /// The private network namespace could not be made, or is not sealed.
    #[error("private network namespace: {0}")]
    Namespace(String),
    /// The S3 client failed against SeaweedFS.
    #[error("S3 request to SeaweedFS failed: {0}")]
    S3(#[from] object_store::Error),
    /// Test certificates or keys could not be generated.
    #[error("cannot generate test certificates: {0}")]
    Certificate(#[from] rcgen::Error),
    /// The TLS client could not be configured or the handshake failed.
    #[error("TLS: {0}")]
    Tls(#[from] rustls::Error),
}

fn tail_suffix(log_tail: &str) -> String {
    if log_tail.is_empty() {
        String::new()
    } else {
        format!(":\n{log_tail}")
    }
}

impl Error {
    /// An [`Error::Io`] that names what was being done.
    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let what = what.into();
        move |source| Self::Io { what, source }
    }
}
