//! Strategic merge patch for built-in types: maps merge recursively, lists with a merge key merge
//! item-by-item (containers by name, conditions by type, ...), `finalizers` merge as a set, other
//! lists are replaced. Directives: `$patch: replace|delete|merge`, `$retainKeys`,
//! `$deleteFromPrimitiveList/<field>`; `$setElementOrder/<field>` is accepted and ignored.

use serde_json::{Map, Value};

use super::shape::{ListKind, Shape, item_key};

/// Applies `patch` to `original`. `None` means the patch deleted the whole value.
pub fn apply(original: &Value, patch: &Value) -> Value {
    merge_value(original, patch, Shape::Builtin).unwrap_or(Value::Object(Map::new()))
}

fn merge_value(original: &Value, patch: &Value, shape: Shape<'_>) -> Option<Value> {
    let Value::Object(pm) = patch else {
        return Some(patch.clone());
    };
    match pm.get("$patch").and_then(Value::as_str) {
        Some("delete") => return None,
        Some("replace") => {
            let mut m = pm.clone();
            m.remove("$patch");
            return Some(Value::Object(m));
        }
        _ => {}
    }
    let mut result = match original {
        Value::Object(m) => m.clone(),
        _ => Map::new(),
    };
    for (k, pv) in pm {
        if k == "$patch" || k == "$retainKeys" || k.starts_with("$setElementOrder/") {
            continue;
        }
        if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(list)), Some(del)) = (result.get_mut(field), pv.as_array()) {
                list.retain(|x| !del.contains(x));
            }
            continue;
        }
        match pv {
            Value::Null => {
                result.remove(k);
            }
            Value::Object(_) => {
                let orig = result.get(k).cloned().unwrap_or(Value::Null);
                match merge_value(&orig, pv, shape.child(k)) {
                    Some(v) => {
                        result.insert(k.clone(), v);
                    }
                    None => {
                        result.remove(k);
                    }
                }
            }
            Value::Array(items) => {
                let orig = result
                    .get(k)
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                let merged = merge_list(k, &orig, items, shape.child(k));
                result.insert(k.clone(), Value::Array(merged));
            }
            _ => {
                result.insert(k.clone(), pv.clone());
            }
        }
    }
    if let Some(Value::Array(keep)) = pm.get("$retainKeys") {
        let keep: Vec<&str> = keep.iter().filter_map(Value::as_str).collect();
        result.retain(|k, _| keep.contains(&k.as_str()));
    }
    Some(Value::Object(result))
}

fn is_directive(v: &Value, which: &str) -> bool {
    v.get("$patch").and_then(Value::as_str) == Some(which)
}

fn strip_directives(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut m = m.clone();
            m.remove("$patch");
            Value::Object(m)
        }
        other => other.clone(),
    }
}

fn merge_list(field: &str, orig: &[Value], patch: &[Value], shape: Shape<'_>) -> Vec<Value> {
    if patch.iter().any(|p| is_directive(p, "replace")) {
        return patch
            .iter()
            .filter(|p| !is_directive(p, "replace"))
            .map(strip_directives)
            .collect();
    }
    let mut sample = orig.to_vec();
    sample.extend(patch.iter().cloned());
    match shape.list_kind(field, &sample) {
        ListKind::Set => {
            let mut out = orig.to_vec();
            for p in patch {
                if !out.contains(p) {
                    out.push(p.clone());
                }
            }
            out
        }
        ListKind::Map(keys) => {
            let mut out = orig.to_vec();
            for p in patch {
                let key = item_key(p, &keys);
                let pos = out.iter().position(|o| item_key(o, &keys) == key);
                if is_directive(p, "delete") {
                    if let Some(i) = pos {
                        out.remove(i);
                    }
                    continue;
                }
                match pos {
                    Some(i) => {
                        if let Some(v) = merge_value(&out[i], p, shape.items()) {
                            out[i] = v;
                        }
                    }
                    None => out.push(strip_directives(p)),
                }
            }
            out
        }
        ListKind::Atomic => patch.to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn containers_merge_by_name() {
        let orig = json!({"spec": {"containers": [{"name": "a", "image": "x", "env": [{"name": "A", "value": "1"}]}, {"name": "b", "image": "y"}]}});
        let patch = json!({"spec": {"containers": [{"name": "a", "image": "x2", "env": [{"name": "B", "value": "2"}]}, {"name": "b", "$patch": "delete"}]}});
        let out = apply(&orig, &patch);
        assert_eq!(
            out,
            json!({"spec": {"containers": [{"name": "a", "image": "x2", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]}]}})
        );
    }

    #[test]
    fn replace_and_null_and_finalizers() {
        let orig = json!({"metadata": {"labels": {"a": "1", "b": "2"}, "finalizers": ["x"]}, "spec": {"args": ["1", "2"]}});
        let patch = json!({"metadata": {"labels": {"a": null}, "finalizers": ["y"]}, "spec": {"args": ["3"]}});
        assert_eq!(
            apply(&orig, &patch),
            json!({"metadata": {"labels": {"b": "2"}, "finalizers": ["x", "y"]}, "spec": {"args": ["3"]}})
        );
        let patch = json!({"metadata": {"labels": {"$patch": "replace", "c": "3"}}});
        assert_eq!(
            apply(&orig, &patch)["metadata"]["labels"],
            json!({"c": "3"})
        );
    }
}
