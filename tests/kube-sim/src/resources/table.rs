//! `kubectl get` tables (`Accept: application/json;as=Table;v=v1;g=meta.k8s.io`).

use serde_json::{json, Value};

use super::ResourceDef;
use crate::clock::age;

struct Column {
    name: &'static str,
    kind: &'static str,
    format: &'static str,
    priority: u8,
    description: &'static str,
}

const fn col(
    name: &'static str,
    kind: &'static str,
    priority: u8,
    description: &'static str,
) -> Column {
    Column {
        name,
        kind,
        format: "",
        priority,
        description,
    }
}

fn columns(def: &ResourceDef) -> Vec<Column> {
    let name = Column {
        format: "name",
        ..col(
            "Name",
            "string",
            0,
            "Name must be unique within a namespace.",
        )
    };
    let age_col = col("Age", "string", 0, "CreationTimestamp is a timestamp representing the server time when this object was created.");
    match def.kind {
        "Pod" => vec![
            name,
            col("Ready", "string", 0, "The aggregate readiness state of this pod for accepting traffic."),
            col("Status", "string", 0, "The aggregate status of the containers in this pod."),
            col("Restarts", "string", 0, "The number of times the containers in this pod have been restarted."),
            age_col,
            col("IP", "string", 1, "IP address allocated to the pod."),
            col("Node", "string", 1, "Name of the Node this pod runs on."),
        ],
        "Namespace" => vec![name, col("Status", "string", 0, "The status of the namespace"), age_col],
        "ConfigMap" => vec![name, col("Data", "string", 0, "Number of keys."), age_col],
        "Secret" => vec![name, col("Type", "string", 0, "The type of the secret"), col("Data", "string", 0, "Number of keys."), age_col],
        "Service" => vec![
            name,
            col("Type", "string", 0, "The type of the service."),
            col("Cluster-IP", "string", 0, "The cluster IP of the service."),
            col("External-IP", "string", 0, "The external IP of the service."),
            col("Port(s)", "string", 0, "The ports of the service."),
            age_col,
        ],
        "Deployment" => vec![
            name,
            col("Ready", "string", 0, "Number of the pod with ready state"),
            col("Up-to-date", "string", 0, "Total number of non-terminated pods targeted by this deployment that have the desired template spec."),
            col("Available", "string", 0, "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment."),
            age_col,
        ],
        "Node" => vec![
            name,
            col("Status", "string", 0, "The status of the node"),
            col("Roles", "string", 0, "The roles of the node"),
            age_col,
            col("Version", "string", 0, "Kubelet Version reported by the node."),
        ],
        "Event" => vec![
            col("Last Seen", "string", 0, "Time since the event was last seen"),
            col("Type", "string", 0, "Type of this event"),
            col("Reason", "string", 0, "Short, machine understandable string"),
            col("Object", "string", 0, "The object this event is about"),
            col("Message", "string", 0, "A human-readable description"),
        ],
        _ => vec![name, age_col],
    }
}

fn text(obj: &Value, pointer: &str) -> String {
    match obj.pointer(pointer) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

fn count(obj: &Value, pointer: &str) -> usize {
    obj.pointer(pointer)
        .and_then(Value::as_object)
        .map_or(0, |m| m.len())
}

fn cells(def: &ResourceDef, obj: &Value) -> Vec<Value> {
    let name = json!(text(obj, "/metadata/name"));
    let created = age(&text(obj, "/metadata/creationTimestamp"));
    match def.kind {
        "Pod" => {
            let statuses = obj
                .pointer("/status/containerStatuses")
                .and_then(Value::as_array);
            let total = obj
                .pointer("/spec/containers")
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            let ready = statuses.map_or(0, |s| {
                s.iter().filter(|c| c["ready"] == json!(true)).count()
            });
            let restarts: i64 = statuses.map_or(0, |s| {
                s.iter().filter_map(|c| c["restartCount"].as_i64()).sum()
            });
            vec![
                name,
                json!(format!("{ready}/{total}")),
                json!(text(obj, "/status/phase")),
                json!(restarts),
                json!(created),
                json!(or_none(text(obj, "/status/podIP"))),
                json!(or_none(text(obj, "/spec/nodeName"))),
            ]
        }
        "Namespace" => vec![name, json!(text(obj, "/status/phase")), json!(created)],
        "ConfigMap" => vec![
            name,
            json!(count(obj, "/data") + count(obj, "/binaryData")),
            json!(created),
        ],
        "Secret" => vec![
            name,
            json!(text(obj, "/type")),
            json!(count(obj, "/data")),
            json!(created),
        ],
        "Service" => {
            let ports = obj
                .pointer("/spec/ports")
                .and_then(Value::as_array)
                .map(|ports| {
                    ports
                        .iter()
                        .map(|p| format!("{}/{}", text(p, "/port"), text(p, "/protocol")))
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default();
            vec![
                name,
                json!(text(obj, "/spec/type")),
                json!(or_none(text(obj, "/spec/clusterIP"))),
                json!("<none>"),
                json!(or_none(ports)),
                json!(created),
            ]
        }
        "Deployment" => vec![
            name,
            json!(format!(
                "{}/{}",
                num(obj, "/status/readyReplicas"),
                num(obj, "/spec/replicas")
            )),
            json!(num(obj, "/status/updatedReplicas")),
            json!(num(obj, "/status/availableReplicas")),
            json!(created),
        ],
        "Node" => vec![
            name,
            json!("Ready"),
            json!("<none>"),
            json!(created),
            json!(text(obj, "/status/nodeInfo/kubeletVersion")),
        ],
        "Event" => vec![
            json!(age(&text(obj, "/lastTimestamp"))),
            json!(text(obj, "/type")),
            json!(text(obj, "/reason")),
            json!(format!(
                "{}/{}",
                text(obj, "/involvedObject/kind").to_lowercase(),
                text(obj, "/involvedObject/name")
            )),
            json!(text(obj, "/message")),
        ],
        _ => vec![name, json!(created)],
    }
}

fn num(obj: &Value, pointer: &str) -> i64 {
    obj.pointer(pointer).and_then(Value::as_i64).unwrap_or(0)
}

fn or_none(s: String) -> String {
    if s.is_empty() {
        "<none>".into()
    } else {
        s
    }
}

/// The row object: `PartialObjectMetadata` unless the client asked for the full object.
fn row_object(obj: &Value, include_object: &str) -> Value {
    match include_object {
        "None" => Value::Null,
        "Object" => obj.clone(),
        _ => json!({
            "kind": "PartialObjectMetadata",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": obj.get("metadata").cloned().unwrap_or(json!({})),
        }),
    }
}

/// Builds a `meta.k8s.io/v1` Table of `objects`.
pub fn to_table(
    def: &ResourceDef,
    objects: &[Value],
    resource_version: &str,
    include_object: &str,
) -> Value {
    let column_definitions: Vec<Value> = columns(def)
        .iter()
        .map(|c| json!({"name": c.name, "type": c.kind, "format": c.format, "description": c.description, "priority": c.priority}))
        .collect();
    let rows: Vec<Value> = objects
        .iter()
        .map(|obj| json!({"cells": cells(def, obj), "object": row_object(obj, include_object)}))
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": column_definitions,
        "rows": rows,
    })
}
