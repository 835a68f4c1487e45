//! The upstream API server from a kubeconfig, loaded by kube-rs
//! ([`kube::config::Kubeconfig`], [`kube::Config`]): YAML (several documents,
//! UTF-16 files too), file paths relative to the kubeconfig, `…-data` fields,
//! CA bundles, the exec plugin's cluster info. On top, the proxy refuses what
//! it cannot honour with a precise message: a context, cluster or user the
//! file does not have, `proxy-url`, `auth-provider` plugins (naming the exec
//! plugin to use instead), exec plugins it cannot run.

use std::path::Path;

use kube::config::Kubeconfig;

use super::error::{KubeconfigError, UpstreamError};
use super::spec::UpstreamSpec;

/// Load the upstream from a kubeconfig file and an optional context name.
pub(super) fn load(path: &Path, context: Option<&str>) -> Result<UpstreamSpec, UpstreamError> {
    let kubeconfig = Kubeconfig::read_from(path).map_err(KubeconfigError::Load)?;
    from_kubeconfig(kubeconfig, context)
}

/// Load the upstream from kubeconfig YAML (relative file paths in it are
/// relative to the working directory).
pub(super) fn from_yaml(yaml: &[u8], context: Option<&str>) -> Result<UpstreamSpec, UpstreamError> {
    let text = std::str::from_utf8(yaml).map_err(KubeconfigError::NotUtf8)?;
    let kubeconfig = Kubeconfig::from_yaml(text).map_err(KubeconfigError::Load)?;
    from_kubeconfig(kubeconfig, context)
}

fn from_kubeconfig(
    mut kubeconfig: Kubeconfig,
    context: Option<&str>,
) -> Result<UpstreamSpec, UpstreamError> {
    let name = match context {
        Some(c) => c.to_owned(),
        None => kubeconfig
            .current_context
            .clone()
            .filter(|c| !c.is_empty())
            .ok_or(KubeconfigError::NoCurrentContext)?,
    };
    let ctx = kubeconfig
        .contexts
        .iter()
        .find(|c| c.name == name)
        .and_then(|c| c.context.as_ref())
        .ok_or_else(|| KubeconfigError::ContextNotFound(name.clone()))?;
    let cluster = kubeconfig
        .clusters
        .iter()
        .find(|c| c.name == ctx.cluster)
        .and_then(|c| c.cluster.as_ref())
        .ok_or_else(|| KubeconfigError::ClusterNotFound {
            cluster: ctx.cluster.clone(),
            context: name.clone(),
        })?;
    if cluster.proxy_url.as_deref().is_some_and(|u| !u.is_empty()) {
        return Err(KubeconfigError::ProxyUrl.into());
    }
    // client-go (and kube-rs) use no credentials when the user is missing;
    // for a proxy that impersonates, a misspelt user is an error.
    if let Some(user) = ctx.user.as_deref().filter(|u| !u.is_empty()) {
        if !kubeconfig.auth_infos.iter().any(|u| u.name == user) {
            return Err(KubeconfigError::UserNotFound {
                user: user.to_owned(),
                context: name.clone(),
            }
            .into());
        }
    }
    kubeconfig.current_context = Some(name.clone());
    let mut config = kube::Config::try_from(kubeconfig).map_err(KubeconfigError::Load)?;
    // Only the cluster's own proxy-url could ask for a proxy (refused above);
    // kube-rs also reads HTTPS_PROXY, which the proxy does not use.
    config.proxy_url = None;
    UpstreamSpec::from_config(config, format!("kubeconfig context {name:?}"))
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
    tls-server-name: kubernetes.default.svc
- name: c2
  cluster:
    server: http://127.0.0.1:8080
- name: proxied
  cluster:
    server: https://10.0.0.1
    proxy-url: http://proxy:3128
contexts:
- name: dev
  context: {cluster: c1, user: u1}
- name: plain
  context: {cluster: c2, user: u2}
- name: execy
  context: {cluster: c2, user: u3}
- name: gke
  context: {cluster: c2, user: gcp}
- name: aks
  context: {cluster: c2, user: azure}
- name: oidc
  context: {cluster: c2, user: oidc}
- name: terminal
  context: {cluster: c2, user: interactive}
- name: old-exec
  context: {cluster: c2, user: alpha}
- name: via-proxy
  context: {cluster: proxied, user: u1}
- name: typo
  context: {cluster: c1, user: nobody}
- name: lost
  context: {cluster: nowhere, user: u1}
users:
- name: u1
  user: {token: abc}
- name: u2
  user: {tokenFile: /run/tok}
- name: u3
  user:
    exec:
      apiVersion: client.authentication.k8s.io/v1
      command: aws
      args: [eks, get-token]
      interactiveMode: Never
- name: gcp
  user:
    auth-provider: {name: gcp, config: {cmd-path: gcloud}}
- name: azure
  user:
    auth-provider: {name: azure}
- name: oidc
  user:
    auth-provider: {name: oidc, config: {idp-issuer-url: "https://issuer"}}
- name: interactive
  user:
    exec: {apiVersion: client.authentication.k8s.io/v1, command: login, interactiveMode: Always}
- name: alpha
  user:
    exec: {apiVersion: client.authentication.k8s.io/v1alpha1, command: old}
"#;

    fn load(context: Option<&str>) -> Result<UpstreamSpec, UpstreamError> {
        from_yaml(KC.as_bytes(), context)
    }

    fn error(context: &str) -> String {
        load(Some(context))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    }

    #[test]
    fn current_context_and_named_context() {
        let s = load(None).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.config.cluster_url.to_string(), "https://127.0.0.1:6443/");
        assert!(s.config.accept_invalid_certs);
        assert_eq!(
            s.config.tls_server_name.as_deref(),
            Some("kubernetes.default.svc")
        );
        assert!(s.config.auth_info.token.is_some());
        assert!(s.origin.contains("dev"));
        let s = load(Some("plain")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.config.auth_info.token_file.as_deref(), Some("/run/tok"));
        let s = load(Some("execy")).unwrap_or_else(|e| panic!("{e}"));
        let exec = s.config.auth_info.exec.unwrap_or_default();
        assert_eq!(exec.command.as_deref(), Some("aws"));
        assert_eq!(exec.args, Some(vec!["eks".into(), "get-token".into()]));
    }

    #[test]
    fn auth_providers_name_the_exec_plugin_to_use_instead() {
        let gke = error("gke");
        assert!(gke.contains("\"gcp\"") && gke.contains("gke-gcloud-auth-plugin"));
        assert!(error("aks").contains("kubelogin"));
        assert!(error("oidc").contains("kubectl oidc-login"));
    }

    #[test]
    fn unsupported_and_missing_things_are_clear_errors() {
        assert!(error("terminal").contains("interactiveMode Always"));
        assert!(error("old-exec").contains("v1alpha1"));
        assert!(error("via-proxy").contains("proxy-url"));
        assert!(error("typo").contains("user \"nobody\""));
        assert!(error("lost").contains("cluster \"nowhere\""));
        assert!(error("nope").contains("\"nope\" not found"));
        assert!(from_yaml(b"::: not yaml", None).is_err());
        assert!(from_yaml(b"clusters: []\n", None)
            .err()
            .is_some_and(|e| e.to_string().contains("--context")));
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
            let _ = from_yaml(&bytes, None);
        }

        #[test]
        fn arbitrary_servers_are_accepted_or_refused_cleanly(server in "[ -~]{0,40}") {
            let yaml = format!("current-context: a\nclusters: [{{name: c, cluster: {{server: {server:?}}}}}]\ncontexts: [{{name: a, context: {{cluster: c}}}}]\n");
            if let Ok(spec) = from_yaml(yaml.as_bytes(), None) {
                proptest::prop_assert!(matches!(spec.config.cluster_url.scheme_str(), Some("http") | Some("https")));
            }
        }
    }
}
