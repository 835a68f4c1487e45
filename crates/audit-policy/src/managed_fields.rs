//! `omitManagedFields`: a recorded JSON body without `metadata.managedFields`.

use serde_json::Value;

/// `body` without `metadata.managedFields` (of the object, and of each
/// object in a top-level `items`), when it is a JSON object that has them;
/// `None` when there is nothing to strip (not JSON, or no managed fields),
/// so that the body is recorded as it was sent.
pub fn strip_managed_fields(body: &[u8]) -> Option<Vec<u8>> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') {
        return None;
    }
    let mut value: Value = serde_json::from_slice(body).ok()?;
    let mut stripped = strip(&mut value);
    if let Some(items) = value.get_mut("items").and_then(Value::as_array_mut) {
        for item in items {
            stripped |= strip(item);
        }
    }
    if !stripped {
        return None;
    }
    serde_json::to_vec(&value).ok()
}

fn strip(object: &mut Value) -> bool {
    object
        .get_mut("metadata")
        .and_then(Value::as_object_mut)
        .and_then(|m| m.remove("managedFields"))
        .is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_object_and_items() {
        let body = br#"{"kind":"ConfigMap","metadata":{"name":"c","managedFields":[{"manager":"kubectl"}]},"data":{}}"#;
        let out = strip_managed_fields(body).expect("stripped");
        assert_eq!(
            out,
            br#"{"kind":"ConfigMap","metadata":{"name":"c"},"data":{}}"#
        );
        let list = br#"{"kind":"List","items":[{"metadata":{"managedFields":[]}}]}"#;
        assert_eq!(
            strip_managed_fields(list).as_deref(),
            Some(&br#"{"kind":"List","items":[{"metadata":{}}]}"#[..])
        );
        assert_eq!(strip_managed_fields(br#"{"metadata":{"name":"c"}}"#), None);
        assert_eq!(strip_managed_fields(b"kind: ConfigMap"), None);
        assert_eq!(strip_managed_fields(br#"{"metadata":"#), None);
    }
}
