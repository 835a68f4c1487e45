//! RBAC objects and namespaces a test creates in the real kube-apiserver as
//! its administrator. The built-in `edit`, `view` and `admin` roles are
//! aggregated and stay empty without kube-controller-manager, so tests
//! define explicit roles.

use serde_json::{json, Value};
use test_support::apiserver::ControlPlane;

use crate::Error;

const RBAC: &str = "rbac.authorization.k8s.io";

/// A `Group` subject.
pub fn group(name: &str) -> Value {
    json!({"kind": "Group", "apiGroup": RBAC, "name": name})
}

/// A `User` subject.
pub fn user(name: &str) -> Value {
    json!({"kind": "User", "apiGroup": RBAC, "name": name})
}

/// A policy rule: `verbs` on `resources` of API group `api_group` (`""` for core).
pub fn rule(api_group: &str, resources: &[&str], verbs: &[&str]) -> Value {
    json!({"apiGroups": [api_group], "resources": resources, "verbs": verbs})
}

/// Creates the namespace `name`.
pub fn namespace(plane: &ControlPlane, name: &str) -> Result<(), Error> {
    plane.create(
        "/api/v1/namespaces",
        &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}),
    )?;
    Ok(())
}

/// Creates the ClusterRole `name` with `rules`.
pub fn cluster_role(plane: &ControlPlane, name: &str, rules: &[Value]) -> Result<(), Error> {
    plane.create(
        &format!("/apis/{RBAC}/v1/clusterroles"),
        &json!({"apiVersion": format!("{RBAC}/v1"), "kind": "ClusterRole",
                "metadata": {"name": name}, "rules": rules}),
    )?;
    Ok(())
}

/// Creates the Role `name` with `rules` in `namespace`.
pub fn role(
    plane: &ControlPlane,
    namespace: &str,
    name: &str,
    rules: &[Value],
) -> Result<(), Error> {
    plane.create(
        &format!("/apis/{RBAC}/v1/namespaces/{namespace}/roles"),
        &json!({"apiVersion": format!("{RBAC}/v1"), "kind": "Role",
                "metadata": {"name": name}, "rules": rules}),
    )?;
    Ok(())
}

/// Binds the ClusterRole `role` to `subjects` cluster-wide (a ClusterRoleBinding named `name`).
pub fn cluster_role_binding(
    plane: &ControlPlane,
    name: &str,
    role: &str,
    subjects: &[Value],
) -> Result<(), Error> {
    plane.create(
        &format!("/apis/{RBAC}/v1/clusterrolebindings"),
        &json!({"apiVersion": format!("{RBAC}/v1"), "kind": "ClusterRoleBinding",
                "metadata": {"name": name},
                "roleRef": {"apiGroup": RBAC, "kind": "ClusterRole", "name": role},
                "subjects": subjects}),
    )?;
    Ok(())
}

/// Binds `role` (`kind` `Role` or `ClusterRole`) to `subjects` in `namespace` (a RoleBinding
/// named `name`).
pub fn role_binding(
    plane: &ControlPlane,
    namespace: &str,
    name: &str,
    (kind, role): (&str, &str),
    subjects: &[Value],
) -> Result<(), Error> {
    plane.create(
        &format!("/apis/{RBAC}/v1/namespaces/{namespace}/rolebindings"),
        &json!({"apiVersion": format!("{RBAC}/v1"), "kind": "RoleBinding",
                "metadata": {"name": name},
                "roleRef": {"apiGroup": RBAC, "kind": kind, "name": role},
                "subjects": subjects}),
    )?;
    Ok(())
}
