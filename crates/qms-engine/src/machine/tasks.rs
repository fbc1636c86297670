//! Tasks: one agent's Job in one attempt of a step. Starting them (agent selection, payload,
//! deterministic name) and reading what their Jobs did.
//!
//! Never two Jobs for one (run, step, attempt, selector): the Job name is a function of that tuple,
//! CreateJob is emitted only when the task first enters the status, and a Job that already exists
//! under the name (created before a crash, status not yet written) is adopted instead of created.
//! The operator should create Jobs before writing the status; either order is safe: a task whose
//! Job never appears is declared lost after [`super::JOB_LOST_GRACE`] and retried like any failure.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use qms_api::{StepStatus, TaskPhase, TaskStatus};
use serde_json::json;

use super::ctx::Ctx;
use super::plan::PlannedStep;
use crate::action::{Action, EventType, TaskSpec};
use crate::gates::{self, GateContext};
use crate::naming;
use crate::observe::JobPhase;
use crate::payload::{self, GateRequirement, TaskInfo};
use crate::result;
use crate::selection::{self, Selection};
use crate::time;

pub fn is_done(phase: TaskPhase) -> bool {
    !matches!(phase, TaskPhase::Pending | TaskPhase::Running)
}

pub fn step_deadline(step: &StepStatus, ps: &PlannedStep<'_>) -> Option<DateTime<Utc>> {
    step.started_at
        .as_deref()
        .and_then(time::parse)
        .map(|t| time::add(t, ps.timeout))
}

/// When the engine itself times a task out: the agent's default timeout after it started, but
/// never later than the step's deadline.
pub fn task_deadline(
    ctx: &Ctx<'_, '_>,
    task: &TaskStatus,
    step: &StepStatus,
    ps: &PlannedStep<'_>,
) -> Option<DateTime<Utc>> {
    let step_dl = step_deadline(step, ps);
    let agent_dl = agent_timeout(ctx, &task.agent).and_then(|d| {
        task.started_at
            .as_deref()
            .and_then(time::parse)
            .map(|t| time::add(t, d))
    });
    match (step_dl, agent_dl) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn agent_timeout(ctx: &Ctx<'_, '_>, agent: &str) -> Option<Duration> {
    ctx.obs
        .agents
        .get(agent)
        .and_then(|a| a.spec.default_timeout.as_ref())
        .and_then(|d| d.to_std().ok())
}

/// Load this workflow adds that `AgentView::running` does not show yet: its running tasks whose
/// Jobs are not in the cache.
fn unseen_load(ctx: &Ctx<'_, '_>) -> BTreeMap<String, u32> {
    let mut extra = BTreeMap::new();
    for t in ctx.st.steps.iter().flat_map(|s| &s.tasks) {
        if t.phase == TaskPhase::Running && !ctx.obs.jobs.contains_key(&t.job_name) {
            *extra.entry(t.agent.clone()).or_insert(0) += 1;
        }
    }
    extra
}

/// Makes sure selector `k` of step `i` has a task in the current attempt, starting it if an agent
/// is free (a task that waits for capacity is retried on every decision).
pub fn ensure_task(ctx: &mut Ctx<'_, '_>, ps: &PlannedStep<'_>, i: usize, k: usize) {
    let Some(sel) = ps.spec.agents.get(k) else {
        return;
    };
    let Some(attempt) = ctx.st.steps.get(i).map(|s| s.attempt) else {
        return;
    };
    let job_name = naming::job_name(ctx.workflow_name(), ctx.st.run, ps.name(), attempt, k);
    let existing = ctx.st.steps[i]
        .tasks
        .iter()
        .position(|t| t.job_name == job_name);
    if let Some(pos) = existing
        && ctx.st.steps[i].tasks[pos].phase != TaskPhase::Pending
    {
        return;
    }
    let now = ctx.now_str();
    let mut task = TaskStatus {
        job_name: job_name.clone(),
        agent: String::new(),
        selector: sel.key().to_owned(),
        attempt,
        phase: TaskPhase::Pending,
        started_at: None,
        finished_at: None,
        result: None,
        message: String::new(),
    };
    if let Some(job) = ctx.obs.jobs.get(&job_name) {
        // Created before a restart: adopt it, never create a second one.
        task.agent = job
            .labels
            .get(naming::LABEL_AGENT)
            .cloned()
            .unwrap_or_default();
        task.phase = TaskPhase::Running;
        task.started_at = Some(job.created_at.map_or(now, time::format));
        task.message = "adopted existing Job".to_owned();
    } else {
        match selection::select(sel, ctx.obs.agents, &unseen_load(ctx)) {
            Selection::Agent(agent) => {
                task.agent = agent;
                task.phase = TaskPhase::Running;
                task.started_at = Some(now);
                task.message = "Job created".to_owned();
                let spec = task_spec(ctx, ps, i, &task);
                ctx.actions.push(Action::CreateJob(spec));
            }
            Selection::Wait(why) => task.message = format!("waiting: {why}"),
            Selection::NoAgent(why) => {
                ctx.fatal = Some(("NoAgent".to_owned(), format!("step {}: {why}", ps.name())));
                return;
            }
        }
    }
    let tasks = &mut ctx.st.steps[i].tasks;
    match existing {
        Some(pos) => {
            if tasks[pos] != task {
                tasks[pos] = task;
            }
        }
        None => tasks.push(task),
    }
}

fn task_spec(ctx: &Ctx<'_, '_>, ps: &PlannedStep<'_>, i: usize, task: &TaskStatus) -> TaskSpec {
    let step = &ctx.st.steps[i];
    let remaining = step_deadline(step, ps).map_or(ps.timeout, |dl| time::until(ctx.now, dl));
    let timeout = agent_timeout(ctx, &task.agent)
        .map_or(remaining, |d| d.min(remaining))
        .max(Duration::from_secs(1));
    let reqs = gate_requirements(ctx, ps);
    let correlation = ctx.st.correlation_id.clone().unwrap_or_default();
    let payload = payload::build(
        ctx.obs.workflow,
        &TaskInfo {
            job_name: &task.job_name,
            agent: &task.agent,
            step: ps.name(),
            run: ctx.st.run,
            attempt: task.attempt,
            timeout,
            correlation_id: &correlation,
            gates: &reqs,
        },
    );
    let labels = BTreeMap::from([
        (
            naming::LABEL_MANAGED_BY.to_owned(),
            naming::MANAGED_BY.to_owned(),
        ),
        (
            naming::LABEL_WORKFLOW.to_owned(),
            naming::workflow_label(ctx.workflow_name()),
        ),
        (naming::LABEL_RUN.to_owned(), ctx.st.run.to_string()),
        (
            naming::LABEL_STEP.to_owned(),
            naming::label_value(ps.name()),
        ),
        (naming::LABEL_ATTEMPT.to_owned(), task.attempt.to_string()),
        (
            naming::LABEL_AGENT.to_owned(),
            naming::label_value(&task.agent),
        ),
        (
            naming::LABEL_HEAD_SHA.to_owned(),
            naming::label_value(&ctx.obs.workflow.spec.head_sha),
        ),
    ]);
    TaskSpec {
        job_name: task.job_name.clone(),
        agent: task.agent.clone(),
        step: ps.name().to_owned(),
        run: ctx.st.run,
        attempt: task.attempt,
        payload,
        timeout,
        labels,
    }
}

fn gate_requirements(ctx: &Ctx<'_, '_>, ps: &PlannedStep<'_>) -> Vec<GateRequirement> {
    let gctx = GateContext {
        now: ctx.now,
        head_sha: &ctx.obs.workflow.spec.head_sha,
        overrides: &ctx.obs.workflow.spec.overrides,
        baselines: ctx.obs.baselines,
    };
    ps.spec
        .quality_gates
        .iter()
        .filter_map(|name| {
            let g = ctx.obs.gates.get(name)?;
            let threshold = match (g.operator, g.threshold) {
                (Some(op), Some(t)) => gates::effective_threshold(name, g, op, t, &gctx).ok(),
                _ => g.threshold,
            };
            Some(GateRequirement {
                name: name.clone(),
                metric: g.metric.clone(),
                operator: g.operator.map(operator_name),
                threshold,
                unit: g.unit.map(crate::units::name),
            })
        })
        .collect()
}

fn operator_name(op: qms_api::Operator) -> &'static str {
    use qms_api::Operator::*;
    match op {
        Gte => "gte",
        Gt => "gt",
        Lte => "lte",
        Lt => "lt",
        Eq => "eq",
        Ne => "ne",
    }
}

/// Reads the Jobs of step `i`'s running tasks: results, failures, timeouts, lost Jobs.
pub fn observe(ctx: &mut Ctx<'_, '_>, ps: &PlannedStep<'_>, i: usize) {
    for k in 0..ctx.st.steps[i].tasks.len() {
        let task = ctx.st.steps[i].tasks[k].clone();
        if task.phase != TaskPhase::Running {
            continue;
        }
        let started = task.started_at.as_deref().and_then(time::parse);
        let outcome = match ctx.obs.jobs.get(&task.job_name) {
            Some(job) => match job.phase {
                JobPhase::Succeeded => Some(match &job.stored_result {
                    Some(stored) => stored_outcome(stored),
                    None => read_result(ctx, job.termination_message.as_deref()),
                }),
                JobPhase::Failed => {
                    let deadline = job.reason.as_deref() == Some("DeadlineExceeded");
                    let why = format!(
                        "Job failed ({}{})",
                        job.reason.as_deref().unwrap_or("no reason"),
                        job.exit_code
                            .map(|c| format!(", exit code {c}"))
                            .unwrap_or_default()
                    );
                    let summary = job.stored_result.clone().or_else(|| {
                        job.termination_message
                            .as_deref()
                            .and_then(|m| result::parse(m, ctx.obs.config.max_result_bytes).ok())
                            .map(|r| r.summary())
                    });
                    let phase = if deadline {
                        TaskPhase::TimedOut
                    } else {
                        TaskPhase::Failed
                    };
                    Some((phase, why, summary))
                }
                JobPhase::Active => {
                    let dl = task_deadline(ctx, &task, &ctx.st.steps[i], ps);
                    if dl.is_some_and(|dl| ctx.now >= dl) {
                        ctx.delete_job(&task.job_name, "TaskTimedOut");
                        Some((TaskPhase::TimedOut, "task timed out".to_owned(), None))
                    } else {
                        None
                    }
                }
            },
            None => {
                let lost = started.is_none_or(|s| ctx.now >= time::add(s, super::JOB_LOST_GRACE));
                lost.then(|| {
                    (
                        TaskPhase::Failed,
                        "JobLost: the Job disappeared before reporting a result".to_owned(),
                        None,
                    )
                })
            }
        };
        if let Some((phase, message, summary)) = outcome {
            let job = ctx.obs.jobs.get(&task.job_name);
            let finished = job
                .and_then(|j| j.finished_at)
                .map_or_else(|| ctx.now_str(), time::format);
            let t = &mut ctx.st.steps[i].tasks[k];
            t.phase = phase;
            t.message = message.clone();
            t.result = summary;
            t.finished_at = Some(finished);
            let ok = phase == TaskPhase::Succeeded;
            let result = match phase {
                TaskPhase::Succeeded => "success",
                TaskPhase::TimedOut => "timed_out",
                _ => "failure",
            };
            ctx.emit(
                EventType::AgentTaskCompleted,
                if ok { "TaskSucceeded" } else { "TaskFailed" },
                format!(
                    "task {} ({}) of step {}: {message}",
                    task.job_name,
                    task.agent,
                    ps.name()
                ),
                !ok,
                json!({
                    "task_id": task.job_name,
                    "agent_id": task.agent,
                    "step": ps.name(),
                    "attempt": task.attempt,
                    "result": result,
                }),
            );
        }
    }
}

type Outcome = (TaskPhase, String, Option<qms_api::TaskResultSummary>);

fn read_result(ctx: &Ctx<'_, '_>, message: Option<&str>) -> Outcome {
    let Some(text) = message.filter(|m| !m.trim().is_empty()) else {
        return (TaskPhase::Failed, "agent wrote no result".to_owned(), None);
    };
    match result::parse_termination_message(text, ctx.obs.config.max_result_bytes) {
        Ok(r) if r.success => {
            let msg = if r.summary.is_empty() {
                "success".to_owned()
            } else {
                result::truncate(&r.summary, 256)
            };
            (TaskPhase::Succeeded, msg, Some(r.summary()))
        }
        Ok(r) => (
            TaskPhase::Failed,
            format!(
                "agent reported failure: {}",
                result::truncate(&r.summary, 256)
            ),
            Some(r.summary()),
        ),
        Err(e) if e.starts_with(result::TOO_LARGE_FOR_TERMINATION_MESSAGE) => {
            (TaskPhase::Failed, e, None)
        }
        Err(e) => (TaskPhase::Failed, format!("malformed result: {e}"), None),
    }
}

/// The outcome of a task whose agent submitted its result to the result endpoint (validated
/// there; the status keeps `stored`).
fn stored_outcome(stored: &qms_api::TaskResultSummary) -> Outcome {
    if stored.status == "success" {
        let msg = if stored.summary.is_empty() {
            "success".to_owned()
        } else {
            result::truncate(&stored.summary, 256)
        };
        (TaskPhase::Succeeded, msg, Some(stored.clone()))
    } else {
        (
            TaskPhase::Failed,
            format!(
                "agent reported failure: {}",
                result::truncate(&stored.summary, 256)
            ),
            Some(stored.clone()),
        )
    }
}

/// Cancels the step's unfinished tasks (deleting running Jobs) with `phase` and `why`.
pub fn stop_all(ctx: &mut Ctx<'_, '_>, i: usize, phase: TaskPhase, why: &str) {
    let now = ctx.now_str();
    let mut delete = Vec::new();
    for t in &mut ctx.st.steps[i].tasks {
        if !is_done(t.phase) {
            if t.phase == TaskPhase::Running {
                delete.push(t.job_name.clone());
            }
            t.phase = if t.phase == TaskPhase::Pending {
                TaskPhase::Cancelled
            } else {
                phase
            };
            t.finished_at = Some(now.clone());
            t.message = why.to_owned();
        }
    }
    for job in delete {
        ctx.delete_job(&job, why);
    }
}
