//! Decodes the Kubernetes protobuf encoding (`application/vnd.kubernetes.protobuf`) that
//! kubectl's typed clients send (`kubectl create configmap|secret|namespace|deployment|
//! service`, …) into JSON, for the built-in kinds the simulator serves. Only the fields
//! listed in the schemas below are kept; unknown fields are skipped. Zero values are
//! dropped, as JSON `omitempty` would.

use base64::Engine;
use serde_json::{json, Map, Value};
use time::OffsetDateTime;

use crate::status::ApiError;

/// The media type.
pub const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";
const MAGIC: &[u8] = b"k8s\0";
const MAX_DEPTH: usize = 32;

#[derive(Clone, Copy)]
enum Kind {
    Str,
    Bytes,
    Int,
    Bool,
    Msg(&'static [Field]),
    MapStr,
    MapBytes,
    Time,
    IntOrString,
}

#[derive(Clone, Copy)]
struct Field {
    num: u64,
    name: &'static str,
    kind: Kind,
    repeated: bool,
}

const fn f(num: u64, name: &'static str, kind: Kind) -> Field {
    Field {
        num,
        name,
        kind,
        repeated: false,
    }
}

const fn list(num: u64, name: &'static str, kind: Kind) -> Field {
    Field {
        num,
        name,
        kind,
        repeated: true,
    }
}

use Kind::{Bool, Bytes, Int, IntOrString, MapBytes, MapStr, Msg, Str, Time};

const OWNER_REFERENCE: &[Field] = &[
    f(5, "apiVersion", Str),
    f(1, "kind", Str),
    f(3, "name", Str),
    f(4, "uid", Str),
    f(6, "controller", Bool),
    f(7, "blockOwnerDeletion", Bool),
];
const OBJECT_META: &[Field] = &[
    f(1, "name", Str),
    f(2, "generateName", Str),
    f(3, "namespace", Str),
    f(5, "uid", Str),
    f(6, "resourceVersion", Str),
    f(7, "generation", Int),
    f(8, "creationTimestamp", Time),
    f(11, "labels", MapStr),
    f(12, "annotations", MapStr),
    list(13, "ownerReferences", Msg(OWNER_REFERENCE)),
    list(14, "finalizers", Str),
];
const REQUIREMENT: &[Field] = &[
    f(1, "key", Str),
    f(2, "operator", Str),
    list(3, "values", Str),
];
const LABEL_SELECTOR: &[Field] = &[
    f(1, "matchLabels", MapStr),
    list(2, "matchExpressions", Msg(REQUIREMENT)),
];
const CONTAINER_PORT: &[Field] = &[
    f(1, "name", Str),
    f(2, "hostPort", Int),
    f(3, "containerPort", Int),
    f(4, "protocol", Str),
    f(5, "hostIP", Str),
];
const ENV_VAR: &[Field] = &[f(1, "name", Str), f(2, "value", Str)];
const CONTAINER: &[Field] = &[
    f(1, "name", Str),
    f(2, "image", Str),
    list(3, "command", Str),
    list(4, "args", Str),
    f(5, "workingDir", Str),
    list(6, "ports", Msg(CONTAINER_PORT)),
    list(7, "env", Msg(ENV_VAR)),
    f(8, "resources", Msg(&[])),
    f(13, "terminationMessagePath", Str),
    f(20, "terminationMessagePolicy", Str),
    f(14, "imagePullPolicy", Str),
    f(16, "stdin", Bool),
    f(17, "stdinOnce", Bool),
    f(18, "tty", Bool),
];
const POD_SPEC: &[Field] = &[
    list(20, "initContainers", Msg(CONTAINER)),
    list(2, "containers", Msg(CONTAINER)),
    f(3, "restartPolicy", Str),
    f(4, "terminationGracePeriodSeconds", Int),
    f(6, "dnsPolicy", Str),
    f(7, "nodeSelector", MapStr),
    f(8, "serviceAccountName", Str),
    f(10, "nodeName", Str),
    f(16, "hostname", Str),
    f(19, "schedulerName", Str),
];
const POD_TEMPLATE: &[Field] = &[
    f(1, "metadata", Msg(OBJECT_META)),
    f(2, "spec", Msg(POD_SPEC)),
];
const POD: &[Field] = &[
    f(1, "metadata", Msg(OBJECT_META)),
    f(2, "spec", Msg(POD_SPEC)),
];
const CONFIG_MAP: &[Field] = &[
    f(1, "metadata", Msg(OBJECT_META)),
    f(4, "immutable", Bool),
    f(2, "data", MapStr),
    f(3, "binaryData", MapBytes),
];
const SECRET: &[Field] = &[
    f(1, "metadata", Msg(OBJECT_META)),
    f(5, "immutable", Bool),
    f(2, "data", MapBytes),
    f(4, "stringData", MapStr),
    f(3, "type", Str),
];
const NAMESPACE_SPEC: &[Field] = &[list(1, "finalizers", Str)];
const NAMESPACE: &[Field] = &[
    f(1, "metadata", Msg(OBJECT_META)),
    f(2, "spec", Msg(NAMESPACE_SPEC)),
];
const SERVICE_PORT: &[Field] = &[
    f(1, "name", Str),
    f(2, "protocol", Str),
    f(6, "appProtocol", Str),
    f(3, "port", Int),
    f(4, "targetPort", IntOrString),
    f(5, "nodePort", Int),
];
const SERVICE_SPEC: &[Field] = &[
    list(1, "ports", Msg(SERVICE_PORT)),
    f(2, "selector", MapStr),
    f(3, "clusterIP", Str),
    list(18, "clusterIPs", Str),
    f(4, "type", Str),
    list(5, "externalIPs", Str),
    f(7, "sessionAffinity", Str),
    f(10, "externalName", Str),
];
const SERVICE: &[Field] = &[
    f(1, "metadata", Msg(OBJECT_META)),
    f(2, "spec", Msg(SERVICE_SPEC)),
];
const DEPLOYMENT_SPEC: &[Field] = &[
    f(1, "replicas", Int),
    f(2, "selector", Msg(LABEL_SELECTOR)),
    f(3, "template", Msg(POD_TEMPLATE)),
    f(4, "strategy", Msg(&[])),
    f(5, "minReadySeconds", Int),
    f(6, "revisionHistoryLimit", Int),
    f(7, "paused", Bool),
    f(9, "progressDeadlineSeconds", Int),
];
const DEPLOYMENT: &[Field] = &[
    f(1, "metadata", Msg(OBJECT_META)),
    f(2, "spec", Msg(DEPLOYMENT_SPEC)),
];
const TYPE_META: &[Field] = &[f(1, "apiVersion", Str), f(2, "kind", Str)];
const UNKNOWN: &[Field] = &[
    f(1, "typeMeta", Msg(TYPE_META)),
    f(2, "raw", Bytes),
    f(3, "contentEncoding", Str),
    f(4, "contentType", Str),
];

fn schema_for(api_version: &str, kind: &str) -> Option<&'static [Field]> {
    Some(match (api_version, kind) {
        ("v1", "ConfigMap") => CONFIG_MAP,
        ("v1", "Secret") => SECRET,
        ("v1", "Namespace") => NAMESPACE,
        ("v1", "Service") => SERVICE,
        ("v1", "Pod") => POD,
        ("apps/v1", "Deployment") => DEPLOYMENT,
        _ => return None,
    })
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::bad_request(format!("error decoding protobuf body: {}", message.into()))
}

struct Reader<'a> {
    data: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, ApiError> {
        let mut value = 0u64;
        for shift in 0..10 {
            let byte = *self
                .data
                .get(self.at)
                .ok_or_else(|| bad("truncated varint"))?;
            self.at += 1;
            value |= u64::from(byte & 0x7f) << (7 * shift);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(bad("varint too long"))
    }

    fn bytes(&mut self, n: usize) -> Result<&'a [u8], ApiError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|e| *e <= self.data.len())
            .ok_or_else(|| bad("truncated field"))?;
        let slice = &self.data[self.at..end];
        self.at = end;
        Ok(slice)
    }

    fn done(&self) -> bool {
        self.at >= self.data.len()
    }
}

enum Wire<'a> {
    Varint(u64),
    Len(&'a [u8]),
    Fixed,
}

/// Reads every (field number, value) of a message.
fn fields(data: &[u8]) -> Result<Vec<(u64, Wire<'_>)>, ApiError> {
    let mut reader = Reader { data, at: 0 };
    let mut out = Vec::new();
    while !reader.done() {
        let key = reader.varint()?;
        let (num, wire) = (key >> 3, key & 7);
        let value = match wire {
            0 => Wire::Varint(reader.varint()?),
            1 => {
                reader.bytes(8)?;
                Wire::Fixed
            }
            2 => {
                let len = usize::try_from(reader.varint()?).map_err(|_| bad("length overflow"))?;
                Wire::Len(reader.bytes(len)?)
            }
            5 => {
                reader.bytes(4)?;
                Wire::Fixed
            }
            other => return Err(bad(format!("unsupported wire type {other}"))),
        };
        out.push((num, value));
    }
    Ok(out)
}

fn text(bytes: &[u8]) -> Value {
    Value::String(String::from_utf8_lossy(bytes).into_owned())
}

fn map_entry(bytes: &[u8], value_as_bytes: bool) -> Result<(String, Value), ApiError> {
    let mut key = String::new();
    let mut value = Value::String(String::new());
    for (num, wire) in fields(bytes)? {
        match (num, wire) {
            (1, Wire::Len(k)) => key = String::from_utf8_lossy(k).into_owned(),
            (2, Wire::Len(v)) if value_as_bytes => {
                value = json!(base64::engine::general_purpose::STANDARD.encode(v))
            }
            (2, Wire::Len(v)) => value = text(v),
            _ => {}
        }
    }
    Ok((key, value))
}

fn decode_value(kind: Kind, wire: Wire<'_>, depth: usize) -> Result<Option<Value>, ApiError> {
    Ok(match (kind, wire) {
        (Str, Wire::Len(b)) => Some(text(b)),
        (Bytes, Wire::Len(b)) => Some(json!(base64::engine::general_purpose::STANDARD.encode(b))),
        (Int, Wire::Varint(v)) => Some(json!(v as i64)),
        (Bool, Wire::Varint(v)) => Some(json!(v != 0)),
        (Msg(schema), Wire::Len(b)) => Some(decode_message(b, schema, depth + 1)?),
        (Time, Wire::Len(b)) => {
            let mut seconds = 0i64;
            for (num, wire) in fields(b)? {
                if let (1, Wire::Varint(v)) = (num, wire) {
                    seconds = v as i64;
                }
            }
            if seconds == 0 {
                None
            } else {
                OffsetDateTime::from_unix_timestamp(seconds)
                    .ok()
                    .map(|t| json!(crate::clock::format_time(t)))
            }
        }
        (IntOrString, Wire::Len(b)) => {
            let (mut is_string, mut int, mut string) = (false, 0i64, String::new());
            for (num, wire) in fields(b)? {
                match (num, wire) {
                    (1, Wire::Varint(t)) => is_string = t == 1,
                    (2, Wire::Varint(v)) => int = v as i64,
                    (3, Wire::Len(s)) => string = String::from_utf8_lossy(s).into_owned(),
                    _ => {}
                }
            }
            Some(if is_string { json!(string) } else { json!(int) })
        }
        _ => return Err(bad("field has an unexpected wire type")),
    })
}

fn is_zero(value: &Value) -> bool {
    match value {
        Value::String(s) => s.is_empty(),
        Value::Number(n) => n.as_i64() == Some(0),
        Value::Bool(b) => !b,
        _ => false,
    }
}

fn decode_message(data: &[u8], schema: &[Field], depth: usize) -> Result<Value, ApiError> {
    if depth > MAX_DEPTH {
        return Err(bad("message nested too deeply"));
    }
    let mut out = Map::new();
    for (num, wire) in fields(data)? {
        let Some(field) = schema.iter().find(|f| f.num == num) else {
            continue;
        };
        match field.kind {
            MapStr | MapBytes => {
                let Wire::Len(entry) = wire else {
                    return Err(bad("map entry is not length-delimited"));
                };
                let (key, value) = map_entry(entry, matches!(field.kind, MapBytes))?;
                let map = out.entry(field.name).or_insert_with(|| json!({}));
                if let Some(map) = map.as_object_mut() {
                    map.insert(key, value);
                }
            }
            kind => {
                let Some(value) = decode_value(kind, wire, depth)? else {
                    continue;
                };
                if field.repeated {
                    let items = out.entry(field.name).or_insert_with(|| json!([]));
                    if let Some(items) = items.as_array_mut() {
                        items.push(value);
                    }
                } else if !is_zero(&value) {
                    out.insert(field.name.to_string(), value);
                }
            }
        }
    }
    Ok(Value::Object(out))
}

/// Decodes a `k8s\0`-prefixed protobuf body into a JSON object.
pub fn decode(body: &[u8]) -> Result<Value, ApiError> {
    let envelope = body
        .strip_prefix(MAGIC)
        .ok_or_else(|| bad("missing the k8s protobuf magic prefix"))?;
    let unknown = decode_message(envelope, UNKNOWN, 0)?;
    let api_version = unknown
        .pointer("/typeMeta/apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let kind = unknown
        .pointer("/typeMeta/kind")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let schema = schema_for(&api_version, &kind).ok_or_else(|| {
        ApiError::unsupported_media_type(&format!("{MEDIA_TYPE} (kube-sim decodes protobuf only for ConfigMap, Secret, Namespace, Service, Pod and Deployment; got {api_version} {kind})"))
    })?;
    let raw = unknown
        .get("raw")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let raw = base64::engine::general_purpose::STANDARD
        .decode(raw)
        .map_err(|e| bad(e.to_string()))?;
    let mut object = decode_message(&raw, schema, 0)?;
    object["apiVersion"] = json!(api_version);
    object["kind"] = json!(kind);
    Ok(object)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn len_field(num: u8, bytes: &[u8]) -> Vec<u8> {
        let mut out = vec![(num << 3) | 2, u8::try_from(bytes.len()).unwrap()];
        out.extend_from_slice(bytes);
        out
    }

    #[test]
    fn decodes_a_configmap_like_kubectl_sends() {
        let meta = [
            len_field(1, b"settings"),
            len_field(2, b""),
            len_field(11, &[len_field(1, b"app"), len_field(2, b"web")].concat()),
        ]
        .concat();
        let raw = [
            len_field(1, &meta),
            len_field(
                2,
                &[len_field(1, b"colour"), len_field(2, b"blue")].concat(),
            ),
        ]
        .concat();
        let type_meta = [len_field(1, b"v1"), len_field(2, b"ConfigMap")].concat();
        let body = [MAGIC.to_vec(), len_field(1, &type_meta), len_field(2, &raw)].concat();
        let object = decode(&body).unwrap();
        assert_eq!(
            object,
            json!({"metadata": {"name": "settings", "labels": {"app": "web"}}, "data": {"colour": "blue"}, "apiVersion": "v1", "kind": "ConfigMap"})
        );
    }

    #[test]
    fn rejects_garbage() {
        assert_eq!(decode(b"nope").unwrap_err().code, 400);
        assert_eq!(decode(b"k8s\0\x0a\xff").unwrap_err().code, 400);
        assert_eq!(decode(b"k8s\0\x0b").unwrap_err().code, 400);
    }
}
