//! TLS material from PEM: the API listener's rustls server configuration
//! from a certificate chain and key file (ALPN `http/1.1` only: SPDY upgrades
//! need HTTP/1.1, as in Tailscale's proxy), and the certificate and key
//! parsing the upstream client also uses for its CA and client certificate.

use std::path::Path;
use std::sync::Arc;

use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// TLS material could not be read or turned into a configuration.
#[derive(Debug, thiserror::Error)]
pub enum TlsConfigError {
    /// A file could not be read, or its PEM is malformed.
    #[error("cannot read {what} {path}: {source}")]
    Read {
        /// Which file (the flag or kubeconfig field naming it).
        what: &'static str,
        /// Its path.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// No certificate in the PEM.
    #[error("{what} {path} holds no PEM certificate")]
    NoCertificate {
        /// Which file.
        what: &'static str,
        /// Its path.
        path: String,
    },
    /// No private key in the PEM.
    #[error("{what} {path} holds no PEM private key (PKCS#8, PKCS#1 or SEC1)")]
    NoKey {
        /// Which file.
        what: &'static str,
        /// Its path.
        path: String,
    },
    /// rustls refused the certificate and key.
    #[error("TLS certificate/key rejected: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The rustls crypto provider used everywhere in this crate (ring).
pub(crate) fn crypto_provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads `path` (named `what` in errors).
fn read(path: &Path, what: &'static str) -> Result<Vec<u8>, TlsConfigError> {
    std::fs::read(path).map_err(|source| TlsConfigError::Read {
        what,
        path: path.display().to_string(),
        source,
    })
}

/// Parses PEM certificates (`what` and `path` only name them in errors).
pub(crate) fn parse_certs(
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
        return Err(TlsConfigError::NoCertificate {
            what,
            path: path.display().to_string(),
        });
    }
    Ok(certs)
}

/// Parses a PEM private key (`what` and `path` only name it in errors).
pub(crate) fn parse_key(
    pem: &[u8],
    what: &'static str,
    path: &Path,
) -> Result<PrivateKeyDer<'static>, TlsConfigError> {
    rustls_pemfile::private_key(&mut &pem[..])
        .map_err(|source| TlsConfigError::Read {
            what,
            path: path.display().to_string(),
            source,
        })?
        .ok_or_else(|| TlsConfigError::NoKey {
            what,
            path: path.display().to_string(),
        })
}

/// The API listener's rustls configuration from the PEM files given as
/// `--tls-cert` and `--tls-key`.
pub(crate) fn server_config(
    cert: &Path,
    key: &Path,
) -> Result<Arc<rustls::ServerConfig>, TlsConfigError> {
    let certs = parse_certs(&read(cert, "--tls-cert")?, "--tls-cert", cert)?;
    let key = parse_key(&read(key, "--tls-key")?, "--tls-key", key)?;
    let mut config = rustls::ServerConfig::builder_with_provider(crypto_provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
