//! TLS for the listener (rustls), with ALPN `h2` and `http/1.1`.

use std::path::Path;
use std::sync::Arc;

use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

/// A TLS set-up error naming the file at fault.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or parsed.
    #[error("{flag} {path}: {message}")]
    File {
        /// The flag.
        flag: &'static str,
        /// The file.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// rustls refused the certificate/key pair.
    #[error("--tls-cert/--tls-key: {0}")]
    Config(String),
}

fn file_err(flag: &'static str, path: &Path, message: impl ToString) -> TlsError {
    TlsError::File {
        flag,
        path: path.display().to_string(),
        message: message.to_string(),
    }
}

/// Builds an acceptor from PEM files.
pub fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, TlsError> {
    let cert_pem = std::fs::read(cert).map_err(|e| file_err("--tls-cert", cert, e))?;
    let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|e| file_err("--tls-cert", cert, e))?;
    if certs.is_empty() {
        return Err(file_err("--tls-cert", cert, "no PEM certificates found"));
    }
    let key_pem = std::fs::read(key).map_err(|e| file_err("--tls-key", key, e))?;
    let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .map_err(|e| file_err("--tls-key", key, e))?
        .ok_or_else(|| file_err("--tls-key", key, "no PEM private key found"))?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
