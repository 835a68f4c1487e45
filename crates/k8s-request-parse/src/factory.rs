//! kube-apiserver's `RequestInfoFactory.NewRequestInfo` with
//! `APIPrefixes = {api, apis}` and `GrouplessAPIPrefixes = {api}`.

use crate::error::{PathVerb, RequestInfoError};
use crate::go_text::{go_lossy_cow, go_string, go_to_lower};
use crate::list_options;
use crate::path::Segments;
use crate::query::ListQuery;
use crate::request_info::RequestInfo;
use crate::request_target;
use crate::validation::is_path_segment_name;

/// Derives the [`RequestInfo`] kube-apiserver would derive for an HTTP
/// `method` (case-sensitive, e.g. `GET`) and `request_target` (the
/// request-line target: path plus optional `?query`, exactly as received).
///
/// The path is percent-decoded before it is split (`%2F` separates
/// segments), never cleaned, and a leading `//` is still a path. The query
/// follows Go's `url.ParseQuery` (see [`query`](crate::query)).
///
/// # Errors
///
/// * [`RequestInfoError::InvalidTarget`] when Go's HTTP server would reject
///   the target with 400 (invalid `%` escape, control character, not a path).
/// * [`RequestInfoError::MissingResourceAfterPathVerb`] for `…/{version}/watch`
///   or `…/{version}/proxy` with nothing after it (kube-apiserver: 500); the
///   partial info is in [`RequestInfoError::partial_info`].
///
/// Never panics, whatever the input.
///
/// # Examples
///
/// ```
/// use k8s_request_parse::request_info;
///
/// let info = request_info("GET", "/api/v1/namespaces/default/pods?watch=true&labelSelector=app%3Dweb")?;
/// assert!(info.is_resource_request);
/// assert_eq!(info.verb, "watch");
/// assert_eq!(info.namespace, "default");
/// assert_eq!(info.resource, "pods");
/// assert_eq!(info.parts, Some(vec!["pods".to_string()]));
/// assert_eq!(info.label_selector, "app=web");
///
/// // A metadata.name field selector names the object of a list.
/// let info = request_info("GET", "/apis/apps/v1/deployments?fieldSelector=metadata.name%3Dweb")?;
/// assert_eq!((info.verb.as_str(), info.name.as_str()), ("list", "web"));
///
/// // Non-resource requests keep the lower-cased method as the verb.
/// let info = request_info("GET", "/healthz")?;
/// assert!(!info.is_resource_request);
/// assert_eq!((info.verb.as_str(), info.parts), ("get", None));
///
/// // kube-apiserver fails on a path verb with nothing after it; the partial
/// // info is still available.
/// let err = request_info("GET", "/api/v1/watch").unwrap_err();
/// assert_eq!(err.http_status(), 500);
/// assert_eq!(err.partial_info().map(|i| i.verb.as_str()), Some("get"));
/// # Ok::<(), k8s_request_parse::RequestInfoError>(())
/// ```
pub fn request_info(method: &str, request_target: &str) -> Result<RequestInfo, RequestInfoError> {
    let target = request_target::parse(method, request_target)?;

    // Start as a non-resource request.
    let mut info = RequestInfo {
        path: target.path.to_string(),
        ..RequestInfo::default()
    };

    let mut segments = Segments::new(&target.path);
    if !segments.has_at_least(3) {
        return Ok(with_method_verb(info, method));
    }
    let prefix = segments.next().unwrap_or_default();
    if prefix != "api" && prefix != "apis" {
        return Ok(with_method_verb(info, method));
    }
    info.api_prefix = prefix.to_string();

    if prefix == "apis" {
        // The prefix is consumed, so this asks for four segments in all.
        if !segments.has_at_least(3) {
            return Ok(with_method_verb(info, method));
        }
        info.api_group = segments.next().unwrap_or_default().to_string();
    }

    info.is_resource_request = true;
    info.api_version = segments.next().unwrap_or_default().to_string();

    // `/{version}/watch/…` and `/{version}/proxy/…`.
    let path_verb = match segments.peek(0) {
        Some("watch") => Some(PathVerb::Watch),
        Some("proxy") => Some(PathVerb::Proxy),
        _ => None,
    };
    let verb: &'static str = match path_verb {
        Some(verb) => {
            if !segments.has_at_least(2) {
                return Err(RequestInfoError::MissingResourceAfterPathVerb {
                    verb,
                    partial: Box::new(with_method_verb(info, method)),
                });
            }
            segments.next();
            verb.as_str()
        }
        None => match method {
            "POST" => "create",
            "GET" | "HEAD" => "get",
            "PUT" => "update",
            "PATCH" => "patch",
            "DELETE" => "delete",
            _ => "",
        },
    };

    // `/namespaces/{namespace}/{resource}/…`: the namespace becomes a scope,
    // unless the request is about the Namespace object itself (or its
    // `status`/`finalize` subresource).
    let mut ahead = segments;
    if let (Some("namespaces"), Some(namespace)) = (ahead.next(), ahead.next()) {
        info.namespace = namespace.to_string();
        if let Some(third) = ahead.next() {
            if third != "status" && third != "finalize" {
                segments.next();
                segments.next();
            }
        }
    }

    // resource/name/subresource/anything/else/kept/in/parts
    let mut parts = Vec::with_capacity(segments.count_remaining());
    parts.extend(segments.map(String::from));
    info.resource = parts.first().cloned().unwrap_or_default();
    if let Some(name) = parts.get(1) {
        info.name = name.clone();
    }
    if path_verb != Some(PathVerb::Proxy) {
        if let Some(subresource) = parts.get(2) {
            info.subresource = subresource.clone();
        }
    }
    info.parts = Some(parts);

    let raw_query: &str = &target.raw_query;
    let mut list_query = None;
    let mut verb = verb;

    // A get without a name is a list or a watch.
    if info.name.is_empty() && verb == "get" {
        let query = list_query.insert(ListQuery::scan(raw_query));
        let decision = list_options::decide(query);
        verb = if decision.watch { "watch" } else { "list" };
        if let Some(name) = decision.field_selector_name {
            if is_path_segment_name(&name) {
                info.name = go_string(&name);
            }
        }
    }

    // A delete without a name deletes the collection.
    if info.name.is_empty() && verb == "delete" {
        verb = "deletecollection";
    }
    info.verb = verb.to_string();

    // Raw selectors for collection verbs that did not come from the path.
    if path_verb.is_none() && matches!(verb, "list" | "watch" | "deletecollection") {
        let query = list_query.unwrap_or_else(|| ListQuery::scan(raw_query));
        if let Some(raw) = query.field_selector {
            info.field_selector = go_lossy_cow(raw).into_owned();
        }
        if let Some(raw) = query.label_selector {
            info.label_selector = go_lossy_cow(raw).into_owned();
        }
    }

    Ok(info)
}

/// Finishes a non-resource result (or the partial result of the path-verb
/// error): the verb is Go's `strings.ToLower` of the method.
fn with_method_verb(mut info: RequestInfo, method: &str) -> RequestInfo {
    info.verb = go_to_lower(method);
    info
}
