//! The quality gate processor (spec §4): evaluates one gate on the metrics a step's agents reported.
//!
//! Fail closed (keptn #6096, #9146, #1212): a gate whose definition is missing or incomplete, whose
//! metric no successful task reported, or whose value cannot be compared gets verdict `Error`,
//! which never passes. Only an explicit, unexpired override for the current head SHA lets a
//! failing or erroring gate through (`Overridden`).
//!
//! When several tasks report the gate's metric, the *worst* value for the operator counts: the
//! smallest for `gte`/`gt`, the largest for `lte`/`lt`, the farthest from the threshold for `eq`
//! and the nearest for `ne`.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use qms_api::{GateResult, GateVerdict, MetricUnit, Operator, Override, QualityGateSpec};

use crate::{time, units};

/// Relative tolerance of `eq`/`ne` (metrics are floating point and may come from conversions).
pub const EQ_EPSILON: f64 = 1e-9;

/// One task's report of a metric.
#[derive(Clone, Debug, PartialEq)]
pub struct Reported {
    pub task: String,
    pub value: f64,
    pub unit: Option<MetricUnit>,
}

/// What a gate is evaluated against besides the metrics.
pub struct GateContext<'a> {
    pub now: DateTime<Utc>,
    pub head_sha: &'a str,
    pub overrides: &'a [Override],
    pub baselines: &'a BTreeMap<String, f64>,
}

/// Evaluates gate `name` (`spec` = its QualityGate, `None` when it does not exist) on the values
/// of its metric reported by the step's successful tasks. `failed_tasks` names the tasks of the
/// step that failed, for the message when the metric is missing.
pub fn evaluate(
    name: &str,
    spec: Option<&QualityGateSpec>,
    reports: &[Reported],
    failed_tasks: &[String],
    ctx: &GateContext<'_>,
) -> GateResult {
    let mut result = judge(name, spec, reports, failed_tasks, ctx);
    if !result.verdict.passes()
        && let Some(o) = active_override(name, ctx)
    {
        result.message = format!(
            "overridden by {} until {}: {} (was: {})",
            o.by, o.expires, o.reason, result.message
        );
        result.verdict = GateVerdict::Overridden;
    }
    result
}

/// The override that currently applies to gate `name`, if any: same gate, same head SHA and a
/// valid expiry after `now`. Overrides with an unreadable expiry are ignored.
pub fn active_override<'a>(name: &str, ctx: &GateContext<'a>) -> Option<&'a Override> {
    ctx.overrides.iter().find(|o| {
        o.gate == name
            && o.sha == ctx.head_sha
            && time::parse(&o.expires).is_some_and(|exp| exp > ctx.now)
    })
}

/// The threshold in force at `now`: gradual enforcement, then the baseline ratchet.
pub fn effective_threshold(
    name: &str,
    spec: &QualityGateSpec,
    operator: Operator,
    threshold: f64,
    ctx: &GateContext<'_>,
) -> Result<f64, String> {
    let mut t = threshold;
    if let Some(g) = &spec.gradual {
        let start = time::parse(&g.start)
            .ok_or_else(|| format!("gradual.start {:?} is not an RFC 3339 time", g.start))?;
        let end = time::parse(&g.end)
            .ok_or_else(|| format!("gradual.end {:?} is not an RFC 3339 time", g.end))?;
        t = if ctx.now >= end || end <= start {
            threshold
        } else if ctx.now <= start {
            g.from
        } else {
            let f = (ctx.now - start).num_milliseconds() as f64
                / (end - start).num_milliseconds() as f64;
            g.from + (threshold - g.from) * f
        };
    }
    if let Some(b) = spec.baseline.as_ref().filter(|b| b.enabled)
        && let Some(base) = ctx.baselines.get(name).copied().filter(|v| v.is_finite())
    {
        t = match operator.higher_is_better() {
            Some(true) => t.max(base - b.tolerance),
            Some(false) => t.min(base + b.tolerance),
            None => t,
        };
    }
    Ok(t)
}

pub fn compare(value: f64, operator: Operator, threshold: f64) -> bool {
    let close = (value - threshold).abs() <= EQ_EPSILON * value.abs().max(threshold.abs()).max(1.0);
    match operator {
        Operator::Gte => value >= threshold || close,
        Operator::Gt => value > threshold && !close,
        Operator::Lte => value <= threshold || close,
        Operator::Lt => value < threshold && !close,
        Operator::Eq => close,
        Operator::Ne => !close,
    }
}

fn judge(
    name: &str,
    spec: Option<&QualityGateSpec>,
    reports: &[Reported],
    failed_tasks: &[String],
    ctx: &GateContext<'_>,
) -> GateResult {
    let mut r = GateResult {
        name: name.to_owned(),
        metric: String::new(),
        value: None,
        operator: None,
        threshold: None,
        unit: None,
        verdict: GateVerdict::Error,
        blocking: true,
        message: String::new(),
    };
    let Some(spec) = spec else {
        r.message = format!("QualityGate {name:?} does not exist");
        return r;
    };
    r.blocking = spec.blocking;
    r.unit = spec.unit;
    r.operator = spec.operator;
    r.metric = spec.metric.clone().unwrap_or_default();
    // (The gate type is an enum with the one variant `threshold`; any other type is refused when
    // the QualityGate is read, before it gets here.)
    let (Some(metric), Some(op), Some(threshold)) = (&spec.metric, spec.operator, spec.threshold)
    else {
        r.message = "a threshold gate needs metric, operator and threshold".to_owned();
        return r;
    };
    if !threshold.is_finite() {
        r.message = format!("threshold {threshold} is not a finite number");
        return r;
    }
    let applied = match effective_threshold(name, spec, op, threshold, ctx) {
        Ok(t) => t,
        Err(e) => {
            r.message = e;
            return r;
        }
    };
    r.threshold = Some(applied);
    if reports.is_empty() {
        r.message = if failed_tasks.is_empty() {
            format!("metric {metric} was not reported by any agent of the step")
        } else {
            format!(
                "metric {metric} was not reported by any successful agent (failed: {})",
                failed_tasks.join(", ")
            )
        };
        return r;
    }
    let mut values = Vec::with_capacity(reports.len());
    for rep in reports {
        if !rep.value.is_finite() {
            r.message = format!("{metric} from {} is not a finite number", rep.task);
            return r;
        }
        match units::convert(rep.value, rep.unit, spec.unit) {
            Some(v) => values.push(v),
            None => {
                r.message = format!(
                    "{metric} from {} is in {}, which cannot be compared with {}",
                    rep.task,
                    rep.unit.map_or("no unit", units::name),
                    spec.unit.map_or("no unit", units::name)
                );
                return r;
            }
        }
    }
    let value = worst(&values, op, applied);
    r.value = Some(value);
    let unit = spec
        .unit
        .map(|u| format!(" {}", units::name(u)))
        .unwrap_or_default();
    let relation = format!("{metric} = {value}{unit} {} {applied}", op.symbol());
    if compare(value, op, applied) {
        r.verdict = GateVerdict::Passed;
        r.message = format!("{relation}: passed");
    } else if spec.blocking {
        r.verdict = GateVerdict::Failed;
        r.message = format!("{relation}: failed");
    } else {
        r.verdict = GateVerdict::Warning;
        r.message = format!("{relation}: failed (advisory)");
    }
    r
}

fn worst(values: &[f64], op: Operator, threshold: f64) -> f64 {
    let by = |f: &dyn Fn(f64) -> f64, pick_max: bool| {
        values
            .iter()
            .copied()
            .fold(None::<f64>, |acc, v| match acc {
                None => Some(v),
                Some(a) if (f(v) > f(a)) == pick_max && f(v) != f(a) => Some(v),
                Some(a) => Some(a),
            })
    };
    let dist = |v: f64| (v - threshold).abs();
    let pick = match op {
        Operator::Gte | Operator::Gt => by(&|v| v, false),
        Operator::Lte | Operator::Lt => by(&|v| v, true),
        Operator::Eq => by(&dist, true),
        Operator::Ne => by(&dist, false),
    };
    pick.unwrap_or(f64::NAN)
}

#[cfg(test)]
mod tests;
