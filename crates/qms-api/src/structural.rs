//! The structural-schema rules a real API server enforces on a CRD's `openAPIV3Schema`
//! (apiextensions-apiserver `ValidateStructural`), checked here so a generated CRD that a cluster
//! would refuse fails our tests first. kube-sim enforces the same rules independently.

use serde_json::Value;

/// Returns every violation as `path: message`; empty means structural.
pub fn violations(schema: &Value) -> Vec<String> {
    let mut out = Vec::new();
    check(schema, "openAPIV3Schema", true, false, &mut out);
    out
}

const FORBIDDEN: [&str; 5] = ["$ref", "definitions", "$schema", "id", "dependencies"];

fn check(node: &Value, path: &str, root: bool, in_value_validation: bool, out: &mut Vec<String>) {
    let Some(obj) = node.as_object() else {
        out.push(format!("{path}: must be an object"));
        return;
    };
    for key in FORBIDDEN {
        if obj.contains_key(key) {
            out.push(format!("{path}.{key}: Forbidden: must not be used"));
        }
    }
    let int_or_string = obj
        .get("x-kubernetes-int-or-string")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let preserve = obj
        .get("x-kubernetes-preserve-unknown-fields")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let ty = obj.get("type").and_then(Value::as_str);
    if !in_value_validation && ty.is_none() && !int_or_string && !preserve {
        out.push(format!(
            "{path}.type: Required value: must not be empty for specified fields"
        ));
    }
    if obj.contains_key("properties") && obj.contains_key("additionalProperties") {
        out.push(format!(
            "{path}: Forbidden: additionalProperties and properties are mutually exclusive"
        ));
    }
    if ty == Some("array") && !obj.contains_key("items") && !in_value_validation {
        out.push(format!(
            "{path}.items: Required value: must be specified for arrays"
        ));
    }
    if root && let Some(meta) = obj.get("properties").and_then(|p| p.get("metadata")) {
        let allowed = ["type", "properties", "description"];
        if let Some(m) = meta.as_object() {
            for k in m.keys().filter(|k| !allowed.contains(&k.as_str())) {
                out.push(format!(
                    "{path}.properties[metadata].{k}: Forbidden: must not be specified"
                ));
            }
        }
    }
    // Value validations (allOf/anyOf/oneOf/not) may not introduce types or defaults of their own.
    for key in ["allOf", "anyOf", "oneOf"] {
        if let Some(list) = obj.get(key).and_then(Value::as_array) {
            for (i, sub) in list.iter().enumerate() {
                check_value_validation(sub, &format!("{path}.{key}[{i}]"), out);
            }
        }
    }
    if let Some(sub) = obj.get("not") {
        check_value_validation(sub, &format!("{path}.not"), out);
    }
    if let Some(props) = obj.get("properties").and_then(Value::as_object) {
        for (name, sub) in props {
            check(
                sub,
                &format!("{path}.properties[{name}]"),
                false,
                in_value_validation,
                out,
            );
        }
    }
    if let Some(items) = obj.get("items") {
        check(
            items,
            &format!("{path}.items"),
            false,
            in_value_validation,
            out,
        );
    }
    if let Some(ap) = obj.get("additionalProperties").filter(|v| v.is_object()) {
        check(
            ap,
            &format!("{path}.additionalProperties"),
            false,
            in_value_validation,
            out,
        );
    }
}

fn check_value_validation(node: &Value, path: &str, out: &mut Vec<String>) {
    if let Some(obj) = node.as_object() {
        for key in [
            "type",
            "default",
            "nullable",
            "x-kubernetes-preserve-unknown-fields",
        ] {
            if obj.contains_key(key) {
                out.push(format!(
                    "{path}.{key}: Forbidden: must be empty to be structural"
                ));
            }
        }
    }
    check(node, path, false, true, out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn untyped_nodes_and_refs_are_reported_with_their_path() {
        let schema = json!({
            "type": "object",
            "properties": {
                "spec": {"type": "object", "properties": {"a": {"description": "no type"}}},
                "b": {"$ref": "#/definitions/x", "type": "string"}
            }
        });
        let v = violations(&schema);
        assert!(
            v.iter()
                .any(|m| m.starts_with("openAPIV3Schema.properties[spec].properties[a].type")),
            "{v:?}"
        );
        assert!(v.iter().any(|m| m.contains("properties[b].$ref")), "{v:?}");
    }

    #[test]
    fn one_of_may_not_carry_types() {
        let schema = json!({"type": "object", "oneOf": [{"type": "string"}]});
        assert!(!violations(&schema).is_empty());
        let ok = json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true});
        assert!(violations(&ok).is_empty());
    }
}
