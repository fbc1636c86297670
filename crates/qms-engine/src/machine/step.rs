//! One step: condition, attempts, completion, gates, retries with backoff, escalation, approval.

use chrono::{DateTime, Utc};
use qms_api::{Decision as Verdict, GateVerdict, StepPhase, TaskPhase};
use serde_json::json;

use super::ctx::Ctx;
use super::plan::{Outcome, Plan, PlannedStep, StepCondition};
use super::run::{self, REASON_RETRY};
use super::tasks;
use crate::action::EventType;
use crate::gates::{self, GateContext, Reported};
use crate::time;

/// Why an attempt failed.
enum Failure {
    Tasks(String),
    Timeout(String),
    /// Blocking gates did not pass. `gate_retry`: extra attempts allowed because the only problem
    /// is a missing metric of gates with `retry`, and the latest time such a retry may start.
    Gates {
        message: String,
        gate_retry: Option<(u32, Option<DateTime<Utc>>)>,
    },
}

pub fn advance(ctx: &mut Ctx<'_, '_>, plan: &Plan<'_>, i: usize) {
    let ps = &plan.steps[i];
    let aligned = ctx.st.steps.len() == plan.steps.len()
        && plan
            .steps
            .iter()
            .zip(&ctx.st.steps)
            .all(|(p, s)| p.name() == s.name);
    if !aligned {
        // The template changed under a running workflow: line the status up with it.
        realign(ctx, plan);
    }
    let phase = ctx.st.steps[i].phase;
    if phase != StepPhase::Pending {
        ctx.set_state(ps.pending, &format!("StepRunning: {}", ps.name()));
    }
    match phase {
        StepPhase::Pending => begin(ctx, plan, i),
        StepPhase::Running => running(ctx, plan, i),
        StepPhase::Backoff => backoff(ctx, plan, i),
        StepPhase::WaitingForApproval => waiting(ctx, plan, i),
        StepPhase::Succeeded | StepPhase::Failed | StepPhase::Skipped => {}
    }
}

fn realign(ctx: &mut Ctx<'_, '_>, plan: &Plan<'_>) {
    let steps = plan
        .steps
        .iter()
        .map(|ps| {
            ctx.st
                .step(ps.name())
                .cloned()
                .unwrap_or_else(|| qms_api::StepStatus {
                    name: ps.name().to_owned(),
                    ..Default::default()
                })
        })
        .collect();
    ctx.st.steps = steps;
}

fn condition_holds(ctx: &Ctx<'_, '_>, plan: &Plan<'_>, i: usize) -> (bool, String) {
    let phase_of = |j: usize| ctx.st.steps.get(j).map(|s| s.phase);
    match plan.steps[i].condition {
        StepCondition::Always => (true, "always".to_owned()),
        StepCondition::Implicit => {
            let failed = (0..i).find(|&j| phase_of(j) == Some(StepPhase::Failed));
            match failed {
                Some(j) => (
                    false,
                    format!("skipped: step {} failed", plan.steps[j].name()),
                ),
                None => (true, String::new()),
            }
        }
        StepCondition::On(j, outcome) => {
            let want = match outcome {
                Outcome::Success => StepPhase::Succeeded,
                Outcome::Failure => StepPhase::Failed,
                Outcome::Skipped => StepPhase::Skipped,
            };
            let cond = plan.steps[i].spec.condition.clone().unwrap_or_default();
            if phase_of(j) == Some(want) {
                (true, cond)
            } else {
                (false, format!("skipped: condition {cond} does not hold"))
            }
        }
    }
}

fn begin(ctx: &mut Ctx<'_, '_>, plan: &Plan<'_>, i: usize) {
    let ps = &plan.steps[i];
    let (holds, why) = condition_holds(ctx, plan, i);
    if !holds {
        let step = &mut ctx.st.steps[i];
        step.phase = StepPhase::Skipped;
        step.finished_at = Some(time::format(ctx.now));
        step.message = why.clone();
        step_completed(ctx, ps, "skipped", why);
        return;
    }
    // A step with agents is automated work: it needs a slot. Only a run resuming after a person
    // (an approval, a rejection with a later step that still runs) can get here without one.
    if !ps.spec.agents.is_empty() && !ctx.held_slot && !ctx.obs.slot_available {
        ctx.queued = true;
        return;
    }
    ctx.set_state(ps.pending, &format!("StepStarted: {}", ps.name()));
    start_attempt(ctx, ps, i, 1);
}

fn start_attempt(ctx: &mut Ctx<'_, '_>, ps: &PlannedStep<'_>, i: usize, attempt: u32) {
    let now = ctx.now_str();
    let step = &mut ctx.st.steps[i];
    step.phase = StepPhase::Running;
    step.attempt = attempt;
    step.started_at = Some(now);
    step.finished_at = None;
    step.next_attempt_at = None;
    step.tasks.clear();
    step.gates.clear();
    step.message = format!("attempt {attempt} of {} running", ps.max_attempts);
    spawn(ctx, ps, i);
}

/// Starts the tasks that may run now: all of them (parallel) or the next one (sequential).
fn spawn(ctx: &mut Ctx<'_, '_>, ps: &PlannedStep<'_>, i: usize) {
    let n = ps.spec.agents.len();
    if ps.parallel {
        for k in 0..n {
            ensure(ctx, ps, i, k);
        }
        return;
    }
    for k in 0..n {
        let phase = task_phase(ctx, ps, i, k);
        match phase {
            Some(TaskPhase::Succeeded) => continue,
            None | Some(TaskPhase::Pending) => ensure(ctx, ps, i, k),
            Some(_) => {}
        }
        return;
    }
}

fn ensure(ctx: &mut Ctx<'_, '_>, ps: &PlannedStep<'_>, i: usize, k: usize) {
    if ctx.fatal.is_none() {
        tasks::ensure_task(ctx, ps, i, k);
    }
}

/// Phase of selector `k`'s task in the current attempt (found by its deterministic Job name).
fn task_phase(ctx: &Ctx<'_, '_>, ps: &PlannedStep<'_>, i: usize, k: usize) -> Option<TaskPhase> {
    let step = &ctx.st.steps[i];
    let name = crate::naming::job_name(ctx.workflow_name(), ctx.st.run, ps.name(), step.attempt, k);
    step.tasks
        .iter()
        .find(|t| t.job_name == name)
        .map(|t| t.phase)
}

/// Whether the attempt's tasks are over, and the failure if one failed.
fn tasks_outcome(ctx: &Ctx<'_, '_>, ps: &PlannedStep<'_>, i: usize) -> Option<Option<String>> {
    let n = ps.spec.agents.len();
    let phases: Vec<Option<TaskPhase>> = (0..n).map(|k| task_phase(ctx, ps, i, k)).collect();
    let failed = ctx.st.steps[i]
        .tasks
        .iter()
        .find(|t| tasks::is_done(t.phase) && t.phase != TaskPhase::Succeeded);
    let failure = failed.map(|t| format!("task {} ({}): {}", t.job_name, t.agent, t.message));
    let all_done = phases.iter().all(|p| p.is_some_and(tasks::is_done));
    if all_done || (!ps.parallel && failure.is_some()) {
        Some(failure)
    } else {
        None
    }
}

fn running(ctx: &mut Ctx<'_, '_>, plan: &Plan<'_>, i: usize) {
    let ps = &plan.steps[i];
    tasks::observe(ctx, ps, i);
    spawn(ctx, ps, i);
    if ctx.fatal.is_some() {
        return;
    }
    if let Some(failure) = tasks_outcome(ctx, ps, i) {
        let gate_failure = evaluate_gates(ctx, ps, i);
        match (failure, gate_failure) {
            (Some(f), _) => attempt_failed(ctx, plan, i, Failure::Tasks(f)),
            (None, Some(g)) => attempt_failed(ctx, plan, i, g),
            (None, None) if ps.is_manual() => {
                let step = &mut ctx.st.steps[i];
                step.phase = StepPhase::WaitingForApproval;
                step.message = "waiting for approval".to_owned();
            }
            (None, None) => succeed(ctx, ps, i, "passed".to_owned()),
        }
        return;
    }
    if let Some((at, gate)) = gate_escalation_due(ctx, ps, i)
        && ctx.now >= at
    {
        escalate_gate(ctx, ps, i, &gate);
    }
    if let Some(why) = run_timed_out(ctx, plan) {
        tasks::stop_all(ctx, i, TaskPhase::Cancelled, "RunTimeout");
        fail(ctx, ps, i, why, true);
        return;
    }
    let step = &ctx.st.steps[i];
    if tasks::step_deadline(step, ps).is_some_and(|dl| ctx.now >= dl) {
        let why = format!(
            "StepTimeout: attempt {} exceeded {:?}",
            step.attempt, ps.timeout
        );
        tasks::stop_all(ctx, i, TaskPhase::TimedOut, "StepTimeout");
        attempt_failed(ctx, plan, i, Failure::Timeout(why));
    }
}

fn run_timed_out(ctx: &Ctx<'_, '_>, plan: &Plan<'_>) -> Option<String> {
    let limit = plan.run_timeout?;
    let start = ctx.st.started_at.as_deref().and_then(time::parse)?;
    (ctx.now >= time::add(start, limit))
        .then(|| format!("RunTimeout: the run exceeded the template timeout of {limit:?}"))
}

pub fn run_deadline(ctx: &Ctx<'_, '_>, plan: &Plan<'_>) -> Option<DateTime<Utc>> {
    let limit = plan.run_timeout?;
    let start = ctx.st.started_at.as_deref().and_then(time::parse)?;
    Some(time::add(start, limit))
}

fn attempt_failed(ctx: &mut Ctx<'_, '_>, plan: &Plan<'_>, i: usize, failure: Failure) {
    let ps = &plan.steps[i];
    let attempt = ctx.st.steps[i].attempt;
    let (message, allowed, latest) = match &failure {
        Failure::Tasks(m) | Failure::Timeout(m) => (m.clone(), ps.max_attempts, None),
        Failure::Gates {
            message,
            gate_retry,
        } => match gate_retry {
            Some((extra, latest)) => (message.clone(), ps.max_attempts + extra, *latest),
            None => (message.clone(), ps.max_attempts, None),
        },
    };
    if attempt < allowed {
        let uid = ctx.obs.workflow.metadata.uid.clone().unwrap_or_default();
        let seed = [
            uid.as_str(),
            &ctx.st.run.to_string(),
            ps.name(),
            &attempt.to_string(),
        ];
        let next = time::normalize(time::add(ctx.now, ps.backoff.delay(attempt, &seed)));
        let in_time =
            latest.is_none_or(|l| next <= l) && run_deadline(ctx, plan).is_none_or(|dl| next < dl);
        if in_time {
            let step = &mut ctx.st.steps[i];
            step.phase = StepPhase::Backoff;
            step.next_attempt_at = Some(time::format(next));
            step.message = format!(
                "attempt {attempt} failed: {message}; attempt {} at {}",
                attempt + 1,
                time::format(next)
            );
            return;
        }
    }
    fail(ctx, ps, i, message, true);
}

fn backoff(ctx: &mut Ctx<'_, '_>, plan: &Plan<'_>, i: usize) {
    let ps = &plan.steps[i];
    if let Some(why) = run_timed_out(ctx, plan) {
        fail(ctx, ps, i, why, true);
        return;
    }
    let step = &ctx.st.steps[i];
    let due = step.next_attempt_at.as_deref().and_then(time::parse);
    if due.is_none_or(|t| ctx.now >= t) {
        let next = step.attempt + 1;
        start_attempt(ctx, ps, i, next);
    }
}

fn waiting(ctx: &mut Ctx<'_, '_>, plan: &Plan<'_>, i: usize) {
    let ps = &plan.steps[i];
    // An override that expires while the step waits un-passes its gate. (Only then are the gates
    // evaluated again: a gradual threshold moving with time must not re-judge a finished attempt.)
    if override_expired(ctx, i)
        && let Some(Failure::Gates { message, .. }) = evaluate_gates(ctx, ps, i)
    {
        fail(ctx, ps, i, message, true);
        return;
    }
    if let Some((decision, by, reason)) = approval(ctx, ps.name()) {
        match decision {
            Verdict::Approve => succeed(ctx, ps, i, format!("Approved by {by}: {reason}")),
            Verdict::Reject => fail(ctx, ps, i, format!("Rejected by {by}: {reason}"), false),
        }
        return;
    }
    if let Some(why) = run_timed_out(ctx, plan) {
        fail(ctx, ps, i, why, true);
        return;
    }
    let step = &ctx.st.steps[i];
    if tasks::step_deadline(step, ps).is_some_and(|dl| ctx.now >= dl) {
        let why = format!("ApprovalTimeout: no decision within {:?}", ps.timeout);
        fail(ctx, ps, i, why, true);
        return;
    }
    if let Some(at) = escalation_due(ctx, ps, i)
        && ctx.now >= at
    {
        let why = format!(
            "no approval decision since {}",
            time::format(waiting_since(ctx, i))
        );
        escalate(ctx, ps, i, &why);
    }
}

fn override_expired(ctx: &Ctx<'_, '_>, i: usize) -> bool {
    let gctx = GateContext {
        now: ctx.now,
        head_sha: &ctx.obs.workflow.spec.head_sha,
        overrides: &ctx.obs.workflow.spec.overrides,
        baselines: ctx.obs.baselines,
    };
    ctx.st.steps[i].gates.iter().any(|g| {
        g.verdict == GateVerdict::Overridden && gates::active_override(&g.name, &gctx).is_none()
    })
}

/// When a manual step asked for approval: when its last agent finished (or it started).
pub fn waiting_since(ctx: &Ctx<'_, '_>, i: usize) -> DateTime<Utc> {
    let step = &ctx.st.steps[i];
    step.tasks
        .iter()
        .filter_map(|t| t.finished_at.as_deref().and_then(time::parse))
        .chain(step.started_at.as_deref().and_then(time::parse))
        .max()
        .unwrap_or(ctx.now)
}

/// When a waiting manual step escalates (None: never, or already did).
pub fn escalation_due(ctx: &Ctx<'_, '_>, ps: &PlannedStep<'_>, i: usize) -> Option<DateTime<Utc>> {
    let after = ps.escalate_after?;
    (ps.escalate && !ctx.st.steps[i].escalated).then(|| time::add(waiting_since(ctx, i), after))
}

/// When the first of the step's gates with `escalation.enabled` is still undecided for its
/// `escalation.threshold` (default: the configured `gate_escalation_threshold`) since the attempt
/// started (None: no such gate, or the step already
/// escalated in this run). The gate and its threshold come with the time.
pub fn gate_escalation_due(
    ctx: &Ctx<'_, '_>,
    ps: &PlannedStep<'_>,
    i: usize,
) -> Option<(DateTime<Utc>, (String, std::time::Duration))> {
    let step = &ctx.st.steps[i];
    if step.escalated || step.phase != StepPhase::Running {
        return None;
    }
    let started = step.started_at.as_deref().and_then(time::parse)?;
    ps.spec
        .quality_gates
        .iter()
        .filter_map(|name| {
            let esc = ctx.obs.gates.get(name)?.escalation.as_ref()?;
            let after = match &esc.threshold {
                Some(t) => t.to_std().ok()?,
                None => ctx.obs.config.gate_escalation_threshold,
            };
            esc.enabled
                .then(|| (time::add(started, after), (name.clone(), after)))
        })
        .min_by_key(|(at, _)| *at)
}

/// A gate that is still undecided past its escalation threshold: an event and the Escalated
/// condition (the step keeps running; its own timeout decides). Once per step run, shared with
/// the step's escalation so nobody is paged twice for the same step.
fn escalate_gate(
    ctx: &mut Ctx<'_, '_>,
    ps: &PlannedStep<'_>,
    i: usize,
    (gate, after): &(String, std::time::Duration),
) {
    ctx.st.steps[i].escalated = true;
    let why = format!("gate {gate} still undecided after {after:?}");
    ctx.emit(
        EventType::ErrorOccurred,
        "GateEscalated",
        format!("step {} escalated: {why}", ps.name()),
        true,
        json!({ "error_type": "GateEscalated", "step": ps.name(), "gate_name": gate, "error": why }),
    );
}

/// The decision that counts for `step`: same head SHA; after a retry only decisions taken at or
/// after the retry; the latest by `at` (no `at` = oldest), a rejection winning a tie.
fn approval(ctx: &Ctx<'_, '_>, step: &str) -> Option<(Verdict, String, String)> {
    let spec = &ctx.obs.workflow.spec;
    let cutoff = retry_cutoff(ctx);
    spec.approvals
        .iter()
        .filter(|a| a.step == step && a.sha == spec.head_sha)
        .map(|a| (a, a.at.as_deref().and_then(time::parse)))
        .filter(|(_, at)| cutoff.is_none_or(|c| at.is_some_and(|at| at >= c)))
        .max_by_key(|(a, at)| (*at, a.decision == Verdict::Reject))
        .map(|(a, _)| (a.decision, a.by.clone(), a.reason.clone()))
}

/// When the current run began, if an explicit retry began it.
fn retry_cutoff(ctx: &Ctx<'_, '_>) -> Option<DateTime<Utc>> {
    let starts = [run::REASON_STARTED, run::REASON_NEW_HEAD_SHA, REASON_RETRY];
    let last = ctx
        .st
        .history
        .iter()
        .rev()
        .find(|t| starts.iter().any(|s| t.reason.starts_with(s)))?;
    if last.reason.starts_with(REASON_RETRY) {
        time::parse(&last.at)
    } else {
        None
    }
}

fn succeed(ctx: &mut Ctx<'_, '_>, ps: &PlannedStep<'_>, i: usize, message: String) {
    let step = &mut ctx.st.steps[i];
    step.phase = StepPhase::Succeeded;
    step.finished_at = Some(time::format(ctx.now));
    step.next_attempt_at = None;
    step.message = message.clone();
    step_completed(ctx, ps, "success", message);
}

fn fail(ctx: &mut Ctx<'_, '_>, ps: &PlannedStep<'_>, i: usize, message: String, escalate_it: bool) {
    tasks::stop_all(ctx, i, TaskPhase::Cancelled, "step failed");
    if escalate_it {
        escalate(ctx, ps, i, &message);
    }
    let step = &mut ctx.st.steps[i];
    step.phase = StepPhase::Failed;
    step.finished_at = Some(time::format(ctx.now));
    step.next_attempt_at = None;
    step.message = message.clone();
    step_completed(ctx, ps, "failure", message);
}

/// Escalates once per step run, when the step's escalation is enabled.
fn escalate(ctx: &mut Ctx<'_, '_>, ps: &PlannedStep<'_>, i: usize, why: &str) {
    if !ps.escalate || ctx.st.steps[i].escalated {
        return;
    }
    ctx.st.steps[i].escalated = true;
    ctx.emit(
        EventType::ErrorOccurred,
        "StepEscalated",
        format!("step {} escalated: {why}", ps.name()),
        true,
        json!({ "error_type": "StepEscalated", "step": ps.name(), "error": why }),
    );
}

fn step_completed(ctx: &mut Ctx<'_, '_>, ps: &PlannedStep<'_>, result: &str, message: String) {
    let attempt = ctx
        .st
        .steps
        .iter()
        .find(|s| s.name == ps.name())
        .map_or(0, |s| s.attempt);
    ctx.emit(
        EventType::StepCompleted,
        match result {
            "success" => "StepSucceeded",
            "skipped" => "StepSkipped",
            _ => "StepFailed",
        },
        format!("step {} {result}: {message}", ps.name()),
        result == "failure",
        json!({ "step": ps.name(), "result": result, "attempt": attempt, "message": message }),
    );
}

/// Evaluates the step's gates on its successful tasks' metrics, stores the results (emitting an
/// event for each result that is new) and returns the failure if a blocking gate does not pass.
fn evaluate_gates(ctx: &mut Ctx<'_, '_>, ps: &PlannedStep<'_>, i: usize) -> Option<Failure> {
    let step = &ctx.st.steps[i];
    let ok_tasks: Vec<_> = step
        .tasks
        .iter()
        .filter(|t| t.phase == TaskPhase::Succeeded && t.attempt == step.attempt)
        .collect();
    let failed: Vec<String> = step
        .tasks
        .iter()
        .filter(|t| tasks::is_done(t.phase) && t.phase != TaskPhase::Succeeded)
        .map(|t| t.job_name.clone())
        .collect();
    let gctx = GateContext {
        now: ctx.now,
        head_sha: &ctx.obs.workflow.spec.head_sha,
        overrides: &ctx.obs.workflow.spec.overrides,
        baselines: ctx.obs.baselines,
    };
    let mut results = Vec::new();
    let mut retry_extra: Option<u32> = Some(0);
    let mut latest: Option<DateTime<Utc>> = None;
    for name in &ps.spec.quality_gates {
        let spec = ctx.obs.gates.get(name);
        let metric = spec.and_then(|g| g.metric.clone()).unwrap_or_default();
        let reports: Vec<Reported> = ok_tasks
            .iter()
            .filter_map(|t| {
                let r = t.result.as_ref()?;
                Some(Reported {
                    task: t.job_name.clone(),
                    value: *r.metrics.get(&metric)?,
                    unit: r.units.get(&metric).copied(),
                })
            })
            .collect();
        let result = gates::evaluate(name, spec, &reports, &failed, &gctx);
        if result.blocking && !result.verdict.passes() {
            // A gate retry only helps a metric that is missing, from agents that did not fail.
            let missing = result.verdict == GateVerdict::Error
                && result.value.is_none()
                && result.threshold.is_some()
                && failed.is_empty();
            match (missing, spec) {
                (true, Some(g)) if g.retry > 0 => {
                    retry_extra = retry_extra.map(|e| e.max(g.retry));
                    if let Some(t) = g.timeout.as_ref().and_then(|d| d.to_std().ok()) {
                        let window = t + ctx.obs.config.gate_timeout_buffer;
                        let l = time::add(ctx.now, window);
                        latest = Some(latest.map_or(l, |x| x.min(l)));
                    }
                }
                _ => retry_extra = None,
            }
        }
        results.push(result);
    }
    let old = std::mem::take(&mut ctx.st.steps[i].gates);
    for r in &results {
        let same = old.iter().any(|o| {
            o.name == r.name
                && o.verdict == r.verdict
                && o.value == r.value
                && o.threshold == r.threshold
        });
        if !same {
            gate_event(ctx, ps, r);
        }
    }
    let failing: Vec<String> = results
        .iter()
        .filter(|r| r.blocking && !r.verdict.passes())
        .map(|r| format!("{}: {}", r.name, r.message))
        .collect();
    ctx.st.steps[i].gates = results;
    if failing.is_empty() {
        return None;
    }
    Some(Failure::Gates {
        message: format!("GateFailed: {}", failing.join("; ")),
        gate_retry: retry_extra.filter(|e| *e > 0).map(|e| (e, latest)),
    })
}

fn gate_event(ctx: &mut Ctx<'_, '_>, ps: &PlannedStep<'_>, r: &qms_api::GateResult) {
    let (event, reason, result) = match r.verdict {
        GateVerdict::Passed => (EventType::GatePassed, "GatePassed", "passed"),
        GateVerdict::Overridden => (EventType::GatePassed, "GateOverridden", "overridden"),
        GateVerdict::Warning => (EventType::GateFailed, "GateWarning", "warning"),
        GateVerdict::Failed => (EventType::GateFailed, "GateFailed", "failed"),
        GateVerdict::Error => (EventType::GateFailed, "GateError", "error"),
    };
    ctx.emit(
        event,
        reason,
        format!("gate {} ({}): {}", r.name, ps.name(), r.message),
        !matches!(r.verdict, GateVerdict::Passed | GateVerdict::Overridden),
        json!({
            "gate_name": r.name,
            "step": ps.name(),
            "result": result,
            "metric": r.metric,
            "metric_value": r.value,
            "threshold": r.threshold,
            "operator": r.operator,
            "unit": r.unit,
            "blocking": r.blocking,
            "message": r.message,
        }),
    );
}
