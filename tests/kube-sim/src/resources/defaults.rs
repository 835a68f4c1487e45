//! Server-side defaulting: what a real cluster fills in when an object is created or
//! changed (a pod becomes Running, a service gets a cluster IP, …).

use base64::Engine;
use serde_json::{json, Map, Value};

use super::ResourceDef;

/// The single simulated node every pod runs on.
pub(super) const NODE_NAME: &str = "kube-sim-node";

/// Fills in defaults and status for a newly created object. `seq` is a per-object
/// number (its creation resourceVersion) used to derive IP addresses.
pub fn on_create(def: &ResourceDef, obj: &mut Value, seq: u64, now: &str) {
    match (def.group, def.kind) {
        ("", "Pod") => pod(obj, seq, now),
        ("", "Service") => service(obj, seq),
        ("", "Namespace") => namespace(obj),
        ("", "Secret") => secret(obj),
        ("", "Node") => node(obj, now),
        ("apps", "Deployment") => deployment(obj, now),
        _ => {}
    }
}

/// Re-derives status after an update (e.g. a deployment's replica counts).
pub fn on_update(def: &ResourceDef, obj: &mut Value, now: &str) {
    match (def.group, def.kind) {
        ("apps", "Deployment") => deployment(obj, now),
        ("", "Secret") => secret(obj),
        _ => {}
    }
}

fn object<'a>(value: &'a mut Value, key: &str) -> Option<&'a mut Map<String, Value>> {
    let map = value.as_object_mut()?;
    let entry = map.entry(key.to_string()).or_insert_with(|| json!({}));
    if !entry.is_object() {
        *entry = json!({});
    }
    entry.as_object_mut()
}

fn pod(obj: &mut Value, seq: u64, now: &str) {
    let ip = format!("10.244.{}.{}", (seq / 250) % 250, seq % 250 + 2);
    let mut statuses = Vec::new();
    if let Some(spec) = object(obj, "spec") {
        spec.entry("nodeName").or_insert_with(|| json!(NODE_NAME));
        spec.entry("restartPolicy")
            .or_insert_with(|| json!("Always"));
        spec.entry("dnsPolicy")
            .or_insert_with(|| json!("ClusterFirst"));
        spec.entry("schedulerName")
            .or_insert_with(|| json!("default-scheduler"));
        spec.entry("serviceAccountName")
            .or_insert_with(|| json!("default"));
        spec.entry("terminationGracePeriodSeconds")
            .or_insert_with(|| json!(30));
        if let Some(containers) = spec.get_mut("containers").and_then(Value::as_array_mut) {
            for (index, container) in containers.iter_mut().enumerate() {
                let Some(container) = container.as_object_mut() else {
                    continue;
                };
                let image = container
                    .get("image")
                    .and_then(Value::as_str)
                    .unwrap_or("busybox")
                    .to_string();
                let policy = if image.ends_with(":latest") || !image.contains(':') {
                    "Always"
                } else {
                    "IfNotPresent"
                };
                container
                    .entry("imagePullPolicy")
                    .or_insert_with(|| json!(policy));
                container
                    .entry("terminationMessagePath")
                    .or_insert_with(|| json!("/dev/termination-log"));
                container
                    .entry("terminationMessagePolicy")
                    .or_insert_with(|| json!("File"));
                container.entry("resources").or_insert_with(|| json!({}));
                let name = container
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or("main")
                    .to_string();
                statuses.push(json!({
                    "name": name,
                    "image": image,
                    "imageID": format!("docker.io/library/{image}@sha256:{:064x}", seq * 31 + index as u64),
                    "containerID": format!("containerd://{:064x}", seq * 7919 + index as u64),
                    "ready": true,
                    "started": true,
                    "restartCount": 0,
                    "state": {"running": {"startedAt": now}},
                    "lastState": {},
                }));
            }
        }
    }
    let condition = |kind: &str| json!({"type": kind, "status": "True", "lastProbeTime": null, "lastTransitionTime": now});
    if let Some(map) = obj.as_object_mut() {
        map.insert(
            "status".into(),
            json!({
                "phase": "Running",
                "conditions": [condition("PodReadyToStartContainers"), condition("Initialized"), condition("Ready"), condition("ContainersReady"), condition("PodScheduled")],
                "hostIP": "192.168.49.2",
                "hostIPs": [{"ip": "192.168.49.2"}],
                "podIP": ip,
                "podIPs": [{"ip": ip}],
                "startTime": now,
                "containerStatuses": statuses,
                "qosClass": "BestEffort",
            }),
        );
    }
}

fn service(obj: &mut Value, seq: u64) {
    let ip = format!("10.96.{}.{}", (seq / 250) % 250, seq % 250 + 1);
    if let Some(spec) = object(obj, "spec") {
        spec.entry("type").or_insert_with(|| json!("ClusterIP"));
        spec.entry("sessionAffinity")
            .or_insert_with(|| json!("None"));
        let headless = spec.get("clusterIP").and_then(Value::as_str) == Some("None");
        if !headless {
            spec.insert("clusterIP".into(), json!(ip));
            spec.insert("clusterIPs".into(), json!([ip]));
        }
        if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
            for port in ports.iter_mut().filter_map(Value::as_object_mut) {
                port.entry("protocol").or_insert_with(|| json!("TCP"));
                if let Some(number) = port.get("port").cloned() {
                    port.entry("targetPort").or_insert(number);
                }
            }
        }
    }
    if let Some(map) = obj.as_object_mut() {
        map.entry("status")
            .or_insert_with(|| json!({"loadBalancer": {}}));
    }
}

fn namespace(obj: &mut Value) {
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if let Some(labels) = obj
        .pointer_mut("/metadata")
        .and_then(|m| object(m, "labels"))
    {
        labels.insert("kubernetes.io/metadata.name".into(), json!(name));
    }
    if let Some(map) = obj.as_object_mut() {
        map.insert("spec".into(), json!({"finalizers": ["kubernetes"]}));
        map.insert("status".into(), json!({"phase": "Active"}));
    }
}

fn secret(obj: &mut Value) {
    let Some(map) = obj.as_object_mut() else {
        return;
    };
    map.entry("type").or_insert_with(|| json!("Opaque"));
    if let Some(Value::Object(string_data)) = map.remove("stringData") {
        let data = map.entry("data").or_insert_with(|| json!({}));
        if let Some(data) = data.as_object_mut() {
            for (key, value) in string_data {
                let text = value.as_str().unwrap_or_default().to_string();
                data.insert(
                    key,
                    json!(base64::engine::general_purpose::STANDARD.encode(text)),
                );
            }
        }
    }
}

fn node(obj: &mut Value, now: &str) {
    if let Some(map) = obj.as_object_mut() {
        map.insert(
            "status".into(),
            json!({
                "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "kubelet is posting ready status", "lastHeartbeatTime": now, "lastTransitionTime": now}],
                "addresses": [{"type": "InternalIP", "address": "192.168.49.2"}, {"type": "Hostname", "address": NODE_NAME}],
                "nodeInfo": {"kubeletVersion": "v1.37.0", "kubeProxyVersion": "v1.37.0", "operatingSystem": "linux", "architecture": "amd64", "containerRuntimeVersion": "containerd://1.7.0", "osImage": "kube-sim", "kernelVersion": "", "machineID": "", "systemUUID": "", "bootID": ""},
            }),
        );
    }
}

fn deployment(obj: &mut Value, now: &str) {
    let generation = obj
        .pointer("/metadata/generation")
        .cloned()
        .unwrap_or(json!(1));
    let mut replicas = json!(1);
    if let Some(spec) = object(obj, "spec") {
        replicas = spec.entry("replicas").or_insert_with(|| json!(1)).clone();
        spec.entry("revisionHistoryLimit")
            .or_insert_with(|| json!(10));
        spec.entry("progressDeadlineSeconds")
            .or_insert_with(|| json!(600));
        spec.entry("strategy").or_insert_with(|| {
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}})
        });
    }
    if let Some(map) = obj.as_object_mut() {
        map.insert(
            "status".into(),
            json!({
                "observedGeneration": generation,
                "replicas": replicas,
                "updatedReplicas": replicas,
                "readyReplicas": replicas,
                "availableReplicas": replicas,
                "conditions": [
                    {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable", "message": "Deployment has minimum availability.", "lastUpdateTime": now, "lastTransitionTime": now},
                    {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable", "message": "ReplicaSet has successfully progressed.", "lastUpdateTime": now, "lastTransitionTime": now}
                ],
            }),
        );
    }
}
