//! `x-kubernetes-validations` (CEL) via the `kube-cel` crate (the engine kube-core's `cel` feature
//! uses). Rules that fail to compile reject the CRD; rules that evaluate to false (or reference
//! something kube-cel cannot evaluate) reject the object, as the apiserver would (fail closed).

use serde_json::{Value, json};

use crate::error::FieldError;

pub fn compile(rule: &str) -> Result<(), String> {
    let schema = json!({"type": "object", "x-kubernetes-validations": [{"rule": rule}]});
    let compiled = kube_cel::compile_schema(&schema);
    match compiled.compilation_errors().first() {
        Some(e) => Err(e.to_string()),
        None => Ok(()),
    }
}

/// Whether any node of the schema carries CEL rules (skip the engine entirely otherwise).
pub fn has_rules(schema: &Value) -> bool {
    match schema {
        Value::Object(m) => m.contains_key("x-kubernetes-validations") || m.values().any(has_rules),
        Value::Array(a) => a.iter().any(has_rules),
        _ => false,
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Object(_) => "object",
        Value::Array(_) => "array",
        Value::String(_) => "string",
        Value::Number(n) if n.is_f64() => "number",
        Value::Number(_) => "integer",
        Value::Bool(_) => "boolean",
        Value::Null => "null",
    }
}

/// Follows `spec.items[0].name`-style paths.
fn lookup<'a>(root: &'a Value, path: &str) -> Option<&'a Value> {
    let mut cur = root;
    for seg in path.split('.').filter(|s| !s.is_empty()) {
        let (name, rest) = match seg.find('[') {
            Some(i) => (&seg[..i], &seg[i..]),
            None => (seg, ""),
        };
        if !name.is_empty() {
            cur = cur.get(name)?;
        }
        for idx in rest.split('[').filter(|s| !s.is_empty()) {
            let idx = idx.trim_end_matches(']');
            cur = match idx.parse::<usize>() {
                Ok(i) => cur.get(i)?,
                Err(_) => cur.get(idx.trim_matches('"'))?,
            };
        }
    }
    Some(cur)
}

pub fn validate(schema: &Value, obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    if !has_rules(schema) {
        return Vec::new();
    }
    match kube_cel::validate(schema, obj, old) {
        Ok(()) => Vec::new(),
        Err(errs) => errs
            .into_vec()
            .into_iter()
            .map(|e| {
                let value = lookup(obj, &e.field_path)
                    .map(type_name)
                    .unwrap_or("object");
                let reason = match e.reason.as_deref() {
                    Some("FieldValueForbidden") => "FieldValueForbidden",
                    Some("FieldValueRequired") => "FieldValueRequired",
                    Some("FieldValueDuplicate") => "FieldValueDuplicate",
                    _ => "FieldValueInvalid",
                };
                let message = match reason {
                    "FieldValueForbidden" => format!("Forbidden: {}", e.message),
                    "FieldValueRequired" => format!("Required value: {}", e.message),
                    "FieldValueDuplicate" => format!("Duplicate value: {}", e.message),
                    _ => format!("Invalid value: {value:?}: {}", e.message),
                };
                FieldError {
                    reason,
                    field: e.field_path,
                    message,
                }
            })
            .collect(),
    }
}
