//! The recorder's signing keys (docs/storage.md, "Tamper evidence"): key files read and
//! created, and [`Signing`], the key (or `--unsigned`) that signs manifests. Vocabulary below the
//! configuration, which reads the key file; the tamper layer signs with it.

use std::path::{Path, PathBuf};

use ed25519_dalek::{SigningKey, VerifyingKey};

/// Why a key file could not be used, worded for the operator.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The file could not be read or written.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file does not hold a key of the expected shape.
    #[error("{path}: not a kubescribe {what} (expected 64 hex digits; create one with `kubescribe-recorder keygen FILE`)")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// `signing key` or `public key`.
        what: &'static str,
    },
}

/// The recorder's signing set-up: a key, or `--unsigned`.
#[derive(Clone)]
pub enum Signing {
    /// Manifests are signed with this Ed25519 key.
    Key(Box<SigningKey>),
    /// Manifests carry hashes but no signature.
    Unsigned,
}

impl std::fmt::Debug for Signing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Key(k) => write!(f, "Signing::Key(public {})", public_hex(&k.verifying_key())),
            Self::Unsigned => f.write_str("Signing::Unsigned"),
        }
    }
}

impl Signing {
    /// The public key in hex, if signing.
    pub fn public_key_hex(&self) -> Option<String> {
        match self {
            Self::Key(k) => Some(public_hex(&k.verifying_key())),
            Self::Unsigned => None,
        }
    }
}

/// A public key as 64 lower-case hex digits.
pub fn public_hex(key: &VerifyingKey) -> String {
    hex::encode(key.as_bytes())
}

fn read_hex32(path: &Path, what: &'static str) -> Result<[u8; 32], KeyError> {
    let text = std::fs::read_to_string(path).map_err(|source| KeyError::Io {
        op: "read",
        path: path.to_owned(),
        source,
    })?;
    let malformed = || KeyError::Malformed {
        path: path.to_owned(),
        what,
    };
    let bytes = hex::decode(text.trim()).map_err(|_| malformed())?;
    bytes.try_into().map_err(|_| malformed())
}

/// Reads a signing key file: the 32-byte Ed25519 seed as 64 hex digits.
pub fn read_signing_key(path: &Path) -> Result<SigningKey, KeyError> {
    Ok(SigningKey::from_bytes(&read_hex32(path, "signing key")?))
}

/// Reads a public key file (64 hex digits, as `keygen` writes to `FILE.pub`
/// and `GET /api/v1/signing-key` serves).
pub fn read_public_key(path: &Path) -> Result<VerifyingKey, KeyError> {
    let bytes = read_hex32(path, "public key")?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| KeyError::Malformed {
        path: path.to_owned(),
        what: "public key",
    })
}

/// Creates a new signing key at `path` (readable by its owner only; refuses
/// to overwrite) and its public key at `path.pub`.
pub fn generate_signing_key(path: &Path) -> Result<SigningKey, KeyError> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let key = SigningKey::from_bytes(&rand::random::<[u8; 32]>());
    let io = |op| {
        move |source| KeyError::Io {
            op,
            path: path.to_owned(),
            source,
        }
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    options.mode(0o600);
    let mut file = options.open(path).map_err(io("create"))?;
    writeln!(file, "{}", hex::encode(key.to_bytes())).map_err(io("write"))?;
    file.sync_all().map_err(io("fsync"))?;
    let public = PathBuf::from(format!("{}.pub", path.display()));
    std::fs::write(&public, format!("{}\n", public_hex(&key.verifying_key()))).map_err(
        |source| KeyError::Io {
            op: "write",
            path: public.clone(),
            source,
        },
    )?;
    Ok(key)
}
