//! Writes kubeconfig files pointing at the simulator.

use std::path::Path;

use base64::Engine;
use serde_json::json;

use crate::tls::ClientCertificate;

/// How the kubeconfig's user authenticates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    /// No real credentials, for a simulator without `--tokens`. (kubectl prompts for a
    /// password when an HTTPS user has none, so a placeholder token is written.)
    None,
    /// A bearer token.
    Token(String),
    /// A client certificate issued by the simulator's CA.
    ClientCertificate(ClientCertificate),
}

fn b64(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// Renders a kubeconfig (YAML) for `server` with an optional CA (PEM).
pub fn render(
    server: &str,
    ca_pem: Option<&str>,
    credentials: &Credentials,
    namespace: &str,
) -> String {
    let mut cluster = json!({"server": server});
    if let Some(ca) = ca_pem {
        cluster["certificate-authority-data"] = json!(b64(ca));
    }
    let user = match credentials {
        Credentials::None => json!({"token": "kube-sim-no-auth"}),
        Credentials::Token(token) => json!({"token": token}),
        Credentials::ClientCertificate(cert) => json!({
            "client-certificate-data": b64(&cert.cert_pem),
            "client-key-data": b64(&cert.key_pem),
        }),
    };
    let config = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "kube-sim", "cluster": cluster}],
        "users": [{"name": "kube-sim-user", "user": user}],
        "contexts": [{"name": "kube-sim", "context": {"cluster": "kube-sim", "user": "kube-sim-user", "namespace": namespace}}],
        "current-context": "kube-sim",
        "preferences": {},
    });
    serde_yaml_ng::to_string(&config).unwrap_or_default()
}

/// Writes a kubeconfig file (mode 0600: it may hold credentials).
pub fn write(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(contents.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_token_kubeconfig() {
        let yaml = render(
            "https://127.0.0.1:1",
            Some("PEM"),
            &Credentials::Token("t0k".into()),
            "default",
        );
        let value: serde_json::Value = serde_yaml_ng::from_str(&yaml).unwrap();
        assert_eq!(
            value["clusters"][0]["cluster"]["certificate-authority-data"],
            b64("PEM")
        );
        assert_eq!(value["users"][0]["user"]["token"], "t0k");
        assert_eq!(value["current-context"], "kube-sim");
    }
}
