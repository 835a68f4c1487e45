//! HTTPS for the API listener: rustls with a PEM certificate chain and key, ALPN
//! `http/1.1` only (SPDY upgrades need HTTP/1.1, as in Tailscale's proxy).

use std::path::Path;
use std::sync::Arc;

use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// The TLS files could not be turned into a server configuration.
#[derive(Debug, thiserror::Error)]
pub enum TlsConfigError {
    /// A file could not be read.
    #[error("cannot read {what} {path}: {source}")]
    Read {
        /// Which file.
        what: &'static str,
        /// Its path.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// No certificate in the PEM file.
    #[error("--tls-cert {0} holds no PEM certificate")]
    NoCertificate(String),
    /// No key in the PEM file.
    #[error("--tls-key {0} holds no PEM private key (PKCS#8, PKCS#1 or SEC1)")]
    NoKey(String),
    /// rustls refused the pair.
    #[error("TLS certificate/key rejected: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The rustls crypto provider used everywhere in this crate (ring).
pub fn crypto_provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Read PEM certificates from a file.
pub fn load_certs(
    path: &Path,
    what: &'static str,
) -> Result<Vec<CertificateDer<'static>>, TlsConfigError> {
    let pem = std::fs::read(path).map_err(|source| TlsConfigError::Read {
        what,
        path: path.display().to_string(),
        source,
    })?;
    parse_certs(&pem, what, path)
}

/// Parse PEM certificates from bytes (`what`/`path` only name them in errors).
pub fn parse_certs(
    pem: &[u8],
    what: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsConfigError> {
    let certs: Vec<_> = rustls_pemfile::certs(&mut &pem[..])
        .collect::<Result<_, _>>()
        .map_err(|source| TlsConfigError::Read {
            what,
            path: path.display().to_string(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsConfigError::NoCertificate(path.display().to_string()));
    }
    Ok(certs)
}

/// Parse a PEM private key from bytes.
pub fn parse_key(pem: &[u8], path: &Path) -> Result<PrivateKeyDer<'static>, TlsConfigError> {
    rustls_pemfile::private_key(&mut &pem[..])
        .map_err(|source| TlsConfigError::Read {
            what: "private key",
            path: path.display().to_string(),
            source,
        })?
        .ok_or_else(|| TlsConfigError::NoKey(path.display().to_string()))
}

/// Build the listener's rustls configuration from PEM files.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, TlsConfigError> {
    let certs = load_certs(cert, "--tls-cert")?;
    let key_pem = std::fs::read(key).map_err(|source| TlsConfigError::Read {
        what: "--tls-key",
        path: key.display().to_string(),
        source,
    })?;
    let key = parse_key(&key_pem, key)?;
    server_config_from(certs, key)
}

/// Build the listener's rustls configuration from parsed material.
pub fn server_config_from(
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<rustls::ServerConfig>, TlsConfigError> {
    let mut cfg = rustls::ServerConfig::builder_with_provider(crypto_provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}
