//! Events: `events.k8s.io/v1` and core `v1` are two API versions of **one** resource, as in the
//! real apiserver. Objects are stored once, in the core `v1` shape (the apiserver's internal type
//! is the core Event), and converted at the API boundary by the rules of k8s.io/kubernetes
//! `pkg/apis/events/v1/conversion.go`. The conversion only renames top-level fields:
//!
//! | events.k8s.io/v1           | core v1              |
//! |----------------------------|----------------------|
//! | `regarding`                | `involvedObject`     |
//! | `note`                     | `message`            |
//! | `reportingController`      | `reportingComponent` |
//! | `deprecatedSource`         | `source`             |
//! | `deprecatedFirstTimestamp` | `firstTimestamp`     |
//! | `deprecatedLastTimestamp`  | `lastTimestamp`      |
//! | `deprecatedCount`          | `count`              |
//!
//! `metadata`, `eventTime`, `series` (`count`, `lastObservedTime`), `related`, `action`, `reason`,
//! `type` and `reportingInstance` are spelled the same in both. Nothing else is derived: like the
//! apiserver, `reportingController` is not copied into `source.component` (readers such as
//! `kubectl describe` and the `source` field selector fall back to it themselves).
//!
//! A field that only exists in the other version (`message` sent to events.k8s.io/v1, `note`
//! sent to core v1) is an unknown field there: it is dropped, with the usual `fieldValidation`
//! warning or Strict error. Field selectors of events.k8s.io/v1 are translated to the core labels
//! (the apiserver's field label conversion), and `managedFields` entries keep the field names of
//! their own `apiVersion`.

use std::borrow::Cow;

use serde_json::{Map, Value};

use crate::registry::split_api_version;

pub const GROUP: &str = "events.k8s.io";

/// (events.k8s.io/v1 name, core v1 name) of the fields that differ.
const RENAMES: &[(&str, &str)] = &[
    ("regarding", "involvedObject"),
    ("note", "message"),
    ("reportingController", "reportingComponent"),
    ("deprecatedSource", "source"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedCount", "count"),
];

/// events.k8s.io/v1 field selector labels and the core labels they select on
/// (`AddFieldLabelConversionsForEvent` of pkg/apis/events/v1).
const FIELD_LABELS: &[(&str, &str)] = &[
    ("metadata.name", "metadata.name"),
    ("metadata.namespace", "metadata.namespace"),
    ("reason", "reason"),
    ("regarding.kind", "involvedObject.kind"),
    ("regarding.namespace", "involvedObject.namespace"),
    ("regarding.name", "involvedObject.name"),
    ("regarding.uid", "involvedObject.uid"),
    ("regarding.apiVersion", "involvedObject.apiVersion"),
    (
        "regarding.resourceVersion",
        "involvedObject.resourceVersion",
    ),
    ("regarding.fieldPath", "involvedObject.fieldPath"),
    ("reportingController", "reportingComponent"),
    ("source", "source"),
    ("type", "type"),
];

/// Which of the two API versions an Event object is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// Core `v1` (also the storage shape).
    Core,
    /// `events.k8s.io/v1`.
    Events,
}

impl Version {
    pub fn of_group(group: &str) -> Self {
        if group == GROUP {
            Version::Events
        } else {
            Version::Core
        }
    }

    /// From an `apiVersion` (`v1` or `events.k8s.io/v1`); `None` for anything else.
    pub fn of_api_version(api_version: &str) -> Option<Self> {
        match split_api_version(api_version) {
            ("", _) if !api_version.is_empty() => Some(Version::Core),
            (GROUP, _) => Some(Version::Events),
            _ => None,
        }
    }

    /// The version an object is written in, from its `apiVersion`.
    pub fn of_object(obj: &Value) -> Option<Self> {
        obj.get("apiVersion")
            .and_then(Value::as_str)
            .and_then(Self::of_api_version)
    }
}

/// Whether `(group, kind)` is one of the two Event APIs.
pub fn is_event(group: &str, kind: &str) -> bool {
    kind == "Event" && (group.is_empty() || group == GROUP)
}

impl Version {
    fn other(self) -> Self {
        match self {
            Version::Core => Version::Events,
            Version::Events => Version::Core,
        }
    }
}

/// The spelling of a renamed field in `version`.
fn spelled(r: &(&'static str, &'static str), version: Version) -> &'static str {
    match version {
        Version::Events => r.0,
        Version::Core => r.1,
    }
}

/// The name a top-level field of a `from` object has in `to`; `None` when the field belongs to
/// the other version only (an unknown field in `from`).
fn rename(key: &str, from: Version, to: Version) -> Option<&str> {
    if RENAMES.iter().any(|r| spelled(r, from.other()) == key) {
        return None;
    }
    Some(
        RENAMES
            .iter()
            .find(|r| spelled(r, from) == key)
            .map_or(key, |r| spelled(r, to)),
    )
}

/// Converts an Event written in `from` to `to` (top-level fields renamed; `apiVersion` and
/// `kind` are left to the caller). Fields of neither version are carried over unchanged.
pub fn convert(obj: &Value, from: Version, to: Version) -> Value {
    let Some(m) = obj.as_object() else {
        return obj.clone();
    };
    let mut out = Map::with_capacity(m.len());
    for (k, v) in m {
        if let Some(name) = rename(k, from, to) {
            out.insert(name.to_owned(), v.clone());
        }
    }
    Value::Object(out)
}

/// Removes the top-level fields that exist only in the other version (unknown here) and returns
/// their names.
pub fn prune_foreign(obj: &mut Value, version: Version) -> Vec<String> {
    let Some(m) = obj.as_object_mut() else {
        return Vec::new();
    };
    let foreign: Vec<String> = m
        .keys()
        .filter(|k| rename(k, version, version).is_none())
        .cloned()
        .collect();
    for k in &foreign {
        m.remove(k);
    }
    foreign
}

/// The object in the core shape (for printing); borrowed when it already is.
pub fn core_view(obj: &Value) -> Cow<'_, Value> {
    match Version::of_object(obj) {
        Some(Version::Events) => Cow::Owned(convert(obj, Version::Events, Version::Core)),
        _ => Cow::Borrowed(obj),
    }
}

/// Renames the top-level keys (`f:regarding`, ...) of a FieldsV1 set.
fn convert_fields_v1(fields: &Value, from: Version, to: Version) -> Value {
    let Some(m) = fields.as_object() else {
        return fields.clone();
    };
    let mut out = Map::with_capacity(m.len());
    for (k, v) in m {
        match k.strip_prefix("f:") {
            Some(field) => {
                if let Some(name) = rename(field, from, to) {
                    out.insert(format!("f:{name}"), v.clone());
                }
            }
            None => {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    Value::Object(out)
}

/// Rewrites the field sets of every `managedFields` entry: given the entry's own version,
/// `from` says which version its set is written in now and `to` which one it is wanted in.
fn convert_managed(
    obj: &mut Value,
    from: impl Fn(Version) -> Version,
    to: impl Fn(Version) -> Version,
) {
    let Some(entries) = obj["metadata"]
        .get_mut("managedFields")
        .and_then(Value::as_array_mut)
    else {
        return;
    };
    for e in entries {
        let Some(own) = e
            .get("apiVersion")
            .and_then(Value::as_str)
            .and_then(Version::of_api_version)
        else {
            continue;
        };
        let (f, t) = (from(own), to(own));
        if f != t
            && let Some(fields) = e.get("fieldsV1")
        {
            e["fieldsV1"] = convert_fields_v1(fields, f, t);
        }
    }
}

/// Expresses every `managedFields` set in `version` (each is stored in its entry's own
/// `apiVersion`), so that a write at `version` compares like with like.
pub fn managed_fields_to(obj: &mut Value, version: Version) {
    convert_managed(obj, |own| own, |_| version);
}

/// The inverse of [`managed_fields_to`]: sets written in `version` go back to their entry's
/// own `apiVersion`.
pub fn managed_fields_home(obj: &mut Value, version: Version) {
    convert_managed(obj, |_| version, |own| own);
}

/// The core label an events.k8s.io/v1 field selector label selects on (`None`: not supported).
pub fn field_label(label: &str) -> Option<&'static str> {
    FIELD_LABELS
        .iter()
        .find(|(l, _)| *l == label)
        .map(|(_, core)| *core)
}

/// State files written before both APIs shared one bucket kept events.k8s.io Events apart:
/// replay them into the core bucket, converted.
pub fn migrate_record(key: &str, object: Option<Value>) -> (String, Option<Value>) {
    if key != format!("{GROUP}/events") {
        return (key.to_owned(), object);
    }
    let object = object.map(|o| {
        let mut c = convert(&o, Version::Events, Version::Core);
        managed_fields_home(&mut c, Version::Events);
        c["apiVersion"] = Value::String("v1".into());
        c
    });
    ("/events".to_owned(), object)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn recorder_event() -> Value {
        json!({
            "apiVersion": "events.k8s.io/v1",
            "kind": "Event",
            "metadata": {"name": "cm.1", "namespace": "default"},
            "eventTime": "2025-01-01T00:00:00.000001Z",
            "series": {"count": 2, "lastObservedTime": "2025-01-01T00:00:05.000001Z"},
            "regarding": {"kind": "ConfigMap", "name": "cm", "namespace": "default", "uid": "u1"},
            "related": {"kind": "Pod", "name": "p"},
            "note": "hello",
            "reason": "Synced",
            "action": "Sync",
            "type": "Normal",
            "reportingController": "ctl",
            "reportingInstance": "ctl-1",
            "deprecatedSource": {"component": "old", "host": "h"},
            "deprecatedFirstTimestamp": "2024-01-01T00:00:00Z",
            "deprecatedLastTimestamp": "2024-01-02T00:00:00Z",
            "deprecatedCount": 4,
        })
    }

    #[test]
    fn events_to_core_and_back() {
        let ev = recorder_event();
        let core = convert(&ev, Version::Events, Version::Core);
        assert_eq!(core["involvedObject"], ev["regarding"]);
        assert_eq!(core["message"], "hello");
        assert_eq!(core["reportingComponent"], "ctl");
        assert_eq!(core["reportingInstance"], "ctl-1");
        assert_eq!(core["source"], json!({"component": "old", "host": "h"}));
        assert_eq!(core["firstTimestamp"], ev["deprecatedFirstTimestamp"]);
        assert_eq!(core["lastTimestamp"], ev["deprecatedLastTimestamp"]);
        assert_eq!(core["count"], 4);
        for same in [
            "metadata",
            "eventTime",
            "series",
            "related",
            "reason",
            "action",
            "type",
        ] {
            assert_eq!(core[same], ev[same], "{same}");
        }
        for gone in [
            "regarding",
            "note",
            "reportingController",
            "deprecatedCount",
        ] {
            assert!(core.get(gone).is_none(), "{gone}");
        }
        assert_eq!(convert(&core, Version::Core, Version::Events), ev);
    }

    #[test]
    fn foreign_fields_are_unknown() {
        let mut ev = json!({"note": "n", "message": "m", "count": 1, "reason": "R"});
        let mut dropped = prune_foreign(&mut ev, Version::Events);
        dropped.sort();
        assert_eq!(dropped, ["count", "message"]);
        assert_eq!(ev, json!({"note": "n", "reason": "R"}));
        let core = json!({"message": "m", "note": "n"});
        assert_eq!(
            convert(&core, Version::Core, Version::Events),
            json!({"note": "m"})
        );
    }

    #[test]
    fn managed_fields_keep_their_version() {
        let mut obj = json!({"metadata": {"managedFields": [
            {"manager": "a", "apiVersion": "events.k8s.io/v1", "fieldsV1": {"f:note": {}, "f:regarding": {"f:name": {}}}},
            {"manager": "b", "apiVersion": "v1", "fieldsV1": {"f:message": {}, "f:metadata": {}}},
        ]}});
        let orig = obj.clone();
        managed_fields_to(&mut obj, Version::Core);
        let mf = &obj["metadata"]["managedFields"];
        assert_eq!(
            mf[0]["fieldsV1"],
            json!({"f:message": {}, "f:involvedObject": {"f:name": {}}})
        );
        assert_eq!(mf[1], orig["metadata"]["managedFields"][1]);
        managed_fields_home(&mut obj, Version::Core);
        assert_eq!(obj, orig);
    }

    #[test]
    fn old_state_files_are_migrated_to_the_core_bucket() {
        let (key, obj) = migrate_record("events.k8s.io/events", Some(recorder_event()));
        let obj = obj.unwrap();
        assert_eq!(key, "/events");
        assert_eq!(obj["apiVersion"], "v1");
        assert_eq!(obj["message"], "hello");
        let (key, obj) = migrate_record("/configmaps", Some(json!({"a": 1})));
        assert_eq!((key.as_str(), obj), ("/configmaps", Some(json!({"a": 1}))));
        assert_eq!(migrate_record("events.k8s.io/events", None).0, "/events");
    }

    #[test]
    fn field_labels_map_to_core() {
        assert_eq!(field_label("regarding.uid"), Some("involvedObject.uid"));
        assert_eq!(
            field_label("reportingController"),
            Some("reportingComponent")
        );
        assert_eq!(field_label("involvedObject.name"), None);
        assert_eq!(field_label("reportingComponent"), None);
    }
}
