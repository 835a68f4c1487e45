//! The resource types the simulator serves, and what happens to each on create/update.

mod defaults;
mod table;

pub use defaults::{on_create, on_update};

/// The name of the single simulated node.
pub fn defaults_node_name() -> &'static str {
    defaults::NODE_NAME
}
pub use table::to_table;

/// One served resource type (a row of discovery).
#[derive(Debug, PartialEq, Eq)]
pub struct ResourceDef {
    /// API group (`""` for core).
    pub group: &'static str,
    /// API version.
    pub version: &'static str,
    /// Kind of the objects.
    pub kind: &'static str,
    /// Plural resource name used in URLs.
    pub plural: &'static str,
    /// Singular name.
    pub singular: &'static str,
    /// Whether objects live in a namespace.
    pub namespaced: bool,
    /// kubectl short names.
    pub short_names: &'static [&'static str],
    /// Categories (`all`).
    pub categories: &'static [&'static str],
    /// Subresources and their verbs.
    pub subresources: &'static [(&'static str, &'static [&'static str])],
    /// Whether the object has a `spec` whose change bumps `metadata.generation`.
    pub has_spec: bool,
}

/// The verbs every top-level resource supports.
pub const VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];
const STATUS_VERBS: &[&str] = &["get", "patch", "update"];

impl ResourceDef {
    /// The verbs of the resource itself (`kubectl auth whoami`'s review is create-only).
    pub fn verbs(&self) -> &'static [&'static str] {
        if self.kind == "SelfSubjectReview" {
            &["create"]
        } else {
            VERBS
        }
    }

    /// `v1` or `apps/v1`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `pods` or `deployments.apps`, as used in error messages.
    pub fn group_resource(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// Whether `name` is one of this resource's subresources.
    pub fn has_subresource(&self, name: &str) -> bool {
        self.subresources.iter().any(|(sub, _)| *sub == name)
    }

    /// The URL prefix of this resource's group version (`/api/v1`, `/apis/apps/v1`).
    pub fn gv_path(&self) -> String {
        if self.group.is_empty() {
            format!("/api/{}", self.version)
        } else {
            format!("/apis/{}/{}", self.group, self.version)
        }
    }
}

/// The custom resource group served next to the built-in ones.
pub const CUSTOM_GROUP: &str = "example.kubescribe.dev";

/// Every resource the simulator serves.
pub static RESOURCES: &[ResourceDef] = &[
    ResourceDef {
        group: "",
        version: "v1",
        kind: "Namespace",
        plural: "namespaces",
        singular: "namespace",
        namespaced: false,
        short_names: &["ns"],
        categories: &[],
        subresources: &[("status", STATUS_VERBS), ("finalize", &["update"])],
        has_spec: false,
    },
    ResourceDef {
        group: "",
        version: "v1",
        kind: "Pod",
        plural: "pods",
        singular: "pod",
        namespaced: true,
        short_names: &["po"],
        categories: &["all"],
        subresources: &[
            ("status", STATUS_VERBS),
            ("log", &["get"]),
            ("exec", &["create", "get"]),
            ("attach", &["create", "get"]),
        ],
        has_spec: false,
    },
    ResourceDef {
        group: "",
        version: "v1",
        kind: "ConfigMap",
        plural: "configmaps",
        singular: "configmap",
        namespaced: true,
        short_names: &["cm"],
        categories: &[],
        subresources: &[],
        has_spec: false,
    },
    ResourceDef {
        group: "",
        version: "v1",
        kind: "Secret",
        plural: "secrets",
        singular: "secret",
        namespaced: true,
        short_names: &[],
        categories: &[],
        subresources: &[],
        has_spec: false,
    },
    ResourceDef {
        group: "",
        version: "v1",
        kind: "Service",
        plural: "services",
        singular: "service",
        namespaced: true,
        short_names: &["svc"],
        categories: &["all"],
        subresources: &[("status", STATUS_VERBS)],
        has_spec: false,
    },
    ResourceDef {
        group: "",
        version: "v1",
        kind: "Event",
        plural: "events",
        singular: "event",
        namespaced: true,
        short_names: &["ev"],
        categories: &[],
        subresources: &[],
        has_spec: false,
    },
    ResourceDef {
        group: "",
        version: "v1",
        kind: "Node",
        plural: "nodes",
        singular: "node",
        namespaced: false,
        short_names: &["no"],
        categories: &[],
        subresources: &[("status", STATUS_VERBS)],
        has_spec: false,
    },
    ResourceDef {
        group: "apps",
        version: "v1",
        kind: "Deployment",
        plural: "deployments",
        singular: "deployment",
        namespaced: true,
        short_names: &["deploy"],
        categories: &["all"],
        subresources: &[("status", STATUS_VERBS), ("scale", STATUS_VERBS)],
        has_spec: true,
    },
    ResourceDef {
        group: "authentication.k8s.io",
        version: "v1",
        kind: "SelfSubjectReview",
        plural: "selfsubjectreviews",
        singular: "selfsubjectreview",
        namespaced: false,
        short_names: &[],
        categories: &[],
        subresources: &[],
        has_spec: false,
    },
    ResourceDef {
        group: CUSTOM_GROUP,
        version: "v1",
        kind: "Widget",
        plural: "widgets",
        singular: "widget",
        namespaced: true,
        short_names: &["wd"],
        categories: &[],
        subresources: &[("status", STATUS_VERBS)],
        has_spec: true,
    },
];

/// The served group versions, in discovery order: (group, version).
pub fn group_versions() -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<(&'static str, &'static str)> = Vec::new();
    for def in RESOURCES {
        if !out.contains(&(def.group, def.version)) {
            out.push((def.group, def.version));
        }
    }
    out
}

/// The resources of one group version.
pub fn in_group_version<'a>(
    group: &'a str,
    version: &'a str,
) -> impl Iterator<Item = &'static ResourceDef> + 'a {
    RESOURCES
        .iter()
        .filter(move |d| d.group == group && d.version == version)
}

/// Finds a resource by group, version and plural name.
pub fn find(group: &str, version: &str, plural: &str) -> Option<&'static ResourceDef> {
    RESOURCES
        .iter()
        .find(|d| d.group == group && d.version == version && d.plural == plural)
}

/// The namespaces resource.
pub fn namespaces() -> &'static ResourceDef {
    &RESOURCES[0]
}

/// The pods resource.
pub fn pods() -> &'static ResourceDef {
    &RESOURCES[1]
}

/// The nodes resource.
pub fn nodes() -> &'static ResourceDef {
    &RESOURCES[6]
}
