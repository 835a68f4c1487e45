//! rustls server configuration from PEM files, with the ring crypto provider. Errors name the flag and
//! the file, so a start-up failure tells the operator what to fix.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// A certificate chain and its private key, both PEM files (`--tls-cert`, `--tls-key`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain, leaf first.
    pub cert: PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// Why TLS material could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read, or its PEM could not be parsed.
    #[error("{flag} {}: cannot read: {source}", path.display())]
    Read {
        /// The flag or setting that named the file.
        flag: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file holds no PEM certificate.
    #[error("{flag} {}: holds no PEM certificate", path.display())]
    NoCertificate {
        /// The flag or setting that named the file.
        flag: &'static str,
        /// The file.
        path: PathBuf,
    },
    /// The file holds no PEM private key.
    #[error("{flag} {}: holds no PEM private key (PKCS#8, PKCS#1 or SEC1)", path.display())]
    NoKey {
        /// The flag or setting that named the file.
        flag: &'static str,
        /// The file.
        path: PathBuf,
    },
    /// rustls refused the configuration (for example a key that does not match the certificate).
    #[error("TLS certificate and key rejected: {0}")]
    Rejected(#[from] rustls::Error),
}

/// ALPN protocols a server offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alpn {
    /// `http/1.1` only: the API proxy, whose SPDY upgrades need HTTP/1.1.
    Http1,
    /// `h2` then `http/1.1`: the recorder, whose session uploads use HTTP/2.
    H2AndHttp1,
}

impl Alpn {
    fn protocols(self) -> Vec<Vec<u8>> {
        match self {
            Alpn::Http1 => vec![b"http/1.1".to_vec()],
            Alpn::H2AndHttp1 => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
        }
    }
}

/// The rustls crypto provider every kubescribe TLS configuration uses (ring).
pub fn crypto_provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads the PEM certificates in a file; `flag` names the file's setting in errors.
pub fn read_certs(
    flag: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    parse_certs(flag, path, &read(flag, path)?)
}

/// Parses PEM certificates; `flag` and `path` only name their origin in errors.
pub fn parse_certs(
    flag: &'static str,
    path: &Path,
    pem: &[u8],
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Vec<_> = rustls_pemfile::certs(&mut &pem[..])
        .collect::<Result<_, _>>()
        .map_err(|source| TlsError::Read {
            flag,
            path: path.to_path_buf(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            flag,
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

/// Parses the first PEM private key; `flag` and `path` only name its origin in errors.
pub fn parse_key(
    flag: &'static str,
    path: &Path,
    pem: &[u8],
) -> Result<PrivateKeyDer<'static>, TlsError> {
    rustls_pemfile::private_key(&mut &pem[..])
        .map_err(|source| TlsError::Read {
            flag,
            path: path.to_path_buf(),
            source,
        })?
        .ok_or_else(|| TlsError::NoKey {
            flag,
            path: path.to_path_buf(),
        })
}

/// Builds a server configuration from `--tls-cert` and `--tls-key` files, offering `alpn`.
pub fn server_config(files: &TlsFiles, alpn: Alpn) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let certs = read_certs("--tls-cert", &files.cert)?;
    let key = parse_key("--tls-key", &files.key, &read("--tls-key", &files.key)?)?;
    server_config_from(certs, key, alpn)
}

/// Builds a server configuration from parsed material, offering `alpn`.
pub fn server_config_from(
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    alpn: Alpn,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let mut config = rustls::ServerConfig::builder_with_provider(crypto_provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    config.alpn_protocols = alpn.protocols();
    Ok(Arc::new(config))
}

fn read(flag: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        flag,
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_pair(dir: &Path) -> TlsFiles {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])
            .expect("self-signed certificate");
        let files = TlsFiles {
            cert: dir.join("tls.crt"),
            key: dir.join("tls.key"),
        };
        std::fs::write(&files.cert, cert.cert.pem()).expect("write cert");
        std::fs::write(&files.key, cert.key_pair.serialize_pem()).expect("write key");
        files
    }

    #[test]
    fn a_valid_pair_gives_the_requested_alpn() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = write_pair(dir.path());
        let http1 = server_config(&files, Alpn::Http1).expect("http/1.1 config");
        assert_eq!(http1.alpn_protocols, vec![b"http/1.1".to_vec()]);
        let both = server_config(&files, Alpn::H2AndHttp1).expect("h2 config");
        assert_eq!(
            both.alpn_protocols,
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        );
    }

    #[test]
    fn errors_name_the_flag_and_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = write_pair(dir.path());
        let missing = TlsFiles {
            cert: dir.path().join("absent.crt"),
            key: files.key.clone(),
        };
        let err = server_config(&missing, Alpn::Http1).expect_err("missing cert");
        assert!(err.to_string().starts_with("--tls-cert "), "{err}");
        assert!(err.to_string().contains("absent.crt"), "{err}");

        // A key file given as the certificate holds no certificate, and vice versa.
        let swapped = TlsFiles {
            cert: files.key.clone(),
            key: files.cert.clone(),
        };
        let err = server_config(&swapped, Alpn::Http1).expect_err("swapped");
        assert!(
            matches!(
                err,
                TlsError::NoCertificate {
                    flag: "--tls-cert",
                    ..
                }
            ),
            "{err}"
        );
        let key_as_cert = TlsFiles {
            cert: files.cert.clone(),
            key: files.cert.clone(),
        };
        let err = server_config(&key_as_cert, Alpn::Http1).expect_err("no key");
        assert!(
            matches!(
                err,
                TlsError::NoKey {
                    flag: "--tls-key",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn a_key_that_does_not_match_is_rejected_by_rustls() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = write_pair(dir.path());
        let other = tempfile::tempdir().expect("tempdir");
        let other_files = write_pair(other.path());
        let mismatched = TlsFiles {
            cert: files.cert,
            key: other_files.key,
        };
        let err = server_config(&mismatched, Alpn::Http1).expect_err("mismatch");
        assert!(matches!(err, TlsError::Rejected(_)), "{err}");
    }
}
