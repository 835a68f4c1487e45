//! A Recorder's children, built from its spec alone (no API calls): ServiceAccount, Service, and a
//! StatefulSet with a volumeClaimTemplate (disk) or a Deployment with the S3 credentials from a
//! Secret (S3). Container args, environment, ports, probes and security contexts are the ones the
//! Helm chart's recorder template renders (charts/kubescribe/templates/recorder-workload.yaml).

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, StatefulSet, StatefulSetSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, EnvVar, EnvVarSource, ObjectFieldSelector, PersistentVolumeClaim,
    PersistentVolumeClaimSpec, PodTemplateSpec, SecretKeySelector, Service, ServiceAccount,
    VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

use crate::meta::Owner;
use crate::pod;
use crate::resources::{RecorderSpec, StorageKind};
use crate::tailnet;

/// The recorder's HTTP port in the container (it drops every capability, so not 80).
pub const RECORDER_CONTAINER_PORT: i32 = 8080;
/// The recorder's admin port (`/metrics`, `/healthz`, `/readyz`).
pub const RECORDER_ADMIN_PORT: i32 = 9103;
/// The Service's HTTP port.
pub const RECORDER_SERVICE_PORT: i32 = 80;
/// Where the disk volume is mounted (`TSRECORDER_DST`).
const DATA_DIR: &str = "/var/lib/kubescribe-recorder";

/// Why a Recorder's spec cannot be turned into children (its `Ready` reason and message).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecorderSpecError {
    /// `storage.type` is `s3` but `storage.s3` is absent.
    #[error("storage.type is s3 but storage.s3 (bucket, credentialsSecret) is missing")]
    S3SettingsMissing,
    /// Disk storage with more than one replica.
    #[error("storage.type disk allows replicas 0 or 1 (a volume is one recorder's alone); use s3 for several replicas sharing a bucket")]
    DiskReplicas,
    /// Nothing tells the recorder who may upload.
    #[error("uploaders needs identitySecret, tokenSecret or insecureAllowAnyUploader: the recorder refuses to start without a way to tell who uploads")]
    NoUploaderAuthentication,
}

impl RecorderSpecError {
    /// The condition reason.
    pub fn reason(&self) -> &'static str {
        match self {
            RecorderSpecError::S3SettingsMissing => "S3SettingsMissing",
            RecorderSpecError::DiskReplicas => "DiskReplicas",
            RecorderSpecError::NoUploaderAuthentication => "NoUploaderAuthentication",
        }
    }
}

/// The workload: a StatefulSet (disk) or a Deployment (S3).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum RecorderWorkload {
    /// Disk storage.
    StatefulSet(Box<StatefulSet>),
    /// S3 storage.
    Deployment(Box<Deployment>),
}

/// Every child of one Recorder.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RecorderChildren {
    /// The pods' ServiceAccount (no token mounted: the recorder talks to no Kubernetes API).
    pub(crate) service_account: ServiceAccount,
    /// The Service in front of the pods.
    pub(crate) service: Service,
    /// The workload.
    pub(crate) workload: RecorderWorkload,
    /// With `tailnet`: the sidecar's `tailscale serve` configuration (tailnet port 80 to the
    /// recorder's port).
    pub(crate) serve_config: Option<ConfigMap>,
}

/// The name of every child of Recorder `name`.
pub fn recorder_child_name(name: &str) -> String {
    format!("{name}-recorder")
}

/// The recorder's URL (uploads, query API, UI): `http://<service>.<namespace>.svc:80`.
pub fn recorder_url(name: &str, namespace: &str) -> String {
    format!(
        "http://{}.{namespace}.svc:{RECORDER_SERVICE_PORT}",
        recorder_child_name(name)
    )
}

/// The recorder's address as a grant's `recorderAddrs` names it: `<service>.<namespace>.svc:80`.
pub fn recorder_addr(name: &str, namespace: &str) -> String {
    format!(
        "{}.{namespace}.svc:{RECORDER_SERVICE_PORT}",
        recorder_child_name(name)
    )
}

/// The Secret the operator creates with a signing key for Recorder `name` when its spec names none.
pub fn signing_key_secret_name(name: &str) -> String {
    format!("{name}-recorder-signing-key")
}

/// The key of that Secret holding the key (64 hex digits, as `kubescribe-recorder keygen` writes).
pub const SIGNING_KEY_KEY: &str = "signing.key";

/// The signing key of Recorder `name`: its Secret and key (the spec's, else the one the operator
/// creates), or `None` when unsigned.
pub(crate) fn signing_key(spec: &RecorderSpec, name: &str) -> Option<(String, String)> {
    if spec.unsigned {
        return None;
    }
    Some(match &spec.signing_key_secret {
        Some(key) => (key.name.clone(), key.key_or(SIGNING_KEY_KEY).to_owned()),
        None => (signing_key_secret_name(name), SIGNING_KEY_KEY.to_owned()),
    })
}

/// Checks what the CRD schema cannot: the storage settings for the storage type, and a way to tell
/// uploaders.
pub fn validate_recorder(spec: &RecorderSpec) -> Result<(), RecorderSpecError> {
    if spec.storage.kind == StorageKind::S3 && spec.storage.s3.is_none() {
        return Err(RecorderSpecError::S3SettingsMissing);
    }
    if spec.storage.kind == StorageKind::Disk && spec.replicas > 1 {
        return Err(RecorderSpecError::DiskReplicas);
    }
    let up = &spec.uploaders;
    if up.identity_secret.is_none() && up.token_secret.is_none() && !up.insecure_allow_any_uploader
    {
        return Err(RecorderSpecError::NoUploaderAuthentication);
    }
    Ok(())
}

/// The container's args, as the chart renders them (every one a flag `kubescribe-recorder`
/// accepts).
pub fn recorder_args(spec: &RecorderSpec) -> Vec<String> {
    let mut args = vec![
        format!("--listen=0.0.0.0:{RECORDER_CONTAINER_PORT}"),
        format!("--admin-listen=0.0.0.0:{RECORDER_ADMIN_PORT}"),
    ];
    let up = &spec.uploaders;
    if up.insecure_allow_any_uploader {
        args.push("--insecure-allow-any-uploader".to_owned());
    } else if let Some(identities) = &up.identity_secret {
        args.push(format!(
            "--identity-file=/etc/kubescribe/identities/{}",
            identities.key_or("identities.yaml")
        ));
    }
    args.push(format!("--allow-uploaders={}", up.allow));
    args.push(format!("--allow-readers={}", spec.readers.allow));
    args.push("--log-format=json".to_owned());
    if spec.ui {
        args.push("--ui".to_owned());
    }
    match signing_key(spec, "") {
        Some((_, key)) => args.push(format!("--signing-key=/etc/kubescribe/signing/{key}")),
        None => args.push("--unsigned".to_owned()),
    }
    if let (StorageKind::S3, Some(s3)) = (spec.storage.kind, &spec.storage.s3) {
        if s3.allow_http {
            args.push("--s3-allow-http".to_owned());
        }
    }
    if let Some(token) = &spec.readers.token_secret {
        args.push(format!(
            "--read-token-file=/etc/kubescribe/read-token/{}",
            token.key_or("token")
        ));
    }
    if let Some(token) = &up.token_secret {
        args.push(format!(
            "--upload-token-file=/etc/kubescribe/upload-token/{}",
            token.key_or("token")
        ));
    }
    if let Some(retention) = &spec.retention {
        if let Some(days) = retention.events_days {
            args.push(format!("--retain-events-days={days}"));
        }
        if let Some(days) = retention.sessions_days {
            args.push(format!("--retain-sessions-days={days}"));
        }
    }
    args
}

fn env(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: Some(value.to_owned()),
        value_from: None,
    }
}

fn env_from_secret(name: &str, secret: &str, key: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: None,
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.to_owned(),
                key: key.to_owned(),
                optional: None,
            }),
            ..EnvVarSource::default()
        }),
    }
}

/// The pod's own name (`KUBESCRIBE_REPLICA_NAME`: its name among replicas sharing a bucket).
fn env_pod_name(name: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: None,
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                api_version: None,
                field_path: "metadata.name".to_owned(),
            }),
            ..EnvVarSource::default()
        }),
    }
}

/// The container's environment: the storage destination (and S3 credentials from their Secret,
/// and the pod's name as the replica's name on the bucket).
pub fn recorder_env(spec: &RecorderSpec) -> Vec<EnvVar> {
    match (spec.storage.kind, &spec.storage.s3) {
        (StorageKind::S3, Some(s3)) => vec![
            env("TSRECORDER_DST", &format!("s3://{}", s3.endpoint)),
            env("TSRECORDER_BUCKET", &s3.bucket),
            env("AWS_REGION", &s3.region),
            env_from_secret(
                "AWS_ACCESS_KEY_ID",
                &s3.credentials_secret,
                &s3.access_key_id_key,
            ),
            env_from_secret(
                "AWS_SECRET_ACCESS_KEY",
                &s3.credentials_secret,
                &s3.secret_access_key_key,
            ),
            env_pod_name("KUBESCRIBE_REPLICA_NAME"),
        ],
        _ => vec![env("TSRECORDER_DST", DATA_DIR)],
    }
}

/// The Secrets the pod needs that the user provides, by name (checked before the workload is applied).
pub(crate) fn recorder_secrets(spec: &RecorderSpec) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    if let (StorageKind::S3, Some(s3)) = (spec.storage.kind, &spec.storage.s3) {
        out.push((
            "storage.s3.credentialsSecret",
            s3.credentials_secret.clone(),
        ));
    }
    if !spec.uploaders.insecure_allow_any_uploader {
        if let Some(s) = &spec.uploaders.identity_secret {
            out.push(("uploaders.identitySecret", s.name.clone()));
        }
    }
    if let Some(s) = &spec.uploaders.token_secret {
        out.push(("uploaders.tokenSecret", s.name.clone()));
    }
    if let Some(s) = &spec.readers.token_secret {
        out.push(("readers.tokenSecret", s.name.clone()));
    }
    if let Some(t) = &spec.tailnet {
        out.push(("tailnet.authKeySecret", t.auth_key_secret.name.clone()));
    }
    if let (Some(s), false) = (&spec.signing_key_secret, spec.unsigned) {
        out.push(("signingKeySecret", s.name.clone()));
    }
    out
}

/// Whether the spec of Recorder `name` names Secret `secret` (one the user provides, or its
/// signing key Secret), so that the Secret's creation or change reconciles it.
pub(crate) fn recorder_names_secret(spec: &RecorderSpec, name: &str, secret: &str) -> bool {
    recorder_secrets(spec).iter().any(|(_, s)| s == secret)
        || signing_key(spec, name).is_some_and(|(s, _)| s == secret)
}

fn pod_template(spec: &RecorderSpec, owner: &Owner, child: &str) -> PodTemplateSpec {
    let disk = spec.storage.kind == StorageKind::Disk;
    let mut mounts = vec![pod::mount("tmp", "/tmp", false)];
    let mut volumes = vec![pod::empty_dir("tmp", "256Mi")];
    if disk {
        mounts.push(pod::mount("data", DATA_DIR, false));
    }
    let up = &spec.uploaders;
    if !up.insecure_allow_any_uploader {
        if let Some(identities) = &up.identity_secret {
            mounts.push(pod::mount("identities", "/etc/kubescribe/identities", true));
            volumes.push(pod::secret_volume("identities", &identities.name, None));
        }
    }
    if let Some((secret, _)) = signing_key(spec, &owner.name) {
        mounts.push(pod::mount("signing-key", "/etc/kubescribe/signing", true));
        volumes.push(pod::secret_volume("signing-key", &secret, Some(0o400)));
    }
    if let Some(token) = &spec.readers.token_secret {
        mounts.push(pod::mount("read-token", "/etc/kubescribe/read-token", true));
        volumes.push(pod::secret_volume("read-token", &token.name, None));
    }
    if let Some(token) = &up.token_secret {
        mounts.push(pod::mount(
            "upload-token",
            "/etc/kubescribe/upload-token",
            true,
        ));
        volumes.push(pod::secret_volume("upload-token", &token.name, None));
    }
    let sidecar = spec
        .tailnet
        .as_ref()
        .map(|tailnet| tailnet::sidecar(tailnet, child));
    if let Some((_, sidecar_volumes)) = &sidecar {
        volumes.extend(sidecar_volumes.iter().cloned());
    }
    let mut template = pod::Product {
        name: "recorder",
        image: spec.image.clone(),
        args: recorder_args(spec),
        env: recorder_env(spec),
        port: ("http", RECORDER_CONTAINER_PORT),
        admin_port: RECORDER_ADMIN_PORT,
        resources: pod::resources("100m", "256Mi", "2", "1Gi"),
        mounts,
        grace_seconds: 30,
    }
    // The recorder talks to no Kubernetes API: no token.
    .pod_template(owner.selector_labels(), child, false, volumes);
    if let (Some((container, _)), Some(pod)) = (sidecar, template.spec.as_mut()) {
        pod.containers.push(container);
    }
    template
}

/// Every child of a Recorder whose spec passed [`validate_recorder`].
pub(crate) fn recorder_children(spec: &RecorderSpec, owner: &Owner) -> RecorderChildren {
    let child = recorder_child_name(&owner.name);
    let selector = LabelSelector {
        match_labels: Some(owner.selector_labels()),
        match_expressions: None,
    };
    // The recorder talks to no Kubernetes API: no token.
    let service_account = owner.service_account(&child, false);
    let service = owner.service(
        &child,
        vec![
            pod::service_port("http", RECORDER_SERVICE_PORT, "http"),
            pod::service_port("metrics", RECORDER_ADMIN_PORT, "metrics"),
        ],
    );
    let template = pod_template(spec, owner, &child);
    let workload = match spec.storage.kind {
        StorageKind::Disk => {
            let disk = spec
                .storage
                .disk
                .clone()
                .unwrap_or_else(|| crate::resources::DiskStorage {
                    size: "20Gi".to_owned(),
                    storage_class_name: None,
                });
            let claim = PersistentVolumeClaim {
                metadata: ObjectMeta {
                    name: Some("data".to_owned()),
                    labels: Some(owner.selector_labels()),
                    ..ObjectMeta::default()
                },
                spec: Some(PersistentVolumeClaimSpec {
                    access_modes: Some(vec!["ReadWriteOnce".to_owned()]),
                    storage_class_name: disk.storage_class_name.clone(),
                    resources: Some(VolumeResourceRequirements {
                        requests: Some(BTreeMap::from([(
                            "storage".to_owned(),
                            Quantity(disk.size.clone()),
                        )])),
                        limits: None,
                    }),
                    ..PersistentVolumeClaimSpec::default()
                }),
                status: None,
            };
            RecorderWorkload::StatefulSet(Box::new(StatefulSet {
                metadata: owner.child_meta(&child),
                spec: StatefulSetSpec {
                    replicas: Some(spec.replicas),
                    selector,
                    service_name: Some(child.clone()),
                    template,
                    volume_claim_templates: Some(vec![claim]),
                    ..StatefulSetSpec::default()
                },
                status: None,
            }))
        }
        StorageKind::S3 => RecorderWorkload::Deployment(Box::new(Deployment {
            metadata: owner.child_meta(&child),
            spec: DeploymentSpec {
                replicas: Some(spec.replicas),
                selector,
                // Replicas share the bucket (leases): a rolling update is safe.
                strategy: None,
                template,
                ..DeploymentSpec::default()
            },
            status: None,
        })),
    };
    let serve_config = spec.tailnet.as_ref().map(|_| {
        tailnet::serve_config_map(
            owner,
            &child,
            RECORDER_SERVICE_PORT,
            RECORDER_CONTAINER_PORT,
            false,
        )
    });
    RecorderChildren {
        service_account,
        service,
        workload,
        serve_config,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::resources::{Recorder, S3Storage, SecretKeyRef};
    use proptest::prelude::*;

    fn owner() -> Owner {
        Owner::example("Recorder", "audit", "recorder")
    }

    fn spec(yaml: &str) -> RecorderSpec {
        serde_yaml_ng::from_str(yaml).unwrap()
    }

    #[test]
    fn disk_recorder_is_a_statefulset_with_a_claim() {
        let s = spec(
            "image: rec:1\nstorage: {type: disk, disk: {size: 5Gi}}\nui: true\nuploaders: {identitySecret: {name: ids}}\n",
        );
        validate_recorder(&s).unwrap();
        let c = recorder_children(&s, &owner());
        let RecorderWorkload::StatefulSet(set) = &c.workload else {
            panic!("disk storage is a StatefulSet");
        };
        let spec = &set.spec;
        assert_eq!(spec.replicas, Some(1));
        assert_eq!(spec.service_name.as_deref(), Some("audit-recorder"));
        let claim = &spec.volume_claim_templates.as_ref().unwrap()[0];
        let size = &claim
            .spec
            .as_ref()
            .unwrap()
            .resources
            .as_ref()
            .unwrap()
            .requests
            .as_ref()
            .unwrap()["storage"];
        assert_eq!(size.0, "5Gi");
        let pod = spec.template.spec.as_ref().unwrap();
        let container = &pod.containers[0];
        assert_eq!(container.image.as_deref(), Some("rec:1"));
        let args = container.args.as_ref().unwrap();
        assert!(args.contains(&"--ui".to_owned()));
        assert!(args.contains(&"--signing-key=/etc/kubescribe/signing/signing.key".to_owned()));
        let volumes = pod.volumes.as_ref().unwrap();
        let key = volumes.iter().find(|v| v.name == "signing-key").unwrap();
        assert_eq!(
            key.secret.as_ref().unwrap().secret_name.as_deref(),
            Some("audit-recorder-signing-key"),
            "the key the operator creates"
        );
        assert!(
            args.contains(&"--identity-file=/etc/kubescribe/identities/identities.yaml".to_owned())
        );
        assert_eq!(
            container.env.as_ref().unwrap()[0].value.as_deref(),
            Some("/var/lib/kubescribe-recorder")
        );
        assert_eq!(pod.automount_service_account_token, Some(false));
        let refs = set.metadata.owner_references.as_ref().unwrap();
        assert_eq!(refs[0].uid, "uid-audit");
        assert_eq!(refs[0].controller, Some(true));
        assert_eq!(
            c.service.spec.as_ref().unwrap().ports.as_ref().unwrap()[0].port,
            80
        );
    }

    #[test]
    fn s3_recorder_is_a_rolling_deployment_of_named_replicas_with_credentials_from_the_secret() {
        let s = spec(
            "image: rec:1\nstorage: {type: s3, s3: {bucket: audit, endpoint: minio:9000, credentialsSecret: creds, allowHttp: true}}\nuploaders: {tokenSecret: {name: up, key: t}}\nsigningKeySecret: {name: sk}\nretention: {eventsDays: 30}\n",
        );
        validate_recorder(&s).unwrap();
        let c = recorder_children(&s, &owner());
        let RecorderWorkload::Deployment(d) = &c.workload else {
            panic!("s3 storage is a Deployment");
        };
        let spec = &d.spec;
        assert_eq!(
            spec.strategy, None,
            "replicas share the bucket: rolling updates"
        );
        let container = &spec.template.spec.as_ref().unwrap().containers[0];
        let env = container.env.as_ref().unwrap();
        let named = &env[5];
        assert_eq!(named.name, "KUBESCRIBE_REPLICA_NAME");
        assert_eq!(
            named
                .value_from
                .as_ref()
                .unwrap()
                .field_ref
                .as_ref()
                .unwrap()
                .field_path,
            "metadata.name"
        );
        assert_eq!(env[0].value.as_deref(), Some("s3://minio:9000"));
        assert_eq!(env[1].value.as_deref(), Some("audit"));
        let key = env[3]
            .value_from
            .as_ref()
            .unwrap()
            .secret_key_ref
            .as_ref()
            .unwrap();
        assert_eq!(
            (key.name.as_str(), key.key.as_str()),
            ("creds", "AWS_ACCESS_KEY_ID")
        );
        let args = container.args.as_ref().unwrap();
        for want in [
            "--s3-allow-http",
            "--signing-key=/etc/kubescribe/signing/signing.key",
            "--upload-token-file=/etc/kubescribe/upload-token/t",
            "--retain-events-days=30",
        ] {
            assert!(args.contains(&want.to_owned()), "{want} in {args:?}");
        }
        assert!(!args.iter().any(|a| a.starts_with("--identity-file")));
        assert_eq!(
            recorder_secrets(&s)
                .into_iter()
                .map(|(_, n)| n)
                .collect::<Vec<_>>(),
            ["creds", "up", "sk"]
        );
    }

    #[test]
    fn semantic_errors_have_reasons() {
        let s = spec(
            "image: rec:1\nstorage: {type: s3}\nuploaders: {insecureAllowAnyUploader: true}\n",
        );
        assert_eq!(
            validate_recorder(&s),
            Err(RecorderSpecError::S3SettingsMissing)
        );
        let s = spec("image: rec:1\nstorage: {type: disk}\n");
        assert_eq!(
            validate_recorder(&s).map_err(|e| e.reason()),
            Err("NoUploaderAuthentication")
        );
        let s = spec(
            "image: rec:1\nreplicas: 2\nstorage: {type: disk}\nuploaders: {insecureAllowAnyUploader: true}\n",
        );
        assert_eq!(
            validate_recorder(&s).map_err(|e| e.reason()),
            Err("DiskReplicas")
        );
    }

    #[test]
    fn url_names_the_service() {
        assert_eq!(
            recorder_url("audit", "ops"),
            "http://audit-recorder.ops.svc:80"
        );
        assert_eq!(recorder_addr("audit", "ops"), "audit-recorder.ops.svc:80");
    }

    fn arb_secret() -> impl Strategy<Value = Option<SecretKeyRef>> {
        proptest::option::of(
            ("[a-z][a-z0-9-]{0,20}", proptest::option::of("[a-z.]{1,12}"))
                .prop_map(|(name, key)| SecretKeyRef { name, key }),
        )
    }

    fn arb_spec() -> impl Strategy<Value = RecorderSpec> {
        (
            "[a-z/:.0-9]{1,30}",
            0..=1i32,
            any::<bool>(),
            any::<bool>(),
            (arb_secret(), arb_secret(), arb_secret(), arb_secret()),
            any::<bool>(),
            proptest::option::of((
                proptest::option::of(1..1000u32),
                proptest::option::of(1..1000u32),
            )),
        )
            .prop_map(
                |(image, replicas, s3, ui, (ids, up, read, sign), insecure, retention)| {
                    let mut spec: RecorderSpec = serde_yaml_ng::from_str(&format!(
                        "image: x\nstorage: {{type: {}}}\n",
                        if s3 { "s3" } else { "disk" }
                    ))
                    .unwrap();
                    spec.image = image;
                    spec.replicas = replicas;
                    spec.ui = ui;
                    if s3 {
                        spec.storage.s3 = Some(S3Storage {
                            bucket: "b".to_owned(),
                            endpoint: "e".to_owned(),
                            region: "r".to_owned(),
                            credentials_secret: "c".to_owned(),
                            access_key_id_key: "a".to_owned(),
                            secret_access_key_key: "s".to_owned(),
                            allow_http: ui,
                        });
                    }
                    spec.uploaders.identity_secret = ids;
                    spec.uploaders.token_secret = up;
                    spec.uploaders.insecure_allow_any_uploader = insecure;
                    spec.readers.token_secret = read;
                    spec.signing_key_secret = sign;
                    spec.unsigned = insecure && ui;
                    spec.retention =
                        retention.map(|(events_days, sessions_days)| crate::resources::Retention {
                            events_days,
                            sessions_days,
                        });
                    spec
                },
            )
    }

    proptest! {
        /// A spec survives the trip through JSON (the API server's form), and its args name each
        /// flag at most once, only flags the recorder has, with every mounted file's volume present.
        #[test]
        fn specs_round_trip_and_args_are_well_formed(spec in arb_spec()) {
            let json = serde_json::to_string(&spec).unwrap();
            let back: RecorderSpec = serde_json::from_str(&json).unwrap();
            prop_assert_eq!(&back, &spec);
            let args = recorder_args(&spec);
            let mut flags: Vec<&str> = args.iter().map(|a| a.split('=').next().unwrap()).collect();
            let n = flags.len();
            flags.sort_unstable();
            flags.dedup();
            prop_assert_eq!(flags.len(), n, "a flag twice in {:?}", args);
            for flag in &flags {
                prop_assert!(KNOWN_FLAGS.contains(flag), "unknown flag {}", flag);
            }
            prop_assert_eq!(args.contains(&"--unsigned".to_owned()), spec.unsigned);
            prop_assert_eq!(args.iter().any(|a| a.starts_with("--signing-key=")), !spec.unsigned);
            if validate_recorder(&spec).is_ok() {
                let children = recorder_children(&spec, &owner());
                let (template, disk) = match &children.workload {
                    RecorderWorkload::StatefulSet(s) => (&s.spec.template, true),
                    RecorderWorkload::Deployment(d) => (&d.spec.template, false),
                };
                prop_assert_eq!(disk, !matches!(spec.storage.kind, StorageKind::S3));
                let pod = template.spec.as_ref().unwrap();
                let volumes: Vec<&str> = pod.volumes.as_ref().unwrap().iter().map(|v| v.name.as_str()).collect();
                for m in pod.containers[0].volume_mounts.as_ref().unwrap() {
                    prop_assert!(m.name == "data" || volumes.contains(&m.name.as_str()), "mount {} without a volume", m.name);
                }
            }
            let _ = Recorder::new("x", spec);
        }
    }

    /// Flags `kubescribe-recorder --help` lists that the operator may render (the system test checks
    /// a rendered command line against the binary itself).
    const KNOWN_FLAGS: &[&str] = &[
        "--listen",
        "--admin-listen",
        "--insecure-allow-any-uploader",
        "--identity-file",
        "--allow-uploaders",
        "--allow-readers",
        "--log-format",
        "--ui",
        "--unsigned",
        "--signing-key",
        "--s3-allow-http",
        "--read-token-file",
        "--upload-token-file",
        "--retain-events-days",
        "--retain-sessions-days",
    ];
}
