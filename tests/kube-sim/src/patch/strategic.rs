//! Strategic merge patch: JSON merge patch, except that lists of named things
//! (containers, env, ports, volumes, …) merge element by element on their merge key,
//! and the `$patch`, `$retainKeys`, `$deleteFromPrimitiveList/…` and
//! `$setElementOrder/…` directives that kubectl emits are understood.

use serde_json::{Map, Value};

use crate::status::ApiError;

/// The merge key of a list field, as in the Kubernetes API types.
fn merge_key(field: &str, items: &[Value]) -> Option<&'static str> {
    match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "volumes"
        | "env"
        | "imagePullSecrets"
        | "resourceClaims" => Some("name"),
        "volumeMounts" => Some("mountPath"),
        "volumeDevices" => Some("devicePath"),
        "hostAliases" => Some("ip"),
        "conditions" => Some("type"),
        "ownerReferences" => Some("uid"),
        "topologySpreadConstraints" => Some("topologyKey"),
        "ports" => {
            if items.iter().any(|i| i.get("containerPort").is_some()) {
                Some("containerPort")
            } else {
                Some("port")
            }
        }
        _ => None,
    }
}

/// Primitive lists that merge as sets rather than being replaced.
fn merges_as_set(field: &str) -> bool {
    matches!(field, "finalizers")
}

/// Applies a strategic merge patch to `original`.
pub fn strategic_merge(original: &Value, patch: &Value) -> Result<Value, ApiError> {
    merge_value(original, patch, "")
}

fn merge_value(original: &Value, patch: &Value, field: &str) -> Result<Value, ApiError> {
    match (original, patch) {
        (Value::Object(o), Value::Object(p)) => merge_map(o, p).map(Value::Object),
        (_, Value::Object(p)) => merge_map(&Map::new(), p).map(Value::Object),
        (Value::Array(o), Value::Array(p)) => merge_list(o, p, field),
        (_, Value::Array(p)) => merge_list(&[], p, field),
        _ => Ok(patch.clone()),
    }
}

fn merge_map(
    original: &Map<String, Value>,
    patch: &Map<String, Value>,
) -> Result<Map<String, Value>, ApiError> {
    match patch.get("$patch").and_then(Value::as_str) {
        Some("replace") => {
            let mut replaced = patch.clone();
            replaced.remove("$patch");
            return Ok(replaced);
        }
        Some("delete") => return Ok(Map::new()),
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "unknown patch type: {other} in map"
            )))
        }
        None => {}
    }
    let mut result = original.clone();
    if let Some(retain) = patch.get("$retainKeys").and_then(Value::as_array) {
        let keep: Vec<&str> = retain.iter().filter_map(Value::as_str).collect();
        result.retain(|k, _| keep.contains(&k.as_str()));
    }
    for (key, value) in patch {
        if key == "$retainKeys" || key.starts_with("$setElementOrder/") {
            continue;
        }
        if let Some(field) = key.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(items)), Some(remove)) =
                (result.get_mut(field), value.as_array())
            {
                items.retain(|i| !remove.contains(i));
            }
            continue;
        }
        if key.starts_with('$') {
            continue;
        }
        if value.is_null() {
            result.remove(key);
            continue;
        }
        let merged = merge_value(result.get(key).unwrap_or(&Value::Null), value, key)?;
        result.insert(key.clone(), merged);
    }
    Ok(result)
}

fn merge_list(original: &[Value], patch: &[Value], field: &str) -> Result<Value, ApiError> {
    if patch
        .iter()
        .any(|i| i.get("$patch").and_then(Value::as_str) == Some("replace"))
    {
        let items = patch
            .iter()
            .filter(|i| i.get("$patch").is_none())
            .cloned()
            .collect();
        return Ok(Value::Array(items));
    }
    let all_objects = patch.iter().all(Value::is_object) && original.iter().all(Value::is_object);
    let key = if all_objects {
        merge_key(field, &[original, patch].concat())
    } else {
        None
    };
    let Some(key) = key else {
        if merges_as_set(field) {
            let mut merged = original.to_vec();
            for item in patch {
                if !merged.contains(item) {
                    merged.push(item.clone());
                }
            }
            return Ok(Value::Array(merged));
        }
        return Ok(Value::Array(patch.to_vec()));
    };
    let mut result = original.to_vec();
    for item in patch {
        let Some(id) = item.get(key) else {
            return Err(ApiError::bad_request(format!(
                "map: {item} does not contain declared merge key: {key}"
            )));
        };
        let position = result.iter().position(|o| o.get(key) == Some(id));
        let delete = item.get("$patch").and_then(Value::as_str) == Some("delete");
        match (position, delete) {
            (Some(index), true) => {
                result.remove(index);
            }
            (None, true) => {}
            (Some(index), false) => result[index] = merge_value(&result[index], item, "")?,
            (None, false) => result.push(merge_value(&Value::Null, item, "")?),
        }
    }
    Ok(Value::Array(result))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn containers_merge_by_name() {
        let original = json!({"spec": {"containers": [{"name": "a", "image": "x:1"}, {"name": "b", "image": "y:1"}]}});
        let patch = json!({
            "$setElementOrder/containers": [{"name": "a"}, {"name": "b"}],
            "spec": {"containers": [{"name": "b", "image": "y:2"}, {"name": "c", "image": "z"}]}
        });
        let out = strategic_merge(&original, &patch).unwrap();
        assert_eq!(
            out["spec"]["containers"],
            json!([{"name": "a", "image": "x:1"}, {"name": "b", "image": "y:2"}, {"name": "c", "image": "z"}])
        );
    }

    #[test]
    fn directives() {
        let original = json!({"metadata": {"labels": {"a": "1", "b": "2"}, "finalizers": ["x"]}, "env": [{"name": "A", "value": "1"}]});
        let patch = json!({
            "metadata": {"labels": {"a": null}, "finalizers": ["y"]},
            "env": [{"name": "A", "$patch": "delete"}]
        });
        let out = strategic_merge(&original, &patch).unwrap();
        assert_eq!(
            out,
            json!({"metadata": {"labels": {"b": "2"}, "finalizers": ["x", "y"]}, "env": []})
        );
        let replace = json!({"metadata": {"$patch": "replace", "name": "n"}});
        assert_eq!(
            strategic_merge(&original, &replace).unwrap()["metadata"],
            json!({"name": "n"})
        );
    }
}
