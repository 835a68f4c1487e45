//! The request corpus: the shared vectors that make sense live, and generated requests over core
//! and grouped, namespaced and cluster-scoped resources and two CRDs, every verb, subresources,
//! non-resource paths, selectors, odd encodings and requests RBAC refuses.
//!
//! The corpus is a list of phases run in order; a phase is a list of groups run in parallel; a
//! group is a list of entries sent in order (a later entry may use the object an earlier `GET`
//! returned).

use serde_json::{json, Map, Value};

/// The namespace most objects live in (created by the oracle before the corpus runs).
pub(crate) const NS: &str = "oracle";
/// A namespace of its own for ResourceQuotas and LimitRanges: a quota that no controller ever
/// fills in would refuse every pod created where it applies.
pub(crate) const QUOTA_NS: &str = "oracle-quota";
/// The CRDs' group.
pub(crate) const CRD_GROUP: &str = "oracle.kubescribe.dev";

/// Who sends a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Who {
    /// Impersonated with group `system:masters`: allowed everything.
    Alice,
    /// Impersonated with group `ci-deployers`: may edit some core resources, nothing else.
    Ci,
}

/// What kube-apiserver does with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expect {
    /// It is audited (whatever the answer).
    Audited,
    /// It is refused before auditing: request info fails (500) or Go's server rejects the target
    /// (400). kubescribe's parser must say the same, and nothing reaches the audit log.
    RefusedBeforeAudit,
    /// Generated: audited, or refused before auditing, as the response shows (kube-apiserver
    /// echoes an `Audit-Id` on whatever reached its handlers); checked as the one or the other.
    Observed,
    /// `CONNECT`: kubescribe-proxy refuses it (405) and forwards nothing; sent to kube-apiserver
    /// directly as well, whose audit event then checks the request info.
    RefusedByProxy,
    /// `OPTIONS *`: Go's HTTP server answers it itself (`globalOptionsHandler`, 200); no
    /// kube-apiserver handler, so no audit event, runs.
    AnsweredByGo,
}

/// The `User-Agent` an entry sends.
#[derive(Debug, Clone)]
pub(crate) enum Agent {
    /// `kubescribe-oracle/1 (#<id>)`.
    Marker,
    /// These exact bytes.
    Exactly(Vec<u8>),
    /// No `User-Agent` header.
    Absent,
}

/// The body an entry sends.
#[derive(Debug, Clone)]
pub(crate) enum Body {
    Bytes(Vec<u8>),
    /// The object the group's last successful `GET` of an object returned, with a label added
    /// (a replace, as `kubectl replace` does it).
    LastObject,
}

/// One request of the corpus.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) category: &'static str,
    pub(crate) who: Who,
    pub(crate) method: String,
    pub(crate) target: String,
    pub(crate) headers: Vec<(String, Vec<u8>)>,
    pub(crate) agent: Agent,
    pub(crate) body: Body,
    pub(crate) expect: Expect,
    /// What the entry is about (for the detail lines).
    pub(crate) note: String,
    /// The vector this entry sends, whose expectations are checked against the audit event too.
    pub(crate) vector: Option<Value>,
}

impl Entry {
    pub(crate) fn new(category: &'static str, method: &str, target: impl Into<String>) -> Self {
        Self {
            category,
            who: Who::Alice,
            method: method.to_owned(),
            target: target.into(),
            headers: Vec::new(),
            agent: Agent::Marker,
            body: Body::Bytes(Vec::new()),
            expect: Expect::Audited,
            note: String::new(),
            vector: None,
        }
    }

    fn json(mut self, content_type: &str, body: &Value) -> Self {
        self.headers
            .push(("Content-Type".into(), content_type.as_bytes().to_vec()));
        self.body = Body::Bytes(body.to_string().into_bytes());
        self
    }

    fn header(mut self, name: &str, value: &str) -> Self {
        self.headers
            .push((name.to_owned(), value.as_bytes().to_vec()));
        self
    }

    pub(crate) fn note(mut self, note: impl Into<String>) -> Self {
        self.note = note.into();
        self
    }

    fn by(mut self, who: Who) -> Self {
        self.who = who;
        self
    }

    fn agent(mut self, agent: Agent) -> Self {
        self.agent = agent;
        self
    }

    fn refused_before_audit(mut self) -> Self {
        self.expect = Expect::RefusedBeforeAudit;
        self
    }
}

/// Entries sent in order.
pub(crate) type Group = Vec<Entry>;
/// Groups sent in parallel.
pub(crate) type Phase = Vec<Group>;

const JSON: &str = "application/json";
const JSON_PATCH: &str = "application/json-patch+json";
const MERGE_PATCH: &str = "application/merge-patch+json";
const STRATEGIC_PATCH: &str = "application/strategic-merge-patch+json";
const APPLY_PATCH: &str = "application/apply-patch+yaml";

/// A kind the corpus creates, reads, watches, updates, patches and deletes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Kind {
    group: &'static str,
    version: &'static str,
    resource: &'static str,
    kind: &'static str,
    /// Where its objects live; `None` for cluster-scoped kinds.
    namespace: Option<&'static str>,
    /// Object names are `<prefix>-a`, `<prefix>-b`, …
    prefix: &'static str,
    /// Everything besides `apiVersion`, `kind` and `metadata`, for an object named `name`.
    fields: fn(&str) -> Value,
}

impl Kind {
    fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_owned()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `/api/v1` or `/apis/{group}/{version}`.
    fn base(&self) -> String {
        if self.group.is_empty() {
            format!("/api/{}", self.version)
        } else {
            format!("/apis/{}/{}", self.group, self.version)
        }
    }

    /// The collection in the kind's namespace (or cluster-wide).
    fn collection(&self) -> String {
        match self.namespace {
            Some(ns) => format!("{}/namespaces/{ns}/{}", self.base(), self.resource),
            None => format!("{}/{}", self.base(), self.resource),
        }
    }

    fn object(&self, suffix: &str) -> String {
        format!("{}/{}", self.collection(), self.name(suffix))
    }

    fn name(&self, suffix: &str) -> String {
        format!("{}-{suffix}", self.prefix)
    }

    /// A complete object named `name` with `labels`.
    fn manifest(&self, name: &str, labels: Value) -> Value {
        let mut metadata = Map::new();
        metadata.insert("name".into(), json!(name));
        if let Some(ns) = self.namespace {
            metadata.insert("namespace".into(), json!(ns));
        }
        metadata.insert("labels".into(), labels);
        let mut object = Map::new();
        object.insert("apiVersion".into(), json!(self.api_version()));
        object.insert("kind".into(), json!(self.kind));
        object.insert("metadata".into(), Value::Object(metadata));
        if let Value::Object(fields) = (self.fields)(name) {
            object.extend(fields);
        }
        Value::Object(object)
    }
}

fn containers() -> Value {
    json!([{"name": "c", "image": "registry.invalid/oracle:1"}])
}

fn pod_template(app: &str) -> Value {
    json!({"metadata": {"labels": {"app": app}}, "spec": {"containers": containers()}})
}

/// Every kind the corpus runs the full verb sequence on.
pub(crate) fn kinds() -> Vec<Kind> {
    let k = |group, version, resource, kind, namespace, prefix, fields| Kind {
        group,
        version,
        resource,
        kind,
        namespace,
        prefix,
        fields,
    };
    let ns = Some(NS);
    vec![
        // Core, namespaced.
        k(
            "",
            "v1",
            "configmaps",
            "ConfigMap",
            ns,
            "o",
            |_| json!({"data": {"k": "v"}}),
        ),
        k(
            "",
            "v1",
            "secrets",
            "Secret",
            ns,
            "o",
            |_| json!({"stringData": {"k": "v"}}),
        ),
        k(
            "",
            "v1",
            "services",
            "Service",
            ns,
            "o",
            |_| json!({"spec": {"ports": [{"port": 80}], "selector": {"app": "oracle"}}}),
        ),
        k(
            "",
            "v1",
            "serviceaccounts",
            "ServiceAccount",
            ns,
            "o",
            |_| json!({}),
        ),
        k(
            "",
            "v1",
            "pods",
            "Pod",
            ns,
            "o",
            |_| json!({"spec": {"containers": containers()}}),
        ),
        k("", "v1", "events", "Event", ns, "o", |_| {
            json!({"involvedObject": {"kind": "ConfigMap", "name": "o-a", "namespace": NS},
                   "reason": "Oracle", "message": "m", "type": "Normal", "source": {"component": "oracle"}})
        }),
        k(
            "",
            "v1",
            "persistentvolumeclaims",
            "PersistentVolumeClaim",
            ns,
            "o",
            |_| json!({"spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}),
        ),
        k(
            "",
            "v1",
            "replicationcontrollers",
            "ReplicationController",
            ns,
            "o",
            |n| json!({"spec": {"replicas": 0, "selector": {"app": n}, "template": pod_template(n)}}),
        ),
        k(
            "",
            "v1",
            "limitranges",
            "LimitRange",
            Some(QUOTA_NS),
            "o",
            |_| json!({"spec": {"limits": [{"type": "Container", "default": {"cpu": "100m"}}]}}),
        ),
        k(
            "",
            "v1",
            "resourcequotas",
            "ResourceQuota",
            Some(QUOTA_NS),
            "o",
            |_| json!({"spec": {"hard": {"pods": "100"}}}),
        ),
        k(
            "",
            "v1",
            "podtemplates",
            "PodTemplate",
            ns,
            "o",
            |n| json!({"template": pod_template(n)}),
        ),
        k(
            "",
            "v1",
            "endpoints",
            "Endpoints",
            ns,
            "o",
            |_| json!({"subsets": []}),
        ),
        // Core, cluster-scoped.
        k(
            "",
            "v1",
            "namespaces",
            "Namespace",
            None,
            "oracle-ns",
            |_| json!({}),
        ),
        k(
            "",
            "v1",
            "nodes",
            "Node",
            None,
            "o",
            |_| json!({"spec": {}}),
        ),
        k(
            "",
            "v1",
            "persistentvolumes",
            "PersistentVolume",
            None,
            "o",
            |_| {
                json!({"spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                            "hostPath": {"path": "/tmp/kubescribe-oracle"}}})
            },
        ),
        // Grouped, namespaced.
        k(
            "apps",
            "v1",
            "deployments",
            "Deployment",
            ns,
            "o",
            |n| json!({"spec": {"replicas": 1, "selector": {"matchLabels": {"app": n}}, "template": pod_template(n)}}),
        ),
        k("apps", "v1", "statefulsets", "StatefulSet", ns, "o", |n| {
            json!({"spec": {"replicas": 1, "serviceName": "o-a", "selector": {"matchLabels": {"app": n}},
                            "template": pod_template(n)}})
        }),
        k(
            "apps",
            "v1",
            "daemonsets",
            "DaemonSet",
            ns,
            "o",
            |n| json!({"spec": {"selector": {"matchLabels": {"app": n}}, "template": pod_template(n)}}),
        ),
        k(
            "apps",
            "v1",
            "replicasets",
            "ReplicaSet",
            ns,
            "o",
            |n| json!({"spec": {"replicas": 1, "selector": {"matchLabels": {"app": n}}, "template": pod_template(n)}}),
        ),
        k(
            "apps",
            "v1",
            "controllerrevisions",
            "ControllerRevision",
            ns,
            "o",
            |_| json!({"data": {"x": 1}, "revision": 1}),
        ),
        k(
            "batch",
            "v1",
            "jobs",
            "Job",
            ns,
            "o",
            |_| json!({"spec": {"template": {"spec": {"restartPolicy": "Never", "containers": containers()}}}}),
        ),
        k("batch", "v1", "cronjobs", "CronJob", ns, "o", |_| {
            json!({"spec": {"schedule": "*/5 * * * *", "jobTemplate": {"spec": {"template":
                {"spec": {"restartPolicy": "Never", "containers": containers()}}}}}})
        }),
        k(
            "policy",
            "v1",
            "poddisruptionbudgets",
            "PodDisruptionBudget",
            ns,
            "o",
            |n| json!({"spec": {"minAvailable": 1, "selector": {"matchLabels": {"pdb": n}}}}),
        ),
        k(
            "networking.k8s.io",
            "v1",
            "networkpolicies",
            "NetworkPolicy",
            ns,
            "o",
            |_| json!({"spec": {"podSelector": {}}}),
        ),
        k(
            "networking.k8s.io",
            "v1",
            "ingresses",
            "Ingress",
            ns,
            "o",
            |_| json!({"spec": {"defaultBackend": {"service": {"name": "o-a", "port": {"number": 80}}}}}),
        ),
        k(
            "rbac.authorization.k8s.io",
            "v1",
            "roles",
            "Role",
            ns,
            "o",
            |_| json!({"rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}]}),
        ),
        k(
            "rbac.authorization.k8s.io",
            "v1",
            "rolebindings",
            "RoleBinding",
            ns,
            "o",
            |_| {
                json!({"roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "o-a"},
                   "subjects": [{"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": "oracle-nobody"}]})
            },
        ),
        k(
            "coordination.k8s.io",
            "v1",
            "leases",
            "Lease",
            ns,
            "o",
            |_| json!({"spec": {"holderIdentity": "oracle"}}),
        ),
        k(
            "discovery.k8s.io",
            "v1",
            "endpointslices",
            "EndpointSlice",
            ns,
            "o",
            |_| json!({"addressType": "IPv4", "endpoints": []}),
        ),
        k(
            "autoscaling",
            "v2",
            "horizontalpodautoscalers",
            "HorizontalPodAutoscaler",
            ns,
            "o",
            |_| {
                json!({"spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "o-a"},
                            "minReplicas": 1, "maxReplicas": 3}})
            },
        ),
        // events.k8s.io Events share their storage with core Events: other names.
        k("events.k8s.io", "v1", "events", "Event", ns, "ev", |_| {
            json!({"eventTime": "2026-01-01T00:00:00.000000Z", "reportingController": "oracle.kubescribe.dev/oracle",
                   "reportingInstance": "oracle", "action": "Test", "reason": "Oracle", "type": "Normal",
                   "regarding": {"kind": "ConfigMap", "name": "o-a", "namespace": NS}})
        }),
        // Grouped, cluster-scoped.
        k(
            "rbac.authorization.k8s.io",
            "v1",
            "clusterroles",
            "ClusterRole",
            None,
            "oracle",
            |_| json!({"rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}]}),
        ),
        k(
            "rbac.authorization.k8s.io",
            "v1",
            "clusterrolebindings",
            "ClusterRoleBinding",
            None,
            "oracle",
            |_| {
                json!({"roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "oracle-a"},
                   "subjects": [{"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": "oracle-nobody"}]})
            },
        ),
        k(
            "storage.k8s.io",
            "v1",
            "storageclasses",
            "StorageClass",
            None,
            "oracle",
            |_| json!({"provisioner": "oracle.kubescribe.dev/none"}),
        ),
        k(
            "scheduling.k8s.io",
            "v1",
            "priorityclasses",
            "PriorityClass",
            None,
            "oracle",
            |_| json!({"value": 1000}),
        ),
        k(
            "networking.k8s.io",
            "v1",
            "ingressclasses",
            "IngressClass",
            None,
            "oracle",
            |_| json!({"spec": {"controller": "oracle.kubescribe.dev/none"}}),
        ),
        k(
            "admissionregistration.k8s.io",
            "v1",
            "validatingwebhookconfigurations",
            "ValidatingWebhookConfiguration",
            None,
            "oracle",
            |_| json!({"webhooks": []}),
        ),
        k(
            "admissionregistration.k8s.io",
            "v1",
            "mutatingwebhookconfigurations",
            "MutatingWebhookConfiguration",
            None,
            "oracle",
            |_| json!({"webhooks": []}),
        ),
        k(
            "node.k8s.io",
            "v1",
            "runtimeclasses",
            "RuntimeClass",
            None,
            "oracle",
            |_| json!({"handler": "oracle"}),
        ),
        // The CRDs' resources.
        k(
            CRD_GROUP,
            "v1",
            "widgets",
            "Widget",
            ns,
            "o",
            |_| json!({"spec": {"replicas": 1, "size": "m"}}),
        ),
        k(
            CRD_GROUP,
            "v1",
            "gadgets",
            "Gadget",
            None,
            "o",
            |_| json!({"spec": {"color": "red"}}),
        ),
    ]
}

/// The full verb sequence for one kind: creates (plain, dry-run, generateName), get and HEAD,
/// lists (all namespaces, selectors, limit), watches (query and legacy path, a named one), update
/// (dry-run first), a patch of each type, server-side apply (dry-run, and one that creates),
/// deletes (dry-run, named, collection).
pub(crate) fn kind_group(kind: &Kind) -> Group {
    let c = "verbs";
    let coll = kind.collection();
    let keep = json!({"oracle": "keep"});
    let sweep = json!({"oracle": "sweep"});
    let mut generated = kind.manifest("", json!({"oracle": "generated"}));
    if let Some(meta) = generated["metadata"].as_object_mut() {
        meta.remove("name");
        meta.insert(
            "generateName".into(),
            json!(format!("{}-gen-", kind.prefix)),
        );
    }
    let a = kind.object("a");
    let mut group = vec![
        Entry::new(c, "POST", &coll)
            .json(JSON, &kind.manifest(&kind.name("a"), keep.clone()))
            .note("create"),
        Entry::new(c, "POST", &coll)
            .json(
                JSON,
                &kind.manifest(&kind.name("b"), json!({"oracle": "b"})),
            )
            .note("create"),
        Entry::new(c, "POST", &coll)
            .json(JSON, &kind.manifest(&kind.name("c"), sweep.clone()))
            .note("create"),
        Entry::new(c, "POST", &coll)
            .json(JSON, &kind.manifest(&kind.name("d"), sweep))
            .note("create"),
        Entry::new(c, "POST", format!("{coll}?dryRun=All"))
            .json(JSON, &kind.manifest(&kind.name("dry"), keep.clone()))
            .note("create, dry run"),
        Entry::new(c, "POST", format!("{coll}?fieldManager=oracle"))
            .json(JSON, &generated)
            .note("create with generateName"),
        Entry::new(c, "GET", &a).note("get"),
        Entry::new(c, "HEAD", &a).note("HEAD is get"),
        Entry::new(c, "GET", &coll).note("list"),
        Entry::new(c, "GET", format!("{coll}?labelSelector=oracle%3Dkeep"))
            .note("list, label selector"),
        Entry::new(
            c,
            "GET",
            format!("{coll}?fieldSelector=metadata.name%3D{}", kind.name("a")),
        )
        .note("list, metadata.name names the object"),
        Entry::new(c, "GET", format!("{coll}?limit=1")).note("list, limit"),
        Entry::new(c, "GET", format!("{coll}?watch=true&timeoutSeconds=1")).note("watch"),
        Entry::new(
            c,
            "GET",
            format!(
                "{coll}?watch=1&fieldSelector=metadata.name%3D{}&timeoutSeconds=1",
                kind.name("a")
            ),
        )
        .note("watch of one object by field selector"),
    ];
    let watch_path = match kind.namespace {
        Some(ns) => format!("{}/watch/namespaces/{ns}/{}", kind.base(), kind.resource),
        None => format!("{}/watch/{}", kind.base(), kind.resource),
    };
    group.push(
        Entry::new(c, "GET", format!("{watch_path}?timeoutSeconds=1")).note("legacy watch path"),
    );
    group.push(
        Entry::new(
            c,
            "GET",
            format!("{watch_path}/{}?timeoutSeconds=1", kind.name("a")),
        )
        .note("legacy watch path, named"),
    );
    if kind.namespace.is_some() {
        group.push(
            Entry::new(c, "GET", format!("{}/{}", kind.base(), kind.resource))
                .note("list across namespaces"),
        );
        group.push(
            Entry::new(
                c,
                "GET",
                format!(
                    "{}/{}?watch=true&timeoutSeconds=1&allowWatchBookmarks=true",
                    kind.base(),
                    kind.resource
                ),
            )
            .note("watch across namespaces"),
        );
    }
    let mut put_dry = Entry::new(c, "PUT", format!("{a}?dryRun=All"))
        .header("Content-Type", JSON)
        .note("update, dry run");
    put_dry.body = Body::LastObject;
    let mut put = Entry::new(c, "PUT", &a)
        .header("Content-Type", JSON)
        .note("update");
    put.body = Body::LastObject;
    group.push(put_dry);
    group.push(put);
    let apply = json!({"apiVersion": kind.api_version(), "kind": kind.kind,
                       "metadata": kind_meta(kind, &kind.name("a"), json!({"oracle-apply": "1"}))});
    group.extend([
        Entry::new(c, "PATCH", &a).json(JSON_PATCH, &json!([{"op": "add", "path": "/metadata/labels/oracle-json", "value": "1"}])).note("JSON patch"),
        Entry::new(c, "PATCH", &a).json(MERGE_PATCH, &json!({"metadata": {"annotations": {"oracle/merge": "1"}}})).note("merge patch"),
        Entry::new(c, "PATCH", &a).json(STRATEGIC_PATCH, &json!({"metadata": {"annotations": {"oracle/strategic": "1"}}})).note("strategic merge patch (415 for custom resources)"),
        Entry::new(c, "PATCH", format!("{a}?fieldManager=oracle&force=true")).json(APPLY_PATCH, &apply).note("server-side apply"),
        Entry::new(c, "PATCH", format!("{a}?fieldManager=oracle&dryRun=All")).json(APPLY_PATCH, &apply).note("server-side apply, dry run"),
        Entry::new(c, "PATCH", format!("{}?fieldManager=oracle", kind.object("ssa"))).json(APPLY_PATCH, &kind.manifest(&kind.name("ssa"), keep)).note("server-side apply that creates"),
        Entry::new(c, "DELETE", format!("{}?dryRun=All", kind.object("b"))).note("delete, dry run"),
        Entry::new(c, "DELETE", kind.object("b")).json(JSON, &json!({"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"})).note("delete with DeleteOptions"),
        Entry::new(c, "DELETE", format!("{coll}?labelSelector=oracle%3Dsweep")).note("deletecollection by label"),
        Entry::new(c, "DELETE", format!("{coll}?dryRun=All&labelSelector=oracle%3Dnothing")).note("deletecollection, dry run"),
    ]);
    group
}

fn kind_meta(kind: &Kind, name: &str, labels: Value) -> Value {
    match kind.namespace {
        Some(ns) => json!({"name": name, "namespace": ns, "labels": labels}),
        None => json!({"name": name, "labels": labels}),
    }
}

/// The CRDs: `widgets` (namespaced, status and scale subresources, two versions) and `gadgets`
/// (cluster-scoped), created through the proxy, then read back.
pub(crate) fn crd_group() -> Group {
    let c = "crd";
    let crds = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions";
    let schema = json!({"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}});
    let widgets = json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("widgets.{CRD_GROUP}")},
        "spec": {"group": CRD_GROUP, "scope": "Namespaced",
                 "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList"},
                 "versions": [
                    {"name": "v1", "served": true, "storage": true, "schema": schema,
                     "subresources": {"status": {}, "scale": {"specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas"}}},
                    {"name": "v1beta1", "served": true, "storage": false, "schema": schema}]}
    });
    let gadgets = json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("gadgets.{CRD_GROUP}")},
        "spec": {"group": CRD_GROUP, "scope": "Cluster",
                 "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget"},
                 "versions": [{"name": "v1", "served": true, "storage": true, "schema": schema}]}
    });
    vec![
        Entry::new(c, "POST", crds)
            .json(JSON, &widgets)
            .note("install a namespaced CRD"),
        Entry::new(c, "POST", crds)
            .json(JSON, &gadgets)
            .note("install a cluster-scoped CRD"),
        Entry::new(c, "GET", crds).note("list CRDs"),
        Entry::new(c, "GET", format!("{crds}/widgets.{CRD_GROUP}")).note("get a CRD"),
        Entry::new(
            c,
            "GET",
            format!("{crds}?fieldSelector=metadata.name%3Dgadgets.{CRD_GROUP}"),
        )
        .note("a CRD by field selector"),
    ]
}

/// Reads after the CRDs are Established, then their subresources.
pub(crate) fn crd_after_group() -> Group {
    let c = "crd";
    let crds = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions";
    let w = format!("/apis/{CRD_GROUP}/v1/namespaces/{NS}/widgets");
    vec![
        Entry::new(c, "GET", format!("{crds}/widgets.{CRD_GROUP}/status")).note("CRD status"),
        Entry::new(c, "PATCH", format!("{crds}/gadgets.{CRD_GROUP}")).json(MERGE_PATCH, &json!({"metadata": {"labels": {"oracle": "1"}}})).note("patch a CRD"),
        Entry::new(c, "GET", format!("/apis/{CRD_GROUP}")).note("the CRDs' group discovery"),
        Entry::new(c, "GET", format!("/apis/{CRD_GROUP}/v1")).note("the CRDs' version discovery"),
        Entry::new(c, "GET", format!("/apis/{CRD_GROUP}/v1beta1/namespaces/{NS}/widgets")).note("list through the second version"),
        Entry::new(c, "GET", format!("/apis/{CRD_GROUP}/v1/widgets")).note("widgets across namespaces"),
        Entry::new(c, "GET", format!("/openapi/v3/apis/{CRD_GROUP}/v1")).note("the CRDs' OpenAPI"),
        Entry::new(c, "GET", format!("{w}/o-a/status")).note("custom resource status"),
        Entry::new(c, "PATCH", format!("{w}/o-a/status")).json(MERGE_PATCH, &json!({"status": {"replicas": 1}})).note("patch custom resource status"),
        Entry::new(c, "GET", format!("{w}/o-a/scale")).note("custom resource scale"),
        Entry::new(c, "PATCH", format!("{w}/o-a/scale")).json(MERGE_PATCH, &json!({"spec": {"replicas": 2}})).note("patch custom resource scale"),
        Entry::new(c, "PUT", format!("{w}/o-a/scale")).json(JSON, &json!({"apiVersion": "autoscaling/v1", "kind": "Scale", "metadata": {"name": "o-a", "namespace": NS}, "spec": {"replicas": 3}})).note("update custom resource scale"),
        Entry::new(c, "GET", format!("{w}/o-a/nosuchsubresource")).note("unknown custom resource subresource"),
        Entry::new(c, "GET", format!("/apis/{CRD_GROUP}/v1/gadgets/o-a/status")).note("status the CRD does not have"),
        Entry::new(c, "DELETE", format!("/apis/{CRD_GROUP}/v1/gadgets?labelSelector=oracle%3Dnothing")).note("deletecollection of custom resources"),
    ]
}

/// Subresources of the objects the verb phase left behind (`o-a` of each kind), in an order
/// that keeps them meaningful: connect requests (log, exec, attach, port-forward, proxy) before the
/// pod is bound to a node, eviction last.
pub(crate) fn subresource_group() -> Group {
    let c = "subresource";
    let core = format!("/api/v1/namespaces/{NS}");
    let apps = format!("/apis/apps/v1/namespaces/{NS}");
    let pod = format!("{core}/pods/o-a");
    let spdy = |e: Entry| {
        e.header("Connection", "Upgrade")
            .header("Upgrade", "SPDY/3.1")
            .header("X-Stream-Protocol-Version", "v4.channel.k8s.io")
    };
    let websocket = |e: Entry| {
        e.header("Connection", "Upgrade")
            .header("Upgrade", "websocket")
            .header("Sec-WebSocket-Version", "13")
            .header("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
            .header("Sec-WebSocket-Protocol", "v5.channel.k8s.io")
    };
    let scale = |name: &str| json!({"apiVersion": "autoscaling/v1", "kind": "Scale", "metadata": {"name": name, "namespace": NS}, "spec": {"replicas": 2}});
    let mut group = vec![
        Entry::new(c, "GET", format!("{pod}/status")).note("pod status"),
        Entry::new(c, "PATCH", format!("{pod}/status")).json(MERGE_PATCH, &json!({"status": {"message": "oracle"}})).note("patch pod status"),
        Entry::new(c, "GET", format!("{pod}/log")).note("log of a pod without a node"),
        Entry::new(c, "GET", format!("{pod}/log?container=c&follow=true&tailLines=10")).note("follow a log"),
        Entry::new(c, "GET", format!("{pod}/log?previous=true&timestamps=true")).note("previous log"),
        spdy(Entry::new(c, "POST", format!("{pod}/exec?command=ls&command=-l&stdout=true&stderr=true"))).note("exec over SPDY"),
        websocket(Entry::new(c, "GET", format!("{pod}/exec?command=sh&stdin=true&stdout=true&tty=true"))).note("exec over WebSocket"),
        Entry::new(c, "POST", format!("{pod}/exec?command=true")).note("exec without an upgrade"),
        spdy(Entry::new(c, "POST", format!("{pod}/attach?stdout=true&stdin=true"))).note("attach over SPDY"),
        websocket(Entry::new(c, "GET", format!("{pod}/attach?stdout=true"))).note("attach over WebSocket"),
        spdy(Entry::new(c, "POST", format!("{pod}/portforward?ports=8080"))).note("port-forward over SPDY"),
        websocket(Entry::new(c, "GET", format!("{pod}/portforward?ports=8080"))).note("port-forward over WebSocket"),
        Entry::new(c, "GET", format!("{pod}/proxy")).note("pod proxy"),
        Entry::new(c, "GET", format!("{pod}/proxy/metrics/x?y=1")).note("pod proxy with a path"),
        Entry::new(c, "POST", format!("{core}/pods/o-a:8080/proxy/hook")).note("pod proxy with a port"),
        Entry::new(c, "GET", format!("{core}/services/o-a/proxy/")).note("service proxy"),
        Entry::new(c, "GET", format!("{core}/services/http:o-a:80/proxy/x")).note("service proxy, scheme and port"),
        Entry::new(c, "GET", "/api/v1/nodes/o-a/proxy/healthz").note("node proxy"),
        Entry::new(c, "GET", format!("/api/v1/proxy/namespaces/{NS}/pods/o-a")).note("deprecated proxy path verb"),
        Entry::new(c, "GET", format!("/api/v1/proxy/namespaces/{NS}/services/o-a/some/path")).note("deprecated proxy path verb, service with a path"),
        Entry::new(c, "GET", "/api/v1/proxy/nodes/o-a/stats").note("deprecated proxy path verb, node"),
        Entry::new(c, "GET", format!("{pod}/ephemeralcontainers")).note("ephemeral containers"),
        Entry::new(c, "PATCH", format!("{pod}/ephemeralcontainers")).json(STRATEGIC_PATCH, &json!({"spec": {"ephemeralContainers": [{"name": "debug", "image": "registry.invalid/debug:1"}]}})).note("add an ephemeral container"),
        Entry::new(c, "GET", format!("{pod}/resize")).note("resize"),
        Entry::new(c, "PATCH", format!("{pod}/resize")).json(STRATEGIC_PATCH, &json!({"spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": "200m"}}}]}})).note("resize a pod"),
        Entry::new(c, "POST", format!("{core}/serviceaccounts/o-a/token")).json(JSON, &json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"audiences": ["oracle"], "expirationSeconds": 600}})).note("TokenRequest"),
        Entry::new(c, "POST", format!("{core}/serviceaccounts/o-a/token?dryRun=All")).json(JSON, &json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}})).note("TokenRequest, dry run"),
        Entry::new(c, "GET", format!("{core}/services/o-a/status")).note("service status"),
        Entry::new(c, "GET", format!("{core}/persistentvolumeclaims/o-a/status")).note("PVC status"),
        Entry::new(c, "GET", "/api/v1/persistentvolumes/o-a/status").note("PV status"),
        Entry::new(c, "GET", format!("{core}/replicationcontrollers/o-a/scale")).note("RC scale"),
        Entry::new(c, "PATCH", format!("{core}/replicationcontrollers/o-a/scale")).json(MERGE_PATCH, &json!({"spec": {"replicas": 1}})).note("patch RC scale"),
        Entry::new(c, "GET", format!("/api/v1/namespaces/{QUOTA_NS}/resourcequotas/o-a/status")).note("quota status"),
        Entry::new(c, "GET", format!("{apps}/deployments/o-a/scale")).note("deployment scale"),
        Entry::new(c, "PUT", format!("{apps}/deployments/o-a/scale")).json(JSON, &scale("o-a")).note("update deployment scale"),
        Entry::new(c, "PATCH", format!("{apps}/deployments/o-a/scale")).json(MERGE_PATCH, &json!({"spec": {"replicas": 3}})).note("patch deployment scale"),
        Entry::new(c, "PUT", format!("{apps}/deployments/o-a/scale?dryRun=All")).json(JSON, &scale("o-a")).note("update deployment scale, dry run"),
        Entry::new(c, "GET", format!("{apps}/deployments/o-a/status")).note("deployment status"),
        Entry::new(c, "PATCH", format!("{apps}/deployments/o-a/status")).json(MERGE_PATCH, &json!({"status": {"observedGeneration": 1}})).note("patch deployment status"),
        Entry::new(c, "GET", format!("{apps}/statefulsets/o-a/scale")).note("statefulset scale"),
        Entry::new(c, "PATCH", format!("{apps}/statefulsets/o-a/scale")).json(MERGE_PATCH, &json!({"spec": {"replicas": 2}})).note("patch statefulset scale"),
        Entry::new(c, "GET", format!("{apps}/replicasets/o-a/scale")).note("replicaset scale"),
        Entry::new(c, "GET", format!("{apps}/daemonsets/o-a/status")).note("daemonset status"),
        Entry::new(c, "GET", format!("/apis/batch/v1/namespaces/{NS}/jobs/o-a/status")).note("job status"),
        Entry::new(c, "GET", format!("/apis/batch/v1/namespaces/{NS}/cronjobs/o-a/status")).note("cronjob status"),
        Entry::new(c, "GET", format!("/apis/policy/v1/namespaces/{NS}/poddisruptionbudgets/o-a/status")).note("PDB status"),
        Entry::new(c, "GET", format!("/apis/autoscaling/v2/namespaces/{NS}/horizontalpodautoscalers/o-a/status")).note("HPA status"),
        Entry::new(c, "GET", format!("/apis/autoscaling/v1/namespaces/{NS}/horizontalpodautoscalers/o-a")).note("HPA through autoscaling/v1"),
        Entry::new(c, "GET", format!("/apis/networking.k8s.io/v1/namespaces/{NS}/ingresses/o-a/status")).note("ingress status"),
        Entry::new(c, "GET", format!("/api/v1/namespaces/{NS}/status")).note("namespace status"),
        Entry::new(c, "GET", format!("/api/v1/namespaces/{NS}/finalize")).note("GET of the finalize subresource"),
        Entry::new(c, "GET", "/api/v1/nodes/o-a/status").note("node status"),
        Entry::new(c, "PATCH", "/api/v1/nodes/o-a/status").json(STRATEGIC_PATCH, &json!({"status": {"conditions": [{"type": "Ready", "status": "False", "reason": "Oracle"}]}})).note("patch node status"),
        Entry::new(c, "PATCH", "/api/v1/nodes/o-a").json(MERGE_PATCH, &json!({"spec": {"unschedulable": true}})).note("cordon"),
        Entry::new(c, "GET", "/apis/certificates.k8s.io/v1/certificatesigningrequests/oracle-missing/approval").note("CSR approval"),
        Entry::new(c, "PUT", "/apis/certificates.k8s.io/v1/certificatesigningrequests/oracle-missing/approval").json(JSON, &json!({"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest", "metadata": {"name": "oracle-missing"}})).note("approve a missing CSR"),
        Entry::new(c, "GET", "/apis/apiregistration.k8s.io/v1/apiservices").note("aggregator: list APIServices"),
        Entry::new(c, "GET", "/apis/apiregistration.k8s.io/v1/apiservices/v1.apps/status").note("aggregator: APIService status"),
        Entry::new(c, "GET", "/api/v1/componentstatuses").note("component statuses (deprecated)"),
        Entry::new(c, "GET", "/api/v1/componentstatuses/etcd-0").note("a component status"),
        Entry::new(c, "POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews").json(JSON, &json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview", "spec": {"resourceAttributes": {"verb": "list", "resource": "pods"}}})).note("SelfSubjectAccessReview (auth can-i)"),
        Entry::new(c, "POST", "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews").json(JSON, &json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectRulesReview", "spec": {"namespace": NS}})).note("SelfSubjectRulesReview"),
        Entry::new(c, "POST", format!("/apis/authorization.k8s.io/v1/namespaces/{NS}/localsubjectaccessreviews")).json(JSON, &json!({"apiVersion": "authorization.k8s.io/v1", "kind": "LocalSubjectAccessReview", "metadata": {"namespace": NS}, "spec": {"user": "x", "resourceAttributes": {"verb": "get", "resource": "pods", "namespace": NS}}})).note("LocalSubjectAccessReview"),
        Entry::new(c, "POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews").json(JSON, &json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": {"user": "x", "nonResourceAttributes": {"path": "/version", "verb": "get"}}})).note("SubjectAccessReview"),
        Entry::new(c, "POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews").json(JSON, &json!({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})).note("SelfSubjectReview (auth whoami)"),
        Entry::new(c, "POST", "/apis/authentication.k8s.io/v1/tokenreviews").json(JSON, &json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": "not-a-token"}})).note("TokenReview"),
        // A namespaced binding names its pod only in the body.
        Entry::new(c, "POST", format!("{core}/bindings")).json(JSON, &json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "o-missing", "namespace": NS}, "target": {"apiVersion": "v1", "kind": "Node", "name": "o-a"}})).note("binding named only in the body"),
        Entry::new(c, "POST", format!("{pod}/binding")).json(JSON, &json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "o-a", "namespace": NS}, "target": {"apiVersion": "v1", "kind": "Node", "name": "o-a"}})).note("bind the pod to a node"),
        Entry::new(c, "POST", format!("{core}/pods/o-ssa/eviction?dryRun=All")).json(JSON, &json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "o-ssa", "namespace": NS}})).note("eviction, dry run"),
        Entry::new(c, "POST", format!("{pod}/eviction")).json(JSON, &json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "o-a", "namespace": NS}})).note("eviction"),
    ];
    // The namespace's own finalize and status replace the object the last GET returned.
    let mut get_ns = Entry::new(c, "GET", format!("/api/v1/namespaces/{NS}"))
        .note("the namespace, for its status and finalize");
    get_ns.who = Who::Alice;
    let mut put_status = Entry::new(c, "PUT", format!("/api/v1/namespaces/{NS}/status"))
        .header("Content-Type", JSON)
        .note("replace namespace status");
    put_status.body = Body::LastObject;
    let mut finalize = Entry::new(
        c,
        "PUT",
        format!("/api/v1/namespaces/{NS}/finalize?dryRun=All"),
    )
    .header("Content-Type", JSON)
    .note("namespace finalize, dry run");
    finalize.body = Body::LastObject;
    group.extend([get_ns, put_status, finalize]);
    group
}

/// Non-resource paths and odd methods on them.
pub(crate) fn non_resource_group() -> Group {
    let c = "non-resource";
    let mut group = Vec::new();
    for path in [
        "/",
        "/api",
        "/api/",
        "/api/v1",
        "/api/v1/",
        "/apis",
        "/apis/",
        "/apis/apps",
        "/apis/apps/",
        "/apis/apps/v1",
        "/apis/rbac.authorization.k8s.io/v1",
        "/apis/apiextensions.k8s.io/v1",
        "/version",
        "/version/",
        "/openapi/v2",
        "/openapi/v3",
        "/openapi/v3/",
        "/openapi/v3/api/v1",
        "/openapi/v3/apis/apps/v1",
        "/openapi/v3/apis/rbac.authorization.k8s.io/v1?hash=0",
        "/healthz",
        "/healthz/ping",
        "/healthz/etcd",
        "/healthz?verbose",
        "/livez",
        "/livez/ping",
        "/livez?exclude=etcd",
        "/readyz",
        "/readyz?verbose=1",
        "/readyz/informer-sync",
        "/metrics",
        "/metrics/slis",
        "/.well-known/openid-configuration",
        "/openid/v1/jwks",
        "/version?timeout=10s",
        "/apis/apps/v1?timeout=32s",
        "/nonexistent/path",
        "/api/v1%2Fpods",
        "/flowcontrol",
    ] {
        group.push(Entry::new(c, "GET", path).note("non-resource GET"));
    }
    group.push(
        Entry::new(c, "GET", "/api")
            .header("Accept", "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json")
            .note("aggregated discovery"),
    );
    group.push(
        Entry::new(c, "GET", "/apis")
            .header("Accept", "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json")
            .note("aggregated discovery"),
    );
    group.push(
        Entry::new(c, "GET", "/openapi/v2")
            .header(
                "Accept",
                "application/com.github.proto-openapi.spec.v2@v1.0+protobuf",
            )
            .note("OpenAPI v2 as protobuf"),
    );
    for (method, path) in [
        ("HEAD", "/version"),
        ("HEAD", "/healthz"),
        ("HEAD", "/apis"),
        ("POST", "/version"),
        ("PUT", "/api"),
        ("DELETE", "/healthz"),
        ("PATCH", "/apis/apps/v1"),
        ("OPTIONS", "/api"),
        ("OPTIONS", "/apis/apps/v1"),
        ("POST", "/apis"),
        ("DELETE", "/openapi/v2"),
        ("PROPFIND", "/version"),
        ("get", "/version"),
        ("Get", "/healthz"),
    ] {
        group.push(Entry::new(c, method, path).note("non-resource, another method"));
    }
    // A pre-authentication audit: WithRequestDeadline rejects an invalid `timeout` before
    // authentication and audits it without a user.
    group.push(
        Entry::new(c, "GET", "/version?timeout=soon")
            .note("invalid timeout parameter (audited before authentication)"),
    );
    group.push(
        Entry::new(
            c,
            "GET",
            format!("/api/v1/namespaces/{NS}/configmaps/o-a?timeout=-1x"),
        )
        .note("invalid timeout parameter on a resource request"),
    );
    group
}

/// Selectors and list options: what decides list or watch and whether a field selector names the
/// object. Watches end after a second.
pub(crate) fn selector_groups() -> Vec<Group> {
    let c = "selectors";
    let pods = format!("/api/v1/namespaces/{NS}/pods");
    let cms = format!("/api/v1/namespaces/{NS}/configmaps");
    let mut lists = Vec::new();
    for selector in [
        "app%3Dweb",
        "app%3D%3Dweb",
        "app!%3Dweb",
        "app+in+(a,b)",
        "app%20notin%20(a)",
        "app",
        "!app",
        "app,tier%3Dx",
        "oracle%3Dkeep",
        "app%3D",
        "app%3Da%2Fb",
        "%3Dx",
        "x%3Dy%3Dz",
        "app%3D(",
        "a+b",
        "example.com%2Fapp%3Dx",
        "Example.com%2Fapp%3Dx",
        "app%3Dv%2C",
        "app+in+()",
        "app%3D%3D",
        "app+in+(a",
        "app.kubernetes.io%2Fname+in+(web)",
        "app%3Ea",
        "app%3E1",
        "app%3C10",
        "app%3E-1",
        "app%3E1a",
        "app%3E%3D1",
        "app+in+(a,)",
        "app+in+(+)",
        "app+in+(a+b)",
        "app+in(a)",
        "app%09in%09(a)",
        "app%3Da,",
        ",app%3Da",
        "app!%3D",
        "-app%3Dx",
        "app-%3Dx",
        "%2Fapp%3Dx",
        "example.com%2F%3Dx",
        "app%3Da_",
        "app%3D_a",
        "app%3Da.b-c_d",
        "app%3A1%3Dx",
        "app%3Da%40b",
        "app%3D(a)",
        "!app,!b",
        "app+notin+(a,b),!c",
        "app+exists",
        "app%3Dcaf%C3%A9",
        "app%3D%3Da,b!%3Dc",
    ] {
        lists.push(
            Entry::new(c, "GET", format!("{cms}?labelSelector={selector}")).note("label selector"),
        );
        lists.push(
            Entry::new(
                c,
                "GET",
                format!("{cms}?labelSelector={selector}&fieldSelector=metadata.name%3Do-a"),
            )
            .note("label selector decides whether the name counts"),
        );
    }
    lists.push(
        Entry::new(
            c,
            "GET",
            format!(
                "{cms}?labelSelector=k%3D{}&fieldSelector=metadata.name%3Do-a",
                "v".repeat(64)
            ),
        )
        .note("label value longer than 63"),
    );
    for selector in [
        "metadata.name%3Do-a",
        "metadata.name%3D%3Do-a",
        "metadata.name!%3Do-a",
        "metadata.namespace%3Doracle",
        "metadata.name%3Do-a,metadata.namespace%3Doracle",
        "metadata.namespace%3Doracle,metadata.name%3Do-a",
        "metadata.name%3Do-b,metadata.name%3Do-a",
        "metadata.name%3Dzz,metadata.name%3Daa",
        "metadata.name%3D",
        "metadata.name%3D..",
        "metadata.name%3D.",
        "metadata.name%3D...",
        "metadata.name%3Da%2Fb",
        "metadata.name%3D100%2525",
        "metadata.name%3Da%5C,b",
        "metadata.name%3Da%5C%3Db",
        "metadata.name%3Da%5C%5Cb",
        "metadata.name%3Da%5Cb",
        "metadata.name",
        "metadata.name%3Da,",
        ",metadata.name%3Da",
        "metadata.name+%3Do-a",
        "metadata.name%3D+o-a",
        "metadata.name%3Do-a,",
        "metadata.name%3Do-a,,x%3Dy",
        "metadata.name%3Dcaf%C3%A9",
        "spec.nodeName%3D",
        "status.phase%3DRunning",
        "metadata.name%3Do-a%5C",
        "metadata.name%3D%3Do-a,metadata.name!%3Do-b",
        "metadata.name%3Da%3Db",
        "metadata.name%3D%2F",
        "metadata.name%3Da+b",
        "metadata.name%3Da%2Bb",
        "metadata.name!%3D%3Dx",
        "metadata.name%3D%3D%3Dx",
        "%3Dx",
        "metadata.name%3Do-a,metadata.name%3Do-a",
        "metadata.name%3D%3D",
        "metadata.name!%3D",
        "metadata.name%3Do-a%5C,x",
        "metadata.name%3Da%5Cnb",
        "metadata.name%3D%E2%80%A6",
        "metadata.name%3Do-a%2Cmetadata.namespace%21%3Dx",
    ] {
        lists.push(
            Entry::new(c, "GET", format!("{pods}?fieldSelector={selector}")).note("field selector"),
        );
    }
    for query in [
        "fieldSelector=metadata.name%3Do-a&limit=abc",
        "fieldSelector=metadata.name%3Do-a&limit=-1",
        "fieldSelector=metadata.name%3Do-a&limit=9223372036854775808",
        "fieldSelector=metadata.name%3Do-a&timeoutSeconds=1.5",
        "fieldSelector=metadata.name%3Do-a&resourceVersion=0",
        "fieldSelector=metadata.name%3Do-a&resourceVersionMatch=NotOlderThan&resourceVersion=1",
        "fieldSelector=metadata.name%3Do-a&continue=garbage",
        "fieldSelector=metadata.name%3Do-a&allowWatchBookmarks=maybe",
        "fieldSelector=metadata.name%3Do-a&watch=false",
        "fieldSelector=metadata.name%3Do-a&watch=0",
        "fieldSelector=metadata.name%3Do-a&watch=FALSE",
        "fieldSelector=metadata.name%3Do-a;x=y",
        "fieldSelector=metadata.name%3Do-a&%zz=1",
        "fieldSelector=metadata.name%3Do-a&limit=%zz",
        "%66ieldSelector=metadata.name%3Do-a",
        "fieldselector=metadata.name%3Do-a",
        "fieldSelector=metadata.name%3Do-a&fieldSelector=metadata.name%3Do-b",
        "fieldSelector=&fieldSelector=metadata.name%3Do-a",
        "labelSelector=&fieldSelector=metadata.name%3Do-a",
        "fieldSelector=metadata.name=o-a",
        "fieldSelector=metadata.name%3Do-a&labelSelector=oracle%3Dkeep&limit=5",
        "fieldSelector=metadata.name%3Do-a&sendInitialEvents=true",
        "fieldSelector=metadata.name%3Do-a&kind=Foo&apiVersion=v9",
        "fieldSelector=metadata.name%3Do-a&limit=%2B5",
        "fieldSelector=metadata.name%3Do-a&limit=0x10",
        "fieldSelector=metadata.name%3Do-a&limit=1_000",
        "fieldSelector=metadata.name%3Do-a&limit=+5",
        "fieldSelector=metadata.name%3Do-a&limit=05",
        "fieldSelector=metadata.name%3Do-a&limit=-0",
        "fieldSelector=metadata.name%3Do-a&limit=9223372036854775807",
        "fieldSelector=metadata.name%3Do-a&limit=-9223372036854775808",
        "fieldSelector=metadata.name%3Do-a&limit=-9223372036854775809",
        "fieldSelector=metadata.name%3Do-a&limit=",
        "fieldSelector=metadata.name%3Do-a&limit",
        "fieldSelector=metadata.name%3Do-a&timeoutSeconds=",
        "fieldSelector=metadata.name%3Do-a&timeoutSeconds=-1",
        "fieldSelector=metadata.name%3Do-a&timeoutSeconds=%EF%BC%91",
        "fieldSelector=metadata.name%3Do-a&allowWatchBookmarks=",
        "fieldSelector=metadata.name%3Do-a&sendInitialEvents=",
        "fieldSelector=metadata.name%3Do-a&resourceVersionMatch=bogus",
        "fieldSelector=metadata.name%3Do-a&limit=1&limit=x",
        "fieldSelector=metadata.name%3Do-a&limit=x&limit=1",
        "fieldSelector=metadata.name%3Do-a&watch=false&limit=%C2%B9",
        "fieldSelector=metadata.name%3Do-a&labelSelector=app%3Ea",
    ] {
        lists.push(Entry::new(c, "GET", format!("{cms}?{query}")).note("list options"));
    }
    for method in ["HEAD", "DELETE"] {
        lists.push(
            Entry::new(
                c,
                method,
                format!("{cms}?fieldSelector=metadata.name%3Do-nothing"),
            )
            .note("selector with another method"),
        );
        lists.push(
            Entry::new(
                c,
                method,
                format!("{cms}?labelSelector=oracle%3Dnothing&fieldSelector=metadata.name%3Do-a"),
            )
            .note("selector with another method"),
        );
    }
    lists.push(
        Entry::new(
            c,
            "GET",
            format!("{cms}/o-a?fieldSelector=metadata.name%3Do-b&labelSelector=x"),
        )
        .note("selectors on a named get are ignored"),
    );
    let mut watches = Vec::new();
    for query in [
        "watch=true",
        "watch=1",
        "watch=TRUE",
        "watch=yes",
        "watch=",
        "watch",
        "watch=f",
        "watch=F",
        "watch=no",
        "watch=%74rue",
        "watch=true&watch=false",
        "watch=false&watch=true",
        "watch=true;x=y",
        "watch=true&limit=abc",
        "watch=1&fieldSelector=metadata.name%3Do-a",
        "watch=1&fieldSelector=metadata.name%3Do-a&labelSelector=oracle%3Dkeep",
        "watch=1&fieldSelector=metadata.name%3Do-a,x",
        "watch=1&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true",
        "watch=1&resourceVersion=0",
        "watch=fal%C5%BFe",
        "watch=fal%C5%BFe&limit=abc",
        "watch=FALSE&limit=abc",
        "watch=1&labelSelector=app+in+(a",
    ] {
        watches.push(
            Entry::new(c, "GET", format!("{cms}?{query}&timeoutSeconds=1")).note("watch decision"),
        );
    }
    watches.push(
        Entry::new(c, "GET", format!("{cms}?timeoutSeconds=1&watch=true")).note("watch decision"),
    );
    watches.push(
        Entry::new(c, "GET", format!("{cms}?watch=true&timeoutSeconds=abc"))
            .note("watch with an invalid timeoutSeconds"),
    );
    watches.push(Entry::new(c, "GET", format!("/api/v1/watch/namespaces/{NS}/configmaps?fieldSelector=metadata.name%3Do-a&labelSelector=oracle%3Dkeep&timeoutSeconds=1")).note("selectors on a legacy watch path are not recorded"));
    watches.push(
        Entry::new(
            c,
            "GET",
            format!("/api/v1/watch/namespaces/{NS}/configmaps/o-a/status?timeoutSeconds=1"),
        )
        .note("legacy watch path with a subresource"),
    );
    vec![lists, watches]
}

/// Odd encodings: escaped separators and dots, dot segments, empty segments, trailing slashes,
/// unicode, reserved and unusual characters, and targets kube-apiserver refuses before auditing.
pub(crate) fn encoding_group() -> Group {
    let c = "encodings";
    let cms = format!("/api/v1/namespaces/{NS}/configmaps");
    let mut group = Vec::new();
    for target in [
        format!("{cms}/o%2Da"),
        format!("{cms}/o-a%2Fstatus"),
        format!("{cms}/a%2fb"),
        format!("{cms}/a%252Fb"),
        format!("/api/v1/namespaces%2F{NS}%2Fconfigmaps"),
        "/api%2Fv1%2Fpods".to_owned(),
        format!("{cms}/.."),
        format!("{cms}/../secrets"),
        format!("/api/v1/namespaces/{NS}/../kube-system/configmaps"),
        "/api/v1/namespaces/../configmaps".to_owned(),
        "/api/v1/..".to_owned(),
        "/api/v1/../v1/pods".to_owned(),
        format!("{cms}/./o-a"),
        format!("{cms}/%2e%2e"),
        format!("{cms}/%2E"),
        format!("{cms}/o-a/.."),
        format!("/apis/apps/v1/../../api/v1/namespaces/{NS}/pods"),
        format!("/api/v1//namespaces/{NS}/configmaps"),
        format!("/{cms}"),
        "///api/v1/pods".to_owned(),
        "/api//v1/pods".to_owned(),
        format!("/api/v1/namespaces/{NS}//configmaps"),
        format!("{cms}//o-a"),
        format!("{cms}/o-a/"),
        format!("{cms}/o-a//"),
        format!("{cms}/"),
        format!("/api/v1/namespaces/{NS}/"),
        "/apis/apps/v1/".to_owned(),
        format!("/apis/apps/v1/namespaces/{NS}/deployments/o-a//"),
        "/api/v1//".to_owned(),
        "/apis//v1/pods".to_owned(),
        "/apis///pods".to_owned(),
        format!("{cms}/caf%C3%A9"),
        format!("{cms}/caf\u{e9}"),
        format!("{cms}/%F0%9F%98%80"),
        format!("{cms}/\u{1f600}"),
        format!("{cms}/\u{6f22}\u{5b57}"),
        "/api/v1/namespaces/\u{e9}/pods".to_owned(),
        format!("{cms}/%FF%FE"),
        format!("{cms}/a%00b"),
        format!("{cms}/a%20b"),
        format!("{cms}/a+b"),
        format!("{cms}/a%2Bb"),
        format!("{cms}/a%3Fb"),
        format!("{cms}/a%23b"),
        format!("{cms}/a;b"),
        format!("{cms}/a:b@c!$&'()*,="),
        format!("{cms}/[a]"),
        format!("{cms}/a|b"),
        format!("{cms}/a\"b"),
        format!("{cms}/{{a}}"),
        format!("{cms}/a^b"),
        format!("{cms}/a\\b"),
        format!("{cms}/%7Ea"),
        format!("{cms}/%41"),
        format!("{cms}/o-a?"),
        format!("{cms}?"),
        format!("{cms}/o-a?x=%zz&y"),
        format!("{cms}/{}", "n".repeat(300)),
        format!("{cms}/o-a/status/extra/parts"),
        format!("/api/v1/namespaces/{NS}/namespaces/{NS}"),
        format!("/api/v1/namespaces/{NS}/status/extra"),
        format!("/api/v1/namespaces/{NS}/finalize/x"),
        "/api/v1/namespaces//pods".to_owned(),
        "/api/V1/pods".to_owned(),
        "/API/v1/pods".to_owned(),
        "/apis/APPS/v1/deployments".to_owned(),
        "/api/v1/pods+x".to_owned(),
        format!("/api/v1/namespaces/{NS}/watch/configmaps"),
        format!("/api/v1/namespaces/{NS}/proxy/configmaps"),
        format!("/apis/{CRD_GROUP}/v1/namespaces/{NS}/widgets/o%2Da/scale"),
        format!("/api/v1/watch/namespaces/{NS}?timeoutSeconds=1"),
        "/api/v1/watch/namespaces?timeoutSeconds=1".to_owned(),
        format!("/api/v1/namespaces/{NS}/status?watch=1"),
        format!("/apis/apps/v1/namespaces/{NS}/deployments/o-a/scale/extra"),
        format!("/api/v1/proxy/namespaces/{NS}/pods/o-a/x/y"),
        format!("{cms}/o-a/status/"),
        format!("http://kubernetes/api/v1/namespaces/{NS}/configmaps/o-a"),
        "https://example.invalid:443/api/v1/pods?limit=1".to_owned(),
        "*".to_owned(),
    ] {
        group.push(Entry::new(c, "GET", target).note("odd encoding"));
    }
    // Odd methods on resources.
    for method in ["OPTIONS", "get", "Post", "PROPFIND", "TRACE", "PURGE"] {
        group.push(Entry::new(c, method, format!("{cms}/o-a")).note("unmapped method: empty verb"));
    }
    group.push(
        Entry::new(c, "HEAD", format!("{cms}?watch=true&timeoutSeconds=1")).note("HEAD of a watch"),
    );
    for target in [
        format!("{cms}/o-a"),
        "/version".to_owned(),
        "kubernetes:443".to_owned(),
    ] {
        let mut connect = Entry::new(c, "CONNECT", target).note("CONNECT (refused by the proxy)");
        connect.expect = Expect::RefusedByProxy;
        group.push(connect);
    }
    let mut options_star =
        Entry::new(c, "OPTIONS", "*").note("OPTIONS * (Go's server answers it itself)");
    options_star.expect = Expect::AnsweredByGo;
    group.push(options_star);
    // Refused before auditing: kube-apiserver's request-info filter fails (500) or Go's server
    // rejects the target (400).
    for target in [
        "/api/v1/watch",
        "/api/v1/watch/",
        "/api/v1/proxy",
        "/api/v1/proxy//",
        "/apis/apps/v1/watch",
        "/apis/apps/v1/proxy/",
        "/apis/apps/v1/watch?timeoutSeconds=1",
        "/api/v1/watch//",
    ] {
        group.push(
            Entry::new(c, "GET", target)
                .note("path verb without a resource")
                .refused_before_audit(),
        );
    }
    for target in [
        format!("{cms}/%zz"),
        format!("{cms}/%"),
        format!("{cms}/a%2"),
        format!("{cms}/%G1"),
        "/api/v1/pods%".to_owned(),
        "/%zz/version".to_owned(),
        format!("{cms}/o-a%2x/status"),
    ] {
        group.push(
            Entry::new(c, "GET", target)
                .note("malformed escape")
                .refused_before_audit(),
        );
    }
    group.push(
        Entry::new(c, "POST", "/apis/apps/v1/watch")
            .note("path verb without a resource, POST")
            .refused_before_audit(),
    );
    group.push(
        Entry::new(c, "DELETE", format!("{cms}/%zz"))
            .note("malformed escape, DELETE")
            .refused_before_audit(),
    );
    group
}

/// User agents: none, long (kube-apiserver truncates at 1024 bytes), UTF-8, Latin-1 bytes.
pub(crate) fn agent_group() -> Group {
    let c = "user-agent";
    let target = format!("/api/v1/namespaces/{NS}/configmaps/o-a");
    vec![
        Entry::new(c, "GET", &target)
            .agent(Agent::Absent)
            .note("no User-Agent"),
        Entry::new(c, "GET", &target)
            .agent(Agent::Exactly(Vec::new()))
            .note("empty User-Agent"),
        Entry::new(c, "GET", &target)
            .agent(Agent::Exactly("x".repeat(1024).into_bytes()))
            .note("User-Agent of 1024 bytes"),
        Entry::new(c, "GET", &target)
            .agent(Agent::Exactly(
                format!("long/{}", "y".repeat(2000)).into_bytes(),
            ))
            .note("User-Agent over 1024 bytes"),
        Entry::new(c, "GET", &target)
            .agent(Agent::Exactly(
                format!("{}é", "z".repeat(1023)).into_bytes(),
            ))
            .note("truncation inside a UTF-8 character"),
        Entry::new(c, "GET", &target)
            .agent(Agent::Exactly(
                "kubectl/v1.37.2 (linux/amd64) kubernetes/abcdef0".into(),
            ))
            .note("kubectl's User-Agent"),
        Entry::new(c, "GET", &target)
            .agent(Agent::Exactly("oracle/ü 漢字".as_bytes().to_vec()))
            .note("UTF-8 User-Agent"),
        Entry::new(c, "GET", &target)
            .agent(Agent::Exactly(b"oracle/latin1 \xe9\xff".to_vec()))
            .note("User-Agent that is not UTF-8"),
        Entry::new(c, "GET", &target)
            .agent(Agent::Exactly(b"  padded agent\t ".to_vec()))
            .note("User-Agent with surrounding whitespace"),
    ]
}

/// Requests RBAC allows and refuses for a caller whose group may edit only some core resources,
/// and credentials and audit IDs callers try to bring along.
pub(crate) fn rbac_group() -> Group {
    let c = "rbac";
    let cms = format!("/api/v1/namespaces/{NS}/configmaps");
    let ci = |method: &str, target: String, note: &str| {
        Entry::new(c, method, target)
            .by(Who::Ci)
            .note(note.to_owned())
    };
    vec![
        ci("GET", cms.clone(), "allowed: list configmaps"),
        ci("GET", format!("{cms}/o-a"), "allowed: get a configmap"),
        ci("POST", cms.clone(), "allowed: create a configmap").json(JSON, &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ci-a"}})),
        ci("PATCH", format!("{cms}/ci-a"), "allowed: patch").json(MERGE_PATCH, &json!({"data": {"x": "1"}})),
        ci("DELETE", format!("{cms}/ci-a"), "allowed: delete"),
        ci("GET", format!("/api/v1/namespaces/{NS}/secrets"), "allowed: list secrets"),
        ci("GET", "/api/v1/pods".to_owned(), "allowed: pods across namespaces"),
        ci("GET", format!("/apis/apps/v1/namespaces/{NS}/deployments"), "refused: deployments"),
        ci("GET", format!("/apis/apps/v1/namespaces/{NS}/deployments?watch=true&timeoutSeconds=1"), "refused: watch deployments"),
        ci("POST", format!("/apis/apps/v1/namespaces/{NS}/deployments?dryRun=All"), "refused: create a deployment, dry run").json(JSON, &json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "ci-d"}})),
        ci("POST", "/api/v1/namespaces".to_owned(), "refused: create a namespace").json(JSON, &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ci-ns"}})),
        ci("DELETE", format!("/api/v1/namespaces/{NS}"), "refused: delete the namespace"),
        ci("GET", "/api/v1/nodes".to_owned(), "refused: list nodes"),
        ci("PATCH", "/api/v1/nodes/o-a".to_owned(), "refused: patch a node").json(MERGE_PATCH, &json!({"spec": {"unschedulable": false}})),
        ci("GET", "/apis/rbac.authorization.k8s.io/v1/clusterroles".to_owned(), "refused: list clusterroles"),
        ci("POST", "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings".to_owned(), "refused: bind cluster-admin").json(JSON, &json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": "ci-escalate"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"}, "subjects": [{"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": "ci-deployers"}]})),
        ci("GET", format!("/apis/{CRD_GROUP}/v1/namespaces/{NS}/widgets"), "refused: custom resources"),
        ci("GET", format!("/api/v1/namespaces/{NS}/pods/o-ssa/log"), "refused: pods/log is not pods"),
        ci("POST", format!("/api/v1/namespaces/{NS}/pods/o-ssa/exec?command=ls"), "refused: pods/exec"),
        ci("POST", format!("/api/v1/namespaces/{NS}/serviceaccounts/o-a/token"), "refused: a token").json(JSON, &json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}})),
        ci("DELETE", format!("/api/v1/namespaces/{NS}/pods?labelSelector=oracle%3Dnothing"), "allowed: deletecollection of pods (matching none)"),
        ci("GET", "/version".to_owned(), "non-resource: allowed for everyone"),
        ci("GET", "/apis".to_owned(), "non-resource: discovery"),
        ci("GET", "/openapi/v2".to_owned(), "non-resource: OpenAPI"),
        ci("GET", "/healthz".to_owned(), "non-resource: health"),
        ci("GET", "/metrics".to_owned(), "refused: metrics"),
        ci("GET", "/logs/".to_owned(), "refused: logs"),
        ci("GET", format!("{cms}/o-a"), "the caller's own credentials and impersonation are stripped")
            .header("Authorization", "Bearer kubescribe-test-admin-token")
            .header("Impersonate-User", "admin")
            .header("Impersonate-Group", "system:masters"),
        ci("GET", format!("{cms}/o-a"), "the caller's own Audit-ID is replaced").header("Audit-ID", "forged-by-ci"),
        Entry::new(c, "GET", format!("{cms}/o-a")).header("Audit-ID", "forged-by-alice").header("Impersonate-Group", "oracle-other").note("alice's own Audit-ID and impersonation are replaced"),
        Entry::new(c, "GET", format!("{cms}/o-a")).header("Connection", "close, Audit-ID").header("Audit-ID", "hop-by-hop").note("an Audit-ID named in Connection is still sent"),
    ]
}

/// Why a vector cannot be sent live, if it cannot.
pub(crate) fn vector_unsendable(url: &str) -> Option<&'static str> {
    if url.is_empty() {
        return Some("an empty request-target cannot be sent");
    }
    if !url.starts_with('/') && url != "*" {
        return Some("absolute-form targets reach kube-apiserver in origin form");
    }
    None
}

/// A vector as a request: `timeoutSeconds=1` is added to the ones that watch (without it a watch
/// runs for half an hour; a valid `timeoutSeconds` changes no request info).
pub(crate) fn vector_entry(vector: &Value) -> Entry {
    let text = |v: &Value| v.as_str().unwrap_or("").to_owned();
    let url = text(&vector["url"]);
    let target = if vector["expect"]["verb"] == "watch" {
        let sep = if url.contains('?') { "&" } else { "?" };
        format!("{url}{sep}timeoutSeconds=1")
    } else {
        url
    };
    let mut entry = Entry::new("vectors", &text(&vector["method"]), target).note(format!(
        "vector #{}: {}",
        vector["id"],
        text(&vector["note"])
    ));
    if vector["expect_extra"]["error"] == true {
        entry.expect = Expect::RefusedBeforeAudit;
    } else if vector["method"] == "CONNECT" {
        entry.expect = Expect::RefusedByProxy;
    }
    entry.vector = Some(vector.clone());
    entry
}
