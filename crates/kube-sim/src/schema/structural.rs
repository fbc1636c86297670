//! CRD validation: the object-level rules (names, versions) and the structural-schema rules the
//! apiserver enforces for `apiextensions.k8s.io/v1` (every node typed, no `$ref`, metadata only
//! restricting name/generateName, ...). Error paths and messages follow apiextensions-apiserver.

use serde_json::{Map, Value, json};

use crate::error::FieldError;

const TYPES: &[&str] = &["array", "boolean", "integer", "number", "object", "string"];

#[derive(Clone, Copy, PartialEq)]
enum Level {
    Root,
    Field,
    Item,
}

/// All problems with a CRD object, empty when it can be accepted.
pub fn check_crd(crd: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let spec = &crd["spec"];
    let group = spec["group"].as_str().unwrap_or_default();
    let names = &spec["names"];
    let plural = names["plural"].as_str().unwrap_or_default();
    let name = crd["metadata"]["name"].as_str().unwrap_or_default();
    if group.is_empty() {
        errs.push(FieldError::required("spec.group", ""));
    } else if !group.contains('.') {
        errs.push(FieldError::invalid(
            "spec.group",
            &json!(group),
            "should be a domain with at least one dot",
        ));
    }
    if plural.is_empty() {
        errs.push(FieldError::required("spec.names.plural", ""));
    }
    if names["kind"].as_str().unwrap_or_default().is_empty() {
        errs.push(FieldError::required("spec.names.kind", ""));
    }
    if !plural.is_empty() && !group.is_empty() && name != format!("{plural}.{group}") {
        errs.push(FieldError::invalid(
            "metadata.name",
            &json!(name),
            "must be spec.names.plural+\".\"+spec.group",
        ));
    }
    match spec["scope"].as_str() {
        Some("Namespaced") | Some("Cluster") => {}
        Some(other) => errs.push(FieldError::not_supported(
            "spec.scope",
            &json!(other),
            &[json!("Cluster"), json!("Namespaced")],
        )),
        None => errs.push(FieldError::required("spec.scope", "")),
    }
    let versions = spec["versions"].as_array().cloned().unwrap_or_default();
    check_versions(&versions, &mut errs);
    errs
}

/// Exactly one storage version; each version named, with a schema, and valid printer columns.
fn check_versions(versions: &[Value], errs: &mut Vec<FieldError>) {
    if versions.is_empty() {
        errs.push(FieldError::required(
            "spec.versions",
            "must have exactly one version marked as storage version",
        ));
    } else {
        let storage = versions
            .iter()
            .filter(|v| v["storage"].as_bool() == Some(true))
            .count();
        if storage != 1 {
            errs.push(FieldError::invalid(
                "spec.versions",
                &json!(
                    versions
                        .iter()
                        .filter_map(|v| v["name"].as_str())
                        .collect::<Vec<_>>()
                ),
                "must have exactly one version marked as storage version",
            ));
        }
    }
    for (i, v) in versions.iter().enumerate() {
        let base = format!("spec.versions[{i}]");
        if v["name"].as_str().unwrap_or_default().is_empty() {
            errs.push(FieldError::required(format!("{base}.name"), ""));
        }
        match v["schema"]["openAPIV3Schema"].as_object() {
            None => errs.push(FieldError::required(
                format!("{base}.schema.openAPIV3Schema"),
                "schemas are required",
            )),
            Some(_) => check_schema(
                &v["schema"]["openAPIV3Schema"],
                &format!("{base}.schema.openAPIV3Schema"),
                Level::Root,
                errs,
            ),
        }
        check_printer_columns(v, &base, errs);
    }
}

/// `additionalPrinterColumns`: name, jsonPath, and a known type.
fn check_printer_columns(v: &Value, base: &str, errs: &mut Vec<FieldError>) {
    if let Some(cols) = v["additionalPrinterColumns"].as_array() {
        for (j, c) in cols.iter().enumerate() {
            let p = format!("{base}.additionalPrinterColumns[{j}]");
            if c["name"].as_str().unwrap_or_default().is_empty() {
                errs.push(FieldError::required(format!("{p}.name"), ""));
            }
            if c["jsonPath"].as_str().unwrap_or_default().is_empty() {
                errs.push(FieldError::required(format!("{p}.jsonPath"), ""));
            }
            let t = c["type"].as_str().unwrap_or_default();
            if !["integer", "number", "string", "boolean", "date"].contains(&t) {
                errs.push(FieldError::not_supported(
                    format!("{p}.type"),
                    &json!(t),
                    &[
                        json!("boolean"),
                        json!("date"),
                        json!("integer"),
                        json!("number"),
                        json!("string"),
                    ],
                ));
            }
        }
    }
}

fn check_schema(s: &Value, path: &str, level: Level, errs: &mut Vec<FieldError>) {
    let Some(obj) = s.as_object() else {
        errs.push(FieldError::invalid(path, s, "must be a schema object"));
        return;
    };
    if obj.contains_key("$ref") {
        errs.push(FieldError::forbidden(
            format!("{path}.$ref"),
            "$ref is not supported",
        ));
    }
    let ty = check_type(obj, path, level, errs);
    check_null_in_enum(obj, path, ty, errs);
    if obj.get("uniqueItems").and_then(Value::as_bool) == Some(true) {
        errs.push(FieldError::forbidden(
            format!("{path}.uniqueItems"),
            "uniqueItems cannot be set to true since the runtime complexity becomes quadratic",
        ));
    }
    check_children(obj, ty, path, level, errs);
    check_list_type(obj, ty, path, errs);
    check_validations(obj, path, errs);
}

/// The node's type: set (unless int-or-string or preserving unknown fields), known, `object` at
/// the root. Returns it (empty when unset).
fn check_type<'a>(
    obj: &'a Map<String, Value>,
    path: &str,
    level: Level,
    errs: &mut Vec<FieldError>,
) -> &'a str {
    let ty = obj.get("type").and_then(Value::as_str).unwrap_or_default();
    let int_or_string = obj
        .get("x-kubernetes-int-or-string")
        .and_then(Value::as_bool)
        == Some(true);
    let preserve = obj.get("x-kubernetes-preserve-unknown-fields");
    if preserve.is_some_and(|p| p.as_bool() != Some(true)) {
        errs.push(FieldError::invalid(
            format!("{path}.x-kubernetes-preserve-unknown-fields"),
            preserve.unwrap_or(&Value::Null),
            "must be true or undefined",
        ));
    }
    let preserve = preserve.and_then(Value::as_bool) == Some(true);
    if int_or_string && !ty.is_empty() {
        errs.push(FieldError::invalid(
            format!("{path}.type"),
            &json!(ty),
            "must be empty if x-kubernetes-int-or-string is true",
        ));
    }
    if !ty.is_empty() && !TYPES.contains(&ty) {
        errs.push(FieldError::not_supported(
            format!("{path}.type"),
            &json!(ty),
            &TYPES.iter().map(|t| json!(t)).collect::<Vec<_>>(),
        ));
    }
    if ty.is_empty() && !int_or_string && !preserve {
        let detail = match level {
            Level::Root => "must not be empty at the root",
            Level::Field => "must not be empty for specified object fields",
            Level::Item => "must not be empty for specified array items",
        };
        errs.push(FieldError::required(format!("{path}.type"), detail));
    }
    if level == Level::Root && !ty.is_empty() && ty != "object" {
        errs.push(FieldError::invalid(
            format!("{path}.type"),
            &json!(ty),
            "must be object at the root",
        ));
    }
    ty
}

/// `additionalProperties`, `properties` and `items`, each checked as a schema in turn.
fn check_children(
    obj: &Map<String, Value>,
    ty: &str,
    path: &str,
    level: Level,
    errs: &mut Vec<FieldError>,
) {
    if let Some(ap) = obj.get("additionalProperties") {
        if obj.contains_key("properties") {
            errs.push(FieldError::forbidden(
                format!("{path}.additionalProperties"),
                "additionalProperties and properties are mutual exclusive",
            ));
        }
        match ap {
            Value::Bool(false) => errs.push(FieldError::forbidden(
                format!("{path}.additionalProperties"),
                "additionalProperties cannot be set to false",
            )),
            Value::Object(_) => check_schema(
                ap,
                &format!("{path}.additionalProperties"),
                Level::Field,
                errs,
            ),
            _ => {}
        }
    }
    if let Some(props) = obj.get("properties").and_then(Value::as_object) {
        for (k, child) in props {
            let p = format!("{path}.properties[{k}]");
            if level == Level::Root && k == "metadata" {
                check_root_metadata(child, &p, errs);
                continue;
            }
            check_schema(child, &p, Level::Field, errs);
        }
    }
    match obj.get("items") {
        Some(Value::Array(_)) => errs.push(FieldError::forbidden(
            format!("{path}.items"),
            "items must be a schema object and not an array",
        )),
        Some(items @ Value::Object(_)) => {
            check_schema(items, &format!("{path}.items"), Level::Item, errs)
        }
        Some(_) => errs.push(FieldError::invalid(
            format!("{path}.items"),
            &obj["items"],
            "must be a schema object",
        )),
        None if ty == "array" => errs.push(FieldError::required(
            format!("{path}.items"),
            "must be specified",
        )),
        None => {}
    }
}

/// `x-kubernetes-list-type` (and the list-map keys of a `map`).
fn check_list_type(obj: &Map<String, Value>, ty: &str, path: &str, errs: &mut Vec<FieldError>) {
    if let Some(lt) = obj.get("x-kubernetes-list-type") {
        let lt = lt.as_str().unwrap_or_default();
        if !["atomic", "set", "map"].contains(&lt) {
            errs.push(FieldError::not_supported(
                format!("{path}.x-kubernetes-list-type"),
                &json!(lt),
                &[json!("atomic"), json!("set"), json!("map")],
            ));
        }
        if ty != "array" {
            errs.push(FieldError::invalid(
                format!("{path}.x-kubernetes-list-type"),
                &json!(lt),
                "must only be used on type array",
            ));
        }
        if lt == "map" {
            let keys = obj
                .get("x-kubernetes-list-map-keys")
                .and_then(Value::as_array);
            match keys {
                None => errs.push(FieldError::required(
                    format!("{path}.x-kubernetes-list-map-keys"),
                    "must not be empty if x-kubernetes-list-type is map",
                )),
                Some(keys) => {
                    let items = obj.get("items").cloned().unwrap_or(Value::Null);
                    if items["type"].as_str() != Some("object") {
                        errs.push(FieldError::invalid(
                            format!("{path}.items.type"),
                            &items["type"],
                            "must be object if parent array's x-kubernetes-list-type is map",
                        ));
                    }
                    for k in keys {
                        let k = k.as_str().unwrap_or_default();
                        if items["properties"].get(k).is_none() {
                            errs.push(FieldError::invalid(
                                format!("{path}.x-kubernetes-list-map-keys"),
                                &json!(keys),
                                &format!(
                                    "entries must all be names of item properties ({k:?} is not)"
                                ),
                            ));
                        }
                    }
                }
            }
        }
    }
}

/// `x-kubernetes-validations`: a list of CEL rules that compile.
fn check_validations(obj: &Map<String, Value>, path: &str, errs: &mut Vec<FieldError>) {
    if let Some(rules) = obj.get("x-kubernetes-validations") {
        match rules.as_array() {
            Some(rules) => {
                for (i, r) in rules.iter().enumerate() {
                    if r["rule"].as_str().unwrap_or_default().trim().is_empty() {
                        errs.push(FieldError::required(
                            format!("{path}.x-kubernetes-validations[{i}].rule"),
                            "",
                        ));
                    } else if let Err(e) =
                        crate::schema::cel::compile(r["rule"].as_str().unwrap_or_default())
                    {
                        errs.push(FieldError::invalid(
                            format!("{path}.x-kubernetes-validations[{i}].rule"),
                            &r["rule"],
                            &format!("compilation failed: {e}"),
                        ));
                    }
                }
            }
            None => errs.push(FieldError::invalid(
                format!("{path}.x-kubernetes-validations"),
                rules,
                "must be a list",
            )),
        }
    }
}

/// `null` inside `enum` is refused as Kubernetes 1.20 does (kubernetes#104969, accepted with
/// `nullable: true` from later patch releases on): a CRD must install on every supported server,
/// and `nullable` alone admits null everywhere.
fn check_null_in_enum(
    obj: &serde_json::Map<String, Value>,
    path: &str,
    ty: &str,
    errs: &mut Vec<FieldError>,
) {
    let Some(values) = obj.get("enum").and_then(Value::as_array) else {
        return;
    };
    for (i, _) in values.iter().enumerate().filter(|(_, v)| v.is_null()) {
        errs.push(FieldError::invalid(
            format!("{path}.enum[{i}]"),
            &Value::Null,
            &format!("must be of type {ty}; null in an enum is refused by Kubernetes 1.20 (nullable: true is enough)"),
        ));
    }
}

fn check_root_metadata(s: &Value, path: &str, errs: &mut Vec<FieldError>) {
    let forbidden = || {
        FieldError::forbidden(
            path,
            "must not specify anything other than name and generateName, but metadata is implicitly specified",
        )
    };
    let Some(obj) = s.as_object() else {
        errs.push(forbidden());
        return;
    };
    for (k, v) in obj {
        match k.as_str() {
            "type" if v.as_str() == Some("object") => {}
            "properties" => {
                let ok = v.as_object().is_some_and(|p| {
                    p.iter().all(|(name, sub)| {
                        (name == "name" || name == "generateName")
                            && sub.as_object().is_some_and(|o| {
                                o.keys().all(|k| k != "properties" && k != "items")
                            })
                    })
                });
                if !ok {
                    errs.push(forbidden());
                    return;
                }
            }
            _ => {
                errs.push(forbidden());
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crd(schema: Value) -> Value {
        json!({
            "metadata": {"name": "foos.example.com"},
            "spec": {"group": "example.com", "scope": "Namespaced",
                "names": {"plural": "foos", "kind": "Foo"},
                "versions": [{"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": schema}}]}
        })
    }

    #[test]
    fn missing_type_names_the_field() {
        let errs = check_crd(&crd(
            json!({"type": "object", "properties": {"spec": {"properties": {"a": {"type": "string"}}}}}),
        ));
        assert_eq!(errs.len(), 1);
        assert_eq!(
            errs[0].line(),
            "spec.versions[0].schema.openAPIV3Schema.properties[spec].type: Required value: must not be empty for specified object fields"
        );
    }

    #[test]
    fn structural_schema_passes() {
        let errs = check_crd(&crd(json!({"type": "object", "properties": {
            "metadata": {"type": "object"},
            "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
            "n": {"x-kubernetes-int-or-string": true},
            "l": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
                  "items": {"type": "object", "properties": {"name": {"type": "string"}}}}
        }})));
        assert!(errs.is_empty(), "{errs:?}");
    }

    #[test]
    fn ref_and_metadata_rules() {
        let errs = check_crd(&crd(json!({"type": "object", "properties": {
            "metadata": {"type": "object", "properties": {"labels": {"type": "object"}}},
            "spec": {"$ref": "#/x", "type": "object"}
        }})));
        let lines: Vec<String> = errs.iter().map(FieldError::line).collect();
        assert!(
            lines
                .iter()
                .any(|l| l.contains("properties[metadata]: Forbidden")),
            "{lines:?}"
        );
        assert!(
            lines
                .iter()
                .any(|l| l.contains("properties[spec].$ref: Forbidden")),
            "{lines:?}"
        );
    }
}
