//! Test fixtures: a small simulated world around `decide` (shared by unit and scenario tests).
#![allow(dead_code)]

use std::collections::BTreeMap;

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use qms_api::*;
use qms_engine::{
    Action, AgentView, Decision, EngineConfig, EventType, JobObservation, JobPhase, Observed,
    TaskSpec, decide,
};

// The scenario tests, the unit tests and the bench each use a part of these.
#[allow(unused_imports)]
pub use qms_testkit::fixtures::{
    SHA, dur, good_metrics, result_json, standard_gates, standard_template, t0,
};

pub const SHA2: &str = "def5678";

/// An agent as the engine sees it: [`qms_testkit::fixtures::agent`], idle and healthy.
pub fn agent(caps: &[&str], capacity: u32) -> AgentView {
    view(qms_testkit::fixtures::agent(caps, capacity))
}

fn view(spec: AgentSpec) -> AgentView {
    AgentView {
        spec,
        running: 0,
        healthy: true,
    }
}

/// The standard agents ([`qms_testkit::fixtures::standard_agents`]), idle and healthy.
pub fn standard_agents() -> BTreeMap<String, AgentView> {
    qms_testkit::fixtures::standard_agents()
        .into_iter()
        .map(|(name, spec)| (name, view(spec)))
        .collect()
}

/// A simulated world: what the operator would observe, and what the engine's actions change.
pub struct World {
    pub wf: QmsWorkflow,
    pub template: Option<WorkflowTemplateSpec>,
    pub gates: BTreeMap<String, QualityGateSpec>,
    pub agents: BTreeMap<String, AgentView>,
    pub jobs: BTreeMap<String, JobObservation>,
    pub baselines: BTreeMap<String, qms_api::BaselineValue>,
    pub config: EngineConfig,
    pub now: DateTime<Utc>,
    pub slot_available: bool,
    pub queue_place: Option<qms_engine::slots::QueuePlace>,
    /// Every CreateJob ever emitted, in order.
    pub created: Vec<TaskSpec>,
    pub events: Vec<(EventType, String)>,
}

impl World {
    pub fn standard() -> Self {
        let wf = qms_testkit::fixtures::workflow("pr-42")
            .namespace("qms")
            .uid("0f8c2a9e-1111-2222-3333-444455556666")
            .generation(1)
            .repository("creo/creo-roo-commander")
            .pull_request(42)
            .head_sha(SHA)
            .head_ref("feature/qms")
            .build();
        Self {
            wf,
            template: Some(standard_template()),
            gates: standard_gates(),
            agents: standard_agents(),
            jobs: BTreeMap::new(),
            baselines: BTreeMap::new(),
            config: EngineConfig::default(),
            now: t0(),
            slot_available: true,
            queue_place: None,
            created: vec![],
            events: vec![],
        }
    }

    pub fn status(&self) -> QmsWorkflowStatus {
        self.wf.status.clone().unwrap_or_default()
    }

    pub fn state(&self) -> WorkflowState {
        self.status().state
    }

    pub fn step(&self, name: &str) -> StepStatus {
        self.status().step(name).cloned().unwrap_or_default()
    }

    pub fn decide(&self) -> Decision {
        let observed = Observed {
            now: self.now,
            workflow: &self.wf,
            template: self.template.as_ref(),
            gates: &self.gates,
            agents: &self.agents,
            jobs: &self.jobs,
            slot_available: self.slot_available,
            queue_place: self.queue_place,
            baselines: &self.baselines,
            config: &self.config,
        };
        decide(&observed)
    }

    /// Decides and applies the decision (status written, Jobs created/deleted).
    pub fn step_once(&mut self) -> Decision {
        let d = self.decide();
        self.apply(&d);
        d
    }

    pub fn apply(&mut self, d: &Decision) {
        self.wf.status = Some(d.status.clone());
        for a in &d.actions {
            match a {
                Action::CreateJob(spec) => {
                    self.created.push(spec.clone());
                    self.jobs
                        .entry(spec.job_name.clone())
                        .or_insert(JobObservation {
                            name: spec.job_name.clone(),
                            phase: JobPhase::Active,
                            labels: spec.labels.clone(),
                            created_at: Some(self.now),
                            finished_at: None,
                            termination_message: None,
                            exit_code: None,
                            reason: None,
                            deleting: false,
                            stored_result: None,
                        });
                }
                Action::DeleteJob { job_name, .. } => {
                    self.jobs.remove(job_name);
                }
                Action::Emit(e) => self.events.push((e.event_type, e.reason.clone())),
            }
        }
    }

    /// Decides until a fixed point (at most a few rounds).
    pub fn settle(&mut self) -> Decision {
        let mut d = self.step_once();
        for _ in 0..5 {
            let again = self.decide();
            if again.status == d.status
                && again
                    .actions
                    .iter()
                    .all(|a| !matches!(a, Action::CreateJob(_) | Action::Emit(_)))
            {
                return again;
            }
            self.apply(&again);
            d = again;
        }
        d
    }

    pub fn advance(&mut self, secs: i64) {
        self.now += ChronoDuration::seconds(secs);
    }

    /// The live (Active) Jobs of a step.
    pub fn active_jobs(&self, step: &str) -> Vec<String> {
        self.jobs
            .values()
            .filter(|j| {
                j.phase == JobPhase::Active
                    && j.labels.get("qms.creo.dev/step").map(String::as_str) == Some(step)
            })
            .map(|j| j.name.clone())
            .collect()
    }

    pub fn finish_job(&mut self, name: &str, phase: JobPhase, message: Option<String>) {
        let now = self.now;
        if let Some(j) = self.jobs.get_mut(name) {
            j.phase = phase;
            j.finished_at = Some(now);
            j.termination_message = message;
            j.exit_code = Some(if phase == JobPhase::Succeeded { 0 } else { 1 });
        }
    }

    /// Completes every active Job of `step` successfully with the agent's good metrics.
    pub fn pass_step(&mut self, step: &str) {
        for name in self.active_jobs(step) {
            let agent = self.jobs[&name]
                .labels
                .get("qms.creo.dev/agent")
                .cloned()
                .unwrap_or_default();
            self.finish_job(
                &name,
                JobPhase::Succeeded,
                Some(result_json(true, &good_metrics(&agent))),
            );
        }
    }

    pub fn approve(&mut self, step: &str, decision: qms_api::Decision, by: &str) {
        let at = self.now.to_rfc3339();
        self.wf.spec.approvals.push(Approval {
            step: step.into(),
            decision,
            by: by.into(),
            reason: format!("{by} says so"),
            sha: self.wf.spec.head_sha.clone(),
            at: Some(at),
        });
    }

    pub fn count_events(&self, t: EventType) -> usize {
        self.events.iter().filter(|(e, _)| *e == t).count()
    }
}

pub fn creates(d: &Decision) -> Vec<&TaskSpec> {
    d.actions
        .iter()
        .filter_map(|a| match a {
            Action::CreateJob(s) => Some(s),
            _ => None,
        })
        .collect()
}

pub fn emits(d: &Decision) -> Vec<(EventType, String)> {
    d.actions
        .iter()
        .filter_map(|a| match a {
            Action::Emit(e) => Some((e.event_type, e.reason.clone())),
            _ => None,
        })
        .collect()
}

/// Asserts the fixed-point property: deciding again changes nothing and emits nothing new.
pub fn assert_fixed_point(w: &World, d: &Decision) {
    let mut again_world_wf = w.wf.clone();
    again_world_wf.status = Some(d.status.clone());
    let observed = Observed {
        now: w.now,
        workflow: &again_world_wf,
        template: w.template.as_ref(),
        gates: &w.gates,
        agents: &w.agents,
        jobs: &w.jobs,
        slot_available: w.slot_available,
        queue_place: w.queue_place,
        baselines: &w.baselines,
        config: &w.config,
    };
    let again = decide(&observed);
    assert_eq!(again.status, d.status, "second decision changed the status");
    assert!(
        creates(&again).is_empty(),
        "second decision created Jobs: {:?}",
        creates(&again)
    );
    assert!(
        emits(&again).is_empty(),
        "second decision emitted: {:?}",
        emits(&again)
    );
}
