//! Kubernetes request info (verb, group, version, namespace, resource, name, selectors) from an HTTP method and request-target, exactly as kube-apiserver derives it.
