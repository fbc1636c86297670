//! Pruning of fields the schema does not declare, null-dropping and defaulting, in the order
//! the apiserver runs them for custom resources: drop non-nullable nulls, prune, default.

use serde_json::{Map, Value};

fn preserves(schema: &Value) -> bool {
    schema["x-kubernetes-preserve-unknown-fields"].as_bool() == Some(true)
}

/// Removes unknown fields, recording their paths (`spec.foo`, `spec.items[0].bar`).
pub fn prune(schema: &Value, value: &mut Value, path: &str, root: bool, unknown: &mut Vec<String>) {
    match value {
        Value::Object(map) => prune_object(schema, map, path, root, unknown),
        Value::Array(items) if schema["items"].is_object() => {
            for (i, item) in items.iter_mut().enumerate() {
                prune(
                    &schema["items"],
                    item,
                    &format!("{path}[{i}]"),
                    false,
                    unknown,
                );
            }
        }
        _ => {}
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn prune_object(
    schema: &Value,
    map: &mut Map<String, Value>,
    path: &str,
    root: bool,
    unknown: &mut Vec<String>,
) {
    let embedded = schema["x-kubernetes-embedded-resource"].as_bool() == Some(true);
    let props = schema["properties"].as_object();
    let additional = &schema["additionalProperties"];
    let keep_unknown = preserves(schema) || additional.as_bool() == Some(true);
    let keys: Vec<String> = map.keys().cloned().collect();
    for key in keys {
        let implicit =
            (root || embedded) && matches!(key.as_str(), "apiVersion" | "kind" | "metadata");
        if implicit {
            continue;
        }
        let child_path = join(path, &key);
        if let Some(child_schema) = props.and_then(|p| p.get(&key)) {
            if let Some(child) = map.get_mut(&key) {
                prune(child_schema, child, &child_path, false, unknown);
            }
        } else if additional.is_object() {
            if let Some(child) = map.get_mut(&key) {
                prune(additional, child, &child_path, false, unknown);
            }
        } else if !keep_unknown {
            map.remove(&key);
            unknown.push(child_path);
        }
    }
}

/// Drops `null` values of fields that are not `nullable` (they would otherwise fail validation
/// and block defaulting), recursively.
pub fn drop_nulls(schema: &Value, value: &mut Value) {
    match value {
        Value::Object(map) => {
            let keys: Vec<String> = map.keys().cloned().collect();
            for key in keys {
                let child_schema = schema["properties"].get(&key).or_else(|| {
                    schema["additionalProperties"]
                        .as_object()
                        .map(|_| &schema["additionalProperties"])
                });
                let Some(child_schema) = child_schema else {
                    continue;
                };
                if map.get(&key).is_some_and(Value::is_null)
                    && child_schema["nullable"].as_bool() != Some(true)
                {
                    map.remove(&key);
                } else if let Some(child) = map.get_mut(&key) {
                    drop_nulls(child_schema, child);
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                drop_nulls(&schema["items"], item);
            }
        }
        _ => {}
    }
}

/// Fills in `default`s of absent properties, recursively (defaults themselves get defaulted).
pub fn apply_defaults(schema: &Value, value: &mut Value) {
    match value {
        Value::Object(map) => {
            if let Some(props) = schema["properties"].as_object() {
                for (key, child_schema) in props {
                    if !map.contains_key(key)
                        && let Some(d) = child_schema.get("default")
                    {
                        map.insert(key.clone(), d.clone());
                    }
                    if let Some(child) = map.get_mut(key) {
                        apply_defaults(child_schema, child);
                    }
                }
            } else if schema["additionalProperties"].is_object() {
                for child in map.values_mut() {
                    apply_defaults(&schema["additionalProperties"], child);
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                apply_defaults(&schema["items"], item);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn prune_and_default() {
        let schema = json!({"type": "object", "properties": {
            "spec": {"type": "object", "properties": {
                "a": {"type": "string", "default": "x"},
                "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                "list": {"type": "array", "items": {"type": "object", "properties": {"n": {"type": "integer", "default": 3}}}}
            }}
        }});
        let mut obj = json!({"apiVersion": "a/v1", "kind": "K", "metadata": {"name": "x"},
            "spec": {"zzz": 1, "a": null, "free": {"any": 1}, "list": [{"bad": 1}]}, "top": 1});
        let mut unknown = Vec::new();
        drop_nulls(&schema, &mut obj);
        prune(&schema, &mut obj, "", true, &mut unknown);
        apply_defaults(&schema, &mut obj);
        unknown.sort();
        assert_eq!(unknown, vec!["spec.list[0].bad", "spec.zzz", "top"]);
        assert_eq!(
            obj["spec"],
            json!({"a": "x", "free": {"any": 1}, "list": [{"n": 3}]})
        );
        assert_eq!(obj["metadata"]["name"], "x");
    }
}
