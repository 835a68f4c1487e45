//! The tailscaled sidecar that puts a workload on a tailnet, as the chart runs the proxy's
//! (charts/kubescribe/templates/proxy-deployment.yaml): `tailscale/tailscale` (containerboot) in
//! userspace networking mode, its state in the pod's own volume, its `tailscale serve`
//! configuration from a ConfigMap the operator makes.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapVolumeSource, Container, EnvVar, EnvVarSource, SecretKeySelector, Volume,
    VolumeMount,
};

use crate::meta::Owner;
use crate::pod;
use crate::resources::Tailnet;

/// tailscaled's LocalAPI socket, shared with the workload's container.
pub(crate) const TAILSCALED_SOCKET: &str = "/var/run/tailscale/tailscaled.sock";

/// The ConfigMap key (and file name) of the serve configuration.
const SERVE_KEY: &str = "serve.json";

/// The name of the ConfigMap holding the serve configuration of workload `child`.
pub fn tailnet_config_map_name(child: &str) -> String {
    format!("{child}-tailscale")
}

/// `TS_EXTRA_ARGS`: `--advertise-tags=tag:a,tag:b` (empty without tags), as the chart's
/// `proxy.tailscale.extraArgs` is given.
pub fn tailnet_extra_args(tailnet: &Tailnet) -> String {
    if tailnet.tags.is_empty() {
        String::new()
    } else {
        format!("--advertise-tags={}", tailnet.tags.join(","))
    }
}

/// The ConfigMap with `tailscale serve`'s configuration: tailnet TCP port `port` forwarded to the
/// workload's `127.0.0.1:target`; with `tls_proxy_protocol`, TLS terminated with the node's
/// certificate and a PROXY protocol v2 header naming the caller (the chart's proxy sidecar).
pub(crate) fn serve_config_map(
    owner: &Owner,
    child: &str,
    port: i32,
    target: i32,
    tls_proxy_protocol: bool,
) -> ConfigMap {
    let forward = format!("127.0.0.1:{target}");
    let handler = if tls_proxy_protocol {
        serde_json::json!({"TCPForward": forward, "TerminateTLS": "${TS_CERT_DOMAIN}", "ProxyProtocol": 2})
    } else {
        serde_json::json!({ "TCPForward": forward })
    };
    let serve = serde_json::json!({ "TCP": { port.to_string(): handler } });
    ConfigMap {
        metadata: owner.child_meta(&tailnet_config_map_name(child)),
        data: Some(BTreeMap::from([(SERVE_KEY.to_owned(), serve.to_string())])),
        ..ConfigMap::default()
    }
}

fn env(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: Some(value.to_owned()),
        value_from: None,
    }
}

/// The sidecar container of workload `child` and the volumes it adds to the pod.
pub(crate) fn sidecar(tailnet: &Tailnet, child: &str) -> (Container, Vec<Volume>) {
    let auth_key = EnvVar {
        name: "TS_AUTHKEY".to_owned(),
        value: None,
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: tailnet.auth_key_secret.name.clone(),
                key: tailnet.auth_key_secret.key_or("authkey").to_owned(),
                optional: None,
            }),
            ..EnvVarSource::default()
        }),
    };
    let container = Container {
        name: "tailscale".to_owned(),
        image: Some(tailnet.image.clone()),
        image_pull_policy: Some("IfNotPresent".to_owned()),
        env: Some(vec![
            auth_key,
            env("TS_HOSTNAME", tailnet.hostname.as_deref().unwrap_or(child)),
            env("TS_EXTRA_ARGS", &tailnet_extra_args(tailnet)),
            env("TS_USERSPACE", "true"),
            // State in the pod's own volume, never in a Kubernetes Secret (no RBAC needed).
            env("TS_KUBE_SECRET", ""),
            env("TS_STATE_DIR", "/var/lib/tailscale"),
            env("TS_SOCKET", TAILSCALED_SOCKET),
            env("TS_SERVE_CONFIG", "/etc/tailscale/serve.json"),
            env("TS_AUTH_ONCE", "true"),
        ]),
        security_context: Some(pod::container_security_context()),
        resources: Some(pod::resources("50m", "64Mi", "500m", "256Mi")),
        volume_mounts: Some(vec![
            pod::mount("tailscale-socket", "/var/run/tailscale", false),
            pod::mount("tailscale-state", "/var/lib/tailscale", false),
            pod::mount("tmp", "/tmp", false),
            VolumeMount {
                sub_path: Some(SERVE_KEY.to_owned()),
                ..pod::mount("tailscale-serve", "/etc/tailscale/serve.json", true)
            },
        ]),
        ..Container::default()
    };
    let volumes = vec![
        Volume {
            name: "tailscale-socket".to_owned(),
            empty_dir: Some(Default::default()),
            ..Volume::default()
        },
        pod::empty_dir("tailscale-state", "64Mi"),
        Volume {
            name: "tailscale-serve".to_owned(),
            config_map: Some(ConfigMapVolumeSource {
                name: tailnet_config_map_name(child),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        },
    ];
    (container, volumes)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn sidecar_env_is_the_charts() {
        let tailnet: Tailnet = serde_yaml_ng::from_str(
            "authKeySecret: {name: ts}\nhostname: rec-ts\ntags: ['tag:a', 'tag:b']\n",
        )
        .unwrap();
        assert_eq!(tailnet_extra_args(&tailnet), "--advertise-tags=tag:a,tag:b");
        let (container, volumes) = sidecar(&tailnet, "audit-recorder");
        let env = container.env.unwrap();
        let get = |n: &str| env.iter().find(|e| e.name == n).unwrap().clone();
        assert_eq!(get("TS_HOSTNAME").value.as_deref(), Some("rec-ts"));
        assert_eq!(
            get("TS_AUTHKEY")
                .value_from
                .unwrap()
                .secret_key_ref
                .unwrap()
                .key,
            "authkey"
        );
        assert_eq!(
            container.image.as_deref(),
            Some("tailscale/tailscale:v1.102.5")
        );
        assert_eq!(volumes.len(), 3);
        let untagged: Tailnet = serde_yaml_ng::from_str("authKeySecret: {name: ts}\n").unwrap();
        assert_eq!(tailnet_extra_args(&untagged), "");
        let (container, _) = sidecar(&untagged, "audit-recorder");
        assert!(container
            .env
            .unwrap()
            .iter()
            .any(|e| e.name == "TS_HOSTNAME" && e.value.as_deref() == Some("audit-recorder")));
    }
}
