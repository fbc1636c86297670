//! After the state machine: stray Jobs, derived status fields, conditions, the next due time.

use chrono::{DateTime, Utc};
use qms_api::{Condition, ConditionStatus, GateVerdict, StepPhase, TaskPhase, WorkflowState};

use super::ctx::Ctx;
use super::plan::Plan;
use super::run::{self, condition};
use super::step;
use super::tasks;
use crate::gates::{self, GateContext};
use crate::naming;
use crate::observe::JobPhase;
use crate::time;

/// Deletes live Jobs nothing waits for any more: Jobs of earlier runs or attempts, of finished
/// steps, of tasks that ended (timed out, cancelled), or of a workflow that ended. A Job of the
/// current attempt of a running step that is not in the status yet is kept: it is adopted.
pub fn sweep_jobs(ctx: &mut Ctx<'_, '_>) {
    let ours = naming::workflow_label(ctx.workflow_name());
    let mut stray = Vec::new();
    for (name, job) in ctx.obs.jobs {
        if job.phase != JobPhase::Active || job.deleting {
            continue;
        }
        if job
            .labels
            .get(naming::LABEL_WORKFLOW)
            .is_some_and(|w| *w != ours)
        {
            continue; // not ours: never touch another workflow's Job
        }
        let task = ctx
            .st
            .steps
            .iter()
            .flat_map(|s| s.tasks.iter().map(move |t| (s, t)))
            .find(|(_, t)| t.job_name == *name);
        let wanted = match task {
            Some((_, t)) => t.phase == TaskPhase::Running,
            None => adoptable(ctx, job),
        };
        if !wanted {
            stray.push(name.clone());
        }
    }
    for name in stray {
        ctx.delete_job(&name, "Superseded");
    }
}

/// A Job unknown to the status that belongs to the current attempt of a step still running.
fn adoptable(ctx: &Ctx<'_, '_>, job: &crate::observe::JobObservation) -> bool {
    if ctx.st.state.is_terminal() {
        return false;
    }
    let label = |k: &str| job.labels.get(k).map(String::as_str);
    let Some(run) = label(naming::LABEL_RUN).and_then(|r| r.parse::<u32>().ok()) else {
        return true; // cannot tell: leave it alone
    };
    if run != ctx.st.run {
        return false;
    }
    let attempt = label(naming::LABEL_ATTEMPT).and_then(|a| a.parse::<u32>().ok());
    let step = label(naming::LABEL_STEP);
    ctx.st.steps.iter().any(|s| {
        Some(naming::label_value(&s.name).as_str()) == step
            && matches!(s.phase, StepPhase::Running | StepPhase::Pending)
            && attempt.is_none_or(|a| a == s.attempt || s.phase == StepPhase::Pending)
    })
}

/// Fields derived from the rest of the status, and the conditions.
pub fn bookkeeping(ctx: &mut Ctx<'_, '_>, plan: Option<&Plan<'_>>) {
    ctx.st.gates = Some(gates_summary(&ctx.st));
    ctx.st.observed_generation = ctx.obs.workflow.metadata.generation;
    let state = ctx.st.state;
    ctx.st.current_step = if state == WorkflowState::Initialized {
        None
    } else if state.is_failure() {
        ctx.st
            .steps
            .iter()
            .find(|s| s.phase == StepPhase::Failed)
            .map(|s| s.name.clone())
            .or(ctx.st.current_step.take())
    } else if state == WorkflowState::Completed {
        None
    } else {
        plan.and_then(|p| run::current_step(ctx, p))
            .and_then(|i| p_name(plan, i))
    };
    conditions(ctx);
}

/// `passed/total` over the gate results of the current run.
pub fn gates_summary(st: &qms_api::QmsWorkflowStatus) -> String {
    let all: Vec<&qms_api::GateResult> = st.steps.iter().flat_map(|s| &s.gates).collect();
    let passed = all.iter().filter(|g| g.verdict.passes()).count();
    format!("{passed}/{}", all.len())
}

fn p_name(plan: Option<&Plan<'_>>, i: usize) -> Option<String> {
    plan.and_then(|p| p.steps.get(i))
        .map(|s| s.name().to_owned())
}

fn conditions(ctx: &mut Ctx<'_, '_>) {
    use ConditionStatus::{False, True};
    let state = ctx.st.state;
    let step_msg = ctx
        .st
        .current_step
        .as_deref()
        .and_then(|n| ctx.st.step(n))
        .map(|s| format!("{}: {}", s.name, s.message))
        .unwrap_or_default();
    let running = !state.is_terminal() && !ctx.queued && state != WorkflowState::Initialized;
    let mut set = Vec::new();
    set.push(if ctx.queued {
        condition(
            ctx,
            "Queued",
            True,
            "WaitingForSlot",
            crate::slots::queued_message(ctx.obs.queue_place.as_ref()),
        )
    } else {
        condition(ctx, "Queued", False, "NotQueued", String::new())
    });
    set.push(if running {
        condition(ctx, "Progressing", True, "StepRunning", step_msg.clone())
    } else {
        condition(
            ctx,
            "Progressing",
            False,
            reason_of(state, ctx.queued),
            String::new(),
        )
    });
    set.push(if state == WorkflowState::Completed {
        condition(ctx, "Ready", True, "Completed", "every step passed".into())
    } else {
        condition(
            ctx,
            "Ready",
            False,
            reason_of(state, ctx.queued),
            step_msg.clone(),
        )
    });
    set.push(if state.is_failure() {
        condition(ctx, "Failed", True, camel(state), step_msg)
    } else {
        condition(ctx, "Failed", False, "NotFailed", String::new())
    });
    let escalated: Vec<String> = ctx
        .st
        .steps
        .iter()
        .filter(|s| s.escalated)
        .map(|s| s.name.clone())
        .collect();
    set.push(if escalated.is_empty() {
        condition(ctx, "Escalated", False, "NotEscalated", String::new())
    } else {
        let msg = format!("escalated steps: {}", escalated.join(", "));
        condition(ctx, "Escalated", True, "StepEscalated", msg)
    });
    for c in set {
        Condition::upsert(&mut ctx.st.conditions, c);
    }
}

fn reason_of(state: WorkflowState, queued: bool) -> &'static str {
    if queued {
        "Queued"
    } else if state == WorkflowState::Completed {
        "Completed"
    } else if state == WorkflowState::Error {
        "Error"
    } else if state.is_failure() {
        "Failed"
    } else {
        "Running"
    }
}

fn camel(state: WorkflowState) -> &'static str {
    match state {
        WorkflowState::DorFailed => "DorFailed",
        WorkflowState::ProgressBlocked => "ProgressBlocked",
        WorkflowState::DodFailed => "DodFailed",
        WorkflowState::FinalRejected => "FinalRejected",
        WorkflowState::Error => "Error",
        _ => "Failed",
    }
}

/// The earliest due time (timeouts, backoffs, lost-Job grace, manual escalation, override expiry,
/// polls for a slot or an agent) as a delay from now; `None` when nothing is due.
pub fn requeue_after(ctx: &Ctx<'_, '_>, plan: Option<&Plan<'_>>) -> Option<std::time::Duration> {
    let mut due: Vec<DateTime<Utc>> = Vec::new();
    if ctx.queued {
        due.push(time::add(ctx.now, super::WAIT_POLL));
    }
    let Some(plan) = plan else {
        return earliest(ctx, due);
    };
    if ctx.st.state.is_terminal() || ctx.queued {
        return earliest(ctx, due);
    }
    let run_dl = step::run_deadline(ctx, plan);
    for (i, ps) in plan.steps.iter().enumerate() {
        let Some(s) = ctx.st.steps.get(i).filter(|s| s.name == ps.name()) else {
            continue;
        };
        let active = matches!(
            s.phase,
            StepPhase::Running | StepPhase::Backoff | StepPhase::WaitingForApproval
        );
        if active {
            due.extend(run_dl);
        }
        match s.phase {
            StepPhase::Running => {
                due.extend(tasks::step_deadline(s, ps));
                due.extend(step::gate_escalation_due(ctx, ps, i).map(|(at, _)| at));
                for t in &s.tasks {
                    match t.phase {
                        TaskPhase::Pending => due.push(time::add(ctx.now, super::WAIT_POLL)),
                        TaskPhase::Running => {
                            due.extend(tasks::task_deadline(ctx, t, s, ps));
                            if !ctx.obs.jobs.contains_key(&t.job_name)
                                && let Some(st) = t.started_at.as_deref().and_then(time::parse)
                            {
                                due.push(time::add(st, super::JOB_LOST_GRACE));
                            }
                        }
                        _ => {}
                    }
                }
            }
            StepPhase::Backoff => due.extend(s.next_attempt_at.as_deref().and_then(time::parse)),
            StepPhase::WaitingForApproval => {
                due.extend(tasks::step_deadline(s, ps));
                due.extend(step::escalation_due(ctx, ps, i));
                let gctx = GateContext {
                    now: ctx.now,
                    head_sha: &ctx.obs.workflow.spec.head_sha,
                    overrides: &ctx.obs.workflow.spec.overrides,
                    baselines: ctx.obs.baselines,
                };
                for g in s
                    .gates
                    .iter()
                    .filter(|g| g.verdict == GateVerdict::Overridden)
                {
                    if let Some(o) = gates::active_override(&g.name, &gctx) {
                        due.extend(time::parse(&o.expires));
                    }
                }
            }
            _ => {}
        }
    }
    earliest(ctx, due)
}

fn earliest(ctx: &Ctx<'_, '_>, due: Vec<DateTime<Utc>>) -> Option<std::time::Duration> {
    let first = due.into_iter().min()?;
    // Something due now was already handled by this decision; never ask for a hot loop.
    Some(time::until(ctx.now, first).max(std::time::Duration::from_millis(1)))
}
