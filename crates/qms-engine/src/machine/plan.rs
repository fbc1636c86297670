//! The template, checked and resolved into what the state machine needs per step.
//!
//! Anything wrong here is a configuration fault and puts the workflow into ERROR (spec §8.1
//! "Configuration Errors"): a missing template, a condition naming an unknown or later step, a
//! selector that no Agent can fill, an unparsable duration, a step `states` pair that is not
//! (running state, failure state).
//!
//! State mapping when a step has no `states`: by position — the 1st step stands for
//! DOR_PENDING/DOR_FAILED, the 2nd for PROGRESS_PENDING/PROGRESS_BLOCKED, the 3rd for
//! DOD_PENDING/DOD_FAILED, and the last step (of a template with more than one step) and every
//! step from the 4th on for FINAL_PENDING/FINAL_REJECTED. So a 2-step template maps to DOR, FINAL;
//! a 3-step one to DOR, PROGRESS, FINAL; the standard 4-step one to DOR, PROGRESS, DOD, FINAL.

use std::collections::BTreeMap;
use std::time::Duration;

use qms_api::{StepType, TemplateStep, WorkflowState, WorkflowTemplateSpec};

use crate::backoff::Backoff;
use crate::observe::{AgentView, EngineConfig};
use crate::selection::{self, Selection};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure,
    Skipped,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StepCondition {
    /// No condition: runs when no earlier step failed.
    Implicit,
    Always,
    On(usize, Outcome),
}

pub struct PlannedStep<'a> {
    pub spec: &'a TemplateStep,
    pub pending: WorkflowState,
    pub failed: WorkflowState,
    pub timeout: Duration,
    /// Attempts in total (1 when the step has no retry policy).
    pub max_attempts: u32,
    pub backoff: Backoff,
    pub condition: StepCondition,
    /// Agents all at once (else one after the other, stopping at the first failure).
    pub parallel: bool,
    pub escalate: bool,
    /// Manual steps: escalate when no decision arrived this long after approval was requested.
    pub escalate_after: Option<Duration>,
}

impl PlannedStep<'_> {
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    pub fn is_manual(&self) -> bool {
        self.spec.type_ == StepType::Manual
    }
}

pub struct Plan<'a> {
    pub steps: Vec<PlannedStep<'a>>,
    /// Limit for a whole run (template `timeout`).
    pub run_timeout: Option<Duration>,
}

impl Plan<'_> {
    pub fn index(&self, name: &str) -> Option<usize> {
        self.steps.iter().position(|s| s.name() == name)
    }
}

/// Positional mapping (see module docs).
pub fn states_by_position(index: usize, len: usize) -> (WorkflowState, WorkflowState) {
    use WorkflowState::*;
    if len > 1 && index + 1 == len {
        return (FinalPending, FinalRejected);
    }
    match index {
        0 => (DorPending, DorFailed),
        1 => (ProgressPending, ProgressBlocked),
        2 => (DodPending, DodFailed),
        _ => (FinalPending, FinalRejected),
    }
}

pub fn build<'a>(
    template_name: &str,
    template: Option<&'a WorkflowTemplateSpec>,
    agents: &BTreeMap<String, AgentView>,
    config: &EngineConfig,
) -> Result<Plan<'a>, String> {
    let t = template.ok_or_else(|| format!("WorkflowTemplate {template_name:?} not found"))?;
    if t.steps.is_empty() {
        return Err(format!("WorkflowTemplate {template_name:?} has no steps"));
    }
    let run_timeout = match &t.timeout {
        Some(d) => Some(d.to_std().map_err(|e| format!("template timeout: {e}"))?),
        None => None,
    };
    let mut steps = Vec::with_capacity(t.steps.len());
    for (i, s) in t.steps.iter().enumerate() {
        if t.steps[..i].iter().any(|p| p.name == s.name) {
            return Err(format!("step name {:?} is used twice", s.name));
        }
        steps.push(step(i, s, t, agents, config).map_err(|e| format!("step {}: {e}", s.name))?);
    }
    Ok(Plan { steps, run_timeout })
}

fn step<'a>(
    i: usize,
    s: &'a TemplateStep,
    t: &WorkflowTemplateSpec,
    agents: &BTreeMap<String, AgentView>,
    config: &EngineConfig,
) -> Result<PlannedStep<'a>, String> {
    let (pending, failed) = match &s.states {
        Some(st) => {
            let running_ok = !st.pending.is_terminal() && st.pending != WorkflowState::Initialized;
            let failed_ok = st.failed.is_failure() && st.failed != WorkflowState::Error;
            if !running_ok || !failed_ok {
                return Err(format!(
                    "states must be a running state and a failure state, got {} and {}",
                    st.pending, st.failed
                ));
            }
            (st.pending, st.failed)
        }
        None => states_by_position(i, t.steps.len()),
    };
    let timeout = match &s.timeout {
        Some(d) => d.to_std().map_err(|e| format!("timeout: {e}"))?,
        None => config.default_timeout,
    };
    let (max_attempts, backoff) = match &s.retry_policy {
        Some(p) => (
            p.max_attempts.max(1),
            Backoff {
                base: p.base,
                initial: p
                    .initial_delay
                    .to_std()
                    .map_err(|e| format!("retryPolicy: {e}"))?,
                max: p
                    .max_delay
                    .to_std()
                    .map_err(|e| format!("retryPolicy: {e}"))?,
                jitter: p.jitter,
            },
        ),
        // No policy: one attempt. The backoff still applies to gate retries.
        None => {
            let d = qms_api::RetryPolicy::default();
            (
                1,
                Backoff {
                    base: config.retry_base,
                    initial: d.initial_delay.to_std().unwrap_or(Duration::from_secs(10)),
                    max: d.max_delay.to_std().unwrap_or(Duration::from_secs(300)),
                    jitter: d.jitter,
                },
            )
        }
    };
    let condition = match s.condition.as_deref() {
        None => StepCondition::Implicit,
        Some("always") => StepCondition::Always,
        Some(c) => parse_condition(c, i, t)?,
    };
    if s.type_ == StepType::Conditional && s.condition.is_none() {
        return Err("a conditional step needs a condition".to_owned());
    }
    if s.type_ != StepType::Manual && s.agents.is_empty() {
        return Err("a step that is not manual needs at least one agent".to_owned());
    }
    for sel in &s.agents {
        if sel.name.is_some() == sel.capability.is_some() {
            return Err("an agent selector needs exactly one of name or capability".to_owned());
        }
        if let Selection::NoAgent(why) = selection::select(sel, agents, &BTreeMap::new()) {
            return Err(why);
        }
    }
    let parallel = match s.type_ {
        StepType::Parallel => true,
        StepType::Sequential => false,
        StepType::Conditional | StepType::Manual => s.parallel_reviews,
    };
    let escalation = s.escalation.clone().unwrap_or_default();
    let escalate_after = match &escalation.after {
        Some(d) => Some(d.to_std().map_err(|e| format!("escalation.after: {e}"))?),
        None => None,
    };
    Ok(PlannedStep {
        spec: s,
        pending,
        failed,
        timeout,
        max_attempts,
        backoff,
        condition,
        parallel,
        escalate: escalation.enabled,
        escalate_after,
    })
}

fn parse_condition(c: &str, i: usize, t: &WorkflowTemplateSpec) -> Result<StepCondition, String> {
    let (name, outcome) = c.rsplit_once('.').ok_or_else(|| {
        format!("condition {c:?}: expected <step>.success|failure|skipped or always")
    })?;
    let outcome = match outcome {
        "success" => Outcome::Success,
        "failure" => Outcome::Failure,
        "skipped" => Outcome::Skipped,
        other => return Err(format!("condition {c:?}: unknown outcome {other:?}")),
    };
    match t.steps.iter().position(|s| s.name == name) {
        Some(j) if j < i => Ok(StepCondition::On(j, outcome)),
        Some(_) => Err(format!("condition {c:?} names a step that is not earlier")),
        None => Err(format!("condition {c:?} names an unknown step")),
    }
}
