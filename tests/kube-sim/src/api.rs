//! Resource requests: create, get, list, watch, update, patch, delete, deletecollection,
//! and the pod subresources (log, exec, attach).

use std::sync::Arc;

use base64::Engine;
use http::{Method, Request, Response};
use hyper::body::Incoming;
use serde_json::{json, Value};

use crate::auth::UserInfo;
use crate::http_util::{json_response, read_body, Body, Query};
use crate::patch::{self, PatchKind};
use crate::rendering::{metadata_only, Rendering};
use crate::resources::{to_table, ResourceDef};
use crate::routes::ResourceRoute;
use crate::selectors::{FieldSelector, LabelSelector, ListFilter};
use crate::state::SimState;
use crate::status::{success_status, ApiError};
use crate::{exec, logs, watch};

fn parse_filter(query: &Query) -> Result<ListFilter, ApiError> {
    Ok(ListFilter {
        labels: LabelSelector::parse(query.get("labelSelector").unwrap_or_default())?,
        fields: FieldSelector::parse(query.get("fieldSelector").unwrap_or_default())?,
    })
}

fn parse_object(content_type: &str, body: &[u8]) -> Result<Value, ApiError> {
    let media = content_type.split(';').next().unwrap_or_default().trim();
    if media == crate::protobuf::MEDIA_TYPE {
        return crate::protobuf::decode(body);
    }
    if !matches!(media, "" | "application/json" | "application/yaml" | "*/*") {
        return Err(ApiError::unsupported_media_type(media));
    }
    let yaml = media == "application/yaml";
    let parsed = if yaml {
        serde_yaml_ng::from_slice::<Value>(body).map_err(|e| e.to_string())
    } else {
        serde_json::from_slice::<Value>(body).map_err(|e| e.to_string())
    };
    parsed.map_err(|e| ApiError::bad_request(format!("error decoding request body: {e}")))
}

fn header<'a>(req: &'a Request<Incoming>, name: &str) -> &'a str {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

/// Handles a resource request.
pub(crate) async fn handle(
    state: &Arc<SimState>,
    req: Request<Incoming>,
    route: ResourceRoute,
    query: Query,
    user: &UserInfo,
) -> Result<Response<Body>, ApiError> {
    let def = route.def;
    if def.kind == "SelfSubjectReview" {
        return self_subject_review(req, user);
    }
    let ns = route.namespace.as_deref();
    if def.namespaced && route.name.is_some() && ns.is_none() {
        return Err(ApiError::path_not_found());
    }
    let rendering = Rendering::negotiate(header(&req, "accept"), &query);
    let method = req.method().clone();
    match (&method, route.name.as_deref(), route.subresource.as_deref()) {
        (_, Some(name), Some("exec" | "attach")) if def.kind == "Pod" => {
            let pod = state.store.get(def, ns, name)?;
            let attach = route.subresource.as_deref() == Some("attach");
            exec::handle(state.clone(), req, pod, &query, attach).await
        }
        (&Method::GET, Some(name), Some("log")) => {
            let pod = state.store.get(def, ns, name)?;
            logs::handle(state, &pod, &query)
        }
        (&Method::GET, None, None) if route.watch_prefix || query.flag("watch") => {
            watch::handle(state, def, ns, parse_filter(&query)?, &query, rendering)
        }
        (&Method::GET, None, None) => list(state, def, ns, &query, &rendering),
        (&Method::GET, Some(name), None | Some("status")) => {
            if route.watch_prefix {
                let mut filter = parse_filter(&query)?;
                filter.fields = FieldSelector::parse(&format!("metadata.name={name}"))?;
                return watch::handle(state, def, ns, filter, &query, rendering);
            }
            let obj = state.store.get(def, ns, name)?;
            let rv = obj
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            Ok(json_response(200, &rendering.one(def, &obj, &rv)))
        }
        (&Method::GET, Some(name), Some("scale")) => {
            Ok(json_response(200, &scale(&state.store.get(def, ns, name)?)))
        }
        (&Method::POST, None, None) => {
            let content_type = header(&req, "content-type").to_string();
            let body = read_body(req.into_body()).await?;
            let obj = parse_object(&content_type, &body)?;
            if query.get("dryRun").is_some() {
                return Ok(json_response(201, &obj));
            }
            let created = state.store.create(def, ns, obj)?;
            Ok(json_response(201, &rendering.one(def, &created, "")))
        }
        (&Method::PUT, Some(name), sub @ (None | Some("status" | "scale"))) => {
            let content_type = header(&req, "content-type").to_string();
            let body = read_body(req.into_body()).await?;
            let mut obj = parse_object(&content_type, &body)?;
            if sub == Some("scale") {
                let mut current = state.store.get(def, ns, name)?;
                current["spec"]["replicas"] =
                    obj.pointer("/spec/replicas").cloned().unwrap_or(json!(1));
                obj = current;
            }
            let updated = state.store.update(def, ns, name, obj, sub)?;
            Ok(json_response(
                200,
                &if sub == Some("scale") {
                    scale(&updated)
                } else {
                    rendering.one(def, &updated, "")
                },
            ))
        }
        (&Method::PATCH, Some(name), sub @ (None | Some("status" | "scale"))) => {
            let kind = PatchKind::from_content_type(header(&req, "content-type"))?;
            let body = read_body(req.into_body()).await?;
            let patch_doc = patch::parse_body(kind, &body)?;
            let patched = patch_object(state, def, ns, name, kind, &patch_doc, sub)?;
            Ok(json_response(
                200,
                &if sub == Some("scale") {
                    scale(&patched)
                } else {
                    rendering.one(def, &patched, "")
                },
            ))
        }
        (&Method::DELETE, Some(name), None) => {
            let deleted = state.store.delete(def, ns, name)?;
            if def.kind == "Pod" {
                let uid = deleted
                    .pointer("/metadata/uid")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                state.attach.forget_pod(uid);
            }
            if def.kind == "Pod" || def.kind == "Namespace" {
                return Ok(json_response(200, &deleted));
            }
            let mut status = success_status();
            status["details"] = json!({
                "name": name,
                "group": def.group,
                "kind": def.plural,
                "uid": deleted.pointer("/metadata/uid").cloned().unwrap_or(Value::Null),
            });
            Ok(json_response(200, &status))
        }
        (&Method::DELETE, None, None) => {
            let filter = parse_filter(&query)?;
            let (items, _) = state.store.list(def, ns, &filter);
            let mut deleted = Vec::new();
            for item in items {
                let name = item
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                let item_ns = item
                    .pointer("/metadata/namespace")
                    .and_then(Value::as_str)
                    .map(str::to_string);
                if let Ok(obj) = state.store.delete(def, item_ns.as_deref(), &name) {
                    deleted.push(obj);
                }
            }
            let rv = state.store.resource_version().to_string();
            Ok(json_response(200, &list_object(def, deleted, &rv, None)))
        }
        _ => Err(ApiError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource ({method} {})",
            def.group_resource()
        ))),
    }
}

/// `kubectl auth whoami`: reports the effective user (after impersonation).
fn self_subject_review(
    req: Request<Incoming>,
    user: &UserInfo,
) -> Result<Response<Body>, ApiError> {
    if req.method() != Method::POST {
        return Err(ApiError::method_not_allowed(
            "selfsubjectreviews only support create",
        ));
    }
    let mut user_info = json!({"username": user.username, "groups": user.groups});
    if !user.uid.is_empty() {
        user_info["uid"] = json!(user.uid);
    }
    if !user.extra.is_empty() {
        user_info["extra"] = json!(user.extra);
    }
    Ok(json_response(
        201,
        &json!({
            "kind": "SelfSubjectReview",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"creationTimestamp": null},
            "status": {"userInfo": user_info},
        }),
    ))
}

fn patch_object(
    state: &SimState,
    def: &'static ResourceDef,
    ns: Option<&str>,
    name: &str,
    kind: PatchKind,
    patch_doc: &Value,
    sub: Option<&str>,
) -> Result<Value, ApiError> {
    let current = match state.store.get(def, ns, name) {
        Ok(current) => current,
        Err(not_found) if kind == PatchKind::Apply && not_found.code == 404 && sub.is_none() => {
            let mut obj = patch_doc.clone();
            obj["metadata"]["name"] = json!(name);
            return state.store.create(def, ns, obj);
        }
        Err(e) => return Err(e),
    };
    let target = if sub == Some("scale") {
        scale(&current)
    } else {
        current.clone()
    };
    let mut patched = patch::apply(kind, &target, patch_doc)?;
    if sub == Some("scale") {
        let mut obj = current.clone();
        obj["spec"]["replicas"] = patched
            .pointer("/spec/replicas")
            .cloned()
            .unwrap_or(json!(1));
        patched = obj;
    }
    if kind != PatchKind::Apply {
        // A patch that carries no resourceVersion applies to the latest object.
        let sent_rv = patched.pointer("/metadata/resourceVersion")
            != current.pointer("/metadata/resourceVersion");
        if !sent_rv {
            if let Some(m) = patched["metadata"].as_object_mut() {
                m.remove("resourceVersion");
            }
        }
    } else if let Some(m) = patched["metadata"].as_object_mut() {
        m.remove("resourceVersion");
    }
    state
        .store
        .update(def, ns, name, patched, sub.filter(|s| *s == "status"))
}

fn scale(obj: &Value) -> Value {
    let replicas = obj.pointer("/spec/replicas").cloned().unwrap_or(json!(1));
    let ready = obj.pointer("/status/replicas").cloned().unwrap_or(json!(0));
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": obj.pointer("/metadata/name"),
            "namespace": obj.pointer("/metadata/namespace"),
            "uid": obj.pointer("/metadata/uid"),
            "resourceVersion": obj.pointer("/metadata/resourceVersion"),
            "creationTimestamp": obj.pointer("/metadata/creationTimestamp"),
        },
        "spec": {"replicas": replicas},
        "status": {"replicas": ready, "selector": ""},
    })
}

fn list_object(
    def: &ResourceDef,
    items: Vec<Value>,
    rv: &str,
    continue_token: Option<String>,
) -> Value {
    let mut metadata = json!({"resourceVersion": rv});
    if let Some(token) = continue_token {
        metadata["continue"] = json!(token);
    }
    json!({"kind": format!("{}List", def.kind), "apiVersion": def.api_version(), "metadata": metadata, "items": items})
}

fn list(
    state: &SimState,
    def: &'static ResourceDef,
    ns: Option<&str>,
    query: &Query,
    rendering: &Rendering,
) -> Result<Response<Body>, ApiError> {
    let filter = parse_filter(query)?;
    let (items, rv) = state.store.list(def, ns, &filter);
    let offset = match query.get("continue").filter(|c| !c.is_empty()) {
        Some(token) => base64::engine::general_purpose::STANDARD
            .decode(token)
            .ok()
            .and_then(|raw| String::from_utf8(raw).ok())
            .and_then(|s| {
                s.strip_prefix("offset:")
                    .and_then(|n| n.parse::<usize>().ok())
            })
            .ok_or_else(|| ApiError::bad_request("invalid continue token"))?,
        None => 0,
    };
    let limit = query
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .filter(|l| *l > 0);
    let remaining: Vec<Value> = items.into_iter().skip(offset).collect();
    let (page, continue_token) = match limit {
        Some(limit) if remaining.len() > limit => (
            remaining[..limit].to_vec(),
            Some(
                base64::engine::general_purpose::STANDARD
                    .encode(format!("offset:{}", offset + limit)),
            ),
        ),
        _ => (remaining, None),
    };
    let rv = rv.to_string();
    let body = match rendering {
        Rendering::Table(include) => {
            let mut table = to_table(def, &page, &rv, include);
            if let Some(token) = continue_token {
                table["metadata"]["continue"] = json!(token);
            }
            table
        }
        Rendering::Metadata => {
            let mut list = list_object(
                def,
                page.iter().map(metadata_only).collect(),
                &rv,
                continue_token,
            );
            list["kind"] = json!("PartialObjectMetadataList");
            list["apiVersion"] = json!("meta.k8s.io/v1");
            list
        }
        Rendering::Object => list_object(def, page, &rv, continue_token),
    };
    Ok(json_response(200, &body))
}
