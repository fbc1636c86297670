//! The agent result format and its parser.
//!
//! An agent writes one JSON document to its termination message (`/dev/termination-log`):
//!
//! ```json
//! {"status": "success",
//!  "metrics": {"test_coverage": 85.2, "p95_latency": {"value": 120, "unit": "milliseconds"}},
//!  "summary": "…",
//!  "annotations": [{"path": "src/a.rs", "start_line": 1, "end_line": 2,
//!                   "annotation_level": "warning", "message": "…", "title": "…"}]}
//! ```
//!
//! Anything else is refused with an error naming the offending field, and the task fails: a result
//! the engine cannot read never lets a gate pass (fail closed).

use std::collections::BTreeMap;

use qms_api::{MetricUnit, TaskResultSummary};
use serde_json::Value;

#[derive(Clone, Debug, PartialEq)]
pub struct AgentResult {
    pub success: bool,
    pub metrics: BTreeMap<String, Metric>,
    pub summary: String,
    pub annotations: Vec<Annotation>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Metric {
    pub value: f64,
    pub unit: Option<MetricUnit>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Annotation {
    pub path: String,
    pub start_line: u64,
    pub end_line: u64,
    pub level: String,
    pub message: String,
    pub title: Option<String>,
}

impl AgentResult {
    /// What the workflow status keeps of the result.
    pub fn summary(&self) -> TaskResultSummary {
        TaskResultSummary {
            status: if self.success { "success" } else { "failure" }.to_owned(),
            summary: truncate(&self.summary, 1024),
            metrics: self
                .metrics
                .iter()
                .map(|(k, m)| (k.clone(), m.value))
                .collect(),
            units: self
                .metrics
                .iter()
                .filter_map(|(k, m)| m.unit.map(|u| (k.clone(), u)))
                .collect(),
            annotations: u32::try_from(self.annotations.len()).unwrap_or(u32::MAX),
            result_config_map: None,
        }
    }
}

/// Largest termination message Kubernetes keeps: the kubelet reads at most 4096 bytes of the
/// file, so a longer result arrives cut.
pub const TERMINATION_MESSAGE_LIMIT: usize = 4096;

/// What the task says when a result was cut at [`TERMINATION_MESSAGE_LIMIT`].
pub const TOO_LARGE_FOR_TERMINATION_MESSAGE: &str =
    "result too large for the termination message: use the result endpoint";

/// Parses an agent's result read from its termination message. A text of (nearly) the
/// termination message limit that ends before the JSON document does was cut by the kubelet: that
/// is reported as [`TOO_LARGE_FOR_TERMINATION_MESSAGE`], not as malformed JSON.
pub fn parse_termination_message(text: &str, max_bytes: usize) -> Result<AgentResult, String> {
    match parse(text, max_bytes) {
        Err(e) if is_cut_at_limit(text) => {
            Err(format!("{TOO_LARGE_FOR_TERMINATION_MESSAGE} ({e})"))
        }
        other => other,
    }
}

/// Does `text` look like a JSON document cut at the termination message limit? (The cut may
/// fall inside a UTF-8 character, which the kubelet drops: allow three bytes less.)
fn is_cut_at_limit(text: &str) -> bool {
    text.len() + 3 >= TERMINATION_MESSAGE_LIMIT
        && text.len() <= TERMINATION_MESSAGE_LIMIT
        && serde_json::from_str::<Value>(text)
            .err()
            .is_some_and(|e| e.classify() == serde_json::error::Category::Eof)
}

/// Name of the ConfigMap holding the full result of task `task_id` (the Job name) submitted to
/// the result endpoint. Deterministic, so storing it twice is harmless.
pub fn result_config_map_name(task_id: &str) -> String {
    format!("qms-result-{task_id}")
}

/// Parses an agent's result. `max_bytes` bounds the accepted size.
pub fn parse(text: &str, max_bytes: usize) -> Result<AgentResult, String> {
    if text.len() > max_bytes {
        return Err(format!(
            "result is {} bytes, more than the limit of {max_bytes}",
            text.len()
        ));
    }
    if text.trim().is_empty() {
        return Err("agent wrote no result".to_owned());
    }
    let doc: Value =
        serde_json::from_str(text).map_err(|e| format!("result is not valid JSON: {e}"))?;
    let obj = doc
        .as_object()
        .ok_or_else(|| format!("result: expected an object, got {}", kind(&doc)))?;
    let success = match obj.get("status") {
        Some(Value::String(s)) if s == "success" => true,
        Some(Value::String(s)) if s == "failure" => false,
        Some(other) => {
            return Err(format!(
                "status: expected \"success\" or \"failure\", got {other}"
            ));
        }
        None => return Err("status: missing".to_owned()),
    };
    let metrics = match obj.get("metrics") {
        None | Some(Value::Null) => BTreeMap::new(),
        Some(Value::Object(m)) => m
            .iter()
            .map(|(name, v)| parse_metric(name, v).map(|m| (name.clone(), m)))
            .collect::<Result<_, _>>()?,
        Some(other) => return Err(format!("metrics: expected an object, got {}", kind(other))),
    };
    let summary = match obj.get("summary") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => return Err(format!("summary: expected a string, got {}", kind(other))),
    };
    let annotations = match obj.get("annotations") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, a)| parse_annotation(i, a))
            .collect::<Result<_, _>>()?,
        Some(other) => {
            return Err(format!(
                "annotations: expected an array, got {}",
                kind(other)
            ));
        }
    };
    Ok(AgentResult {
        success,
        metrics,
        summary,
        annotations,
    })
}

fn parse_metric(name: &str, v: &Value) -> Result<Metric, String> {
    let number = |v: &Value, path: &str| -> Result<f64, String> {
        match v.as_f64() {
            Some(x) if x.is_finite() => Ok(x),
            Some(_) => Err(format!("{path}: expected a finite number")),
            None => Err(format!("{path}: expected a number, got {}", show(v))),
        }
    };
    match v {
        Value::Object(o) => {
            let value = number(
                o.get("value").unwrap_or(&Value::Null),
                &format!("metrics.{name}.value"),
            )?;
            let unit = match o.get("unit") {
                None | Some(Value::Null) => None,
                Some(u) => Some(serde_json::from_value::<MetricUnit>(u.clone()).map_err(|_| {
                    format!(
                        "metrics.{name}.unit: unknown unit {} (expected percentage, ratio, count, \
                         seconds, milliseconds, bytes, kilobytes, megabytes, score or boolean)",
                        show(u)
                    )
                })?),
            };
            Ok(Metric { value, unit })
        }
        Value::Bool(b) => Ok(Metric {
            value: if *b { 1.0 } else { 0.0 },
            unit: Some(MetricUnit::Boolean),
        }),
        other => Ok(Metric {
            value: number(other, &format!("metrics.{name}"))?,
            unit: None,
        }),
    }
}

fn parse_annotation(i: usize, v: &Value) -> Result<Annotation, String> {
    let at = |field: &str| format!("annotations[{i}].{field}");
    let o = v
        .as_object()
        .ok_or_else(|| format!("annotations[{i}]: expected an object, got {}", kind(v)))?;
    let string = |field: &str| -> Result<String, String> {
        match o.get(field) {
            Some(Value::String(s)) => Ok(s.clone()),
            Some(other) => Err(format!(
                "{}: expected a string, got {}",
                at(field),
                show(other)
            )),
            None => Err(format!("{}: missing", at(field))),
        }
    };
    let line = |field: &str| -> Result<u64, String> {
        match o.get(field) {
            Some(v) => v
                .as_u64()
                .ok_or_else(|| format!("{}: expected a line number, got {}", at(field), show(v))),
            None => Err(format!("{}: missing", at(field))),
        }
    };
    let level = string("annotation_level")?;
    if !matches!(level.as_str(), "notice" | "warning" | "failure") {
        return Err(format!(
            "{}: expected notice, warning or failure, got {level:?}",
            at("annotation_level")
        ));
    }
    let title = match o.get("title") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => {
            return Err(format!(
                "{}: expected a string, got {}",
                at("title"),
                show(other)
            ));
        }
    };
    Ok(Annotation {
        path: string("path")?,
        start_line: line("start_line")?,
        end_line: line("end_line")?,
        level,
        message: string("message")?,
        title,
    })
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn show(v: &Value) -> String {
    let s = v.to_string();
    truncate(&s, 60)
}

pub(crate) fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_format() {
        let r = parse(
            r#"{"status":"success","metrics":{"test_coverage":85.2,
                "latency":{"value":120,"unit":"milliseconds"},"clean":true},
                "summary":"ok","annotations":[{"path":"a.rs","start_line":1,"end_line":2,
                "annotation_level":"warning","message":"m"}]}"#,
            4096,
        )
        .unwrap();
        assert!(r.success);
        assert_eq!(r.metrics["test_coverage"].value, 85.2);
        assert_eq!(r.metrics["latency"].unit, Some(MetricUnit::Milliseconds));
        assert_eq!(r.metrics["clean"].value, 1.0);
        let s = r.summary();
        assert_eq!(s.annotations, 1);
        assert_eq!(s.units["latency"], MetricUnit::Milliseconds);
    }

    #[test]
    fn errors_name_the_offending_field() {
        let e = |t: &str| parse(t, 4096).unwrap_err();
        assert_eq!(
            e(r#"{"status":"success","metrics":{"test_coverage":"abc"}}"#),
            r#"metrics.test_coverage: expected a number, got "abc""#
        );
        assert!(e(r#"{"status":"ok"}"#).starts_with("status:"));
        assert_eq!(e(r#"{"metrics":{}}"#), "status: missing");
        assert!(e("not json").starts_with("result is not valid JSON"));
        assert!(
            e(r#"{"status":"success","metrics":{"x":{"value":1,"unit":"parsecs"}}}"#)
                .starts_with("metrics.x.unit: unknown unit")
        );
        assert!(
            e(r#"{"status":"success","annotations":[{"path":"a"}]}"#)
                .starts_with("annotations[0].")
        );
        assert_eq!(e("  "), "agent wrote no result");
        assert!(
            parse(r#"{"status":"success"}"#, 5)
                .unwrap_err()
                .contains("limit of 5")
        );
    }

    #[test]
    fn a_result_cut_at_the_termination_limit_says_so() {
        let annotation = r#"{"path":"src/lib.rs","start_line":1,"end_line":1,"annotation_level":"warning","message":"finding"},"#;
        let mut full = String::from(r#"{"status":"success","annotations":["#);
        while full.len() < 8000 {
            full.push_str(annotation);
        }
        full.pop();
        full.push_str("]}");
        let cut = &full[..TERMINATION_MESSAGE_LIMIT];
        let e = parse_termination_message(cut, 64 * 1024).unwrap_err();
        assert!(e.starts_with(TOO_LARGE_FOR_TERMINATION_MESSAGE), "{e}");
        // A short malformed result stays malformed JSON.
        let e = parse_termination_message(r#"{"status":"succ"#, 64 * 1024).unwrap_err();
        assert!(e.starts_with("result is not valid JSON"), "{e}");
        // A complete result of that size that is invalid for another reason says that reason.
        let mut padded = String::from(r#"{"status":"ok","summary":""#);
        padded.push_str(&"x".repeat(TERMINATION_MESSAGE_LIMIT - padded.len() - 2));
        padded.push_str(r#""}"#);
        assert_eq!(padded.len(), TERMINATION_MESSAGE_LIMIT);
        assert!(
            parse_termination_message(&padded, 64 * 1024)
                .unwrap_err()
                .starts_with("status:")
        );
        assert_eq!(
            result_config_map_name("wf-r1-dor-a1-x"),
            "qms-result-wf-r1-dor-a1-x"
        );
    }

    #[test]
    fn out_of_range_numbers_are_refused() {
        assert!(parse(r#"{"status":"success","metrics":{"x":1e999}}"#, 4096).is_err());
    }
}
