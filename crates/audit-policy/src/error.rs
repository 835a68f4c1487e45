//! Why a Policy file was refused ([`PolicyError`]).

use std::path::PathBuf;

/// Why an `audit.k8s.io/v1` Policy was refused.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The file could not be read.
    #[error("cannot read audit policy {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Not valid YAML, or a field, level or stage this Policy format does
    /// not have (the message says the line and column).
    #[error("invalid audit policy: {0}")]
    Syntax(#[source] serde_yaml_ng::Error),
    /// Not an `audit.k8s.io/v1` `Policy`.
    #[error("not an audit policy: apiVersion {api_version:?}, kind {kind:?}; expected apiVersion audit.k8s.io/v1, kind Policy")]
    NotAPolicy {
        /// The file's `apiVersion`.
        api_version: String,
        /// The file's `kind`.
        kind: String,
    },
    /// A rule kube-apiserver's validation refuses.
    #[error("invalid audit policy: rules[{index}].{message}")]
    Invalid {
        /// The rule's index (0-based, as kube-apiserver says it).
        index: usize,
        /// What is wrong, starting with the field.
        message: String,
    },
}
