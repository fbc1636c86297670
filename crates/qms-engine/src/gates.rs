//! The quality gate processor (spec §4): evaluates one gate on the metrics a step's agents reported.
//!
//! Fail closed (keptn #6096, #9146, #1212): a gate whose definition is missing or incomplete, whose
//! metric no successful task reported, or whose value cannot be compared gets verdict `Error`,
//! which never passes. Only an explicit, unexpired override for the current head SHA lets a
//! failing or erroring gate through (`Overridden`).
//!
//! Baselines (the `QualityBaseline` of the workflow's repository and base branch) come from merged
//! code only. A ratcheted gate's result names the baseline's SHA, value and tolerance; a baseline
//! older than `baseline.maxAge` is not used, and the result says so. A missing metric follows the
//! gate's `onMissing`: `fail` (error, the default), `neutral` (an advisory `Warning`, never a
//! pass) or `carryForward` (the base branch's value, named as carried, if younger than
//! `carryForward.maxAge`; else an error). A step whose agents failed always fails closed.
//!
//! When several tasks report the gate's metric, the *worst* value for the operator counts: the
//! smallest for `gte`/`gt`, the largest for `lte`/`lt`, the farthest from the threshold for `eq`
//! and the nearest for `ne`.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use qms_api::{
    BaselineUse, BaselineValue, GateResult, GateVerdict, MetricUnit, OnMissing, Operator, Override,
    QualityGateSpec,
};

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
    /// The base branch's last value per gate (from the repository's `QualityBaseline`).
    pub baselines: &'a BTreeMap<String, BaselineValue>,
}

/// `sha` cut to 7 characters for messages.
pub fn short_sha(sha: &str) -> &str {
    sha.get(..7).unwrap_or(sha)
}

/// Human age: `3d4h`, `5h12m`, `7m`, `40s`.
pub fn human_age(d: chrono::Duration) -> String {
    let s = d.num_seconds().max(0);
    let (days, h, m) = (s / 86_400, s % 86_400 / 3600, s % 3600 / 60);
    if days > 0 {
        format!("{days}d{h}h")
    } else if h > 0 {
        format!("{h}h{m}m")
    } else if m > 0 {
        format!("{m}m")
    } else {
        format!("{s}s")
    }
}

/// The base-branch value of gate `name` as `spec` may use it (in the gate's unit), with `max_age`
/// deciding whether it is young enough (`used`). `None`: no value recorded.
pub fn baseline_use(
    name: &str,
    spec: &QualityGateSpec,
    max_age: Option<&qms_api::KubeDuration>,
    tolerance: f64,
    ctx: &GateContext<'_>,
) -> Option<BaselineUse> {
    let b = ctx.baselines.get(name)?;
    let mut u = BaselineUse {
        sha: b.sha.clone(),
        value: b.value,
        at: b.at.clone(),
        tolerance,
        used: false,
        note: None,
    };
    let value = units::convert(b.value, b.unit, spec.unit).filter(|v| v.is_finite());
    let Some(value) = value else {
        u.note = Some(format!(
            "baseline {} is in {}, which cannot be compared with {}: not used",
            short_sha(&b.sha),
            b.unit.map_or("no unit", units::name),
            spec.unit.map_or("no unit", units::name)
        ));
        return Some(u);
    };
    u.value = value;
    let Some(at) = time::parse(&b.at) else {
        u.note = Some(format!(
            "baseline {} has no readable time ({:?}): not used",
            short_sha(&b.sha),
            b.at
        ));
        return Some(u);
    };
    let age = ctx.now - at;
    if let Some(max) = max_age {
        let Ok(max_std) = max.to_std() else {
            u.note = Some(format!("maxAge {max} is not a duration: baseline not used"));
            return Some(u);
        };
        if age > chrono::Duration::from_std(max_std).unwrap_or(chrono::Duration::MAX) {
            u.note = Some(format!(
                "baseline {} is {} old, older than maxAge {max}: not used",
                short_sha(&b.sha),
                human_age(age)
            ));
            return Some(u);
        }
    }
    u.used = true;
    Some(u)
}

/// The ratchet's baseline for gate `name` (ratchet on), used or not.
fn ratchet_baseline(
    name: &str,
    spec: &QualityGateSpec,
    ctx: &GateContext<'_>,
) -> Option<BaselineUse> {
    let b = spec.baseline.as_ref().filter(|b| b.enabled)?;
    baseline_use(name, spec, b.max_age.as_ref(), b.tolerance, ctx)
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
        && let Some(base) = ratchet_baseline(name, spec, ctx)
            .filter(|u| u.used)
            .map(|u| u.value)
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
        baseline: None,
        on_missing: None,
        carried: false,
    };
    let Some(spec) = spec else {
        r.message = format!("QualityGate {name:?} does not exist");
        return r;
    };
    r.blocking = spec.blocking;
    r.on_missing = Some(spec.on_missing);
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
    r.baseline = ratchet_baseline(name, spec, ctx);
    let ratchet_note = ratchet_note(spec, r.baseline.as_ref());
    if reports.is_empty() {
        return missing(
            r,
            metric,
            op,
            applied,
            spec,
            failed_tasks,
            ctx,
            &ratchet_note,
        );
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
    conclude(
        &mut r,
        value,
        op,
        applied,
        spec.blocking,
        &relation,
        &ratchet_note,
    );
    r
}

fn conclude(
    r: &mut GateResult,
    value: f64,
    op: Operator,
    applied: f64,
    blocking: bool,
    relation: &str,
    note: &str,
) {
    if compare(value, op, applied) {
        r.verdict = GateVerdict::Passed;
        r.message = format!("{relation}: passed{note}");
    } else if blocking {
        r.verdict = GateVerdict::Failed;
        r.message = format!("{relation}: failed{note}");
    } else {
        r.verdict = GateVerdict::Warning;
        r.message = format!("{relation}: failed (advisory){note}");
    }
}

/// ` (baseline abc1234 = 80 from main, tolerance 1)` and the like, for a ratcheted gate.
fn ratchet_note(spec: &QualityGateSpec, b: Option<&BaselineUse>) -> String {
    if !spec.baseline.as_ref().is_some_and(|b| b.enabled) {
        return String::new();
    }
    match b {
        None => " (ratchet: no baseline recorded for the base branch yet)".to_owned(),
        Some(u) if u.used => format!(
            " (ratchet: baseline {} = {}, tolerance {})",
            short_sha(&u.sha),
            u.value,
            u.tolerance
        ),
        Some(u) => format!(
            " (ratchet: {})",
            u.note.as_deref().unwrap_or("baseline not used")
        ),
    }
}

/// No successful agent reported the metric: the gate's `onMissing` decides, failing closed
/// whenever an agent of the step failed or there is nothing (young enough) to carry.
#[allow(clippy::too_many_arguments)]
fn missing(
    mut r: GateResult,
    metric: &str,
    op: Operator,
    applied: f64,
    spec: &QualityGateSpec,
    failed_tasks: &[String],
    ctx: &GateContext<'_>,
    ratchet_note: &str,
) -> GateResult {
    let policy = spec.on_missing;
    if !failed_tasks.is_empty() {
        r.message = format!(
            "metric {metric} was not reported by any successful agent (failed: {});              onMissing: {} does not apply when agents fail",
            failed_tasks.join(", "),
            policy.as_str()
        );
        return r;
    }
    let not_reported = format!("metric {metric} was not reported by any agent of the step");
    match policy {
        OnMissing::Fail => {
            r.message = format!("{not_reported} (onMissing: fail)");
        }
        OnMissing::Neutral => {
            r.verdict = GateVerdict::Warning;
            r.message = format!("{not_reported}: advisory result, not a pass (onMissing: neutral)");
        }
        OnMissing::CarryForward => {
            let max_age = spec.carry_forward.as_ref().map(|c| &c.max_age);
            let carried = baseline_use(&r.name, spec, max_age, 0.0, ctx);
            match carried {
                Some(u) if u.used && max_age.is_some() => {
                    let age = time::parse(&u.at)
                        .map(|at| human_age(ctx.now - at))
                        .unwrap_or_default();
                    let value = u.value;
                    let relation = format!(
                        "{metric} = {value} carried forward from the base branch ({}, {age} old) {} {applied} (onMissing: carryForward)",
                        short_sha(&u.sha),
                        op.symbol()
                    );
                    r.value = Some(value);
                    r.carried = true;
                    conclude(
                        &mut r,
                        value,
                        op,
                        applied,
                        spec.blocking,
                        &relation,
                        ratchet_note,
                    );
                    r.baseline = Some(u);
                }
                Some(u) => {
                    r.message = format!(
                        "{not_reported}; nothing to carry forward: {} (onMissing: carryForward)",
                        u.note
                            .as_deref()
                            .unwrap_or("carryForward.maxAge is not set")
                    );
                    r.baseline = Some(u);
                }
                None => {
                    r.message = format!(
                        "{not_reported}; the base branch has no value to carry forward (onMissing: carryForward)"
                    );
                }
            }
        }
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
