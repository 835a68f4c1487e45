//! Maps a request path onto what the simulator serves.

use crate::resources::{self, ResourceDef};

/// A resource request: `/api/v1/namespaces/default/pods/demo/exec` and friends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ResourceRoute {
    /// The resource type.
    pub def: &'static ResourceDef,
    /// The namespace from the URL, for namespaced resources.
    pub namespace: Option<String>,
    /// The object name, if the path names one.
    pub name: Option<String>,
    /// The subresource (`status`, `log`, `exec`, `attach`, `scale`).
    pub subresource: Option<String>,
    /// The deprecated `/watch/` path prefix was used.
    pub watch_prefix: bool,
}

/// What a path asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Route {
    /// `/version`
    Version,
    /// `/healthz`, `/livez`, `/readyz`
    Health,
    /// `/api`
    CoreVersions,
    /// `/apis`
    Groups,
    /// `/apis/{group}`
    Group(String),
    /// `/api/v1`, `/apis/{group}/{version}`
    ResourceList(String, String),
    /// `/openapi/v3`
    OpenApiRoot,
    /// `/openapi/v3/{api/v1|apis/g/v}`
    OpenApiGroupVersion(String, String),
    /// `/_sim/requests` (the simulator's debug endpoint)
    SimRequests,
    /// A resource request.
    Resource(ResourceRoute),
    /// Anything else.
    NotFound,
}

/// Parses a request path (without query).
pub(crate) fn route(path: &str) -> Route {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    match parts.as_slice() {
        ["version"] => Route::Version,
        ["healthz" | "livez" | "readyz", ..] => Route::Health,
        ["_sim", "requests"] => Route::SimRequests,
        ["api"] => Route::CoreVersions,
        ["api", version] => Route::ResourceList(String::new(), (*version).to_string()),
        ["api", version, rest @ ..] => resource_route("", version, rest),
        ["apis"] => Route::Groups,
        ["apis", group] => Route::Group((*group).to_string()),
        ["apis", group, version] => {
            Route::ResourceList((*group).to_string(), (*version).to_string())
        }
        ["apis", group, version, rest @ ..] => resource_route(group, version, rest),
        ["openapi", "v3"] => Route::OpenApiRoot,
        ["openapi", "v3", "api", version] => {
            Route::OpenApiGroupVersion(String::new(), (*version).to_string())
        }
        ["openapi", "v3", "apis", group, version] => {
            Route::OpenApiGroupVersion((*group).to_string(), (*version).to_string())
        }
        _ => Route::NotFound,
    }
}

fn resource_route(group: &str, version: &str, rest: &[&str]) -> Route {
    let (watch_prefix, rest) = match rest {
        ["watch", tail @ ..] => (true, tail),
        _ => (false, rest),
    };
    let namespaced_path = matches!(rest, ["namespaces", _, resource, ..]
        if !(group.is_empty() && matches!(*resource, "status" | "finalize") && rest.len() == 3));
    let (namespace, rest) = if namespaced_path {
        (Some(rest[1].to_string()), &rest[2..])
    } else {
        (None, rest)
    };
    let (plural, name, subresource) = match rest {
        [plural] => (*plural, None, None),
        [plural, name] => (*plural, Some(*name), None),
        [plural, name, sub] => (*plural, Some(*name), Some(*sub)),
        _ => return Route::NotFound,
    };
    let Some(def) = resources::find(group, version, plural) else {
        return Route::NotFound;
    };
    if namespace.is_some() && !def.namespaced {
        return Route::NotFound;
    }
    if let Some(sub) = subresource {
        if !def.has_subresource(sub) {
            return Route::NotFound;
        }
    }
    Route::Resource(ResourceRoute {
        def,
        namespace,
        name: name.map(str::to_string),
        subresource: subresource.map(str::to_string),
        watch_prefix,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resource(path: &str) -> ResourceRoute {
        match route(path) {
            Route::Resource(r) => r,
            other => panic!("{path}: {other:?}"),
        }
    }

    #[test]
    fn resource_paths() {
        let exec = resource("/api/v1/namespaces/default/pods/demo/exec");
        assert_eq!(
            (
                exec.def.plural,
                exec.namespace.as_deref(),
                exec.name.as_deref(),
                exec.subresource.as_deref()
            ),
            ("pods", Some("default"), Some("demo"), Some("exec"))
        );
        let ns = resource("/api/v1/namespaces/default");
        assert_eq!(
            (ns.def.plural, ns.name.as_deref()),
            ("namespaces", Some("default"))
        );
        let ns_status = resource("/api/v1/namespaces/default/status");
        assert_eq!(
            (ns_status.def.plural, ns_status.subresource.as_deref()),
            ("namespaces", Some("status"))
        );
        let all_pods = resource("/api/v1/pods");
        assert_eq!((all_pods.namespace, all_pods.name), (None, None));
        let deploy = resource("/apis/apps/v1/watch/namespaces/x/deployments");
        assert!(deploy.watch_prefix);
        assert_eq!(route("/api/v1/namespaces/default/nothing"), Route::NotFound);
        assert_eq!(
            route("/api/v1/namespaces/default/pods/a/b/c"),
            Route::NotFound
        );
        assert_eq!(route("/api/v1/namespaces/x/nodes"), Route::NotFound);
    }
}
