//! JSON patch (RFC 6902).

use serde_json::Value;

use crate::status::ApiError;

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::invalid("Patch", "", message)
}

fn tokens(pointer: &str) -> Result<Vec<String>, ApiError> {
    if pointer.is_empty() {
        return Ok(Vec::new());
    }
    let rest = pointer
        .strip_prefix('/')
        .ok_or_else(|| bad(format!("invalid JSON pointer {pointer:?}")))?;
    Ok(rest
        .split('/')
        .map(|t| t.replace("~1", "/").replace("~0", "~"))
        .collect())
}

fn parent<'a>(doc: &'a mut Value, path: &[String]) -> Result<&'a mut Value, ApiError> {
    let mut current = doc;
    for token in path {
        current = match current {
            Value::Object(map) => map.get_mut(token),
            Value::Array(items) => token.parse::<usize>().ok().and_then(|i| items.get_mut(i)),
            _ => None,
        }
        .ok_or_else(|| bad(format!("path component {token:?} does not exist")))?;
    }
    Ok(current)
}

fn add(doc: &mut Value, path: &[String], value: Value) -> Result<(), ApiError> {
    let Some((last, init)) = path.split_last() else {
        *doc = value;
        return Ok(());
    };
    match parent(doc, init)? {
        Value::Object(map) => {
            map.insert(last.clone(), value);
            Ok(())
        }
        Value::Array(items) => {
            let index = if last == "-" {
                items.len()
            } else {
                last.parse::<usize>()
                    .map_err(|_| bad(format!("invalid array index {last:?}")))?
            };
            if index > items.len() {
                return Err(bad(format!("array index {index} out of bounds")));
            }
            items.insert(index, value);
            Ok(())
        }
        _ => Err(bad("cannot add to a scalar")),
    }
}

fn remove(doc: &mut Value, path: &[String]) -> Result<Value, ApiError> {
    let (last, init) = path
        .split_last()
        .ok_or_else(|| bad("cannot remove the whole document"))?;
    match parent(doc, init)? {
        Value::Object(map) => map
            .remove(last)
            .ok_or_else(|| bad(format!("unable to remove nonexistent key: {last}"))),
        Value::Array(items) => {
            let index = last
                .parse::<usize>()
                .map_err(|_| bad(format!("invalid array index {last:?}")))?;
            if index >= items.len() {
                return Err(bad(format!("array index {index} out of bounds")));
            }
            Ok(items.remove(index))
        }
        _ => Err(bad("cannot remove from a scalar")),
    }
}

fn get(doc: &Value, path: &[String]) -> Result<Value, ApiError> {
    let pointer: String = path
        .iter()
        .map(|t| format!("/{}", t.replace('~', "~0").replace('/', "~1")))
        .collect();
    doc.pointer(&pointer)
        .cloned()
        .ok_or_else(|| bad(format!("path {pointer:?} does not exist")))
}

/// Applies an RFC 6902 patch document (an array of operations).
pub fn json_patch(target: &Value, patch: &Value) -> Result<Value, ApiError> {
    let ops = patch
        .as_array()
        .ok_or_else(|| ApiError::bad_request("a JSON patch must be an array of operations"))?;
    let mut doc = target.clone();
    for op in ops {
        let name = op
            .get("op")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("operation without \"op\""))?;
        let path = tokens(
            op.get("path")
                .and_then(Value::as_str)
                .ok_or_else(|| bad("operation without \"path\""))?,
        )?;
        let value = || {
            op.get("value")
                .cloned()
                .ok_or_else(|| bad(format!("{name} operation without \"value\"")))
        };
        let from = || tokens(op.get("from").and_then(Value::as_str).unwrap_or_default());
        match name {
            "add" => add(&mut doc, &path, value()?)?,
            "remove" => {
                remove(&mut doc, &path)?;
            }
            "replace" => {
                remove(&mut doc, &path)?;
                add(&mut doc, &path, value()?)?;
            }
            "move" => {
                let moved = remove(&mut doc, &from()?)?;
                add(&mut doc, &path, moved)?;
            }
            "copy" => {
                let copied = get(&doc, &from()?)?;
                add(&mut doc, &path, copied)?;
            }
            "test" => {
                if get(&doc, &path)? != value()? {
                    return Err(bad("test operation failed"));
                }
            }
            other => return Err(bad(format!("unknown JSON patch operation {other:?}"))),
        }
    }
    Ok(doc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn operations() {
        let doc = json!({"metadata": {"labels": {"a": "1"}}, "list": [1, 2]});
        let patch = json!([
            {"op": "add", "path": "/metadata/labels/b~1c", "value": "2"},
            {"op": "replace", "path": "/metadata/labels/a", "value": "x"},
            {"op": "add", "path": "/list/-", "value": 3},
            {"op": "remove", "path": "/list/0"},
            {"op": "copy", "from": "/list", "path": "/copy"},
            {"op": "move", "from": "/copy", "path": "/moved"},
            {"op": "test", "path": "/moved/0", "value": 2}
        ]);
        let out = json_patch(&doc, &patch).unwrap();
        assert_eq!(
            out,
            json!({"metadata": {"labels": {"a": "x", "b/c": "2"}}, "list": [2, 3], "moved": [2, 3]})
        );
        assert_eq!(
            json_patch(&doc, &json!([{"op": "remove", "path": "/nope"}]))
                .unwrap_err()
                .code,
            422
        );
        assert_eq!(
            json_patch(&doc, &json!({"op": "add"})).unwrap_err().code,
            400
        );
    }
}
