//! What every child object carries: its name, labels that say who manages and owns it, and the
//! owner reference to its custom resource.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Service, ServiceAccount, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::core::NamespaceResourceScope;
use kube::{Api, Client, Resource, ResourceExt};

/// The field manager of every server-side apply, and the value of the `managed-by` label.
pub const MANAGER: &str = "kubescribe-operator";
/// The label naming who manages a child.
pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// The label holding the owning resource's UID (cluster-scoped children cannot carry an owner
/// reference to a namespaced owner, and clean-up finds children by it).
pub const OWNER_UID: &str = "kubescribe.dev/owner-uid";
/// The label holding the owning resource's kind (`Recorder`, `APIServerProxy`).
pub const OWNER_KIND: &str = "kubescribe.dev/owner-kind";
/// The label holding the owning resource's namespace.
pub const OWNER_NAMESPACE: &str = "kubescribe.dev/owner-namespace";
/// The label holding the owning resource's name.
pub const OWNER_NAME: &str = "kubescribe.dev/owner-name";

/// The label selector of every object this operator manages.
pub fn managed_selector() -> String {
    format!("{MANAGED_BY}={MANAGER}")
}

/// Where the operator acts: every namespace, or only one (`--namespace`). A scoped operator
/// watches, reconciles and cleans up only what lives in its namespace, and of the cluster-scoped
/// children (impersonation RBAC) only those whose owner lives there.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Scope {
    namespace: Option<String>,
}

impl Scope {
    /// Every namespace (`None`), or only `namespace`.
    pub(crate) fn new(namespace: Option<String>) -> Self {
        Self { namespace }
    }

    /// An `Api` over namespaced `K` in the scope: all namespaces, or the one.
    pub(crate) fn api<K>(&self, client: &Client) -> Api<K>
    where
        K: Resource<Scope = NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        match &self.namespace {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        }
    }

    /// The label selector of the children this operator manages in its scope: every child of
    /// this operator, or, when scoped, those whose owner lives in its namespace.
    pub(crate) fn children_selector(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{},{OWNER_NAMESPACE}={ns}", managed_selector()),
            None => managed_selector(),
        }
    }
}

/// The owner of children: a custom resource's identity, read once per reconcile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Owner {
    pub(crate) kind: String,
    pub(crate) api_version: String,
    pub(crate) name: String,
    pub(crate) namespace: String,
    pub(crate) uid: String,
    /// `app.kubernetes.io/component` of its children: `recorder` or `proxy`.
    pub(crate) component: &'static str,
}

impl Owner {
    /// The owner of `resource`'s children; `None` when it has no UID or namespace yet (never
    /// true of an object read from the API server).
    pub(crate) fn of<K>(resource: &K, component: &'static str) -> Option<Self>
    where
        K: Resource<DynamicType = ()>,
    {
        Some(Self {
            kind: K::kind(&()).into_owned(),
            api_version: K::api_version(&()).into_owned(),
            name: resource.name_any(),
            namespace: resource.namespace()?,
            uid: resource.uid()?,
            component,
        })
    }

    /// The labels that select this owner's pods.
    pub(crate) fn selector_labels(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("app.kubernetes.io/name".to_owned(), "kubescribe".to_owned()),
            ("app.kubernetes.io/instance".to_owned(), self.name.clone()),
            (
                "app.kubernetes.io/component".to_owned(),
                self.component.to_owned(),
            ),
        ])
    }

    /// Every label of this owner's children: the selector labels, `managed-by` and the owner's
    /// identity.
    pub(crate) fn labels(&self) -> BTreeMap<String, String> {
        let mut labels = self.selector_labels();
        labels.insert(MANAGED_BY.to_owned(), MANAGER.to_owned());
        labels.insert(OWNER_UID.to_owned(), self.uid.clone());
        labels.insert(OWNER_KIND.to_owned(), self.kind.clone());
        labels.insert(OWNER_NAMESPACE.to_owned(), self.namespace.clone());
        labels.insert(OWNER_NAME.to_owned(), self.name.clone());
        labels
    }

    /// The controller owner reference to this owner.
    pub(crate) fn owner_reference(&self) -> OwnerReference {
        OwnerReference {
            api_version: self.api_version.clone(),
            kind: self.kind.clone(),
            name: self.name.clone(),
            uid: self.uid.clone(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }
    }

    /// Metadata of a namespaced child called `name`: labels and the owner reference.
    pub(crate) fn child_meta(&self, name: &str) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(self.namespace.clone()),
            labels: Some(self.labels()),
            owner_references: Some(vec![self.owner_reference()]),
            ..ObjectMeta::default()
        }
    }

    /// The pods' ServiceAccount `name`; its token is mounted only when `automount`.
    pub(crate) fn service_account(&self, name: &str, automount: bool) -> ServiceAccount {
        ServiceAccount {
            metadata: self.child_meta(name),
            automount_service_account_token: Some(automount),
            ..ServiceAccount::default()
        }
    }

    /// A ClusterIP Service `name` in front of this owner's pods.
    pub(crate) fn service(&self, name: &str, ports: Vec<ServicePort>) -> Service {
        Service {
            metadata: self.child_meta(name),
            spec: Some(ServiceSpec {
                type_: Some("ClusterIP".to_owned()),
                selector: Some(self.selector_labels()),
                ports: Some(ports),
                ..ServiceSpec::default()
            }),
            status: None,
        }
    }

    /// Metadata of a cluster-scoped child called `name`: labels only (an owner reference from a
    /// cluster-scoped object to a namespaced owner is invalid; clean-up goes by the labels).
    pub(crate) fn cluster_child_meta(&self, name: &str) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.to_owned()),
            labels: Some(self.labels()),
            ..ObjectMeta::default()
        }
    }
}

#[cfg(test)]
impl Owner {
    /// An owner for unit tests: `kind` `name` in namespace `ops`, UID `uid-<name>`.
    pub(crate) fn example(kind: &str, name: &str, component: &'static str) -> Self {
        Self {
            kind: kind.to_owned(),
            api_version: "kubescribe.dev/v1alpha1".to_owned(),
            name: name.to_owned(),
            namespace: "ops".to_owned(),
            uid: format!("uid-{name}"),
            component,
        }
    }
}
