//! OpenAPI v3 documents (`/openapi/v3` index and one document per group-version), which kubectl
//! uses to check that the server supports `fieldValidation` and for `kubectl explain`. Custom
//! resources get their CRD schema; built-ins a permissive-but-correctly-tagged schema.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use crate::registry::{Registry, ResourceType};

const OBJECT_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";
const LIST_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta";

fn reverse_domain(group: &str) -> String {
    let mut parts: Vec<&str> = group.split('.').collect();
    parts.reverse();
    parts.join(".")
}

/// Definition name as the apiserver spells it.
pub fn definition_name(rt: &ResourceType, kind: &str) -> String {
    if rt.custom {
        return format!("{}.{}.{kind}", reverse_domain(&rt.group), rt.version);
    }
    let pkg = match rt.group.as_str() {
        "" => "core",
        "apiextensions.k8s.io" => {
            return format!(
                "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.{}.{kind}",
                rt.version
            );
        }
        g => g.split('.').next().unwrap_or(g),
    };
    format!("io.k8s.api.{pkg}.{}.{kind}", rt.version)
}

fn gvk(rt: &ResourceType, kind: &str) -> Value {
    json!([{"group": rt.group, "version": rt.version, "kind": kind}])
}

fn meta_ref(name: &str) -> Value {
    json!({"allOf": [{"$ref": format!("#/components/schemas/{name}")}], "default": {}})
}

fn object_meta_schema() -> Value {
    let s = json!({"type": "string"});
    let map = json!({"type": "object", "additionalProperties": {"type": "string", "default": ""}});
    json!({
        "description": "ObjectMeta is metadata that all persisted resources must have, which includes all objects users must create.",
        "type": "object",
        "properties": {
            "name": s, "generateName": s, "namespace": s, "uid": s, "resourceVersion": s,
            "generation": {"type": "integer", "format": "int64"},
            "creationTimestamp": {"type": "string", "format": "date-time"},
            "deletionTimestamp": {"type": "string", "format": "date-time"},
            "deletionGracePeriodSeconds": {"type": "integer", "format": "int64"},
            "labels": map, "annotations": map,
            "finalizers": {"type": "array", "items": {"type": "string", "default": ""}, "x-kubernetes-list-type": "set"},
            "ownerReferences": {"type": "array", "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                "x-kubernetes-patch-merge-key": "uid", "x-kubernetes-patch-strategy": "merge"},
            "managedFields": {"type": "array", "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}
        }
    })
}

fn kind_schema(rt: &ResourceType) -> Value {
    let mut schema = match &rt.schema {
        Some(s) if rt.custom => s.clone(),
        _ => json!({
            "type": "object",
            "properties": {
                "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
            },
            "x-kubernetes-preserve-unknown-fields": true
        }),
    };
    if !schema["properties"].is_object() {
        schema["properties"] = json!({});
    }
    let props = &mut schema["properties"];
    props["apiVersion"] = json!({"type": "string", "description": "APIVersion defines the versioned schema of this representation of an object."});
    props["kind"] = json!({"type": "string", "description": "Kind is a string value representing the REST resource this object represents."});
    props["metadata"] = meta_ref(OBJECT_META);
    if rt.group.is_empty() && (rt.kind == "ConfigMap" || rt.kind == "Secret") {
        props["data"] = json!({"type": "object", "additionalProperties": {"type": "string"}});
        props["stringData"] = json!({"type": "object", "additionalProperties": {"type": "string"}});
        props["binaryData"] =
            json!({"type": "object", "additionalProperties": {"type": "string", "format": "byte"}});
        props["type"] = json!({"type": "string"});
        props["immutable"] = json!({"type": "boolean"});
    }
    schema["x-kubernetes-group-version-kind"] = gvk(rt, &rt.kind);
    schema
}

fn list_schema(rt: &ResourceType) -> Value {
    json!({
        "type": "object",
        "required": ["items"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": meta_ref(LIST_META),
            "items": {"type": "array", "items": {"$ref": format!("#/components/schemas/{}", definition_name(rt, &rt.kind))}}
        },
        "x-kubernetes-group-version-kind": gvk(rt, &rt.list_kind),
    })
}

fn query_param(name: &str, ty: &str) -> Value {
    json!({"name": name, "in": "query", "schema": {"type": ty, "uniqueItems": true}})
}

fn json_content(reference: &str) -> Value {
    json!({"application/json": {"schema": {"$ref": format!("#/components/schemas/{reference}")}}})
}

fn operation(
    rt: &ResourceType,
    action: &str,
    op_id: &str,
    params: Vec<Value>,
    body: Option<Value>,
    response: &str,
) -> Value {
    let mut op = json!({
        "operationId": op_id,
        "parameters": params,
        "responses": {"200": {"description": "OK", "content": json_content(response)}},
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": {"group": rt.group, "version": rt.version, "kind": rt.kind},
    });
    if let Some(b) = body {
        op["requestBody"] = b;
    }
    op
}

fn write_params() -> Vec<Value> {
    vec![
        query_param("dryRun", "string"),
        query_param("fieldManager", "string"),
        query_param("fieldValidation", "string"),
    ]
}

fn paths_for(rt: &ResourceType, paths: &mut Map<String, Value>) {
    let prefix = if rt.group.is_empty() {
        format!("/api/{}", rt.version)
    } else {
        format!("/apis/{}/{}", rt.group, rt.version)
    };
    let coll = if rt.namespaced {
        format!("{prefix}/namespaces/{{namespace}}/{}", rt.plural)
    } else {
        format!("{prefix}/{}", rt.plural)
    };
    let item = format!("{coll}/{{name}}");
    let def = definition_name(rt, &rt.kind);
    let list_def = definition_name(rt, &rt.list_kind);
    let id = format!("{}{}", rt.kind, rt.version);
    let mut path_params =
        vec![json!({"name": "name", "in": "path", "required": true, "schema": {"type": "string"}})];
    if rt.namespaced {
        path_params.push(json!({"name": "namespace", "in": "path", "required": true, "schema": {"type": "string"}}));
    }
    let body = json!({"content": json_content(&def), "required": true});
    let patch_body = json!({"content": {
        "application/apply-patch+yaml": {"schema": {"type": "object"}},
        "application/json-patch+json": {"schema": {"type": "object"}},
        "application/merge-patch+json": {"schema": {"type": "object"}},
    }, "required": true});
    let mut patch_params = write_params();
    patch_params.push(query_param("force", "boolean"));

    let mut coll_ops = json!({
        "get": operation(rt, "list", &format!("list{id}"), vec![query_param("labelSelector", "string"), query_param("fieldSelector", "string"), query_param("limit", "integer"), query_param("continue", "string"), query_param("watch", "boolean")], None, &list_def),
        "post": operation(rt, "post", &format!("create{id}"), write_params(), Some(body.clone()), &def),
        "delete": operation(rt, "deletecollection", &format!("deletecollection{id}"), vec![query_param("dryRun", "string")], None, "io.k8s.apimachinery.pkg.apis.meta.v1.Status"),
    });
    if rt.namespaced {
        coll_ops["parameters"] = json!([path_params[1]]);
    }
    paths.insert(coll, coll_ops);
    let item_ops = json!({
        "get": operation(rt, "get", &format!("read{id}"), vec![], None, &def),
        "put": operation(rt, "put", &format!("replace{id}"), write_params(), Some(body.clone()), &def),
        "patch": operation(rt, "patch", &format!("patch{id}"), patch_params.clone(), Some(patch_body.clone()), &def),
        "delete": operation(rt, "delete", &format!("delete{id}"), vec![query_param("dryRun", "string"), query_param("propagationPolicy", "string")], None, "io.k8s.apimachinery.pkg.apis.meta.v1.Status"),
        "parameters": path_params.clone(),
    });
    paths.insert(item.clone(), item_ops);
    if rt.has_status {
        paths.insert(
            format!("{item}/status"),
            json!({
                "get": operation(rt, "get", &format!("read{id}Status"), vec![], None, &def),
                "put": operation(rt, "put", &format!("replace{id}Status"), write_params(), Some(body), &def),
                "patch": operation(rt, "patch", &format!("patch{id}Status"), patch_params, Some(patch_body), &def),
                "parameters": path_params,
            }),
        );
    }
}

/// The OpenAPI v3 document of one group-version, or `None` if it is not served.
pub fn group_version_doc(reg: &Registry, group: &str, version: &str) -> Option<Value> {
    let types = reg.in_group_version(group, version);
    if types.is_empty() {
        return None;
    }
    let mut schemas = Map::new();
    let mut paths = Map::new();
    schemas.insert(OBJECT_META.into(), object_meta_schema());
    schemas.insert(
        LIST_META.into(),
        json!({"type": "object", "properties": {"continue": {"type": "string"}, "remainingItemCount": {"type": "integer"}, "resourceVersion": {"type": "string"}}}),
    );
    schemas.insert(
        "io.k8s.apimachinery.pkg.apis.meta.v1.Status".into(),
        json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true, "x-kubernetes-group-version-kind": [{"group": "", "kind": "Status", "version": "v1"}]}),
    );
    for rt in &types {
        schemas.insert(definition_name(rt, &rt.kind), kind_schema(rt));
        schemas.insert(definition_name(rt, &rt.list_kind), list_schema(rt));
        paths_for(rt, &mut paths);
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.35.0"},
        "paths": paths,
        "components": {"schemas": schemas},
    }))
}

fn hash(v: &Value) -> String {
    let mut h: u64 = 1469598103934665603;
    for b in v.to_string().bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(1099511628211);
    }
    format!("{h:016X}{:016X}", h.rotate_left(17) ^ 0x9E37_79B9_7F4A_7C15)
}

/// `/openapi/v3`: the index of per-group-version documents, with content hashes for caching.
pub fn index(reg: &Registry) -> Value {
    let mut paths = BTreeMap::new();
    for (group, versions) in reg.groups() {
        for v in versions {
            let key = if group.is_empty() {
                format!("api/{v}")
            } else {
                format!("apis/{group}/{v}")
            };
            if let Some(doc) = group_version_doc(reg, &group, &v) {
                paths.insert(
                    key.clone(),
                    json!({"serverRelativeURL": format!("/openapi/v3/{key}?hash={}", hash(&doc))}),
                );
            }
        }
    }
    json!({"paths": paths})
}
