//! JSON patch (RFC 6902), as `kubectl patch --type=json` sends it:
//! `add`, `remove`, `replace`, `move`, `copy` and `test` at JSON pointers.

use serde_json::Value;

use crate::store::ApiError;

/// Applies `operations` in order; the first that cannot apply fails the
/// whole patch (the object is then unchanged, as the caller discards it).
pub fn apply(object: &mut Value, operations: &[Value]) -> Result<(), ApiError> {
    for operation in operations {
        let op = operation["op"].as_str().unwrap_or_default();
        let path = operation["path"].as_str().ok_or_else(|| {
            ApiError::bad_request(format!("a JSON patch operation needs a path: {operation}"))
        })?;
        match op {
            "add" => add(object, path, operation["value"].clone())?,
            "remove" => {
                remove(object, path)?;
            }
            "replace" => {
                remove(object, path)?;
                add(object, path, operation["value"].clone())?;
            }
            "move" | "copy" => {
                let from = operation["from"].as_str().ok_or_else(|| {
                    ApiError::bad_request(format!("{op} needs a from: {operation}"))
                })?;
                let value = if op == "move" {
                    remove(object, from)?
                } else {
                    object.pointer(from).cloned().ok_or_else(|| missing(from))?
                };
                add(object, path, value)?;
            }
            "test" => {
                if object.pointer(path) != Some(&operation["value"]) {
                    return Err(ApiError::invalid(format!(
                        "the test of {path} failed: it is not {}",
                        operation["value"]
                    )));
                }
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown JSON patch operation {other:?}"
                )));
            }
        }
    }
    Ok(())
}

fn missing(path: &str) -> ApiError {
    ApiError::invalid(format!("the JSON patch path {path} does not exist"))
}

/// The parent of `path` and its last token (`~1` is `/`, `~0` is `~`).
fn split(path: &str) -> Result<(&str, String), ApiError> {
    let (parent, last) = path
        .rsplit_once('/')
        .ok_or_else(|| ApiError::bad_request(format!("{path:?} is not a JSON pointer")))?;
    Ok((parent, last.replace("~1", "/").replace("~0", "~")))
}

fn add(object: &mut Value, path: &str, value: Value) -> Result<(), ApiError> {
    if path.is_empty() {
        *object = value;
        return Ok(());
    }
    let (parent, last) = split(path)?;
    match object.pointer_mut(parent) {
        Some(Value::Object(map)) => {
            map.insert(last, value);
            Ok(())
        }
        Some(Value::Array(items)) => {
            let at = if last == "-" {
                items.len()
            } else {
                last.parse::<usize>()
                    .ok()
                    .filter(|at| *at <= items.len())
                    .ok_or_else(|| missing(path))?
            };
            items.insert(at, value);
            Ok(())
        }
        _ => Err(missing(parent)),
    }
}

fn remove(object: &mut Value, path: &str) -> Result<Value, ApiError> {
    let (parent, last) = split(path)?;
    match object.pointer_mut(parent) {
        Some(Value::Object(map)) => map.remove(&last).ok_or_else(|| missing(path)),
        Some(Value::Array(items)) => last
            .parse::<usize>()
            .ok()
            .filter(|at| *at < items.len())
            .map(|at| items.remove(at))
            .ok_or_else(|| missing(path)),
        _ => Err(missing(path)),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::apply;

    #[test]
    fn operations_apply_in_order_and_a_failing_test_refuses() {
        let mut object =
            json!({"spec": {"replicas": 1, "ports": [80]}, "metadata": {"labels": {"a/b": "x"}}});
        apply(
            &mut object,
            &[
                json!({"op": "replace", "path": "/spec/replicas", "value": 3}),
                json!({"op": "add", "path": "/spec/ports/-", "value": 443}),
                json!({"op": "remove", "path": "/metadata/labels/a~1b"}),
                json!({"op": "copy", "from": "/spec/replicas", "path": "/spec/wanted"}),
                json!({"op": "test", "path": "/spec/wanted", "value": 3}),
            ],
        )
        .unwrap();
        assert_eq!(
            object,
            json!({"spec": {"replicas": 3, "ports": [80, 443], "wanted": 3}, "metadata": {"labels": {}}})
        );
        assert!(
            apply(
                &mut object,
                &[json!({"op": "test", "path": "/spec/replicas", "value": 1})]
            )
            .is_err()
        );
        assert!(
            apply(
                &mut object,
                &[json!({"op": "remove", "path": "/spec/nothing"})]
            )
            .is_err()
        );
        assert!(
            apply(
                &mut object,
                &[json!({"op": "replace", "path": "/nope/x", "value": 1})]
            )
            .is_err()
        );
    }
}
