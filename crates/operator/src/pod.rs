//! Pieces of every pod the operator runs, as the Helm chart renders them
//! (charts/kubescribe/templates/_helpers.tpl): non-root 65532, RuntimeDefault seccomp, no
//! privilege escalation, no capabilities, a read-only root, probes on the admin port.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EmptyDirVolumeSource, EnvVar, HTTPGetAction,
    PodSecurityContext, PodSpec, PodTemplateSpec, Probe, ResourceRequirements, SeccompProfile,
    SecretVolumeSource, SecurityContext, ServicePort, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// The user and group every container runs as.
const NONROOT: i64 = 65532;

/// The pod security context of every pod.
pub(crate) fn pod_security_context() -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(NONROOT),
        run_as_group: Some(NONROOT),
        fs_group: Some(NONROOT),
        seccomp_profile: Some(runtime_default()),
        ..PodSecurityContext::default()
    }
}

/// The security context of every container.
pub(crate) fn container_security_context() -> SecurityContext {
    SecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(NONROOT),
        run_as_group: Some(NONROOT),
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".to_owned()]),
            add: None,
        }),
        seccomp_profile: Some(runtime_default()),
        ..SecurityContext::default()
    }
}

fn runtime_default() -> SeccompProfile {
    SeccompProfile {
        type_: "RuntimeDefault".to_owned(),
        localhost_profile: None,
    }
}

/// An HTTP GET probe of `path` on the port named `metrics`, every `period` seconds.
pub(crate) fn probe(path: &str, period: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::String("metrics".to_owned()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        ..Probe::default()
    }
}

/// A named TCP container port.
pub(crate) fn container_port(name: &str, port: i32) -> ContainerPort {
    ContainerPort {
        name: Some(name.to_owned()),
        container_port: port,
        protocol: Some("TCP".to_owned()),
        ..ContainerPort::default()
    }
}

/// A TCP service port `port` to the container port named `target`.
pub(crate) fn service_port(name: &str, port: i32, target: &str) -> ServicePort {
    ServicePort {
        name: Some(name.to_owned()),
        port,
        target_port: Some(IntOrString::String(target.to_owned())),
        protocol: Some("TCP".to_owned()),
        ..ServicePort::default()
    }
}

/// Requests and limits of CPU and memory.
pub(crate) fn resources(
    cpu_request: &str,
    memory_request: &str,
    cpu_limit: &str,
    memory_limit: &str,
) -> ResourceRequirements {
    let pair = |cpu: &str, memory: &str| {
        BTreeMap::from([
            ("cpu".to_owned(), Quantity(cpu.to_owned())),
            ("memory".to_owned(), Quantity(memory.to_owned())),
        ])
    };
    ResourceRequirements {
        requests: Some(pair(cpu_request, memory_request)),
        limits: Some(pair(cpu_limit, memory_limit)),
        ..ResourceRequirements::default()
    }
}

/// An emptyDir volume of at most `size_limit`.
pub(crate) fn empty_dir(name: &str, size_limit: &str) -> Volume {
    Volume {
        name: name.to_owned(),
        empty_dir: Some(EmptyDirVolumeSource {
            size_limit: Some(Quantity(size_limit.to_owned())),
            ..EmptyDirVolumeSource::default()
        }),
        ..Volume::default()
    }
}

/// A volume of Secret `secret`, its files with `mode` when given.
pub(crate) fn secret_volume(name: &str, secret: &str, mode: Option<i32>) -> Volume {
    Volume {
        name: name.to_owned(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(secret.to_owned()),
            default_mode: mode,
            ..SecretVolumeSource::default()
        }),
        ..Volume::default()
    }
}

/// A mount of volume `name` at `path`.
pub(crate) fn mount(name: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: name.to_owned(),
        mount_path: path.to_owned(),
        read_only: read_only.then_some(true),
        ..VolumeMount::default()
    }
}

/// The one container of a kubescribe binary's pod.
pub(crate) struct Product {
    /// The container's name (`recorder`, `proxy`).
    pub(crate) name: &'static str,
    /// The image.
    pub(crate) image: String,
    /// The binary's args.
    pub(crate) args: Vec<String>,
    /// Its environment.
    pub(crate) env: Vec<EnvVar>,
    /// The serving port's name and number.
    pub(crate) port: (&'static str, i32),
    /// The admin port (`metrics`: `/metrics`, `/healthz`, `/readyz`).
    pub(crate) admin_port: i32,
    /// Requests and limits.
    pub(crate) resources: ResourceRequirements,
    /// Volume mounts.
    pub(crate) mounts: Vec<VolumeMount>,
    /// Seconds the pod has from SIGTERM to exit.
    pub(crate) grace_seconds: i64,
}

impl Product {
    /// The pod template: the container with probes on the admin port and the secure contexts,
    /// `labels` on the pod, ServiceAccount `service_account` (its token mounted when `automount`),
    /// `volumes`.
    pub(crate) fn pod_template(
        self,
        labels: BTreeMap<String, String>,
        service_account: &str,
        automount: bool,
        volumes: Vec<Volume>,
    ) -> PodTemplateSpec {
        let container = Container {
            name: self.name.to_owned(),
            image: Some(self.image),
            image_pull_policy: Some("IfNotPresent".to_owned()),
            args: Some(self.args),
            env: Some(self.env),
            ports: Some(vec![
                container_port(self.port.0, self.port.1),
                container_port("metrics", self.admin_port),
            ]),
            liveness_probe: Some(probe("/healthz", 10)),
            readiness_probe: Some(probe("/readyz", 5)),
            security_context: Some(container_security_context()),
            resources: Some(self.resources),
            volume_mounts: Some(self.mounts),
            ..Container::default()
        };
        PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some(labels),
                ..ObjectMeta::default()
            }),
            spec: Some(PodSpec {
                service_account_name: Some(service_account.to_owned()),
                automount_service_account_token: Some(automount),
                security_context: Some(pod_security_context()),
                termination_grace_period_seconds: Some(self.grace_seconds),
                containers: vec![container],
                volumes: Some(volumes),
                ..PodSpec::default()
            }),
        }
    }
}
