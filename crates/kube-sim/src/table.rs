//! `meta.k8s.io/v1` `Table` responses (what `kubectl get` asks for): CRD printer columns
//! evaluated with a JSONPath subset, hand-written columns for built-ins, Name first and Age last.
//! Like the real apiserver, dates are rendered server-side as relative ages ("5m").

use serde_json::{Value, json};

use crate::registry::ResourceType;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncludeObject {
    None,
    Metadata,
    Object,
}

impl IncludeObject {
    pub fn parse(s: Option<&str>) -> Self {
        match s {
            Some("None") => IncludeObject::None,
            Some("Object") => IncludeObject::Object,
            _ => IncludeObject::Metadata,
        }
    }
}

/// Whether the Accept header asks for a Table (kubectl get does).
pub fn wants_table(accept: &str) -> bool {
    accept
        .split(',')
        .next()
        .is_some_and(|first| first.contains("as=Table") && first.contains("g=meta.k8s.io"))
}

/// Go's `duration.HumanDuration`, which kubectl and the apiserver use for ages.
pub fn human_duration(secs: i64) -> String {
    if secs < -1 {
        return "<invalid>".into();
    }
    if secs < 0 {
        return "0s".into();
    }
    if secs < 120 {
        return format!("{secs}s");
    }
    let minutes = secs / 60;
    if minutes < 10 {
        let s = secs % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    }
    if minutes < 180 {
        return format!("{minutes}m");
    }
    let hours = secs / 3600;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{}h", hours / 24, h)
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        return if dy == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{}d", hours / 24 / 365, dy)
        };
    }
    format!("{}y", hours / 24 / 365)
}

/// Age of an RFC 3339 timestamp, or `<unknown>`.
pub fn age(ts: &Value) -> String {
    match ts
        .as_str()
        .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
    {
        Some(t) => {
            human_duration((chrono::Utc::now() - t.with_timezone(&chrono::Utc)).num_seconds())
        }
        None => "<unknown>".into(),
    }
}

// ---- JSONPath subset -------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
enum Step {
    Field(String),
    Index(usize),
    All,
    Filter(String, Value),
}

fn parse_path(path: &str) -> Vec<Step> {
    let p = path.trim();
    let p = p
        .strip_prefix('{')
        .and_then(|x| x.strip_suffix('}'))
        .unwrap_or(p);
    let p = p.strip_prefix('$').unwrap_or(p);
    let chars: Vec<char> = p.chars().collect();
    let mut steps = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '.' => {
                i += 1;
                let start = i;
                while i < chars.len() && chars[i] != '.' && chars[i] != '[' {
                    if chars[i] == '\\' {
                        i += 1;
                    }
                    i += 1;
                }
                let name: String = chars[start..i.min(chars.len())]
                    .iter()
                    .collect::<String>()
                    .replace('\\', "");
                if !name.is_empty() {
                    steps.push(Step::Field(name));
                }
            }
            '[' => {
                let start = i + 1;
                let mut depth = 0;
                while i < chars.len() {
                    if chars[i] == '[' {
                        depth += 1;
                    } else if chars[i] == ']' {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    i += 1;
                }
                let inner: String = chars[start..i.min(chars.len())].iter().collect();
                i += 1;
                steps.extend(bracket_step(inner.trim()));
            }
            _ => {
                // A path without the leading dot: treat as a field name.
                let start = i;
                while i < chars.len() && chars[i] != '.' && chars[i] != '[' {
                    i += 1;
                }
                steps.push(Step::Field(chars[start..i].iter().collect()));
            }
        }
    }
    steps
}

/// The step a `[...]` stands for: `*`, an index, a `?(@.field==value)` filter, or a quoted key.
fn bracket_step(inner: &str) -> Option<Step> {
    if inner == "*" {
        return Some(Step::All);
    }
    if let Ok(n) = inner.parse::<usize>() {
        return Some(Step::Index(n));
    }
    if let Some(f) = inner.strip_prefix("?(").and_then(|f| f.strip_suffix(')')) {
        let (lhs, rhs) = f.split_once("==")?;
        let field = lhs.trim().trim_start_matches("@.").to_owned();
        let rhs = rhs.trim();
        let val = if let Some(s) = rhs.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
            json!(s)
        } else if let Some(s) = rhs.strip_prefix('\'').and_then(|r| r.strip_suffix('\'')) {
            json!(s)
        } else {
            serde_json::from_str(rhs).unwrap_or(json!(rhs))
        };
        return Some(Step::Filter(field, val));
    }
    let key = inner.trim_matches('\'').trim_matches('"').to_owned();
    Some(Step::Field(key))
}

fn get_dotted<'a>(v: &'a Value, path: &str) -> &'a Value {
    let mut cur = v;
    for seg in path.split('.') {
        cur = &cur[seg];
    }
    cur
}

/// Evaluates a JSONPath subset (`.a.b`, `[0]`, `[*]`, `[?(@.type=="Ready")]`, `['k']`).
pub fn jsonpath(obj: &Value, path: &str) -> Vec<Value> {
    let mut cur = vec![obj.clone()];
    for step in parse_path(path) {
        let mut next = Vec::new();
        for v in cur {
            match &step {
                Step::Field(f) => {
                    if let Some(x) = v.get(f) {
                        next.push(x.clone());
                    }
                }
                Step::Index(n) => {
                    if let Some(x) = v.get(*n) {
                        next.push(x.clone());
                    }
                }
                Step::All => match v {
                    Value::Array(a) => next.extend(a),
                    Value::Object(m) => next.extend(m.into_iter().map(|(_, x)| x)),
                    _ => {}
                },
                Step::Filter(field, want) => {
                    if let Value::Array(a) = v {
                        next.extend(a.into_iter().filter(|x| get_dotted(x, field) == want));
                    }
                }
            }
        }
        cur = next;
    }
    cur
}

// ---- columns ---------------------------------------------------------------------------------

fn coldef(name: &str, ty: &str, format: &str, description: &str, priority: i64) -> Value {
    json!({"name": name, "type": ty, "format": format, "description": description, "priority": priority})
}

fn name_col() -> Value {
    coldef(
        "Name",
        "string",
        "name",
        "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically.",
        0,
    )
}

fn age_col() -> Value {
    coldef(
        "Age",
        "string",
        "",
        "CreationTimestamp is a timestamp representing the server time when this object was created.",
        0,
    )
}

type CellFn = fn(&Value) -> Value;

struct BuiltinColumns {
    defs: Vec<Value>,
    cells: Vec<CellFn>,
}

fn s(v: &Value) -> Value {
    match v {
        Value::Null => json!("<none>"),
        Value::String(_) => v.clone(),
        other => json!(other.to_string()),
    }
}

fn pod_status(o: &Value) -> Value {
    if !o["metadata"]["deletionTimestamp"].is_null() {
        return json!("Terminating");
    }
    let statuses = o["status"]["containerStatuses"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for cs in statuses.iter().rev() {
        if let Some(r) = cs["state"]["waiting"]["reason"].as_str() {
            return json!(r);
        }
        if let Some(r) = cs["state"]["terminated"]["reason"].as_str() {
            return json!(r);
        }
    }
    json!(
        o["status"]["reason"]
            .as_str()
            .or(o["status"]["phase"].as_str())
            .unwrap_or("Pending")
    )
}

fn pod_ready(o: &Value) -> Value {
    let total = o["spec"]["containers"]
        .as_array()
        .map(Vec::len)
        .unwrap_or(0);
    let ready = o["status"]["containerStatuses"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|c| c["ready"].as_bool() == Some(true))
                .count()
        })
        .unwrap_or(0);
    json!(format!("{ready}/{total}"))
}

fn pod_restarts(o: &Value) -> Value {
    let n: i64 = o["status"]["containerStatuses"]
        .as_array()
        .map(|a| a.iter().filter_map(|c| c["restartCount"].as_i64()).sum())
        .unwrap_or(0);
    json!(n)
}

fn job_status(o: &Value) -> Value {
    let conds = o["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let has = |t: &str| {
        conds
            .iter()
            .any(|c| c["type"] == t && c["status"] == "True")
    };
    let st = if has("Complete") {
        "Complete"
    } else if has("Failed") {
        "Failed"
    } else if has("Suspended") || o["spec"]["suspend"].as_bool() == Some(true) {
        "Suspended"
    } else {
        "Running"
    };
    json!(st)
}

fn job_completions(o: &Value) -> Value {
    let want = o["spec"]["completions"].as_i64().unwrap_or(1);
    let done = o["status"]["succeeded"].as_i64().unwrap_or(0);
    json!(format!("{done}/{want}"))
}

fn job_duration(o: &Value) -> Value {
    let start = o["status"]["startTime"]
        .as_str()
        .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok());
    let end = o["status"]["completionTime"]
        .as_str()
        .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&chrono::Utc))
        .unwrap_or_else(chrono::Utc::now);
    match start {
        Some(st) => json!(human_duration(
            (end - st.with_timezone(&chrono::Utc)).num_seconds()
        )),
        None => json!(""),
    }
}

// ---- events ----------------------------------------------------------------------------------
// `printEvent` of k8s.io/kubernetes pkg/printers/internalversion, on the core (storage) shape.
// The apiserver prints the wide form; kubectl hides the priority-1 columns unless `-o wide`.

fn is_set(ts: &Value) -> bool {
    ts.as_str().is_some_and(|s| !s.is_empty())
}

fn text(v: &Value) -> Value {
    json!(v.as_str().unwrap_or_default())
}

fn event_first_seen(o: &Value) -> String {
    if is_set(&o["firstTimestamp"]) {
        age(&o["firstTimestamp"])
    } else {
        age(&o["eventTime"])
    }
}

fn event_last_seen(o: &Value) -> Value {
    let seen = if o["series"].is_object() {
        age(&o["series"]["lastObservedTime"])
    } else if is_set(&o["lastTimestamp"]) {
        age(&o["lastTimestamp"])
    } else {
        event_first_seen(o)
    };
    json!(seen)
}

fn event_count(o: &Value) -> Value {
    if o["series"].is_object() {
        return json!(o["series"]["count"].as_i64().unwrap_or(0));
    }
    // Singleton events don't have a count set in the new API.
    json!(o["count"].as_i64().filter(|c| *c != 0).unwrap_or(1))
}

fn event_object(o: &Value) -> Value {
    let kind = o["involvedObject"]["kind"]
        .as_str()
        .unwrap_or_default()
        .to_lowercase();
    match o["involvedObject"]["name"]
        .as_str()
        .filter(|n| !n.is_empty())
    {
        Some(name) => json!(format!("{kind}/{name}")),
        None => json!(kind),
    }
}

/// `formatEventSource`: component (else reporting controller), then ", host" (else instance).
fn event_source(o: &Value) -> Value {
    let first = |a: &Value, b: &Value| -> String {
        [a, b]
            .into_iter()
            .filter_map(Value::as_str)
            .find(|s| !s.is_empty())
            .unwrap_or_default()
            .to_owned()
    };
    let component = first(&o["source"]["component"], &o["reportingComponent"]);
    let instance = first(&o["source"]["host"], &o["reportingInstance"]);
    if instance.is_empty() {
        json!(component)
    } else {
        json!(format!("{component}, {instance}"))
    }
}

fn event_columns() -> BuiltinColumns {
    let defs = vec![
        coldef(
            "Last Seen",
            "string",
            "",
            "The time at which the most recent occurrence of this event was recorded.",
            0,
        ),
        coldef(
            "Type",
            "string",
            "",
            "Type of this event (Normal, Warning), new types could be added in the future",
            0,
        ),
        coldef(
            "Reason",
            "string",
            "",
            "This should be a short, machine understandable string that gives the reason for the transition into the object's current status.",
            0,
        ),
        coldef(
            "Object",
            "string",
            "",
            "The object that this event is about.",
            0,
        ),
        coldef(
            "Subobject",
            "string",
            "",
            "If referring to a piece of an object instead of an entire object, this string should contain a valid JSON/Go field access statement, such as desiredState.manifest.containers[2].",
            1,
        ),
        coldef(
            "Source",
            "string",
            "",
            "The component reporting this event. Should be a short machine understandable string.",
            1,
        ),
        coldef(
            "Message",
            "string",
            "",
            "A human-readable description of the status of this operation.",
            0,
        ),
        coldef(
            "First Seen",
            "string",
            "",
            "The time at which the event was first recorded. (Time of server receipt is in TypeMeta.)",
            1,
        ),
        coldef(
            "Count",
            "string",
            "",
            "The number of times this event has occurred.",
            1,
        ),
        coldef(
            "Name",
            "string",
            "name",
            "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically.",
            1,
        ),
    ];
    let cells: Vec<CellFn> = vec![
        event_last_seen,
        |o| text(&o["type"]),
        |o| text(&o["reason"]),
        event_object,
        |o| text(&o["involvedObject"]["fieldPath"]),
        event_source,
        |o| json!(o["message"].as_str().unwrap_or_default().trim()),
        |o| json!(event_first_seen(o)),
        event_count,
        |o| text(&o["metadata"]["name"]),
    ];
    BuiltinColumns { defs, cells }
}

impl BuiltinColumns {
    fn add(&mut self, def: Value, cell: CellFn) {
        self.defs.push(def);
        self.cells.push(cell);
    }
}

/// The columns `kubectl get` shows for a built-in kind: Name, the kind's own, then Age (except
/// where the kind places Age itself or shows none).
fn builtin_columns(rt: &ResourceType) -> BuiltinColumns {
    let mut c = BuiltinColumns {
        defs: vec![name_col()],
        cells: vec![|o| o["metadata"]["name"].clone()],
    };
    let trailing_age = match (rt.group.as_str(), rt.kind.as_str()) {
        ("", "Namespace") => {
            c.add(
                coldef("Status", "string", "", "The status of the namespace", 0),
                |o| s(&o["status"]["phase"]),
            );
            true
        }
        ("", "Pod") => {
            pod_columns(&mut c);
            false
        }
        ("batch", "Job") => {
            job_columns(&mut c);
            true
        }
        ("apps", "Deployment") => {
            deployment_columns(&mut c);
            true
        }
        ("", "Service") => {
            service_columns(&mut c);
            true
        }
        ("", "ConfigMap") => {
            c.add(
                coldef("Data", "integer", "", "Number of data entries", 0),
                |o| {
                    json!(
                        o["data"].as_object().map(|m| m.len()).unwrap_or(0)
                            + o["binaryData"].as_object().map(|m| m.len()).unwrap_or(0)
                    )
                },
            );
            true
        }
        ("", "Secret") => {
            secret_columns(&mut c);
            true
        }
        ("coordination.k8s.io", "Lease") => {
            c.add(
                coldef("Holder", "string", "", "The holder of the lease", 0),
                |o| json!(o["spec"]["holderIdentity"].as_str().unwrap_or("")),
            );
            true
        }
        ("apiextensions.k8s.io", "CustomResourceDefinition") => {
            c.add(coldef("Created At", "date", "", "", 0), |o| {
                o["metadata"]["creationTimestamp"].clone()
            });
            false
        }
        ("", "Event") | ("events.k8s.io", "Event") => return event_columns(),
        _ => true,
    };
    if trailing_age {
        c.add(age_col(), |o| {
            json!(age(&o["metadata"]["creationTimestamp"]))
        });
    }
    c
}

/// Pod: Ready, Status, Restarts, Age, then the wide IP and Node.
fn pod_columns(c: &mut BuiltinColumns) {
    c.add(
        coldef(
            "Ready",
            "string",
            "",
            "The aggregate readiness state of this pod for accepting traffic.",
            0,
        ),
        pod_ready,
    );
    c.add(
        coldef(
            "Status",
            "string",
            "",
            "The aggregate status of the containers in this pod.",
            0,
        ),
        pod_status,
    );
    c.add(
        coldef(
            "Restarts",
            "string",
            "",
            "The number of times the containers in this pod have been restarted.",
            0,
        ),
        pod_restarts,
    );
    c.add(age_col(), |o| {
        json!(age(&o["metadata"]["creationTimestamp"]))
    });
    c.add(
        coldef("IP", "string", "", "The IP address assigned to the pod", 1),
        |o| s(&o["status"]["podIP"]),
    );
    c.add(
        coldef(
            "Node",
            "string",
            "",
            "The name of the node hosting the pod",
            1,
        ),
        |o| s(&o["spec"]["nodeName"]),
    );
}

/// Job: Status, Completions, Duration.
fn job_columns(c: &mut BuiltinColumns) {
    c.add(
        coldef("Status", "string", "", "Status of the job.", 0),
        job_status,
    );
    c.add(
        coldef(
            "Completions",
            "string",
            "",
            "The desired number of successfully finished pods the job should be run with.",
            0,
        ),
        job_completions,
    );
    c.add(
        coldef(
            "Duration",
            "string",
            "",
            "Time required to complete the job.",
            0,
        ),
        job_duration,
    );
}

/// Deployment: Ready, Up-to-date, Available.
fn deployment_columns(c: &mut BuiltinColumns) {
    c.add(
        coldef(
            "Ready",
            "string",
            "",
            "Number of the pod with ready state",
            0,
        ),
        |o| {
            json!(format!(
                "{}/{}",
                o["status"]["readyReplicas"].as_i64().unwrap_or(0),
                o["spec"]["replicas"].as_i64().unwrap_or(1)
            ))
        },
    );
    c.add(
        coldef(
            "Up-to-date",
            "integer",
            "",
            "Total number of non-terminated pods targeted by this deployment that have the desired template spec.",
            0,
        ),
        |o| json!(o["status"]["updatedReplicas"].as_i64().unwrap_or(0)),
    );
    c.add(
        coldef(
            "Available",
            "integer",
            "",
            "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment.",
            0,
        ),
        |o| json!(o["status"]["availableReplicas"].as_i64().unwrap_or(0)),
    );
}

/// Service: Type, Cluster-IP, External-IP, Port(s).
fn service_columns(c: &mut BuiltinColumns) {
    c.add(
        coldef("Type", "string", "", "The type of service", 0),
        |o| json!(o["spec"]["type"].as_str().unwrap_or("ClusterIP")),
    );
    c.add(
        coldef(
            "Cluster-IP",
            "string",
            "",
            "The cluster IP of the service",
            0,
        ),
        |o| s(&o["spec"]["clusterIP"]),
    );
    c.add(
        coldef(
            "External-IP",
            "string",
            "",
            "The external IP of the service",
            0,
        ),
        |_| json!("<none>"),
    );
    c.add(
        coldef("Port(s)", "string", "", "The ports of the service", 0),
        |o| {
            let ports: Vec<String> = o["spec"]["ports"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|p| {
                            format!(
                                "{}/{}",
                                p["port"].as_i64().unwrap_or(0),
                                p["protocol"].as_str().unwrap_or("TCP")
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            json!(if ports.is_empty() {
                "<none>".to_owned()
            } else {
                ports.join(",")
            })
        },
    );
}

/// Secret: Type, Data.
fn secret_columns(c: &mut BuiltinColumns) {
    c.add(
        coldef("Type", "string", "", "The type of the secret", 0),
        |o| json!(o["type"].as_str().unwrap_or("Opaque")),
    );
    c.add(
        coldef("Data", "integer", "", "Number of data entries", 0),
        |o| json!(o["data"].as_object().map(|m| m.len()).unwrap_or(0)),
    );
}

fn custom_cell(col: &crate::registry::PrinterColumn, obj: &Value) -> Value {
    let results = jsonpath(obj, &col.json_path);
    if results.is_empty() {
        return Value::Null;
    }
    if col.type_ == "date" {
        return json!(age(&results[0]));
    }
    if results.len() == 1 {
        let v = &results[0];
        return match (col.type_.as_str(), v) {
            ("string", Value::String(_))
            | ("integer" | "number", Value::Number(_))
            | ("boolean", Value::Bool(_)) => v.clone(),
            (_, Value::String(st)) => json!(st),
            _ => json!(v.to_string()),
        };
    }
    let parts: Vec<String> = results
        .iter()
        .map(|v| match v {
            Value::String(st) => st.clone(),
            other => other.to_string(),
        })
        .collect();
    json!(parts.join(","))
}

/// Column definitions of a resource type.
pub fn column_definitions(rt: &ResourceType) -> Vec<Value> {
    if rt.custom {
        let mut defs = vec![name_col()];
        for c in &rt.columns {
            let ty = if c.type_ == "date" {
                "date"
            } else {
                c.type_.as_str()
            };
            defs.push(coldef(&c.name, ty, &c.format, &c.description, c.priority));
        }
        // Like the apiserver: Age is the default column set, used only when the CRD declares none.
        if rt.columns.is_empty() {
            defs.push(age_col());
        }
        defs
    } else {
        builtin_columns(rt).defs
    }
}

fn partial_metadata(obj: &Value) -> Value {
    json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj["metadata"]})
}

/// One Table row for `obj`.
pub fn row(rt: &ResourceType, obj: &Value, include: IncludeObject) -> Value {
    let cells: Vec<Value> = if rt.custom {
        let mut c = vec![obj["metadata"]["name"].clone()];
        c.extend(rt.columns.iter().map(|col| custom_cell(col, obj)));
        if rt.columns.is_empty() {
            c.push(json!(age(&obj["metadata"]["creationTimestamp"])));
        }
        c
    } else {
        // Events are printed from the core shape whichever version serves them (as the
        // apiserver prints its internal type).
        let view = if crate::events::is_event(&rt.group, &rt.kind) {
            crate::events::core_view(obj)
        } else {
            std::borrow::Cow::Borrowed(obj)
        };
        builtin_columns(rt).cells.iter().map(|f| f(&view)).collect()
    };
    let mut r = json!({"cells": cells});
    match include {
        IncludeObject::None => {}
        IncludeObject::Metadata => r["object"] = partial_metadata(obj),
        IncludeObject::Object => r["object"] = obj.clone(),
    }
    r
}

/// A full Table; `with_columns` is false for watch events after the first (as the apiserver does).
pub fn table(
    rt: &ResourceType,
    objs: &[Value],
    include: IncludeObject,
    list_meta: Value,
    with_columns: bool,
) -> Value {
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta,
        "columnDefinitions": if with_columns { column_definitions(rt) } else { Vec::new() },
        "rows": objs.iter().map(|o| row(rt, o, include)).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_match_go() {
        assert_eq!(human_duration(5), "5s");
        assert_eq!(human_duration(119), "119s");
        assert_eq!(human_duration(125), "2m5s");
        assert_eq!(human_duration(600), "10m");
        assert_eq!(human_duration(3 * 3600 + 120), "3h2m");
        assert_eq!(human_duration(50 * 3600), "2d2h");
    }

    #[test]
    fn jsonpath_subset() {
        let o = json!({"status": {"conditions": [{"type": "A", "status": "False"}, {"type": "Ready", "status": "True"}]},
                       "spec": {"list": [{"n": 1}, {"n": 2}]}, "metadata": {"labels": {"a.b/c": "x"}}});
        assert_eq!(
            jsonpath(&o, r#".status.conditions[?(@.type=="Ready")].status"#),
            vec![json!("True")]
        );
        assert_eq!(jsonpath(&o, ".spec.list[*].n"), vec![json!(1), json!(2)]);
        assert_eq!(jsonpath(&o, ".spec.list[1].n"), vec![json!(2)]);
        assert_eq!(jsonpath(&o, ".metadata.labels['a.b/c']"), vec![json!("x")]);
        assert!(jsonpath(&o, ".spec.missing").is_empty());
    }
}
