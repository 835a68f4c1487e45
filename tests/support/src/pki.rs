//! Certificates and keys made fresh for one test: a CA, a serving
//! certificate for 127.0.0.1 signed by it, and a service-account signing key.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};

use crate::Error;

/// A PEM certificate and its PKCS#8 PEM private key.
#[derive(Debug, Clone)]
pub struct CertAndKey {
    /// The certificate (PEM).
    pub cert_pem: String,
    /// Its private key (PKCS#8 PEM).
    pub key_pem: String,
}

/// What a TLS server on loopback needs: a CA to hand to clients and a
/// serving certificate for `127.0.0.1` and `localhost` signed by it.
#[derive(Debug, Clone)]
pub struct ServingPki {
    /// The CA (clients trust its certificate).
    pub ca: CertAndKey,
    /// The server's certificate, for `127.0.0.1`, `::1` and `localhost`.
    pub serving: CertAndKey,
}

impl ServingPki {
    /// Generates a CA (ECDSA P-256) and a serving certificate signed by it.
    pub fn generate(ca_name: &str) -> Result<Self, Error> {
        let ca_key = KeyPair::generate()?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, ca_name);
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca_params.self_signed(&ca_key)?;

        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(vec![
            "127.0.0.1".to_owned(),
            "::1".to_owned(),
            "localhost".to_owned(),
        ])?;
        params
            .distinguished_name
            .push(DnType::CommonName, "127.0.0.1");
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params.signed_by(&key, &ca_cert, &ca_key)?;
        Ok(Self {
            ca: CertAndKey {
                cert_pem: ca_cert.pem(),
                key_pem: ca_key.serialize_pem(),
            },
            serving: CertAndKey {
                cert_pem: cert.pem(),
                key_pem: key.serialize_pem(),
            },
        })
    }
}

/// A signing key pair (ECDSA P-256), as kube-apiserver's
/// `--service-account-signing-key-file` (private, PKCS#8 PEM) and
/// `--service-account-key-file` (public, PEM) take it.
#[derive(Debug, Clone)]
pub struct SigningKey {
    /// The private key (PKCS#8 PEM).
    pub private_pem: String,
    /// The public key (SubjectPublicKeyInfo PEM).
    pub public_pem: String,
}

impl SigningKey {
    /// Generates a fresh key pair.
    pub fn generate() -> Result<Self, Error> {
        let key = KeyPair::generate()?;
        Ok(Self {
            private_pem: key.serialize_pem(),
            public_pem: key.public_key_pem(),
        })
    }
}
