//! An APIServerProxy's children, built from its spec alone (no API calls): ServiceAccount, Service,
//! Deployment and, in auth mode only, a ClusterRole allowing nothing but impersonation and its
//! ClusterRoleBinding. Args, environment, ports, probes and security contexts are the ones the Helm
//! chart's proxy templates render with the TLS listener (charts/kubescribe/templates/proxy-*.yaml).

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapVolumeSource, EnvVar, PodTemplateSpec, Service, ServiceAccount,
    TopologySpreadConstraint, Volume,
};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use crate::meta::Owner;
use crate::pod;
use crate::resources::{
    APIServerProxySpec, FailurePolicy, ProxyListener, ProxyMode, SecretKeyRef, Tailnet,
};
use crate::tailnet::{self, TAILSCALED_SOCKET};

/// The proxy's TLS port in the container.
pub const PROXY_CONTAINER_PORT: i32 = 8443;
/// The proxy's admin port (`/metrics`, `/healthz`, `/readyz`).
pub const PROXY_ADMIN_PORT: i32 = 9102;
/// The ConfigMap key holding the audit Policy.
pub const AUDIT_POLICY_KEY: &str = "audit-policy.yaml";

/// Why an APIServerProxy's spec cannot be turned into children (its `Ready` reason and message).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProxySpecError {
    /// The `tls` listener without `tlsSecret` or `identitySecret`.
    #[error("listener tls needs tlsSecret and identitySecret")]
    TlsSettingsMissing,
    /// The `tailscale` listener without `tailnet`.
    #[error("listener tailscale needs tailnet (authKeySecret, and optionally hostname and tags)")]
    TailnetSettingsMissing,
}

impl ProxySpecError {
    /// The condition reason.
    pub fn reason(&self) -> &'static str {
        match self {
            ProxySpecError::TlsSettingsMissing => "TLSSettingsMissing",
            ProxySpecError::TailnetSettingsMissing => "TailnetSettingsMissing",
        }
    }
}

/// How callers reach the proxy, with the settings the listener needs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Listener<'a> {
    /// HTTPS: the TLS Secret and the identity file's Secret.
    Tls {
        /// The `kubernetes.io/tls` Secret.
        tls_secret: &'a str,
        /// The identity file's Secret.
        identities: &'a SecretKeyRef,
    },
    /// The tailscaled sidecar.
    Tailscale(&'a Tailnet),
}

/// The listener of `spec`, or what its settings lack.
pub fn validate_proxy(spec: &APIServerProxySpec) -> Result<(), ProxySpecError> {
    listener(spec).map(|_| ())
}

pub(crate) fn listener(spec: &APIServerProxySpec) -> Result<Listener<'_>, ProxySpecError> {
    match spec.listener {
        ProxyListener::Tls => match (&spec.tls_secret, &spec.identity_secret) {
            (Some(tls_secret), Some(identities)) => Ok(Listener::Tls {
                tls_secret,
                identities,
            }),
            _ => Err(ProxySpecError::TlsSettingsMissing),
        },
        ProxyListener::Tailscale => spec
            .tailnet
            .as_ref()
            .map(Listener::Tailscale)
            .ok_or(ProxySpecError::TailnetSettingsMissing),
    }
}

/// Every child of one APIServerProxy.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ProxyChildren {
    /// The pods' ServiceAccount (its token is the proxy's credential upstream).
    pub(crate) service_account: ServiceAccount,
    /// The Service in front of the pods.
    pub(crate) service: Service,
    /// The proxy replicas.
    pub(crate) deployment: Deployment,
    /// Auth mode only: impersonation of users, groups and serviceaccounts, nothing else.
    pub(crate) rbac: Option<(ClusterRole, ClusterRoleBinding)>,
    /// The `tailscale` listener: the sidecar's `tailscale serve` configuration.
    pub(crate) serve_config: Option<ConfigMap>,
}

/// The name of every namespaced child of APIServerProxy `name`.
pub fn proxy_child_name(name: &str) -> String {
    format!("{name}-proxy")
}

/// The name of the ClusterRole and ClusterRoleBinding of APIServerProxy `name` in `namespace`.
pub fn proxy_rbac_name(name: &str, namespace: &str) -> String {
    format!("kubescribe-proxy-{namespace}-{name}-impersonate")
}

/// Where callers reach the proxy: `https://<service>.<namespace>.svc:<port>`.
pub fn proxy_endpoint(name: &str, namespace: &str, port: i32) -> String {
    format!("https://{}.{namespace}.svc:{port}", proxy_child_name(name))
}

/// Where callers reach APIServerProxy `name`: [`proxy_endpoint`] with the `tls` listener, its
/// tailnet name with the `tailscale` listener (`https://<hostname>.<tailnet>.ts.net:<port>`, the
/// tailnet's domain left for the reader, as the chart's notes do).
pub(crate) fn endpoint_of(spec: &APIServerProxySpec, name: &str, namespace: &str) -> String {
    match listener(spec) {
        Ok(Listener::Tailscale(tailnet)) => format!(
            "https://{}.<tailnet>.ts.net:{}",
            tailnet
                .hostname
                .clone()
                .unwrap_or_else(|| proxy_child_name(name)),
            spec.tailnet_port
        ),
        _ => proxy_endpoint(name, namespace, spec.port),
    }
}

/// The `tailscale.com/cap/kubernetes` grant (JSON) that sends a caller's records to `recorder_addrs`
/// with the spec's failure policy and events setting.
pub fn proxy_grant(spec: &APIServerProxySpec, recorder_addrs: &[String]) -> String {
    serde_json::json!({
        "recorderAddrs": recorder_addrs,
        "enforceRecorder": spec.failure_policy == FailurePolicy::FailClosed,
        "enableEvents": spec.events,
    })
    .to_string()
}

/// The container's args, as the chart renders them with the TLS listener (every one a flag
/// `kubescribe-proxy` accepts).
pub fn proxy_args(spec: &APIServerProxySpec) -> Vec<String> {
    let mut args = match listener(spec) {
        Ok(Listener::Tailscale(_)) => vec![
            // Plain HTTP on loopback behind `tailscale serve`, which sends a PROXY v2 header
            // naming the caller's tailnet address; identities from tailscaled's LocalAPI.
            format!("--listen=127.0.0.1:{PROXY_CONTAINER_PORT}"),
            "--proxy-protocol".to_owned(),
            format!("--localapi-socket={TAILSCALED_SOCKET}"),
        ],
        Ok(Listener::Tls { identities, .. }) => vec![
            format!("--listen=0.0.0.0:{PROXY_CONTAINER_PORT}"),
            "--tls-cert=/etc/kubescribe/tls/tls.crt".to_owned(),
            "--tls-key=/etc/kubescribe/tls/tls.key".to_owned(),
            format!(
                "--identity-file=/etc/kubescribe/identities/{}",
                identities.key_or("identities.yaml")
            ),
        ],
        Err(_) => Vec::new(),
    };
    args.extend([
        format!("--admin-listen=0.0.0.0:{PROXY_ADMIN_PORT}"),
        "--state-dir=/var/lib/kubescribe-proxy".to_owned(),
        "--spool-max-bytes=536870912".to_owned(),
        "--spool-full-policy=drop-oldest".to_owned(),
        "--log-format=json".to_owned(),
    ]);
    if spec.audit_policy_config_map.is_some() {
        args.push(format!(
            "--audit-policy=/etc/kubescribe/config/{AUDIT_POLICY_KEY}"
        ));
    }
    if spec.events {
        args.push("--events-for-all-callers=true".to_owned());
    }
    args
}

/// `APISERVER_PROXY`, Tailscale's name for the mode: `true` (auth) or `noauth`.
pub fn proxy_mode_env(mode: ProxyMode) -> &'static str {
    match mode {
        ProxyMode::Auth => "true",
        ProxyMode::Noauth => "noauth",
    }
}

/// The Secrets the pods need that the user provides, with the spec field naming each.
pub(crate) fn proxy_secrets(spec: &APIServerProxySpec) -> Vec<(&'static str, String)> {
    match listener(spec) {
        Ok(Listener::Tls {
            tls_secret,
            identities,
        }) => vec![
            ("tlsSecret", tls_secret.to_owned()),
            ("identitySecret", identities.name.clone()),
        ],
        Ok(Listener::Tailscale(tailnet)) => {
            vec![(
                "tailnet.authKeySecret",
                tailnet.auth_key_secret.name.clone(),
            )]
        }
        Err(_) => Vec::new(),
    }
}

fn pod_template(spec: &APIServerProxySpec, owner: &Owner, child: &str) -> PodTemplateSpec {
    let mut mounts = vec![
        pod::mount("state", "/var/lib/kubescribe-proxy", false),
        pod::mount("tmp", "/tmp", false),
    ];
    let mut volumes = vec![
        pod::empty_dir("state", "1Gi"),
        pod::empty_dir("tmp", "64Mi"),
    ];
    if let Some(config_map) = &spec.audit_policy_config_map {
        mounts.push(pod::mount("config", "/etc/kubescribe/config", true));
        volumes.push(Volume {
            name: "config".to_owned(),
            config_map: Some(ConfigMapVolumeSource {
                name: config_map.clone(),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        });
    }
    let mut sidecar = None;
    match listener(spec) {
        Ok(Listener::Tls {
            tls_secret,
            identities,
        }) => {
            mounts.push(pod::mount("tls", "/etc/kubescribe/tls", true));
            mounts.push(pod::mount("identities", "/etc/kubescribe/identities", true));
            volumes.push(pod::secret_volume("tls", tls_secret, None));
            volumes.push(pod::secret_volume("identities", &identities.name, None));
        }
        Ok(Listener::Tailscale(tailnet)) => {
            mounts.push(pod::mount("tailscale-socket", "/var/run/tailscale", true));
            let (container, sidecar_volumes) = tailnet::sidecar(tailnet, child);
            volumes.extend(sidecar_volumes);
            sidecar = Some(container);
        }
        Err(_) => {}
    }
    let mut template = pod::Product {
        name: "proxy",
        image: spec.image.clone(),
        args: proxy_args(spec),
        env: vec![EnvVar {
            name: "APISERVER_PROXY".to_owned(),
            value: Some(proxy_mode_env(spec.mode).to_owned()),
            value_from: None,
        }],
        port: ("https", PROXY_CONTAINER_PORT),
        admin_port: PROXY_ADMIN_PORT,
        resources: pod::resources("100m", "128Mi", "1", "512Mi"),
        mounts,
        // --shutdown-grace (10 s) for requests in flight, as long again to deliver what the
        // spool holds (its emptyDir goes with the pod), and room to exit: the chart's 35 s.
        grace_seconds: 35,
    }
    // The ServiceAccount's token is the proxy's credential upstream.
    .pod_template(owner.selector_labels(), child, true, volumes);
    if let Some(pod) = template.spec.as_mut() {
        pod.containers.extend(sidecar);
        pod.topology_spread_constraints = Some(vec![TopologySpreadConstraint {
            max_skew: 1,
            topology_key: "kubernetes.io/hostname".to_owned(),
            when_unsatisfiable: "ScheduleAnyway".to_owned(),
            label_selector: Some(LabelSelector {
                match_labels: Some(owner.selector_labels()),
                match_expressions: None,
            }),
            ..TopologySpreadConstraint::default()
        }]);
    }
    template
}

/// Every child of an APIServerProxy.
pub(crate) fn proxy_children(spec: &APIServerProxySpec, owner: &Owner) -> ProxyChildren {
    let child = proxy_child_name(&owner.name);
    // Its token is the proxy's credential upstream.
    let service_account = owner.service_account(&child, true);
    // Behind a tailscaled sidecar the proxy listens on loopback: the Service has metrics only.
    let mut ports = vec![pod::service_port("metrics", PROXY_ADMIN_PORT, "metrics")];
    if spec.listener == ProxyListener::Tls {
        ports.insert(0, pod::service_port("https", spec.port, "https"));
    }
    let service = owner.service(&child, ports);
    let deployment = Deployment {
        metadata: owner.child_meta(&child),
        spec: DeploymentSpec {
            replicas: Some(spec.replicas),
            selector: LabelSelector {
                match_labels: Some(owner.selector_labels()),
                match_expressions: None,
            },
            template: pod_template(spec, owner, &child),
            ..DeploymentSpec::default()
        },
        status: None,
    };
    let rbac = (spec.mode == ProxyMode::Auth).then(|| {
        let name = proxy_rbac_name(&owner.name, &owner.namespace);
        let role = ClusterRole {
            metadata: owner.cluster_child_meta(&name),
            rules: Some(vec![PolicyRule {
                api_groups: Some(vec![String::new()]),
                resources: Some(vec![
                    "users".to_owned(),
                    "groups".to_owned(),
                    "serviceaccounts".to_owned(),
                ]),
                verbs: vec!["impersonate".to_owned()],
                ..PolicyRule::default()
            }]),
            aggregation_rule: None,
        };
        let binding = ClusterRoleBinding {
            metadata: owner.cluster_child_meta(&name),
            role_ref: RoleRef {
                api_group: Some("rbac.authorization.k8s.io".to_owned()),
                kind: "ClusterRole".to_owned(),
                name: name.clone(),
            },
            subjects: Some(vec![Subject {
                kind: "ServiceAccount".to_owned(),
                name: child.clone(),
                namespace: Some(owner.namespace.clone()),
                api_group: None,
            }]),
        };
        (role, binding)
    });
    let serve_config = match listener(spec) {
        Ok(Listener::Tailscale(_)) => Some(tailnet::serve_config_map(
            owner,
            &child,
            spec.tailnet_port,
            PROXY_CONTAINER_PORT,
            true,
        )),
        _ => None,
    };
    ProxyChildren {
        service_account,
        service,
        deployment,
        rbac,
        serve_config,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn owner() -> Owner {
        Owner::example("APIServerProxy", "edge", "proxy")
    }

    fn spec(yaml: &str) -> APIServerProxySpec {
        serde_yaml_ng::from_str(yaml).unwrap()
    }

    #[test]
    fn auth_mode_gets_an_impersonation_only_cluster_role() {
        let s = spec("image: p:1\ntlsSecret: tls\nidentitySecret: {name: ids}\nreplicas: 3\nevents: true\nauditPolicyConfigMap: pol\n");
        let c = proxy_children(&s, &owner());
        let d = &c.deployment.spec;
        assert_eq!(d.replicas, Some(3));
        assert_eq!(
            d.template
                .spec
                .as_ref()
                .unwrap()
                .termination_grace_period_seconds,
            Some(35)
        );
        let container = &d.template.spec.as_ref().unwrap().containers[0];
        let env = container.env.as_ref().unwrap();
        assert_eq!(
            (env[0].name.as_str(), env[0].value.as_deref()),
            ("APISERVER_PROXY", Some("true"))
        );
        let args = container.args.as_ref().unwrap();
        assert!(args.contains(&"--events-for-all-callers=true".to_owned()));
        assert!(
            args.contains(&"--audit-policy=/etc/kubescribe/config/audit-policy.yaml".to_owned())
        );
        let (role, binding) = c.rbac.unwrap();
        let rules = role.rules.unwrap();
        assert_eq!(rules.len(), 1);
        assert_eq!(rules[0].verbs, ["impersonate"]);
        assert_eq!(
            role.metadata.name.as_deref(),
            Some("kubescribe-proxy-ops-edge-impersonate")
        );
        assert!(
            role.metadata.owner_references.is_none(),
            "cluster-scoped: labels only"
        );
        assert_eq!(binding.subjects.unwrap()[0].name, "edge-proxy");
        assert_eq!(c.service.spec.unwrap().ports.unwrap()[0].port, 443);
    }

    #[test]
    fn noauth_mode_has_no_rbac_and_passes_credentials() {
        let s = spec(
            "image: p:1\ntlsSecret: tls\nidentitySecret: {name: ids, key: id.yaml}\nmode: noauth\n",
        );
        let c = proxy_children(&s, &owner());
        assert!(c.rbac.is_none());
        let container = &c.deployment.spec.template.spec.unwrap().containers[0];
        assert_eq!(
            container.env.as_ref().unwrap()[0].value.as_deref(),
            Some("noauth")
        );
        let args = container.args.as_ref().unwrap();
        assert!(args.contains(&"--identity-file=/etc/kubescribe/identities/id.yaml".to_owned()));
        assert!(!args
            .iter()
            .any(|a| a.starts_with("--events-for-all-callers") || a.starts_with("--audit-policy")));
    }

    #[test]
    fn grant_carries_recorders_failure_policy_and_events() {
        let s = spec("image: p:1\ntlsSecret: tls\nidentitySecret: {name: ids}\nfailurePolicy: fail-closed\nevents: true\n");
        let grant: serde_json::Value =
            serde_json::from_str(&proxy_grant(&s, &["a.ops.svc:80".to_owned()])).unwrap();
        assert_eq!(
            grant,
            serde_json::json!({"recorderAddrs": ["a.ops.svc:80"], "enforceRecorder": true, "enableEvents": true})
        );
        assert_eq!(
            proxy_endpoint("edge", "ops", 443),
            "https://edge-proxy.ops.svc:443"
        );
    }
}
