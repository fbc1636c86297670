//! `/qms explain <gate>`: the reply saying how a gate was decided for the pull request's current
//! head SHA — metric value, threshold, operator, baseline (SHA, value, age), missing-metric policy
//! and verdict. Pure: everything comes from the workflow's status as the operator wrote it.

use chrono::{DateTime, Utc};
use qms_api::{GateResult, GateVerdict, QmsWorkflow, WorkflowTemplate};

use crate::intent::short;

fn verdict(v: GateVerdict) -> &'static str {
    match v {
        GateVerdict::Passed => "Passed",
        GateVerdict::Failed => "Failed",
        GateVerdict::Warning => "Warning (advisory, not a pass)",
        GateVerdict::Overridden => "Overridden",
        GateVerdict::Error => "Error (fails closed)",
    }
}

fn age(at: &str, now: DateTime<Utc>) -> String {
    match DateTime::parse_from_rfc3339(at) {
        Ok(t) => {
            let s = (now - t.with_timezone(&Utc)).num_seconds().max(0);
            let (d, h, m) = (s / 86_400, s % 86_400 / 3600, s % 3600 / 60);
            if d > 0 {
                format!("{d}d{h}h old")
            } else if h > 0 {
                format!("{h}h{m}m old")
            } else {
                format!("{m}m old")
            }
        }
        Err(_) => format!("unreadable time {at:?}"),
    }
}

/// The reply for `/qms explain <gate>` on workflow `wf`.
pub fn reply(
    gate: &str,
    wf: &QmsWorkflow,
    template: Option<&WorkflowTemplate>,
    now: DateTime<Utc>,
) -> String {
    let head = &wf.spec.head_sha;
    let title = format!("**QMS gate `{gate}`** for head `{}`", short(head));
    if let Some(t) = template
        && !t
            .spec
            .steps
            .iter()
            .any(|s| s.quality_gates.iter().any(|g| g == gate))
    {
        return format!(
            "{title}: no step of template `{}` uses gate `{gate}`, so it decides nothing here.",
            t.metadata.name.as_deref().unwrap_or_default()
        );
    }
    let status = wf.status.as_ref();
    if status.and_then(|s| s.head_sha.as_deref()) != Some(head.as_str()) {
        return format!("{title}: not evaluated yet (the review of this commit has not started).");
    }
    let found = status
        .into_iter()
        .flat_map(|s| &s.steps)
        .rev()
        .find_map(|st| {
            st.gates
                .iter()
                .find(|g| g.name == gate)
                .map(|g| (st.name.as_str(), g))
        });
    let Some((step, g)) = found else {
        return format!(
            "{title}: not evaluated yet for this commit (its step has not reached its gates)."
        );
    };
    format!("{title} (step `{step}`)\n\n{}", lines(g, now))
}

fn lines(g: &GateResult, now: DateTime<Utc>) -> String {
    let unit = g
        .unit
        .map(|u| {
            format!(
                " {}",
                serde_json::to_value(u)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default()
            )
        })
        .unwrap_or_default();
    let mut out = vec![format!(
        "- Verdict: **{}** ({})",
        verdict(g.verdict),
        if g.blocking { "blocking" } else { "advisory" }
    )];
    let metric = if g.metric.is_empty() { "?" } else { &g.metric };
    out.push(match (g.value, g.carried) {
        (Some(v), false) => format!("- Metric: `{metric}` = {v}{unit}"),
        (Some(v), true) => format!("- Metric: `{metric}` = {v}{unit} (carried forward from the base branch, not measured on this commit)"),
        (None, _) => format!("- Metric: `{metric}` = not reported"),
    });
    out.push(format!(
        "- Rule: {} {}{unit} (threshold applied, after gradual enforcement and ratchet)",
        g.operator.map_or("?", |o| o.symbol()),
        g.threshold
            .map_or_else(|| "?".to_owned(), |t| t.to_string())
    ));
    out.push(match &g.baseline {
        None => "- Baseline: none".to_owned(),
        Some(b) => format!(
            "- Baseline: `{}` = {}{unit}, {}, tolerance {}{}",
            short(&b.sha),
            b.value,
            age(&b.at, now),
            b.tolerance,
            if b.used {
                " (used)".to_owned()
            } else {
                format!(
                    " (not used: {})",
                    b.note.as_deref().unwrap_or("see message")
                )
            }
        ),
    });
    out.push(format!(
        "- Missing-metric policy: `{}`",
        g.on_missing.unwrap_or_default().as_str()
    ));
    out.push(format!("- Message: {}", g.message));
    out.join("\n")
}
