//! The objects a fresh simulator starts with: the usual namespaces, one node, and the
//! pod `default/demo` (container `main`) so that `kubectl exec -it demo -- sh` works.

use serde_json::json;

use crate::resources;
use crate::status::ApiError;
use crate::store::Store;

/// Creates the seed objects.
pub(crate) fn seed(store: &Store) -> Result<(), ApiError> {
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        store.create(
            resources::namespaces(),
            None,
            json!({"metadata": {"name": ns}}),
        )?;
    }
    store.create(
        resources::nodes(),
        None,
        json!({"metadata": {"name": resources::defaults_node_name(), "labels": {"kubernetes.io/hostname": resources::defaults_node_name(), "kubernetes.io/os": "linux"}}}),
    )?;
    store.create(
        resources::pods(),
        Some("default"),
        json!({
            "metadata": {"name": "demo", "labels": {"app": "demo"}},
            "spec": {"containers": [{"name": "main", "image": "busybox:1.36", "command": ["sh"], "stdin": true, "tty": true}]},
        }),
    )?;
    Ok(())
}
