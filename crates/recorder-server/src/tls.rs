//! TLS server configuration from PEM files (rustls with the ring provider).
//!
//! Plumbing shared in shape with the proxy binary; kept to one error type and
//! one function so that it can move to a crate both binaries use.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;

/// Why the TLS files could not be turned into a server configuration; names
/// the flag and the file at fault.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read, or its PEM could not be parsed.
    #[error("{flag} {path}: {source}")]
    Read {
        /// The flag that named the file.
        flag: &'static str,
        /// The file.
        path: String,
        /// The read or parse error.
        source: std::io::Error,
    },
    /// The certificate file holds no certificate.
    #[error("--tls-cert {path}: no PEM certificates found")]
    NoCertificate {
        /// The file.
        path: String,
    },
    /// The key file holds no private key.
    #[error("--tls-key {path}: no PEM private key found")]
    NoKey {
        /// The file.
        path: String,
    },
    /// rustls refused the certificate/key pair.
    #[error("--tls-cert/--tls-key: {0}")]
    Rejected(#[source] rustls::Error),
}

fn read_error(flag: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> TlsError {
    let path = path.display().to_string();
    move |source| TlsError::Read { flag, path, source }
}

/// A server configuration with the certificate chain in `cert` and the
/// private key in `key` (PEM files named by `--tls-cert`/`--tls-key`),
/// offering `alpn` protocols in order of preference.
pub(crate) fn server_config(
    cert: &Path,
    key: &Path,
    alpn: &[&[u8]],
) -> Result<Arc<ServerConfig>, TlsError> {
    let cert_pem = std::fs::read(cert).map_err(read_error("--tls-cert", cert))?;
    let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .collect::<Result<_, _>>()
        .map_err(read_error("--tls-cert", cert))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: cert.display().to_string(),
        });
    }
    let key_pem = std::fs::read(key).map_err(read_error("--tls-key", key))?;
    let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .map_err(read_error("--tls-key", key))?
        .ok_or_else(|| TlsError::NoKey {
            path: key.display().to_string(),
        })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Rejected)?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(TlsError::Rejected)?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}
