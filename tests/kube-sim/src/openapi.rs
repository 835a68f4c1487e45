//! OpenAPI v3 documents (`/openapi/v3` and `/openapi/v3/{api/v1|apis/g/v}`): enough for
//! `kubectl explain`, and for `kubectl apply` to see that the server validates fields
//! itself (`fieldValidation`) and computes strategic merge patches from its built-in types.

use serde_json::{json, Map, Value};

use crate::resources::{self, ResourceDef};

const HASH: &str = "6b7562652d73696d";
const OBJECT_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";

fn gv_key(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// `GET /openapi/v3`: the index of per-group-version documents.
pub(crate) fn root() -> Value {
    let mut paths = Map::new();
    for (group, version) in resources::group_versions() {
        let key = gv_key(group, version);
        paths.insert(
            key.clone(),
            json!({"serverRelativeURL": format!("/openapi/v3/{key}?hash={HASH}")}),
        );
    }
    json!({"paths": paths})
}

fn schema_name(def: &ResourceDef) -> String {
    match def.group {
        "" => format!("io.k8s.api.core.v1.{}", def.kind),
        "apps" => format!("io.k8s.api.apps.v1.{}", def.kind),
        group => {
            let reversed: Vec<&str> = group.split('.').rev().collect();
            format!("{}.{}.{}", reversed.join("."), def.version, def.kind)
        }
    }
}

fn gvk(def: &ResourceDef) -> Value {
    json!({"group": def.group, "version": def.version, "kind": def.kind})
}

fn string_map(description: &str) -> Value {
    json!({"type": "object", "description": description, "additionalProperties": {"type": "string", "default": ""}})
}

fn free_object(description: &str) -> Value {
    json!({"type": "object", "description": description, "x-kubernetes-preserve-unknown-fields": true})
}

fn kind_schema(def: &ResourceDef) -> Value {
    let mut properties = json!({
        "apiVersion": {"type": "string", "description": "APIVersion defines the versioned schema of this representation of an object."},
        "kind": {"type": "string", "description": "Kind is a string value representing the REST resource this object represents."},
        "metadata": {"allOf": [{"$ref": format!("#/components/schemas/{OBJECT_META}")}], "default": {}, "description": "Standard object's metadata."},
    });
    match def.kind {
        "ConfigMap" => {
            properties["data"] = string_map("Data contains the configuration data.");
            properties["binaryData"] = string_map("BinaryData contains the binary data.");
            properties["immutable"] = json!({"type": "boolean", "description": "Immutable, if set to true, ensures that data stored in the ConfigMap cannot be updated."});
        }
        "Secret" => {
            properties["data"] = string_map("Data contains the secret data, base64 encoded.");
            properties["stringData"] =
                string_map("stringData allows specifying non-binary secret data in string form.");
            properties["type"] = json!({"type": "string", "description": "Used to facilitate programmatic handling of secret data."});
        }
        "Event" => {
            for field in ["reason", "message", "type"] {
                properties[field] =
                    json!({"type": "string", "description": format!("The event's {field}.")});
            }
            properties["involvedObject"] = free_object("The object that this event is about.");
        }
        _ => {
            properties["spec"] = free_object(&format!(
                "Spec defines the desired state of the {}.",
                def.kind
            ));
            properties["status"] = free_object(&format!(
                "Status is the most recently observed status of the {}.",
                def.kind
            ));
        }
    }
    json!({
        "type": "object",
        "description": format!("{} is a {} served by kube-sim.", def.kind, def.singular),
        "properties": properties,
        "x-kubernetes-group-version-kind": [gvk(def)],
    })
}

fn object_meta() -> Value {
    json!({
        "type": "object",
        "description": "ObjectMeta is metadata that all persisted resources must have.",
        "properties": {
            "name": {"type": "string", "description": "Name must be unique within a namespace."},
            "generateName": {"type": "string", "description": "Optional prefix used to generate a unique name."},
            "namespace": {"type": "string", "description": "Namespace defines the space within which each name must be unique."},
            "labels": string_map("Map of string keys and values that can be used to organize and categorize objects."),
            "annotations": string_map("Annotations is an unstructured key value map."),
            "uid": {"type": "string", "description": "UID is the unique in time and space value for this object."},
            "resourceVersion": {"type": "string", "description": "An opaque value that represents the internal version of this object."},
            "generation": {"type": "integer", "format": "int64", "description": "A sequence number representing a specific generation of the desired state."},
            "creationTimestamp": {"type": "string", "format": "date-time", "description": "CreationTimestamp is a timestamp representing the server time when this object was created."},
            "finalizers": {"type": "array", "items": {"type": "string", "default": ""}, "description": "Finalizers."},
        },
    })
}

fn query_param(name: &str) -> Value {
    json!({"name": name, "in": "query", "description": format!("{name} query parameter"), "schema": {"type": "string", "uniqueItems": true}})
}

fn operation(def: &ResourceDef, action: &str, verb: &str, schema: &str, patch: bool) -> Value {
    let response = json!({"200": {"description": "OK", "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}}});
    let mut op = json!({
        "operationId": format!("{action}{}", def.kind),
        "tags": [def.api_version()],
        "responses": response,
        "x-kubernetes-action": verb,
        "x-kubernetes-group-version-kind": gvk(def),
    });
    let body_schema = json!({"schema": {"$ref": format!("#/components/schemas/{schema}")}});
    if matches!(verb, "post" | "put" | "patch") {
        op["parameters"] = json!([
            query_param("dryRun"),
            query_param("fieldManager"),
            query_param("fieldValidation"),
            query_param("pretty")
        ]);
    }
    if patch {
        // No `application/strategic-merge-patch+json` here on purpose: kubectl then
        // computes strategic merge patches from its compiled-in types, which carry the
        // real merge keys, instead of from this small schema.
        op["requestBody"] = json!({"content": {
            "application/json-patch+json": {"schema": {"type": "object"}},
            "application/merge-patch+json": {"schema": {"type": "object"}},
            "application/apply-patch+yaml": {"schema": {"type": "object"}},
        }, "required": true});
    } else if verb == "post" || verb == "put" {
        op["requestBody"] = json!({"content": {"application/json": body_schema}, "required": true});
    }
    op
}

/// `GET /openapi/v3/{api/v1|apis/group/version}`, if served.
pub(crate) fn group_version(group: &str, version: &str) -> Option<Value> {
    let defs: Vec<&ResourceDef> = resources::in_group_version(group, version).collect();
    if defs.is_empty() {
        return None;
    }
    let mut paths = Map::new();
    let mut schemas = Map::new();
    schemas.insert(OBJECT_META.into(), object_meta());
    for def in defs {
        let schema = schema_name(def);
        schemas.insert(schema.clone(), kind_schema(def));
        let base = if def.namespaced {
            format!("{}/namespaces/{{namespace}}/{}", def.gv_path(), def.plural)
        } else {
            format!("{}/{}", def.gv_path(), def.plural)
        };
        let params = json!([query_param("pretty")]);
        paths.insert(
            base.clone(),
            json!({
                "get": operation(def, "list", "list", &schema, false),
                "post": operation(def, "create", "post", &schema, false),
                "parameters": params,
            }),
        );
        paths.insert(
            format!("{base}/{{name}}"),
            json!({
                "get": operation(def, "read", "get", &schema, false),
                "put": operation(def, "replace", "put", &schema, false),
                "patch": operation(def, "patch", "patch", &schema, true),
                "delete": operation(def, "delete", "delete", &schema, false),
                "parameters": params,
            }),
        );
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": format!("v1.{}.0", crate::discovery::SERVER_MINOR)},
        "paths": paths,
        "components": {"schemas": schemas},
    }))
}
