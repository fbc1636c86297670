//! Field ownership (`metadata.managedFields`, FieldsV1) and server-side apply.
//!
//! A field set is a set of paths; each path element is a FieldsV1 key: `f:name` (map field),
//! `k:{"name":"c"}` (list-map item), `v:"x"` (set item). A path ending in a `k:`/`v:` element
//! marks the item itself (rendered as `".": {}` inside the item in FieldsV1).

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use super::shape::{ListKind, Shape, item_key};

pub type Path = Vec<String>;
pub type FieldSet = BTreeSet<Path>;

/// Metadata fields the server owns; never tracked.
const IGNORED_META: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
];

/// Which part of the object a write may touch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Everything (types without a status subresource).
    All,
    /// Everything but `.status` (main endpoint of a type with a status subresource).
    NoStatus,
    /// Only `.status` (the status subresource).
    Status,
}

impl Scope {
    pub fn subresource(self) -> Option<&'static str> {
        if self == Scope::Status {
            Some("status")
        } else {
            None
        }
    }
}

/// The field set of an object.
pub fn fieldset(obj: &Value, shape: Shape<'_>, scope: Scope) -> FieldSet {
    let mut out = FieldSet::new();
    let Some(m) = obj.as_object() else { return out };
    for (k, v) in m {
        if k == "apiVersion" || k == "kind" {
            continue;
        }
        let is_status = k == "status";
        match scope {
            Scope::Status if !is_status => continue,
            Scope::NoStatus if is_status => continue,
            _ => {}
        }
        let path = vec![format!("f:{k}")];
        if k == "metadata" {
            if let Some(meta) = v.as_object() {
                for (mk, mv) in meta {
                    if IGNORED_META.contains(&mk.as_str()) {
                        continue;
                    }
                    let p = vec![path[0].clone(), format!("f:{mk}")];
                    walk(mv, mk, shape.child("metadata").child(mk), p, &mut out);
                }
            }
            continue;
        }
        walk(v, k, shape.child(k), path, &mut out);
    }
    out
}

fn walk(v: &Value, field: &str, shape: Shape<'_>, path: Path, out: &mut FieldSet) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, child) in m {
                let mut p = path.clone();
                p.push(format!("f:{k}"));
                walk(child, k, shape.child(k), p, out);
            }
        }
        Value::Array(items) => match shape.list_kind(field, items) {
            ListKind::Map(keys) if items.iter().all(Value::is_object) => {
                for item in items {
                    let mut p = path.clone();
                    p.push(format!("k:{}", item_key(item, &keys)));
                    out.insert(p.clone());
                    if let Some(im) = item.as_object() {
                        for (ik, iv) in im {
                            let mut q = p.clone();
                            q.push(format!("f:{ik}"));
                            walk(iv, ik, shape.items().child(ik), q, out);
                        }
                    }
                }
                if items.is_empty() {
                    out.insert(path);
                }
            }
            ListKind::Set => {
                for item in items {
                    let mut p = path.clone();
                    p.push(format!("v:{item}"));
                    out.insert(p);
                }
                if items.is_empty() {
                    out.insert(path);
                }
            }
            _ => {
                out.insert(path);
            }
        },
        _ => {
            out.insert(path);
        }
    }
}

/// Value at a field-set path.
pub fn get_path<'a>(v: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut cur = v;
    for pe in path {
        cur = step(cur, pe)?;
    }
    Some(cur)
}

fn step<'a>(cur: &'a Value, pe: &str) -> Option<&'a Value> {
    if let Some(f) = pe.strip_prefix("f:") {
        return cur.get(f);
    }
    let items = cur.as_array()?;
    if let Some(k) = pe.strip_prefix("k:") {
        let key: Value = serde_json::from_str(k).ok()?;
        let keys: Vec<String> = key.as_object()?.keys().cloned().collect();
        return items.iter().find(|i| item_key(i, &keys) == key);
    }
    if let Some(x) = pe.strip_prefix("v:") {
        let val: Value = serde_json::from_str(x).ok()?;
        return items.iter().find(|i| **i == val);
    }
    None
}

/// Removes the value at `path` (a field, a list-map item or a set item).
pub fn remove_path(v: &mut Value, path: &[String]) {
    let Some((last, parent)) = path.split_last() else {
        return;
    };
    let mut cur = v;
    for pe in parent {
        let next = if let Some(f) = pe.strip_prefix("f:") {
            cur.get_mut(f)
        } else {
            let idx = find_index(cur, pe);
            match (idx, cur.as_array_mut()) {
                (Some(i), Some(a)) => a.get_mut(i),
                _ => None,
            }
        };
        match next {
            Some(n) => cur = n,
            None => return,
        }
    }
    if let Some(f) = last.strip_prefix("f:") {
        if let Some(m) = cur.as_object_mut() {
            m.remove(f);
        }
    } else if let Some(i) = find_index(cur, last)
        && let Some(a) = cur.as_array_mut()
    {
        a.remove(i);
    }
}

fn find_index(cur: &Value, pe: &str) -> Option<usize> {
    let items = cur.as_array()?;
    if let Some(k) = pe.strip_prefix("k:") {
        let key: Value = serde_json::from_str(k).ok()?;
        let keys: Vec<String> = key.as_object()?.keys().cloned().collect();
        return items.iter().position(|i| item_key(i, &keys) == key);
    }
    let val: Value = serde_json::from_str(pe.strip_prefix("v:")?).ok()?;
    items.iter().position(|i| *i == val)
}

/// FieldsV1 JSON of a field set.
pub fn to_fields_v1(set: &FieldSet) -> Value {
    let mut root = Map::new();
    for path in set {
        let mut cur = &mut root;
        for (i, pe) in path.iter().enumerate() {
            let entry = cur.entry(pe.clone()).or_insert_with(|| json!({}));
            let Some(m) = entry.as_object_mut() else {
                break;
            };
            if i + 1 == path.len()
                && (pe.starts_with("k:")
                    || set
                        .iter()
                        .any(|p| p.len() > path.len() && p.starts_with(path)))
            {
                m.insert(".".into(), json!({}));
            }
            cur = m;
        }
    }
    // A node that is owned and also has owned children is marked with ".".
    Value::Object(root)
}

/// Field set from FieldsV1 JSON.
pub fn from_fields_v1(v: &Value) -> FieldSet {
    let mut out = FieldSet::new();
    fn rec(v: &Value, path: &mut Path, out: &mut FieldSet) {
        let Some(m) = v.as_object() else { return };
        if m.is_empty() && !path.is_empty() {
            out.insert(path.clone());
            return;
        }
        for (k, child) in m {
            if k == "." {
                out.insert(path.clone());
                continue;
            }
            path.push(k.clone());
            rec(child, path, out);
            path.pop();
        }
    }
    rec(v, &mut Vec::new(), &mut out);
    out
}

/// One `managedFields` entry.
#[derive(Debug, Clone)]
pub struct Entry {
    pub manager: String,
    pub operation: String,
    pub api_version: String,
    pub time: String,
    pub subresource: Option<String>,
    pub set: FieldSet,
}

pub fn parse_entries(obj: &Value) -> Vec<Entry> {
    obj["metadata"]["managedFields"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| Entry {
                    manager: e["manager"].as_str().unwrap_or_default().to_owned(),
                    operation: e["operation"].as_str().unwrap_or("Update").to_owned(),
                    api_version: e["apiVersion"].as_str().unwrap_or_default().to_owned(),
                    time: e["time"].as_str().unwrap_or_default().to_owned(),
                    subresource: e["subresource"].as_str().map(str::to_owned),
                    set: from_fields_v1(&e["fieldsV1"]),
                })
                .collect()
        })
        .unwrap_or_default()
}

pub fn render_entries(entries: &[Entry]) -> Value {
    Value::Array(
        entries
            .iter()
            .filter(|e| !e.set.is_empty())
            .map(|e| {
                let mut v = json!({
                    "manager": e.manager,
                    "operation": e.operation,
                    "apiVersion": e.api_version,
                    "time": e.time,
                    "fieldsType": "FieldsV1",
                    "fieldsV1": to_fields_v1(&e.set),
                });
                if let Some(s) = &e.subresource {
                    v["subresource"] = json!(s);
                }
                v
            })
            .collect(),
    )
}

fn now() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn is_marker(path: &Path) -> bool {
    path.last()
        .is_some_and(|p| p.starts_with("k:") || p.starts_with("v:"))
}

/// Records an ordinary (non-apply) write by `manager`: it takes ownership of every field it
/// changed; other managers lose those fields; removed fields are dropped from every set.
pub fn record_update(
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    api_version: &str,
    shape: Shape<'_>,
    scope: Scope,
) {
    let mut entries = old.map(parse_entries).unwrap_or_default();
    let new_set = fieldset(new, shape, scope);
    let (changed, removed): (FieldSet, FieldSet) = match old {
        None => (new_set.clone(), FieldSet::new()),
        Some(old) => {
            let old_set = fieldset(old, shape, scope);
            let changed = new_set
                .iter()
                .filter(|p| {
                    is_marker(p) && !old_set.contains(*p)
                        || !is_marker(p) && get_path(old, p) != get_path(new, p)
                })
                .cloned()
                .collect();
            let removed = old_set.difference(&new_set).cloned().collect();
            (changed, removed)
        }
    };
    let sub = scope.subresource().map(str::to_owned);
    if !changed.is_empty() || !removed.is_empty() {
        for e in entries.iter_mut() {
            e.set.retain(|p| !removed.contains(p));
            if e.manager != manager || e.operation != "Update" || e.subresource != sub {
                e.set.retain(|p| !changed.contains(p));
            }
        }
        match entries
            .iter_mut()
            .find(|e| e.manager == manager && e.operation == "Update" && e.subresource == sub)
        {
            Some(e) => {
                e.set.extend(changed);
                e.time = now();
                e.api_version = api_version.to_owned();
            }
            None if !changed.is_empty() => entries.push(Entry {
                manager: manager.to_owned(),
                operation: "Update".into(),
                api_version: api_version.to_owned(),
                time: now(),
                subresource: sub,
                set: changed,
            }),
            None => {}
        }
    }
    entries.retain(|e| !e.set.is_empty());
    new["metadata"]["managedFields"] = render_entries(&entries);
}

/// A server-side apply conflict: `(field path like .spec.replicas, other manager)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Conflict {
    pub field: String,
    pub manager: String,
    pub api_version: String,
}

/// Renders a field-set path the way apply conflicts name fields: `.spec.containers[name="c"].image`.
pub fn render_path(path: &[String]) -> String {
    let mut s = String::new();
    for pe in path {
        if let Some(f) = pe.strip_prefix("f:") {
            s.push('.');
            s.push_str(f);
        } else if let Some(k) = pe.strip_prefix("k:") {
            let parts: Vec<String> = serde_json::from_str::<Map<String, Value>>(k)
                .map(|m| m.iter().map(|(k, v)| format!("{k}={v}")).collect())
                .unwrap_or_default();
            s.push_str(&format!("[{}]", parts.join(",")));
        } else if let Some(v) = pe.strip_prefix("v:") {
            s.push_str(&format!("[={v}]"));
        }
    }
    s
}

/// Deep merge of an applied configuration into the live object.
fn merge_applied(live: &mut Value, applied: &Value, field: &str, shape: Shape<'_>) {
    match (live, applied) {
        (Value::Object(lm), Value::Object(am)) => {
            for (k, av) in am {
                match lm.get_mut(k) {
                    Some(lv) if !av.is_null() => merge_applied(lv, av, k, shape.child(k)),
                    _ => {
                        lm.insert(k.clone(), av.clone());
                    }
                }
            }
        }
        (Value::Array(la), Value::Array(aa)) => {
            let mut sample = la.clone();
            sample.extend(aa.iter().cloned());
            match shape.list_kind(field, &sample) {
                ListKind::Map(keys) if sample.iter().all(Value::is_object) => {
                    for ai in aa {
                        let key = item_key(ai, &keys);
                        match la.iter_mut().find(|li| item_key(li, &keys) == key) {
                            Some(li) => merge_applied(li, ai, field, shape.items()),
                            None => la.push(ai.clone()),
                        }
                    }
                }
                ListKind::Set => {
                    for ai in aa {
                        if !la.contains(ai) {
                            la.push(ai.clone());
                        }
                    }
                }
                _ => *la = aa.clone(),
            }
        }
        (l, a) => *l = a.clone(),
    }
}

/// Server-side apply of `applied` by `manager` onto `live` (an empty object when creating).
/// Returns the merged object (with managedFields) or the conflicts.
pub fn apply(
    live: &Value,
    applied: &Value,
    manager: &str,
    api_version: &str,
    force: bool,
    shape: Shape<'_>,
    scope: Scope,
) -> Result<Value, Vec<Conflict>> {
    let mut entries = parse_entries(live);
    let sub = scope.subresource().map(str::to_owned);
    let applied_set = fieldset(applied, shape, scope);
    let is_mine =
        |e: &Entry| e.manager == manager && e.operation == "Apply" && e.subresource == sub;
    let conflicts = conflicts(&entries, &applied_set, live, applied, &is_mine, &sub);
    if !conflicts.is_empty() && !force {
        return Err(conflicts
            .into_iter()
            .map(|(p, m, v)| Conflict {
                field: render_path(&p),
                manager: m,
                api_version: v,
            })
            .collect());
    }
    // Forced: the fields in conflict change owner.
    for (p, m, _) in &conflicts {
        for e in entries
            .iter_mut()
            .filter(|e| &e.manager == m && e.subresource == sub)
        {
            e.set.remove(p);
        }
    }
    let mut merged = live.clone();
    remove_unapplied(&mut merged, &entries, &applied_set, &is_mine);
    merge_applied(&mut merged, &applied_body(applied, scope), "", shape);
    entries.retain(|e| !is_mine(e));
    entries.push(Entry {
        manager: manager.to_owned(),
        operation: "Apply".into(),
        api_version: api_version.to_owned(),
        time: now(),
        subresource: sub,
        set: applied_set,
    });
    entries.retain(|e| !e.set.is_empty());
    merged["metadata"]["managedFields"] = render_entries(&entries);
    Ok(merged)
}

/// Fields in `applied_set` that another manager (same subresource) owns with a different value:
/// (path, manager, its apiVersion).
fn conflicts(
    entries: &[Entry],
    applied_set: &FieldSet,
    live: &Value,
    applied: &Value,
    is_mine: &impl Fn(&Entry) -> bool,
    sub: &Option<String>,
) -> Vec<(Path, String, String)> {
    let mut conflicts = Vec::new();
    for e in entries.iter() {
        if is_mine(e) || &e.subresource != sub {
            continue;
        }
        for p in applied_set.intersection(&e.set) {
            if is_marker(p) {
                continue;
            }
            if get_path(live, p) != get_path(applied, p) {
                conflicts.push((p.clone(), e.manager.clone(), e.api_version.clone()));
            }
        }
    }
    conflicts
}

/// Removes from `merged` the fields this manager applied before but no longer does, and nobody
/// else owns. Shallowest first: once a list item (or map) is removed, its fields go with it;
/// removing the fields first would leave an item whose key no longer identifies it.
fn remove_unapplied(
    merged: &mut Value,
    entries: &[Entry],
    applied_set: &FieldSet,
    is_mine: &impl Fn(&Entry) -> bool,
) {
    let previous: FieldSet = entries
        .iter()
        .filter(|e| is_mine(e))
        .flat_map(|e| e.set.iter().cloned())
        .collect();
    let mut to_remove: Vec<&Path> = previous.difference(applied_set).collect();
    to_remove.sort_by_key(|p| p.len());
    let mut removed: Vec<&Path> = Vec::new();
    for p in to_remove {
        if removed.iter().any(|r| p.starts_with(r)) {
            continue;
        }
        let owned_elsewhere = entries
            .iter()
            .filter(|e| !is_mine(e))
            .any(|e| e.set.iter().any(|q| q.len() >= p.len() && q.starts_with(p)));
        let still_applied = applied_set
            .iter()
            .any(|q| q.len() > p.len() && q.starts_with(p));
        if !owned_elsewhere && !still_applied {
            remove_path(merged, p);
            removed.push(p);
        }
    }
}

/// What of the applied configuration is merged: not its type meta, only (or no) status per
/// `scope`, no server-owned metadata except name and namespace.
fn applied_body(applied: &Value, scope: Scope) -> Value {
    let mut applied_body = applied.clone();
    if let Some(m) = applied_body.as_object_mut() {
        m.remove("apiVersion");
        m.remove("kind");
        match scope {
            Scope::NoStatus => {
                m.remove("status");
            }
            Scope::Status => m.retain(|k, _| k == "status"),
            Scope::All => {}
        }
        if let Some(meta) = m.get_mut("metadata").and_then(Value::as_object_mut) {
            for f in IGNORED_META {
                if *f != "name" && *f != "namespace" {
                    meta.remove(*f);
                }
            }
        }
    }
    applied_body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_v1_round_trip() {
        let obj = json!({"metadata": {"labels": {"a": "1"}, "name": "x"}, "spec": {"containers": [{"name": "c", "image": "i"}]}});
        let set = fieldset(&obj, Shape::Builtin, Scope::All);
        let v1 = to_fields_v1(&set);
        assert_eq!(
            v1["f:spec"]["f:containers"]["k:{\"name\":\"c\"}"]["."],
            json!({})
        );
        assert_eq!(v1["f:metadata"]["f:labels"]["f:a"], json!({}));
        assert!(v1["f:metadata"].get("f:name").is_none());
        assert_eq!(from_fields_v1(&v1), set);
    }

    #[test]
    fn apply_conflicts_and_force() {
        let live = json!({"metadata": {"name": "x"}, "spec": {"replicas": 1}});
        let a = apply(
            &live,
            &json!({"spec": {"replicas": 1}}),
            "a",
            "v1",
            false,
            Shape::Builtin,
            Scope::All,
        )
        .unwrap();
        let err = apply(
            &a,
            &json!({"spec": {"replicas": 2}}),
            "b",
            "v1",
            false,
            Shape::Builtin,
            Scope::All,
        )
        .unwrap_err();
        assert_eq!(err[0].field, ".spec.replicas");
        assert_eq!(err[0].manager, "a");
        let b = apply(
            &a,
            &json!({"spec": {"replicas": 2}}),
            "b",
            "v1",
            true,
            Shape::Builtin,
            Scope::All,
        )
        .unwrap();
        assert_eq!(b["spec"]["replicas"], 2);
        let managers: Vec<&str> = b["metadata"]["managedFields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["manager"].as_str().unwrap())
            .collect();
        assert_eq!(managers, vec!["b"]);
    }

    #[test]
    fn apply_removes_fields_no_longer_applied() {
        let live = json!({"metadata": {"name": "x"}});
        let a = apply(
            &live,
            &json!({"spec": {"x": 1, "y": 2}}),
            "a",
            "v1",
            false,
            Shape::Builtin,
            Scope::All,
        )
        .unwrap();
        let a2 = apply(
            &a,
            &json!({"spec": {"x": 1}}),
            "a",
            "v1",
            false,
            Shape::Builtin,
            Scope::All,
        )
        .unwrap();
        assert_eq!(a2["spec"], json!({"x": 1}));
    }
}
