//! Certificates and keys made fresh for one test: a CA, a serving
//! certificate for 127.0.0.1 signed by it, client certificates signed by it,
//! and a service-account signing key.

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
    /// The CA's common name.
    pub ca_name: String,
    /// The CA (clients trust its certificate).
    pub ca: CertAndKey,
    /// The server's certificate, for `127.0.0.1`, `::1`, `localhost` and
    /// any names given to [`ServingPki::generate_for`].
    pub serving: CertAndKey,
}

impl ServingPki {
    /// Generates a CA (ECDSA P-256) and a serving certificate signed by it.
    pub fn generate(ca_name: &str) -> Result<Self, Error> {
        Self::generate_for(ca_name, &[])
    }

    /// Like [`generate`](Self::generate), with `extra_names` (IP addresses
    /// or DNS names, such as a node's tailnet address and MagicDNS name) in
    /// the serving certificate besides the loopback ones.
    pub fn generate_for(ca_name: &str, extra_names: &[String]) -> Result<Self, Error> {
        let ca_key = KeyPair::generate()?;
        let ca_cert = ca_params(ca_name)?.self_signed(&ca_key)?;

        let key = KeyPair::generate()?;
        let mut names = vec![
            "127.0.0.1".to_owned(),
            "::1".to_owned(),
            "localhost".to_owned(),
        ];
        names.extend(extra_names.iter().cloned());
        let mut params = CertificateParams::new(names)?;
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
            ca_name: ca_name.to_owned(),
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

impl ServingPki {
    /// A client certificate signed by the CA: common name `user`, one
    /// organization per group (as kube-apiserver's `--client-ca-file`
    /// authenticator reads them), for client authentication only.
    pub fn client_certificate(&self, user: &str, groups: &[&str]) -> Result<CertAndKey, Error> {
        // The issuer is rebuilt from the same parameters and key: the same
        // name and key identifier as the CA certificate clients trust.
        let ca_key = KeyPair::from_pem(&self.ca.key_pem)?;
        let ca_cert = ca_params(&self.ca_name)?.self_signed(&ca_key)?;
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(DnType::CommonName, user);
        for group in groups {
            params
                .distinguished_name
                .push(DnType::OrganizationName, *group);
        }
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params.signed_by(&key, &ca_cert, &ca_key)?;
        Ok(CertAndKey {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// The CA's parameters (the same every time for one name).
fn ca_params(ca_name: &str) -> Result<CertificateParams, Error> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, ca_name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    Ok(params)
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
