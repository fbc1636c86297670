//! Label selectors (`=`, `==`, `!=`, `in`, `notin`, exists, `!`exists) and field selectors
//! (`=`, `==`, `!=` on a per-type allow-list of fields, like the real apiserver). Field selectors
//! are matched against stored objects: labels of a version stored in another shape are
//! translated first (events.k8s.io/v1 `regarding.name` selects core `involvedObject.name`).

use serde_json::Value;

use crate::error::{ApiError, ApiResult};

#[derive(Debug, Clone, PartialEq)]
enum Req {
    Eq(String, String),
    NotEq(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct LabelSelector {
    reqs: Vec<Req>,
}

/// Splits on commas that are not inside parentheses.
fn split_top(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut depth = 0i32;
    let mut cur = String::new();
    for c in s.chars() {
        match c {
            '(' => {
                depth += 1;
                cur.push(c)
            }
            ')' => {
                depth -= 1;
                cur.push(c)
            }
            ',' if depth == 0 => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    out.push(cur);
    out.into_iter()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect()
}

fn valid_key(k: &str) -> bool {
    !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
}

fn parse_set(rest: &str, raw: &str) -> ApiResult<Vec<String>> {
    let rest = rest.trim();
    let inner = rest
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "unable to parse requirement: {raw}: expected set in parentheses"
            ))
        })?;
    Ok(inner
        .split(',')
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
        .collect())
}

impl LabelSelector {
    pub fn parse(s: &str) -> ApiResult<Self> {
        let mut reqs = Vec::new();
        for part in split_top(s) {
            let bad = || {
                ApiError::bad_request(format!(
                    "unable to parse requirement: found '{part}', expected: valid label selector"
                ))
            };
            let req = if let Some(k) = part.strip_prefix('!') {
                Req::NotExists(k.trim().to_owned())
            } else if let Some((k, v)) = part.split_once("!=") {
                Req::NotEq(k.trim().to_owned(), v.trim().to_owned())
            } else if let Some((k, v)) = part.split_once("==") {
                Req::Eq(k.trim().to_owned(), v.trim().to_owned())
            } else if let Some((k, v)) = part.split_once('=') {
                Req::Eq(k.trim().to_owned(), v.trim().to_owned())
            } else if let Some(idx) = part.find(" notin ") {
                Req::NotIn(
                    part[..idx].trim().to_owned(),
                    parse_set(&part[idx + 7..], &part)?,
                )
            } else if let Some(idx) = part.find(" in ") {
                Req::In(
                    part[..idx].trim().to_owned(),
                    parse_set(&part[idx + 4..], &part)?,
                )
            } else {
                Req::Exists(part.trim().to_owned())
            };
            let key = match &req {
                Req::Eq(k, _)
                | Req::NotEq(k, _)
                | Req::In(k, _)
                | Req::NotIn(k, _)
                | Req::Exists(k)
                | Req::NotExists(k) => k,
            };
            if !valid_key(key) {
                return Err(bad());
            }
            reqs.push(req);
        }
        Ok(LabelSelector { reqs })
    }

    pub fn matches(&self, obj: &Value) -> bool {
        let labels = &obj["metadata"]["labels"];
        let get = |k: &str| labels.get(k).and_then(Value::as_str);
        self.reqs.iter().all(|r| match r {
            Req::Eq(k, v) => get(k) == Some(v.as_str()),
            Req::NotEq(k, v) => get(k) != Some(v.as_str()),
            Req::In(k, vs) => get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
            Req::NotIn(k, vs) => get(k).is_none_or(|x| !vs.iter().any(|v| v == x)),
            Req::Exists(k) => get(k).is_some(),
            Req::NotExists(k) => get(k).is_none(),
        })
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct FieldSelector {
    /// (label in the storage shape, equal?, value)
    reqs: Vec<(String, bool, String)>,
}

/// Fields a type can be selected on, besides `metadata.name` / `metadata.namespace`
/// (core Events: `EventToSelectableFields` of k8s.io/api core/v1).
fn allowed_fields(group: &str, plural: &str) -> &'static [&'static str] {
    match (group, plural) {
        ("", "pods") => &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        ],
        ("", "events") => &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ],
        ("", "secrets") => &["type"],
        ("", "namespaces") => &["status.phase"],
        ("batch", "jobs") => &["status.successful"],
        _ => &[],
    }
}

/// The label a selector on `(group, plural)` uses in the stored object; `None`: not supported.
fn storage_label(group: &str, plural: &str, label: &str) -> Option<String> {
    if label == "metadata.name" || label == "metadata.namespace" {
        return Some(label.to_owned());
    }
    if group == crate::events::GROUP && plural == "events" {
        return crate::events::field_label(label).map(str::to_owned);
    }
    allowed_fields(group, plural)
        .contains(&label)
        .then(|| label.to_owned())
}

fn field_value(obj: &Value, path: &str) -> String {
    if path == "source" {
        // An Event's source: `source.component`, else the reporting controller.
        return [&obj["source"]["component"], &obj["reportingComponent"]]
            .into_iter()
            .filter_map(Value::as_str)
            .find(|s| !s.is_empty())
            .unwrap_or_default()
            .to_owned();
    }
    let mut cur = obj;
    for seg in path.split('.') {
        cur = &cur[seg];
    }
    match cur {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

impl FieldSelector {
    pub fn parse(s: &str, group: &str, plural: &str) -> ApiResult<Self> {
        let mut reqs = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, eq, v) = if let Some((k, v)) = part.split_once("!=") {
                (k, false, v)
            } else if let Some((k, v)) = part.split_once("==") {
                (k, true, v)
            } else if let Some((k, v)) = part.split_once('=') {
                (k, true, v)
            } else {
                return Err(ApiError::bad_request(format!(
                    "invalid selector: '{s}'; can't understand '{part}'"
                )));
            };
            let k = k.trim();
            let Some(label) = storage_label(group, plural, k) else {
                return Err(ApiError::bad_request(format!(
                    "field label not supported: {k}"
                )));
            };
            reqs.push((label, eq, v.trim().to_owned()));
        }
        Ok(FieldSelector { reqs })
    }

    pub fn matches(&self, obj: &Value) -> bool {
        self.reqs
            .iter()
            .all(|(k, eq, v)| (field_value(obj, k) == *v) == *eq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn label_selector_forms() {
        let obj = json!({"metadata": {"labels": {"app": "web", "tier": "front"}}});
        for (sel, want) in [
            ("app=web", true),
            ("app==web", true),
            ("app!=web", false),
            ("app in (web, db)", true),
            ("app notin (web)", false),
            ("tier", true),
            ("!tier", false),
            ("!missing", true),
            ("app=web,tier=back", false),
            ("missing notin (x)", true),
        ] {
            assert_eq!(
                LabelSelector::parse(sel).unwrap().matches(&obj),
                want,
                "{sel}"
            );
        }
        assert!(LabelSelector::parse("a b c").is_err());
    }

    #[test]
    fn field_selector_allow_list() {
        let pod =
            json!({"metadata": {"name": "p", "namespace": "n"}, "status": {"phase": "Running"}});
        assert!(
            FieldSelector::parse("status.phase=Running", "", "pods")
                .unwrap()
                .matches(&pod)
        );
        assert!(
            !FieldSelector::parse("metadata.name!=p", "", "pods")
                .unwrap()
                .matches(&pod)
        );
        assert!(FieldSelector::parse("spec.foo=x", "", "configmaps").is_err());
    }

    #[test]
    fn event_labels_of_both_versions_select_the_stored_event() {
        let ev = json!({"metadata": {"name": "e"}, "involvedObject": {"name": "cm", "kind": "ConfigMap"},
                        "reportingComponent": "ctl", "reason": "R"});
        for (group, sel, want) in [
            (
                "",
                "involvedObject.name=cm,involvedObject.kind=ConfigMap",
                true,
            ),
            ("", "source=ctl", true),
            ("", "reportingComponent=ctl", true),
            (
                "events.k8s.io",
                "regarding.name=cm,regarding.kind=ConfigMap",
                true,
            ),
            ("events.k8s.io", "regarding.name=other", false),
            ("events.k8s.io", "reportingController=ctl,reason=R", true),
            ("events.k8s.io", "source=ctl", true),
        ] {
            assert_eq!(
                FieldSelector::parse(sel, group, "events")
                    .unwrap()
                    .matches(&ev),
                want,
                "{group}: {sel}"
            );
        }
        for (group, sel) in [
            ("events.k8s.io", "involvedObject.name=cm"),
            ("events.k8s.io", "reportingComponent=ctl"),
            ("", "regarding.name=cm"),
            ("", "reportingController=ctl"),
        ] {
            assert!(
                FieldSelector::parse(sel, group, "events").is_err(),
                "{group}: {sel}"
            );
        }
    }
}
