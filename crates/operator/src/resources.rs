//! The custom resources, group `kubescribe.dev`, version `v1alpha1`: [`Recorder`] and
//! [`APIServerProxy`], their specs and statuses. The CRDs (`kubescribe-operator crds`) are generated
//! from these types: structural schemas with validation (enums, bounds, required fields), printer
//! columns and the status subresource.

use std::borrow::Cow;

use kube::CustomResource;
use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Serialize};

/// The API group of both resources.
pub const GROUP: &str = "kubescribe.dev";

/// A kubescribe recorder: `kubescribe-recorder` with disk or S3 storage, its Service and
/// ServiceAccount. `kubectl get recorders` shows whether it is Ready, its URL and its storage.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "kubescribe.dev",
    version = "v1alpha1",
    kind = "Recorder",
    namespaced,
    status = "RecorderStatus",
    shortname = "rec",
    category = "kubescribe",
    doc = "A kubescribe recorder (kubescribe-recorder): storage on disk or S3, optional web UI.",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"URL","type":"string","jsonPath":".status.url"}"#,
    printcolumn = r#"{"name":"Storage","type":"string","jsonPath":".spec.storage.type"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct RecorderSpec {
    /// The kubescribe-recorder image (e.g. `kubescribe/kubescribe-recorder:0.1.0`).
    #[schemars(length(min = 1))]
    pub image: String,
    /// Recorder pods (0 stops it). On S3, replicas share the bucket (leases, one leader; see
    /// docs/storage.md "Several recorders on one bucket"); on disk at most 1, since a volume is
    /// one recorder's alone (else `Ready=False`, reason `DiskReplicas`).
    #[serde(default = "one")]
    #[schemars(range(min = 0, max = 10))]
    pub replicas: i32,
    /// Where records are stored.
    pub storage: RecorderStorage,
    /// Serve the web UI at `/` of the recorder's port (`--ui`).
    #[serde(default)]
    pub ui: bool,
    /// Who may upload. At least one of `identitySecret`, `tokenSecret` or
    /// `insecureAllowAnyUploader` is needed (else `Ready=False`, reason `NoUploaderAuthentication`).
    #[serde(default)]
    pub uploaders: Uploaders,
    /// Who may read the query API and the UI.
    #[serde(default)]
    pub readers: Readers,
    /// A Secret holding the Ed25519 key that signs manifests (`kubescribe-recorder keygen`); key
    /// default `signing.key`. Absent (and not `unsigned`): the operator creates Secret
    /// `<name>-recorder-signing-key` with a new key once, and keeps it, also after the Recorder is
    /// deleted, so that what it signed stays verifiable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_key_secret: Option<SecretKeyRef>,
    /// `--unsigned`: no signing key; manifests carry hashes only.
    #[serde(default)]
    pub unsigned: bool,
    /// How long records are kept; absent: forever.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<Retention>,
    /// Put the recorder on a tailnet: a tailscaled sidecar (containerboot, as the chart runs the
    /// proxy's) with this hostname and these tags, serving the recorder's port on tailnet port 80.
    /// APIServerProxies choose Recorders by these tags (`recorderSelector`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tailnet: Option<Tailnet>,
}

/// A tailnet node beside a workload: a `tailscale/tailscale` (containerboot) sidecar in userspace
/// networking mode, its state in the pod's own volume (never in a Kubernetes Secret).
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Tailnet {
    /// A Secret with a reusable, ephemeral, tagged auth key (`TS_AUTHKEY`); key default `authkey`.
    pub auth_key_secret: SecretKeyRef,
    /// The node's name on the tailnet (`TS_HOSTNAME`); default: the workload's name
    /// (`<name>-recorder`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub hostname: Option<String>,
    /// Tags the node advertises (`TS_EXTRA_ARGS=--advertise-tags=…`), each `tag:NAME`; the auth
    /// key must allow them.
    #[serde(default)]
    #[schemars(inner(regex(pattern = r"^tag:[A-Za-z0-9][A-Za-z0-9-]*$")))]
    pub tags: Vec<String>,
    /// The sidecar's image.
    #[serde(default = "default_tailscale_image")]
    #[schemars(length(min = 1))]
    pub image: String,
}

fn default_tailscale_image() -> String {
    "tailscale/tailscale:v1.102.5".to_owned()
}

/// Recorders chosen by their tailnet tags.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RecorderSelector {
    /// Recorders in the proxy's namespace whose `tailnet.tags` include any of these tags.
    #[schemars(length(min = 1))]
    pub tags: Vec<String>,
}

impl RecorderSelector {
    /// Whether Recorder `spec` is chosen: it advertises one of the tags.
    pub fn selects(&self, spec: &RecorderSpec) -> bool {
        spec.tailnet
            .as_ref()
            .is_some_and(|t| t.tags.iter().any(|tag| self.tags.contains(tag)))
    }
}

fn one() -> i32 {
    1
}

/// Where a recorder stores records.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RecorderStorage {
    /// `disk` (a StatefulSet with a PersistentVolumeClaim) or `s3` (a Deployment writing to a bucket).
    #[serde(rename = "type")]
    pub kind: StorageKind,
    /// Disk storage settings (used when `type` is `disk`; defaults apply when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk: Option<DiskStorage>,
    /// S3 storage settings (required when `type` is `s3`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3Storage>,
}

/// The kind of storage: `disk` or `s3`.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum StorageKind {
    /// A local volume: a StatefulSet with a volumeClaimTemplate.
    Disk,
    /// An S3-compatible bucket: a Deployment.
    S3,
}

impl StorageKind {
    /// The spelling in the resource.
    pub fn as_str(self) -> &'static str {
        match self {
            StorageKind::Disk => "disk",
            StorageKind::S3 => "s3",
        }
    }
}

/// A string enum's schema: `type: string` with its values, inlined (no per-value `oneOf`, which a
/// structural schema forbids).
fn string_enum(values: &[&str], description: &str) -> Schema {
    json_schema!({"type": "string", "enum": values, "description": description})
}

/// `impl JsonSchema` for a string enum: its values and description, inlined ([`string_enum`]).
macro_rules! string_enum_schema {
    ($type:ident, $values:expr, $description:expr) => {
        impl JsonSchema for $type {
            fn schema_name() -> Cow<'static, str> {
                stringify!($type).into()
            }
            fn inline_schema() -> bool {
                true
            }
            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                string_enum($values, $description)
            }
        }
    };
}

string_enum_schema!(
    StorageKind,
    &["disk", "s3"],
    "disk: a StatefulSet with a PersistentVolumeClaim; s3: a Deployment writing to a bucket."
);

/// A recorder's volume.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DiskStorage {
    /// The PersistentVolumeClaim's size (a Kubernetes quantity such as `20Gi`).
    #[serde(default = "default_disk_size")]
    #[schemars(length(min = 1))]
    pub size: String,
    /// The StorageClass; absent: the cluster's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
}

fn default_disk_size() -> String {
    "20Gi".to_owned()
}

/// A recorder's bucket.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct S3Storage {
    /// The bucket.
    #[schemars(length(min = 1))]
    pub bucket: String,
    /// The S3-compatible endpoint, without a scheme (`TSRECORDER_DST=s3://<endpoint>`).
    #[serde(default = "default_endpoint")]
    #[schemars(length(min = 1))]
    pub endpoint: String,
    /// The region for SigV4.
    #[serde(default = "default_region")]
    #[schemars(length(min = 1))]
    pub region: String,
    /// An existing Secret in the Recorder's namespace with the access key pair, passed as
    /// `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`.
    #[schemars(length(min = 1))]
    pub credentials_secret: String,
    /// The Secret's key holding the access key id.
    #[serde(default = "default_access_key_id_key")]
    pub access_key_id_key: String,
    /// The Secret's key holding the secret access key.
    #[serde(default = "default_secret_access_key_key")]
    pub secret_access_key_key: String,
    /// Allow a plain-HTTP endpoint (`--s3-allow-http`).
    #[serde(default)]
    pub allow_http: bool,
}

fn default_endpoint() -> String {
    "s3.us-east-1.amazonaws.com".to_owned()
}
fn default_region() -> String {
    "us-east-1".to_owned()
}
fn default_access_key_id_key() -> String {
    "AWS_ACCESS_KEY_ID".to_owned()
}
fn default_secret_access_key_key() -> String {
    "AWS_SECRET_ACCESS_KEY".to_owned()
}

/// A key of a Secret in the resource's namespace.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// The Secret's name.
    #[schemars(length(min = 1))]
    pub name: String,
    /// The key; absent: the default of the field that holds this reference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

impl SecretKeyRef {
    /// The key, or `default`.
    pub fn key_or<'a>(&'a self, default: &'a str) -> &'a str {
        self.key.as_deref().unwrap_or(default)
    }
}

/// Who may upload to a recorder.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Uploaders {
    /// `--allow-uploaders`: `tag:NAME`, `tag:*`, `user:LOGIN` (comma-separated).
    #[serde(default = "default_allow_uploaders")]
    pub allow: String,
    /// An identity file (`--identity-file`) that identifies uploaders; key default
    /// `identities.yaml`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_secret: Option<SecretKeyRef>,
    /// An upload token (`--upload-token-file`); key default `token`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_secret: Option<SecretKeyRef>,
    /// Accept uploads from anyone who reaches the port (`--insecure-allow-any-uploader`).
    #[serde(default)]
    pub insecure_allow_any_uploader: bool,
}

impl Default for Uploaders {
    fn default() -> Self {
        Self {
            allow: default_allow_uploaders(),
            identity_secret: None,
            token_secret: None,
            insecure_allow_any_uploader: false,
        }
    }
}

fn default_allow_uploaders() -> String {
    "tag:*".to_owned()
}

/// Who may read a recorder's query API and UI.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Readers {
    /// `--allow-readers`: `tag:…`, `user:…`, `none`.
    #[serde(default = "default_allow_readers")]
    pub allow: String,
    /// A read token (`--read-token-file`); key default `token`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_secret: Option<SecretKeyRef>,
}

impl Default for Readers {
    fn default() -> Self {
        Self {
            allow: default_allow_readers(),
            token_secret: None,
        }
    }
}

fn default_allow_readers() -> String {
    "none".to_owned()
}

/// How long a recorder keeps records.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Retention {
    /// `--retain-events-days`: sealed event segments older than this are deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub events_days: Option<u32>,
    /// `--retain-sessions-days`: finished session recordings older than this are deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub sessions_days: Option<u32>,
}

/// What the operator last saw of a Recorder.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RecorderStatus {
    /// `Ready`: the spec is valid and every child object is applied as it says; `Available`
    /// (once applied): every pod the spec asks for is ready.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// The generation of the spec the conditions describe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Where the recorder serves (uploads, the query API and, with `ui`, the web UI):
    /// `http://<service>.<namespace>.svc:<port>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Recorder pods ready, as its workload's status reports them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_replicas: Option<i32>,
    /// The public key (64 hex digits) of the signing key, for `kubescribe-recorder verify
    /// --public-key`; absent when unsigned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_public_key: Option<String>,
}

/// A kubescribe API server proxy (kubescribe-proxy): a Deployment of replicas behind a Service,
/// impersonating callers (auth mode) or passing their credentials through (noauth mode).
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "kubescribe.dev",
    version = "v1alpha1",
    kind = "APIServerProxy",
    plural = "apiserverproxies",
    namespaced,
    status = "APIServerProxyStatus",
    shortname = "asp",
    category = "kubescribe",
    doc = "A kubescribe Kubernetes API server proxy (kubescribe-proxy): identity-aware, recording.",
    printcolumn = r#"{"name":"Mode","type":"string","jsonPath":".spec.mode"}"#,
    printcolumn = r#"{"name":"Replicas","type":"integer","jsonPath":".spec.replicas"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Endpoint","type":"string","jsonPath":".status.endpoint"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct APIServerProxySpec {
    /// The kubescribe-proxy image (e.g. `kubescribe/kubescribe-proxy:0.1.0`).
    #[schemars(length(min = 1))]
    pub image: String,
    /// Proxy replicas (each has its own spool).
    #[serde(default = "two")]
    #[schemars(range(min = 1))]
    pub replicas: i32,
    /// `auth`: impersonate callers with the proxy's ServiceAccount (which gets a ClusterRole allowing
    /// only impersonation); `noauth`: pass the caller's credentials through (no ClusterRole).
    #[serde(default)]
    pub mode: ProxyMode,
    /// How callers reach the proxy: `tls` (the default: HTTPS with `tlsSecret`, callers identified
    /// by the identity file in `identitySecret`) or `tailscale` (a tailscaled sidecar, `tailnet`,
    /// terminating TLS with its certificate and sending a PROXY protocol v2 header to the proxy,
    /// which identifies callers by WhoIs, as the chart's `proxy.listener=tailscale`).
    #[serde(default)]
    pub listener: ProxyListener,
    /// `tls` listener: an existing `kubernetes.io/tls` Secret (`tls.crt`, `tls.key`) the proxy
    /// serves with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub tls_secret: Option<String>,
    /// `tls` listener: an existing Secret with the identity file (`--identity-file`) that
    /// identifies callers and carries their grants; key default `identities.yaml`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_secret: Option<SecretKeyRef>,
    /// `tailscale` listener: the sidecar's auth key, hostname (default `<name>-proxy`) and tags.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tailnet: Option<Tailnet>,
    /// `tailscale` listener: the tailnet port `tailscale serve` listens on.
    #[serde(default = "default_proxy_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub tailnet_port: i32,
    /// Recorders (names of Recorders in this namespace) the proxy's callers record to. The proxy
    /// takes recorders from each caller's grant: the operator checks they exist and publishes their
    /// addresses, and the grant to give, in the status (`status.grant`).
    #[serde(default)]
    pub recorders: Vec<String>,
    /// More recorders: the Recorders in this namespace whose tailnet tags (`spec.tailnet.tags`)
    /// include one of these, in name order after `recorders` (a Recorder in both counts once).
    /// Tagged Recorders created, changed or deleted later change the grant at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recorder_selector: Option<RecorderSelector>,
    /// `fail-open` (forward when recording fails) or `fail-closed` (refuse what cannot be
    /// recorded); published in `status.grant` as `enforceRecorder`.
    #[serde(default)]
    pub failure_policy: FailurePolicy,
    /// Send events for every caller that has recorders (`--events-for-all-callers`).
    #[serde(default)]
    pub events: bool,
    /// An existing ConfigMap with an `audit.k8s.io/v1` Policy under key `audit-policy.yaml`
    /// (`--audit-policy`); absent: every request at `Request` level.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit_policy_config_map: Option<String>,
    /// The Service's port (TLS).
    #[serde(default = "default_proxy_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
}

fn two() -> i32 {
    2
}

fn default_proxy_port() -> i32 {
    443
}

/// How callers reach a proxy.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ProxyListener {
    /// HTTPS with a TLS Secret; callers identified by an identity file.
    #[default]
    Tls,
    /// A tailscaled sidecar; callers identified by WhoIs.
    Tailscale,
}

string_enum_schema!(
    ProxyListener,
    &["tls", "tailscale"],
    "tls: HTTPS with tlsSecret and identitySecret; tailscale: a tailscaled sidecar (tailnet)."
);

/// The proxy's mode.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ProxyMode {
    /// Impersonate the caller with the proxy's own credentials.
    #[default]
    Auth,
    /// Pass the caller's credentials through.
    Noauth,
}

impl ProxyMode {
    /// The spelling in the resource.
    pub fn as_str(self) -> &'static str {
        match self {
            ProxyMode::Auth => "auth",
            ProxyMode::Noauth => "noauth",
        }
    }
}

string_enum_schema!(
    ProxyMode,
    &["auth", "noauth"],
    "auth: impersonate callers; noauth: pass their credentials through."
);

/// What the proxy does when recording fails.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum FailurePolicy {
    /// Forward the request anyway.
    #[default]
    FailOpen,
    /// Refuse what cannot be recorded.
    FailClosed,
}

string_enum_schema!(
    FailurePolicy,
    &["fail-open", "fail-closed"],
    "fail-open: forward when recording fails; fail-closed: refuse what cannot be recorded."
);

/// What the operator last saw of an APIServerProxy.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct APIServerProxyStatus {
    /// `Ready`: the spec is valid and every child object is applied as it says; `Available`
    /// (once applied): every pod the spec asks for is ready.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// The generation of the spec the conditions describe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Where callers reach the proxy: `https://<service>.<namespace>.svc:<port>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Proxy pods ready, as the Deployment's status reports them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_replicas: Option<i32>,
    /// The `tailscale.com/cap/kubernetes` grant (JSON) that sends a caller's records to the
    /// spec's recorders with its failure policy and events setting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant: Option<String>,
}

/// A condition, as Kubernetes' `metav1.Condition`.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// The condition's type (`Ready`).
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// Why, in one CamelCase word.
    pub reason: String,
    /// Why, for a person.
    pub message: String,
    /// When `status` last changed (RFC 3339).
    pub last_transition_time: String,
    /// The generation this condition was set for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}
