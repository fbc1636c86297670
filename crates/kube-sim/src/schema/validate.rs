//! OpenAPI v3 (structural schema) validation of custom resources, producing the field errors
//! kube-openapi's validator produces (`spec.x in body must be of type integer: "string"`, ...).

use regex::Regex;
use serde_json::{Value, json};

use crate::error::FieldError;

fn type_of(v: &Value) -> &'static str {
    match v {
        Value::Object(_) => "object",
        Value::Array(_) => "array",
        Value::String(_) => "string",
        Value::Number(n) if n.is_f64() && n.as_f64().is_some_and(|f| f.fract() != 0.0) => "number",
        Value::Number(_) => "integer",
        Value::Bool(_) => "boolean",
        Value::Null => "null",
    }
}

fn type_matches(ty: &str, v: &Value) -> bool {
    match ty {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "boolean" => v.is_boolean(),
        "number" => v.is_number(),
        "integer" => v.is_i64() || v.is_u64() || v.as_f64().is_some_and(|f| f.fract() == 0.0),
        _ => true,
    }
}

fn type_error(path: &str, expected: &str, v: &Value) -> FieldError {
    let actual = type_of(v);
    FieldError {
        reason: "FieldValueTypeInvalid",
        field: path.to_owned(),
        message: format!(
            "Invalid value: {actual:?}: {path} in body must be of type {expected}: {actual:?}"
        ),
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn check_format(format: &str, s: &str) -> bool {
    match format {
        "date-time" => chrono::DateTime::parse_from_rfc3339(s).is_ok(),
        "date" => chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok(),
        "byte" => {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.decode(s).is_ok()
        }
        "uuid" => {
            static RE: std::sync::LazyLock<Regex> = std::sync::LazyLock::new(|| {
                Regex::new(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$").expect("static regex")
            });
            RE.is_match(s)
        }
        "email" => s.contains('@') && !s.starts_with('@') && !s.ends_with('@'),
        _ => true,
    }
}

/// Validates `value` at `path` against `schema`, appending errors. Root metadata is not checked
/// here (the server validates object names itself).
pub fn validate(schema: &Value, value: &Value, path: &str, root: bool, errs: &mut Vec<FieldError>) {
    let Some(s) = schema.as_object() else { return };
    if !check_type(s, value, path, errs) {
        return;
    }
    if let Some(en) = s.get("enum").and_then(Value::as_array)
        && !en.contains(value)
    {
        errs.push(FieldError::not_supported(path, value, en));
    }
    match value {
        Value::String(st) => validate_string(s, value, st, path, errs),
        Value::Number(n) => validate_number(s, value, n, path, errs),
        Value::Array(items) => validate_array(s, value, items, path, errs),
        Value::Object(map) => validate_object(s, value, map, path, root, errs),
        _ => {}
    }
    validate_combinators(s, value, path, root, errs);
}

type Schema = serde_json::Map<String, Value>;

/// Null and type checks. Returns whether validation of `value` goes on (a null value or a value of
/// the wrong type is not checked further).
fn check_type(s: &Schema, value: &Value, path: &str, errs: &mut Vec<FieldError>) -> bool {
    if value.is_null() {
        if s.get("nullable").and_then(Value::as_bool) == Some(true) || s.get("type").is_none() {
            return false;
        }
        errs.push(type_error(
            path,
            s["type"].as_str().unwrap_or("object"),
            value,
        ));
        return false;
    }
    let int_or_string = s.get("x-kubernetes-int-or-string").and_then(Value::as_bool) == Some(true);
    if int_or_string {
        if !(value.is_string() || type_matches("integer", value)) {
            errs.push(type_error(path, "integer-or-string", value));
            return false;
        }
    } else if let Some(ty) = s.get("type").and_then(Value::as_str)
        && !type_matches(ty, value)
    {
        errs.push(type_error(path, ty, value));
        return false;
    }
    true
}

/// `maxLength`, `minLength`, `pattern` and `format` of a string.
fn validate_string(s: &Schema, value: &Value, st: &str, path: &str, errs: &mut Vec<FieldError>) {
    let len = st.chars().count() as u64;
    if let Some(max) = s.get("maxLength").and_then(Value::as_u64)
        && len > max
    {
        errs.push(FieldError::too_long(path, max));
    }
    if let Some(min) = s.get("minLength").and_then(Value::as_u64)
        && len < min
    {
        errs.push(FieldError::invalid(
            path,
            value,
            &format!("{path} in body should be at least {min} chars long"),
        ));
    }
    if let Some(p) = s.get("pattern").and_then(Value::as_str) {
        match Regex::new(p) {
            Ok(re) if !re.is_match(st) => errs.push(FieldError::invalid(
                path,
                value,
                &format!("{path} in body should match '{p}'"),
            )),
            _ => {}
        }
    }
    if let Some(f) = s.get("format").and_then(Value::as_str)
        && !check_format(f, st)
    {
        errs.push(FieldError::invalid(
            path,
            value,
            &format!("{path} in body must be of type {f}: {st:?}"),
        ));
    }
}

/// `minimum`/`maximum` (with their `exclusive*` flags) and the integer `format`s of a number.
fn validate_number(
    s: &Schema,
    value: &Value,
    n: &serde_json::Number,
    path: &str,
    errs: &mut Vec<FieldError>,
) {
    let x = n.as_f64().unwrap_or(0.0);
    let excl_min = s.get("exclusiveMinimum").and_then(Value::as_bool) == Some(true);
    let excl_max = s.get("exclusiveMaximum").and_then(Value::as_bool) == Some(true);
    if let Some(min) = s.get("minimum").and_then(Value::as_f64) {
        if excl_min && x <= min {
            errs.push(FieldError::invalid(
                path,
                value,
                &format!(
                    "{path} in body should be greater than {}",
                    json!(min_num(min))
                ),
            ));
        } else if x < min {
            errs.push(FieldError::invalid(
                path,
                value,
                &format!(
                    "{path} in body should be greater than or equal to {}",
                    json!(min_num(min))
                ),
            ));
        }
    }
    if let Some(max) = s.get("maximum").and_then(Value::as_f64) {
        if excl_max && x >= max {
            errs.push(FieldError::invalid(
                path,
                value,
                &format!("{path} in body should be less than {}", json!(min_num(max))),
            ));
        } else if x > max {
            errs.push(FieldError::invalid(
                path,
                value,
                &format!(
                    "{path} in body should be less than or equal to {}",
                    json!(min_num(max))
                ),
            ));
        }
    }
    if let Some(f) = s.get("format").and_then(Value::as_str) {
        let ok = match f {
            "int32" => n.as_i64().is_some_and(|i| i32::try_from(i).is_ok()),
            "int64" => n.is_i64() || n.is_u64(),
            _ => true,
        };
        if !ok {
            errs.push(FieldError::invalid(
                path,
                value,
                &format!("{path} in body must be of type {f}: {n}"),
            ));
        }
    }
}

/// `maxItems`/`minItems`, list-type uniqueness, then each item against `items`.
fn validate_array(
    s: &Schema,
    value: &Value,
    items: &[Value],
    path: &str,
    errs: &mut Vec<FieldError>,
) {
    if let Some(max) = s.get("maxItems").and_then(Value::as_u64)
        && items.len() as u64 > max
    {
        errs.push(FieldError::too_many(path, items.len(), max));
    }
    if let Some(min) = s.get("minItems").and_then(Value::as_u64)
        && (items.len() as u64) < min
    {
        errs.push(FieldError::invalid(
            path,
            value,
            &format!("{path} in body should have at least {min} items"),
        ));
    }
    check_list_type(s, items, path, errs);
    if let Some(item_schema) = s.get("items") {
        for (i, item) in items.iter().enumerate() {
            validate(item_schema, item, &format!("{path}[{i}]"), false, errs);
        }
    }
}

/// Duplicates in an `x-kubernetes-list-type: set` (whole items) or `map` (the list-map keys).
fn check_list_type(s: &Schema, items: &[Value], path: &str, errs: &mut Vec<FieldError>) {
    match s.get("x-kubernetes-list-type").and_then(Value::as_str) {
        Some("set") => {
            for (i, item) in items.iter().enumerate() {
                if items[..i].contains(item) {
                    errs.push(FieldError::duplicate(format!("{path}[{i}]"), item));
                }
            }
        }
        Some("map") => {
            let keys: Vec<&str> = s
                .get("x-kubernetes-list-map-keys")
                .and_then(Value::as_array)
                .map(|k| k.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let key_of = |item: &Value| -> Value {
                let mut m = serde_json::Map::new();
                for k in &keys {
                    m.insert(
                        (*k).to_owned(),
                        item.get(*k).cloned().unwrap_or(Value::Null),
                    );
                }
                Value::Object(m)
            };
            for (i, item) in items.iter().enumerate() {
                let k = key_of(item);
                if items[..i].iter().any(|prev| key_of(prev) == k) {
                    errs.push(FieldError::duplicate(format!("{path}[{i}]"), &k));
                }
            }
        }
        _ => {}
    }
}

/// `required`, `maxProperties`/`minProperties`, then each property against `properties` or
/// `additionalProperties` (root `metadata`, `apiVersion` and `kind` are skipped).
fn validate_object(
    s: &Schema,
    value: &Value,
    map: &serde_json::Map<String, Value>,
    path: &str,
    root: bool,
    errs: &mut Vec<FieldError>,
) {
    if let Some(req) = s.get("required").and_then(Value::as_array) {
        for r in req.iter().filter_map(Value::as_str) {
            if !map.contains_key(r) {
                errs.push(FieldError::required(join(path, r), ""));
            }
        }
    }
    if let Some(max) = s.get("maxProperties").and_then(Value::as_u64)
        && map.len() as u64 > max
    {
        errs.push(FieldError::too_many(path, map.len(), max));
    }
    if let Some(min) = s.get("minProperties").and_then(Value::as_u64)
        && (map.len() as u64) < min
    {
        errs.push(FieldError::invalid(
            path,
            value,
            &format!("{path} in body should have at least {min} properties"),
        ));
    }
    let props = s.get("properties").and_then(Value::as_object);
    for (k, v) in map {
        if root && (k == "metadata" || k == "apiVersion" || k == "kind") {
            continue;
        }
        if let Some(ps) = props.and_then(|p| p.get(k)) {
            validate(ps, v, &join(path, k), false, errs);
        } else if let Some(ap) = s.get("additionalProperties").filter(|a| a.is_object()) {
            validate(ap, v, &join(path, k), false, errs);
        }
    }
}

/// Value-validation combinators (structural schemas allow them without new fields): `allOf`,
/// `anyOf`, `oneOf`, `not`.
fn validate_combinators(
    s: &Schema,
    value: &Value,
    path: &str,
    root: bool,
    errs: &mut Vec<FieldError>,
) {
    if let Some(all) = s.get("allOf").and_then(Value::as_array) {
        for sub in all {
            validate(sub, value, path, root, errs);
        }
    }
    let passes = |sub: &Value| {
        let mut e = Vec::new();
        validate(sub, value, path, root, &mut e);
        e.is_empty()
    };
    if let Some(any) = s.get("anyOf").and_then(Value::as_array)
        && !any.iter().any(passes)
    {
        errs.push(FieldError::invalid(
            path,
            value,
            "must validate at least one schema (anyOf)",
        ));
    }
    if let Some(one) = s.get("oneOf").and_then(Value::as_array)
        && one.iter().filter(|sub| passes(sub)).count() != 1
    {
        errs.push(FieldError::invalid(
            path,
            value,
            "must validate one and only one schema (oneOf)",
        ));
    }
    if let Some(not) = s.get("not")
        && passes(not)
    {
        errs.push(FieldError::invalid(
            path,
            value,
            "must not validate the schema (not)",
        ));
    }
}

/// Prints whole-number bounds without a trailing `.0`, like Go's `%v` of the schema value.
fn min_num(x: f64) -> Value {
    if x.fract() == 0.0 && x.abs() < 9.0e15 {
        json!(x as i64)
    } else {
        json!(x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errs(schema: Value, v: Value) -> Vec<String> {
        let mut e = Vec::new();
        validate(&schema, &v, "", true, &mut e);
        e.iter().map(FieldError::line).collect()
    }

    #[test]
    fn enum_and_required_and_type() {
        let schema = json!({"type": "object", "properties": {"spec": {"type": "object", "required": ["name"], "properties": {
            "name": {"type": "string"},
            "steps": {"type": "array", "items": {"type": "object", "properties": {"type": {"type": "string", "enum": ["parallel", "sequential"]}}}},
            "n": {"type": "integer", "minimum": 1, "maximum": 5}
        }}}});
        let e = errs(
            schema,
            json!({"spec": {"steps": [{"type": "foo"}], "n": "x"}}),
        );
        assert!(
            e.contains(&"spec.name: Required value".to_string()),
            "{e:?}"
        );
        assert!(e.contains(&r#"spec.steps[0].type: Unsupported value: "foo": supported values: "parallel", "sequential""#.to_string()), "{e:?}");
        assert!(e.contains(&r#"spec.n: Invalid value: "string": spec.n in body must be of type integer: "string""#.to_string()), "{e:?}");
    }

    #[test]
    fn bounds_patterns_lists() {
        let schema = json!({"type": "object", "properties": {
            "n": {"type": "integer", "minimum": 1},
            "s": {"type": "string", "pattern": "^[a-z]+$", "maxLength": 3},
            "set": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}, "maxItems": 2},
            "m": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["k"], "items": {"type": "object", "properties": {"k": {"type": "string"}}}},
        }});
        let e = errs(
            schema,
            json!({"n": 0, "s": "ABCD", "set": ["a", "a", "b"], "m": [{"k": "x"}, {"k": "x"}]}),
        );
        assert!(
            e.contains(
                &"n: Invalid value: 0: n in body should be greater than or equal to 1".to_string()
            ),
            "{e:?}"
        );
        assert!(
            e.contains(&"s: Too long: may not be more than 3 bytes".to_string()),
            "{e:?}"
        );
        assert!(
            e.contains(
                &r#"s: Invalid value: "ABCD": s in body should match '^[a-z]+$'"#.to_string()
            ),
            "{e:?}"
        );
        assert!(
            e.contains(&r#"set[1]: Duplicate value: "a""#.to_string()),
            "{e:?}"
        );
        assert!(
            e.contains(&"set: Too many: 3: must have at most 2 items".to_string()),
            "{e:?}"
        );
        assert!(
            e.iter().any(|l| l.starts_with("m[1]: Duplicate value")),
            "{e:?}"
        );
    }
}
