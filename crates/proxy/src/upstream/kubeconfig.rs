//! The upstream API server from a kubeconfig file.
//!
//! The YAML is parsed by `serde_yaml_ng`; the kubeconfig schema is modelled here
//! with serde structs (only the fields a proxy needs). The `kube` crate's config
//! types were not used: they pull in `k8s-openapi` and a large client stack for
//! a dozen fields, and would not let us refuse unsupported auth (exec plugins)
//! with a precise message.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::Deserialize;

use super::error::{KubeconfigError, UpstreamError};
use super::spec::{Credential, UpstreamSpec};

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
struct Kubeconfig {
    #[serde(default)]
    clusters: Vec<NamedCluster>,
    #[serde(default)]
    users: Vec<NamedUser>,
    #[serde(default)]
    contexts: Vec<NamedContext>,
    #[serde(default)]
    current_context: Option<String>,
}

#[derive(Debug, Deserialize)]
struct NamedCluster {
    name: String,
    cluster: Cluster,
}

#[derive(Debug, Deserialize)]
struct NamedUser {
    name: String,
    #[serde(default)]
    user: User,
}

#[derive(Debug, Deserialize)]
struct NamedContext {
    name: String,
    context: Context,
}

trait HasName {
    type Value;
    fn name(&self) -> &str;
    fn value(&self) -> &Self::Value;
}

macro_rules! has_name {
    ($t:ty, $v:ty, $f:ident) => {
        impl HasName for $t {
            type Value = $v;
            fn name(&self) -> &str {
                &self.name
            }
            fn value(&self) -> &$v {
                &self.$f
            }
        }
    };
}
has_name!(NamedCluster, Cluster, cluster);
has_name!(NamedUser, User, user);
has_name!(NamedContext, Context, context);

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
struct Cluster {
    server: String,
    #[serde(default)]
    certificate_authority: Option<PathBuf>,
    #[serde(default)]
    certificate_authority_data: Option<String>,
    #[serde(default)]
    insecure_skip_tls_verify: bool,
    #[serde(default)]
    tls_server_name: Option<String>,
    #[serde(default)]
    proxy_url: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
struct User {
    #[serde(default)]
    client_certificate: Option<PathBuf>,
    #[serde(default)]
    client_certificate_data: Option<String>,
    #[serde(default)]
    client_key: Option<PathBuf>,
    #[serde(default)]
    client_key_data: Option<String>,
    #[serde(default)]
    token: Option<String>,
    #[serde(default, rename = "tokenFile")]
    token_file: Option<PathBuf>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    exec: Option<serde_yaml_ng::Value>,
    #[serde(default)]
    auth_provider: Option<serde_yaml_ng::Value>,
}

#[derive(Debug, Deserialize, Default)]
struct Context {
    cluster: String,
    #[serde(default)]
    user: Option<String>,
}

fn find<'a, T: HasName>(items: &'a [T], name: &str) -> Option<&'a T::Value> {
    items.iter().find(|n| n.name() == name).map(HasName::value)
}

fn resolve(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

fn read_file(path: &Path, what: &'static str) -> Result<Vec<u8>, UpstreamError> {
    std::fs::read(path).map_err(|source| UpstreamError::ReadFile {
        what,
        path: path.display().to_string(),
        source,
    })
}

fn b64(s: &str, what: &'static str) -> Result<Vec<u8>, KubeconfigError> {
    base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .map_err(|source| KubeconfigError::Base64 { what, source })
}

/// Load the upstream from a kubeconfig file and an optional context name.
pub(super) fn load(path: &Path, context: Option<&str>) -> Result<UpstreamSpec, UpstreamError> {
    let text = read_file(path, "kubeconfig")?;
    let base = path.parent().unwrap_or_else(|| Path::new("."));
    from_yaml(&text, base, context)
}

/// Load the upstream from kubeconfig YAML; relative file paths are resolved against `base`.
pub(super) fn from_yaml(
    yaml: &[u8],
    base: &Path,
    context: Option<&str>,
) -> Result<UpstreamSpec, UpstreamError> {
    let kc: Kubeconfig = serde_yaml_ng::from_slice(yaml).map_err(KubeconfigError::Parse)?;
    let ctx_name = match context {
        Some(c) => c.to_string(),
        None => kc
            .current_context
            .clone()
            .filter(|c| !c.is_empty())
            .ok_or(KubeconfigError::NoCurrentContext)?,
    };
    let ctx = find(&kc.contexts, &ctx_name)
        .ok_or_else(|| KubeconfigError::ContextNotFound(ctx_name.clone()))?;
    let cluster =
        find(&kc.clusters, &ctx.cluster).ok_or_else(|| KubeconfigError::ClusterNotFound {
            cluster: ctx.cluster.clone(),
            context: ctx_name.clone(),
        })?;
    if cluster.proxy_url.is_some() {
        return Err(KubeconfigError::ProxyUrl.into());
    }
    let user = match ctx.user.as_deref() {
        None | Some("") => None,
        Some(u) => Some(
            find(&kc.users, u).ok_or_else(|| KubeconfigError::UserNotFound {
                user: u.to_owned(),
                context: ctx_name.clone(),
            })?,
        ),
    };

    let ca_pem = match (
        &cluster.certificate_authority_data,
        &cluster.certificate_authority,
    ) {
        (Some(d), _) => Some(b64(d, "certificate-authority-data")?),
        (None, Some(p)) => Some(read_file(&resolve(base, p), "certificate-authority")?),
        (None, None) => None,
    };

    let mut credential = Credential::None;
    let mut client_identity = None;
    if let Some(user) = user {
        if user.exec.is_some() || user.auth_provider.is_some() {
            return Err(KubeconfigError::CredentialPlugin.into());
        }
        let cert = match (&user.client_certificate_data, &user.client_certificate) {
            (Some(d), _) => Some(b64(d, "client-certificate-data")?),
            (None, Some(p)) => Some(read_file(&resolve(base, p), "client-certificate")?),
            _ => None,
        };
        let key = match (&user.client_key_data, &user.client_key) {
            (Some(d), _) => Some(b64(d, "client-key-data")?),
            (None, Some(p)) => Some(read_file(&resolve(base, p), "client-key")?),
            _ => None,
        };
        client_identity = match (cert, key) {
            (Some(c), Some(k)) => Some((c, k)),
            (None, None) => None,
            _ => return Err(KubeconfigError::HalfClientCertificate.into()),
        };
        credential = match (&user.token, &user.token_file, &user.username) {
            (Some(t), _, _) if !t.is_empty() => Credential::Bearer(t.clone()),
            (_, Some(f), _) => Credential::BearerFile(resolve(base, f)),
            (_, _, Some(u)) => Credential::Basic {
                username: u.clone(),
                password: user.password.clone().unwrap_or_default(),
            },
            _ => Credential::None,
        };
    }

    let server: http::Uri =
        cluster
            .server
            .parse()
            .map_err(|source| KubeconfigError::BadServer {
                server: cluster.server.clone(),
                source,
            })?;
    UpstreamSpec::new(
        server,
        ca_pem,
        cluster.insecure_skip_tls_verify,
        cluster.tls_server_name.clone(),
        client_identity,
        credential,
        format!("kubeconfig context {ctx_name:?}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const KC: &str = r#"
apiVersion: v1
kind: Config
current-context: dev
clusters:
- name: c1
  cluster:
    server: https://127.0.0.1:6443
    insecure-skip-tls-verify: true
- name: c2
  cluster:
    server: http://127.0.0.1:8080
contexts:
- name: dev
  context: {cluster: c1, user: u1}
- name: plain
  context: {cluster: c2, user: u2}
- name: execy
  context: {cluster: c2, user: u3}
users:
- name: u1
  user: {token: abc}
- name: u2
  user: {tokenFile: tok}
- name: u3
  user:
    exec: {command: aws}
"#;

    #[test]
    fn current_context_and_named_context() {
        let s = from_yaml(KC.as_bytes(), Path::new("/base"), None);
        let s = s.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.server.to_string(), "https://127.0.0.1:6443/");
        assert!(s.insecure_skip_verify);
        assert_eq!(s.credential, Credential::Bearer("abc".into()));
        let s = from_yaml(KC.as_bytes(), Path::new("/base"), Some("plain"));
        let s = s.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.credential, Credential::BearerFile("/base/tok".into()));
    }

    #[test]
    fn unsupported_and_missing_things_are_clear_errors() {
        let e = from_yaml(KC.as_bytes(), Path::new("/"), Some("execy")).err();
        assert!(e
            .map(|e| e.to_string())
            .unwrap_or_default()
            .contains("exec"));
        let e = from_yaml(KC.as_bytes(), Path::new("/"), Some("nope")).err();
        assert!(e
            .map(|e| e.to_string())
            .unwrap_or_default()
            .contains("\"nope\" not found"));
        assert!(from_yaml(b"::: not yaml", Path::new("/"), None).is_err());
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
            let _ = from_yaml(&bytes, Path::new("/nonexistent"), None);
        }

        #[test]
        fn arbitrary_servers_are_accepted_or_refused_cleanly(server in "[ -~]{0,40}") {
            let yaml = format!("current-context: a\nclusters: [{{name: c, cluster: {{server: {server:?}}}}}]\ncontexts: [{{name: a, context: {{cluster: c}}}}]\n");
            if let Ok(spec) = from_yaml(yaml.as_bytes(), Path::new("/"), None) {
                proptest::prop_assert!(matches!(spec.server.scheme_str(), Some("http") | Some("https")));
            }
        }
    }
}
