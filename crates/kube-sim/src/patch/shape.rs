//! How lists merge, per field: from the CRD schema (`x-kubernetes-list-type` / `-list-map-keys`)
//! for custom resources, from the strategic-merge-patch metadata of the Go types for built-ins.
//! Shared by strategic merge patch, server-side apply and managed-fields tracking.

use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
pub enum ListKind {
    /// Replaced as a whole.
    Atomic,
    /// Items are scalars merged as a set.
    Set,
    /// Items are objects merged by these key fields.
    Map(Vec<String>),
}

/// A position in an object's type, for answering "how does this list merge".
#[derive(Debug, Clone, Copy)]
pub enum Shape<'a> {
    /// A custom resource: follow the schema (`None` once outside it).
    Schema(Option<&'a Value>),
    /// A built-in: use the merge-key table keyed by field name.
    Builtin,
}

/// Built-in list fields and their strategic merge keys (`patchMergeKey` in the Go types).
fn builtin_merge_key(field: &str, items: &[Value]) -> Option<&'static str> {
    Some(match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "env"
        | "volumes"
        | "imagePullSecrets"
        | "secrets"
        | "resourceClaims" => "name",
        "volumeMounts" => "mountPath",
        "volumeDevices" => "devicePath",
        "conditions" => "type",
        "ownerReferences" => "uid",
        "hostAliases" => "ip",
        "topologySpreadConstraints" => "topologyKey",
        "ports" => {
            if items.iter().any(|i| i.get("containerPort").is_some()) {
                "containerPort"
            } else {
                "port"
            }
        }
        _ => return None,
    })
}

impl<'a> Shape<'a> {
    pub fn for_type(schema: Option<&'a Value>, custom: bool) -> Self {
        if custom {
            Shape::Schema(schema)
        } else {
            Shape::Builtin
        }
    }

    pub fn child(self, key: &str) -> Shape<'a> {
        match self {
            Shape::Schema(Some(s)) => {
                let next = s
                    .get("properties")
                    .and_then(|p| p.get(key))
                    .or_else(|| s.get("additionalProperties").filter(|a| a.is_object()));
                Shape::Schema(next)
            }
            other => other,
        }
    }

    pub fn items(self) -> Shape<'a> {
        match self {
            Shape::Schema(Some(s)) => Shape::Schema(s.get("items")),
            other => other,
        }
    }

    /// How the list under `field` (this shape is the list's own) merges.
    pub fn list_kind(self, field: &str, items: &[Value]) -> ListKind {
        if field == "finalizers" {
            return ListKind::Set;
        }
        match self {
            Shape::Schema(Some(s)) => match s.get("x-kubernetes-list-type").and_then(Value::as_str)
            {
                Some("set") => ListKind::Set,
                Some("map") => ListKind::Map(
                    s.get("x-kubernetes-list-map-keys")
                        .and_then(Value::as_array)
                        .map(|k| {
                            k.iter()
                                .filter_map(|x| x.as_str().map(str::to_owned))
                                .collect()
                        })
                        .unwrap_or_default(),
                ),
                _ => ListKind::Atomic,
            },
            Shape::Schema(None) => ListKind::Atomic,
            Shape::Builtin => match builtin_merge_key(field, items) {
                Some(k) if items.iter().all(Value::is_object) => ListKind::Map(vec![k.to_owned()]),
                _ => ListKind::Atomic,
            },
        }
    }
}

/// The key object of a list-map item, e.g. `{"name":"c"}`.
pub fn item_key(item: &Value, keys: &[String]) -> Value {
    let mut m = serde_json::Map::new();
    for k in keys {
        m.insert(k.clone(), item.get(k).cloned().unwrap_or(Value::Null));
    }
    Value::Object(m)
}
