//! Runs: starting, queueing, remediation (new head SHA, explicit retry), finishing, ERROR.
//!
//! A run is one pass over the template's steps for one head SHA. `status.run` counts runs and is
//! part of every Job name, so a new run never reuses an earlier run's Jobs.

use qms_api::{
    Condition, ConditionStatus, QmsWorkflowStatus, StepPhase, StepStatus, TaskPhase, WorkflowState,
};
use serde_json::json;

use super::ctx::Ctx;
use super::plan::Plan;
use crate::action::EventType;

/// Reasons of the transitions that begin a run (used to find when the current run began).
pub const REASON_STARTED: &str = "Started";
pub const REASON_NEW_HEAD_SHA: &str = "NewHeadSha";
pub const REASON_RETRY: &str = "RetryRequested";
/// A run that waited in INITIALIZED for a slot (after a new head SHA or a retry) got one.
pub const REASON_SLOT_TAKEN: &str = "SlotTaken";

/// Applies a new head SHA or a new retry request. Returns whether a new run was set up.
pub fn remediate(ctx: &mut Ctx<'_, '_>, plan: Option<&Plan<'_>>) -> bool {
    let spec = &ctx.obs.workflow.spec;
    if ctx.st.run > 0 && ctx.st.head_sha.as_deref() != Some(spec.head_sha.as_str()) {
        // A push supersedes everything, including a retry asked for the old SHA.
        if let Some(r) = &spec.retry {
            ctx.st.last_retry_id = Some(r.id.clone());
        }
        new_run(ctx, plan, 0, REASON_NEW_HEAD_SHA);
        return true;
    }
    let Some(retry) = spec.retry.clone() else {
        return false;
    };
    if ctx.st.last_retry_id.as_deref() == Some(retry.id.as_str()) {
        return false;
    }
    // Each id is acted on (or refused) once.
    ctx.st.last_retry_id = Some(retry.id.clone());
    let refuse = |ctx: &mut Ctx<'_, '_>, why: String| {
        let cond = condition(ctx, "Retry", ConditionStatus::False, "Ignored", why);
        Condition::upsert(&mut ctx.st.conditions, cond);
        false
    };
    if ctx.st.run == 0 || !ctx.st.state.is_failure() {
        let why = format!(
            "retry {:?} ignored: the workflow is {}; only a failed run or ERROR can be retried",
            retry.id, ctx.st.state
        );
        return refuse(ctx, why);
    }
    let failed = first_failed(&ctx.st);
    let from = match (plan, &retry.step) {
        (Some(p), Some(name)) => match p.index(name) {
            // Never skip over a failed step: re-run from whichever comes first.
            Some(i) => failed.map_or(i, |f| f.min(i)),
            None => {
                let why = format!("retry {:?} ignored: no step named {name:?}", retry.id);
                return refuse(ctx, why);
            }
        },
        (Some(_), None) => failed.unwrap_or(0),
        (None, _) => 0,
    };
    let by = retry.by.clone().unwrap_or_else(|| "unknown".to_owned());
    let step = plan
        .and_then(|p| p.steps.get(from))
        .map_or("", |s| s.name())
        .to_owned();
    let msg = format!(
        "retry {:?} by {by}: re-running from step {step:?}",
        retry.id
    );
    let cond = condition(ctx, "Retry", ConditionStatus::True, "Accepted", msg);
    Condition::upsert(&mut ctx.st.conditions, cond);
    new_run(ctx, plan, from, REASON_RETRY);
    ctx.pending_reason = Some(format!("{REASON_RETRY}: {} by {by} from {step}", retry.id));
    true
}

/// Sets up a new run re-running the steps from index `from` (earlier steps keep their results).
pub fn new_run(ctx: &mut Ctx<'_, '_>, plan: Option<&Plan<'_>>, from: usize, reason: &str) {
    // Stop whatever still runs: those Jobs belong to a superseded run.
    let running: Vec<String> = ctx
        .st
        .steps
        .iter()
        .flat_map(|s| &s.tasks)
        .filter(|t| t.phase == TaskPhase::Running)
        .map(|t| t.job_name.clone())
        .collect();
    for job in running {
        ctx.delete_job(&job, reason);
    }
    let head_sha = ctx.obs.workflow.spec.head_sha.clone();
    ctx.st.run += 1;
    ctx.st.head_sha = Some(head_sha);
    ctx.st.correlation_id = Some(correlation_id(ctx));
    ctx.st.started_at = None;
    ctx.st.completed_at = None;
    let kept: Vec<StepStatus> = match plan {
        Some(p) => p
            .steps
            .iter()
            .enumerate()
            .map(|(i, ps)| match ctx.st.step(ps.name()) {
                Some(old) if i < from => old.clone(),
                _ => StepStatus {
                    name: ps.name().to_owned(),
                    ..StepStatus::default()
                },
            })
            .collect(),
        None => Vec::new(),
    };
    ctx.st.steps = kept;
    ctx.st.current_step = None;
    ctx.needs_start = true;
    if reason != REASON_RETRY {
        ctx.pending_reason = Some(reason.to_owned());
    }
}

/// `corr-<uid prefix>-<run>`: stable for a run, different for the next.
fn correlation_id(ctx: &Ctx<'_, '_>) -> String {
    let meta = &ctx.obs.workflow.metadata;
    let key = meta
        .uid
        .clone()
        .unwrap_or_else(|| crate::hash::short(&[ctx.workflow_name()], 8));
    let prefix: String = key.chars().filter(|c| *c != '-').take(8).collect();
    format!("corr-{prefix}-{}", ctx.st.run)
}

/// Starts the set-up run (returns true), or keeps it in INITIALIZED while no slot is free.
pub fn start_or_queue(ctx: &mut Ctx<'_, '_>, plan: &Plan<'_>) -> bool {
    if !ctx.held_slot && !ctx.obs.slot_available {
        ctx.queued = true;
        ctx.set_state(WorkflowState::Initialized, "WaitingForSlot");
        return false;
    }
    ctx.needs_start = false;
    ctx.st.started_at = Some(ctx.now_str());
    if ctx.pending_reason.is_none() && ctx.st.state == WorkflowState::Initialized {
        // A later run that waited for a slot began with the transition into INITIALIZED (reason
        // NewHeadSha or RetryRequested); calling its start "Started" would hide that beginning
        // from `retry_cutoff`, and decisions taken before a retry would count again.
        let reason = if ctx.st.run <= 1 {
            REASON_STARTED
        } else {
            REASON_SLOT_TAKEN
        };
        ctx.pending_reason = Some(reason.to_owned());
    }
    let first = plan.steps.first().map_or("", |s| s.name()).to_owned();
    ctx.emit(
        EventType::WorkflowStarted,
        "WorkflowStarted",
        format!(
            "run {} of template {} started for {}",
            ctx.st.run, ctx.obs.workflow.spec.template_ref.name, ctx.obs.workflow.spec.head_sha
        ),
        false,
        json!({
            "template": ctx.obs.workflow.spec.template_ref.name,
            "steps": plan.steps.len(),
            "first_step": first,
        }),
    );
    true
}

pub fn is_finished(phase: StepPhase) -> bool {
    matches!(
        phase,
        StepPhase::Succeeded | StepPhase::Failed | StepPhase::Skipped
    )
}

/// The first step of the plan that has not finished.
pub fn current_step(ctx: &Ctx<'_, '_>, plan: &Plan<'_>) -> Option<usize> {
    plan.steps
        .iter()
        .position(|ps| ctx.st.step(ps.name()).is_none_or(|s| !is_finished(s.phase)))
}

fn first_failed(st: &QmsWorkflowStatus) -> Option<usize> {
    st.steps.iter().position(|s| s.phase == StepPhase::Failed)
}

/// Every step finished: the run ends COMPLETED, or in the failed state of its first failed step.
pub fn finish(ctx: &mut Ctx<'_, '_>, plan: &Plan<'_>) {
    let failed = plan.steps.iter().find(|ps| {
        ctx.st
            .step(ps.name())
            .is_some_and(|s| s.phase == StepPhase::Failed)
    });
    let (to, reason) = match failed {
        Some(ps) => {
            let msg = ctx
                .st
                .step(ps.name())
                .map(|s| s.message.clone())
                .unwrap_or_default();
            (ps.failed, format!("{} failed: {msg}", ps.name()))
        }
        None => {
            let last = ctx
                .st
                .steps
                .iter()
                .rev()
                .find(|s| s.phase == StepPhase::Succeeded)
                .map(|s| format!("{}: {}", s.name, s.message))
                .unwrap_or_else(|| "every step was skipped".to_owned());
            (WorkflowState::Completed, format!("AllStepsPassed: {last}"))
        }
    };
    ctx.st.completed_at = Some(ctx.now_str());
    ctx.set_state(to, &reason);
    let passed = to == WorkflowState::Completed;
    ctx.emit(
        EventType::WorkflowCompleted,
        if passed {
            "WorkflowCompleted"
        } else {
            "WorkflowFailed"
        },
        format!("workflow finished in {to}: {reason}"),
        !passed,
        json!({
            "result": if passed { "completed" } else { "failed" },
            "state": to.as_str(),
            "gates": super::finalize::gates_summary(&ctx.st),
        }),
    );
}

/// A system fault: stop everything of the run, ERROR, and say why.
pub fn enter_error(ctx: &mut Ctx<'_, '_>, plan: Option<&Plan<'_>>, reason: &str, message: &str) {
    let now = ctx.now_str();
    let current = plan.and_then(|p| current_step(ctx, p));
    let mut to_delete = Vec::new();
    for (i, step) in ctx.st.steps.iter_mut().enumerate() {
        for t in &mut step.tasks {
            if matches!(t.phase, TaskPhase::Running | TaskPhase::Pending) {
                if t.phase == TaskPhase::Running {
                    to_delete.push(t.job_name.clone());
                }
                t.phase = TaskPhase::Cancelled;
                t.finished_at = Some(now.clone());
                t.message = format!("cancelled: {reason}");
            }
        }
        if Some(i) == current && !is_finished(step.phase) {
            step.phase = StepPhase::Failed;
            step.finished_at = Some(now.clone());
            step.next_attempt_at = None;
            step.message = format!("{reason}: {message}");
        }
    }
    for job in to_delete {
        ctx.delete_job(&job, reason);
    }
    if let Some(i) = current {
        ctx.st.current_step = ctx.st.steps.get(i).map(|s| s.name.clone());
    }
    ctx.st.completed_at = Some(now);
    // The fault is the reason, whatever began this run.
    ctx.pending_reason = None;
    ctx.set_state(WorkflowState::Error, &format!("{reason}: {message}"));
    ctx.emit(
        EventType::ErrorOccurred,
        reason,
        message.to_owned(),
        true,
        json!({ "error_type": reason, "error": message }),
    );
}

pub fn condition(
    ctx: &Ctx<'_, '_>,
    type_: &str,
    status: ConditionStatus,
    reason: &str,
    message: String,
) -> Condition {
    Condition {
        type_: type_.to_owned(),
        status,
        reason: reason.to_owned(),
        message,
        observed_generation: ctx.obs.workflow.metadata.generation,
        last_transition_time: ctx.now_str(),
    }
}
