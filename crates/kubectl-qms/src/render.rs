//! Text of `kubectl qms status` and `explain`: pure functions of the objects read.

use std::fmt::Write;

use chrono::{DateTime, Utc};
use qms_api::{
    ConditionStatus, GateResult, GateVerdict, MetricUnit, Operator, QmsWorkflow, QualityGate,
    StepPhase, TaskPhase, WorkflowState,
};

use crate::decide::{name_of, short};

fn state(wf: &QmsWorkflow) -> WorkflowState {
    wf.status.as_ref().map(|s| s.state).unwrap_or_default()
}

fn unit(u: Option<MetricUnit>) -> String {
    u.and_then(|u| serde_json::to_value(u).ok())
        .and_then(|v| v.as_str().map(|s| format!(" {s}")))
        .unwrap_or_default()
}

fn op(o: Option<Operator>) -> &'static str {
    o.map_or("?", Operator::symbol)
}

fn num(v: f64) -> String {
    format!("{v}")
}

/// One line: what the workflow waits for, and the command that moves it on when a person must.
pub fn waiting_for(wf: &QmsWorkflow) -> String {
    let name = name_of(wf);
    let Some(status) = &wf.status else {
        return "the operator to pick it up (no status yet)".into();
    };
    let st = status.state;
    if st == WorkflowState::Completed {
        return "nothing: the review is complete".into();
    }
    if st.is_failure() {
        let failed = status
            .steps
            .iter()
            .find(|s| s.phase == StepPhase::Failed)
            .map(|s| format!(" ({} failed: {})", s.name, s.message))
            .unwrap_or_default();
        return format!("a new push or a retry{failed}: kubectl qms retry {name} [STEP]");
    }
    if let Some(q) = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Queued" && c.status == ConditionStatus::True)
    {
        return format!("a free slot ({}: {})", q.reason, q.message);
    }
    let Some(step) = status.current_step.as_deref().and_then(|c| status.step(c)) else {
        return format!("its first step to start (state {st})");
    };
    match step.phase {
        StepPhase::WaitingForApproval => format!(
            "a decision on {} for {}: kubectl qms approve {name} --reason … (or reject)",
            step.name,
            short(&wf.spec.head_sha)
        ),
        StepPhase::Backoff => format!(
            "the retry backoff of {} (next attempt at {})",
            step.name,
            step.next_attempt_at.as_deref().unwrap_or("?")
        ),
        StepPhase::Pending => format!("step {} to start", step.name),
        _ => {
            let open: Vec<String> = step
                .tasks
                .iter()
                .filter(|t| t.attempt == step.attempt)
                .filter(|t| matches!(t.phase, TaskPhase::Pending | TaskPhase::Running))
                .map(|t| format!("{} (Job {})", t.agent, t.job_name))
                .collect();
            if open.is_empty() {
                format!("step {} to be evaluated", step.name)
            } else {
                format!("the agents of {}: {}", step.name, open.join(", "))
            }
        }
    }
}

fn verdict(v: GateVerdict) -> &'static str {
    match v {
        GateVerdict::Passed => "Passed",
        GateVerdict::Failed => "Failed",
        GateVerdict::Warning => "Warning",
        GateVerdict::Overridden => "Overridden",
        GateVerdict::Error => "Error",
    }
}

pub fn gate_line(g: &GateResult) -> String {
    let value = g.value.map_or("no value".to_owned(), num);
    let threshold = g.threshold.map_or("?".to_owned(), num);
    let mut line = format!(
        "{}: {} {} {} {}{} → {}{}",
        g.name,
        if g.metric.is_empty() {
            "metric"
        } else {
            &g.metric
        },
        value,
        op(g.operator),
        threshold,
        unit(g.unit),
        verdict(g.verdict),
        if g.blocking { "" } else { " (advisory)" }
    );
    if !g.message.is_empty() {
        let _ = write!(line, " — {}", g.message);
    }
    line
}

/// `kubectl qms status NAME`: the run, every step with its tasks and gates, what it waits for.
pub fn status(wf: &QmsWorkflow, now: DateTime<Utc>) -> String {
    let mut out = String::new();
    let ns = wf.metadata.namespace.clone().unwrap_or_default();
    let s = &wf.spec;
    let _ = writeln!(out, "Workflow:     {ns}/{}", name_of(wf));
    let _ = writeln!(
        out,
        "Pull request: {}#{} (head {}, base {})",
        s.repository,
        s.pull_request,
        s.head_sha,
        if s.base_ref.is_empty() {
            "?"
        } else {
            &s.base_ref
        }
    );
    let _ = writeln!(out, "Template:     {}", s.template_ref.name);
    let status = wf.status.clone().unwrap_or_default();
    let _ = writeln!(
        out,
        "State:        {}  (step {}, run {}, gates {})",
        status.state,
        status.current_step.as_deref().unwrap_or("-"),
        status.run,
        status.gates.as_deref().unwrap_or("-")
    );
    if let Some(c) = &status.correlation_id {
        let _ = writeln!(out, "Correlation:  {c}");
    }
    let _ = writeln!(out, "Waiting for:  {}", waiting_for(wf));
    if !status.steps.is_empty() {
        let _ = writeln!(out, "\nSteps:");
    }
    for step in &status.steps {
        let _ = write!(out, "  {:<22} {:?}", step.name, step.phase);
        if step.attempt > 0 {
            let _ = write!(out, "  attempt {}", step.attempt);
        }
        if step.escalated {
            let _ = write!(out, "  ESCALATED");
        }
        if !step.message.is_empty() {
            let _ = write!(out, "  {}", step.message);
        }
        let _ = writeln!(out);
        for t in &step.tasks {
            let _ = write!(
                out,
                "      task {} (attempt {}): {:?}  Job {}",
                t.agent, t.attempt, t.phase, t.job_name
            );
            if let Some(r) = &t.result
                && !r.summary.is_empty()
            {
                let _ = write!(out, "  \"{}\"", r.summary);
            } else if !t.message.is_empty() {
                let _ = write!(out, "  {}", t.message);
            }
            let _ = writeln!(out);
        }
        for g in &step.gates {
            let _ = writeln!(out, "      gate {}", gate_line(g));
        }
    }
    let live: Vec<_> = status
        .conditions
        .iter()
        .filter(|c| c.status == ConditionStatus::True)
        .collect();
    if !live.is_empty() {
        let _ = writeln!(out, "\nConditions:");
        for c in live {
            let _ = writeln!(out, "  {}: {} {}", c.type_, c.reason, c.message);
        }
    }
    let decisions: Vec<_> = s.approvals.iter().filter(|a| a.sha == s.head_sha).collect();
    if !decisions.is_empty() {
        let _ = writeln!(out, "\nDecisions on {}:", short(&s.head_sha));
        for a in decisions {
            let _ = writeln!(
                out,
                "  {:?} {} by {} at {}: {}",
                a.decision,
                a.step,
                a.by,
                a.at.as_deref().unwrap_or("?"),
                a.reason
            );
        }
    }
    let overrides: Vec<_> = s
        .overrides
        .iter()
        .filter(|o| o.sha == s.head_sha)
        .filter(|o| DateTime::parse_from_rfc3339(&o.expires).is_ok_and(|e| e > now))
        .collect();
    if !overrides.is_empty() {
        let _ = writeln!(out, "\nOverrides in force:");
        for o in overrides {
            let _ = writeln!(
                out,
                "  {} by {} until {}: {}",
                o.gate, o.by, o.expires, o.reason
            );
        }
    }
    out
}

/// `kubectl qms status` without a name: one line per review.
pub fn list(wfs: &[QmsWorkflow]) -> String {
    let mut rows = vec![[
        "NAME".to_owned(),
        "REPOSITORY".into(),
        "PR".into(),
        "STATE".into(),
        "STEP".into(),
        "GATES".into(),
        "WAITING FOR".into(),
    ]];
    for wf in wfs {
        let st = wf.status.clone().unwrap_or_default();
        rows.push([
            name_of(wf),
            wf.spec.repository.clone(),
            wf.spec.pull_request.to_string(),
            state(wf).to_string(),
            st.current_step.unwrap_or_else(|| "-".into()),
            st.gates.unwrap_or_else(|| "-".into()),
            waiting_for(wf),
        ]);
    }
    let widths: Vec<usize> = (0..6)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in rows {
        for (i, w) in widths.iter().enumerate() {
            let _ = write!(out, "{:<width$}   ", r[i], width = w);
        }
        let _ = writeln!(out, "{}", r[6]);
    }
    out
}

/// `kubectl qms explain GATE [WORKFLOW]`: the rule in words, and (with a workflow) its latest
/// result there and the overrides in force.
pub fn explain(
    name: &str,
    gate: Option<&QualityGate>,
    wf: Option<&QmsWorkflow>,
    now: DateTime<Utc>,
) -> String {
    let mut out = String::new();
    match gate {
        Some(g) => {
            let s = &g.spec;
            let _ = writeln!(
                out,
                "Gate {name}: {} {:?} gate{}",
                if s.blocking { "blocking" } else { "advisory" },
                s.type_,
                s.step
                    .as_deref()
                    .map(|st| format!(" of step {st}"))
                    .unwrap_or_default()
            );
            let _ = writeln!(
                out,
                "  Passes when {} {} {}{}.",
                s.metric.as_deref().unwrap_or("?"),
                op(s.operator),
                s.threshold.map_or("?".into(), num),
                unit(s.unit)
            );
            let _ = writeln!(
                out,
                "  {}",
                if s.blocking {
                    "A failing value fails the step."
                } else {
                    "A failing value passes the step with a warning."
                }
            );
            let _ = writeln!(
                out,
                "  {}",
                match s.on_missing {
                    qms_api::OnMissing::Fail =>
                        "Missing metric (onMissing: fail): an Error, counts as failed.".to_owned(),
                    qms_api::OnMissing::Neutral =>
                        "Missing metric (onMissing: neutral): an advisory Warning, never a pass."
                            .to_owned(),
                    qms_api::OnMissing::CarryForward => format!(
                        "Missing metric (onMissing: carryForward): the base branch's last value is carried (named as carried) if younger than {}; else an Error.",
                        s.carry_forward
                            .as_ref()
                            .map_or("?".into(), |c| c.max_age.to_string())
                    ),
                }
            );
            let _ = writeln!(
                out,
                "  A crashed agent or an unreadable result is an Error (counts as failed){}.",
                if s.retry > 0 {
                    format!(
                        "; the step's agents are re-run up to {} time(s) to obtain the metric{}",
                        s.retry,
                        s.timeout
                            .as_ref()
                            .map(|t| format!(", waiting up to {t}"))
                            .unwrap_or_default()
                    )
                } else {
                    String::new()
                }
            );
            if let Some(b) = s.baseline.as_ref().filter(|b| b.enabled) {
                let _ = writeln!(
                    out,
                    "  Baseline ratchet: no regression of more than {} against the base branch's baseline (the last merged pull request's value, QualityBaseline){}.",
                    b.tolerance,
                    b.max_age
                        .as_ref()
                        .map(|a| format!("; a baseline older than {a} is not used"))
                        .unwrap_or_default()
                );
            }
            if let Some(gr) = &s.gradual {
                let _ = writeln!(
                    out,
                    "  Gradual enforcement: the threshold moves from {} ({}) to {} ({}).",
                    gr.from,
                    gr.start,
                    s.threshold.map_or("?".into(), num),
                    gr.end
                );
            }
            if let Some(e) = s.escalation.as_ref().filter(|e| e.enabled) {
                let _ = writeln!(
                    out,
                    "  Escalated when still undecided after {}.",
                    e.threshold.as_ref().map_or("?".into(), |t| t.to_string())
                );
            }
        }
        None => {
            let _ = writeln!(
                out,
                "Gate {name}: no QualityGate of that name exists: a step naming it fails closed (Error)."
            );
        }
    }
    if let Some(wf) = wf {
        let results: Vec<(&str, &GateResult)> = wf
            .status
            .iter()
            .flat_map(|s| s.steps.iter())
            .flat_map(|st| {
                st.gates
                    .iter()
                    .filter(|g| g.name == name)
                    .map(move |g| (st.name.as_str(), g))
            })
            .collect();
        let _ = writeln!(
            out,
            "\nIn {} (head {}):",
            name_of(wf),
            short(&wf.spec.head_sha)
        );
        if results.is_empty() {
            let _ = writeln!(out, "  not evaluated yet in this run");
        }
        for (step, g) in results {
            let _ = writeln!(out, "  step {step}: {}", gate_line(g));
            if let Some(b) = &g.baseline {
                let age = DateTime::parse_from_rfc3339(&b.at)
                    .map(|at| {
                        let h = (now - at.with_timezone(&Utc)).num_hours().max(0);
                        format!("{}d{}h old", h / 24, h % 24)
                    })
                    .unwrap_or_else(|_| format!("at {:?}", b.at));
                let _ = writeln!(
                    out,
                    "    {} {} = {}, {age}, tolerance {}{}",
                    if g.carried {
                        "carried from"
                    } else {
                        "baseline"
                    },
                    short(&b.sha),
                    b.value,
                    b.tolerance,
                    if b.used {
                        " (used)".to_owned()
                    } else {
                        format!(" (not used: {})", b.note.as_deref().unwrap_or(""))
                    }
                );
            }
        }
        for o in wf.spec.overrides.iter().filter(|o| o.gate == name) {
            let live = o.sha == wf.spec.head_sha
                && DateTime::parse_from_rfc3339(&o.expires).is_ok_and(|e| e > now);
            let _ = writeln!(
                out,
                "  override by {} until {} for {}: {}{}",
                o.by,
                o.expires,
                short(&o.sha),
                o.reason,
                if live {
                    " (in force)"
                } else {
                    " (not in force)"
                }
            );
        }
    }
    out
}
