//! Test fixtures: a small simulated world around `decide` (shared by unit and scenario tests).
#![allow(dead_code)]

use std::collections::BTreeMap;

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use qms_api::*;
use qms_engine::{
    Action, AgentView, Decision, EngineConfig, EventType, JobObservation, JobPhase, Observed,
    TaskSpec, decide,
};

pub const SHA: &str = "abc1234";
pub const SHA2: &str = "def5678";

pub fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2025-08-17T06:00:00Z")
        .map(|t| t.with_timezone(&Utc))
        .expect("valid literal")
}

pub fn dur(s: &str) -> KubeDuration {
    KubeDuration::parse(s).expect("valid duration literal")
}

pub fn step(name: &str, type_: StepType, agents: &[&str], gates: &[&str]) -> TemplateStep {
    TemplateStep {
        name: name.into(),
        type_,
        agents: agents.iter().map(|a| AgentSelector::by_name(*a)).collect(),
        quality_gates: gates.iter().map(|g| g.to_string()).collect(),
        timeout: None,
        retry_policy: None,
        condition: None,
        parallel_reviews: false,
        escalation: None,
        states: None,
    }
}

/// The seed's standard-qms-review (spec §2.3) as a WorkflowTemplate.
pub fn standard_template() -> WorkflowTemplateSpec {
    let mut dor = step(
        "dor-validation",
        StepType::Parallel,
        &["qms-dor-validator"],
        &["basic-checks", "security-scan"],
    );
    dor.timeout = Some(dur("300s"));
    dor.retry_policy = Some(RetryPolicy::default());
    let mut progress = step(
        "progress-reviews",
        StepType::Conditional,
        &["qms-code-reviewer", "qms-testing-specialist"],
        &["code-coverage", "performance-test"],
    );
    progress.condition = Some("dor-validation.success".into());
    progress.timeout = Some(dur("900s"));
    progress.parallel_reviews = true;
    let mut dod = step(
        "dod-validation",
        StepType::Sequential,
        &["qms-dod-validator"],
        &["final-checks", "compliance-audit"],
    );
    dod.condition = Some("progress-reviews.success".into());
    dod.timeout = Some(dur("600s"));
    let mut fin = step(
        "final-review",
        StepType::Manual,
        &["qms-quality-coordinator"],
        &[],
    );
    fin.condition = Some("dod-validation.success".into());
    fin.timeout = Some(dur("3600s"));
    fin.escalation = Some(Escalation {
        enabled: true,
        after: Some(dur("1800s")),
    });
    WorkflowTemplateSpec {
        version: Some("2.3".into()),
        repositories: vec![],
        default: true,
        merge_groups: Default::default(),
        timeout: None,
        steps: vec![dor, progress, dod, fin],
        repository_dispatch: None,
    }
}

pub fn gate(
    metric: &str,
    op: Operator,
    threshold: f64,
    unit: Option<MetricUnit>,
) -> QualityGateSpec {
    QualityGateSpec {
        step: None,
        type_: GateType::Threshold,
        metric: Some(metric.into()),
        operator: Some(op),
        threshold: Some(threshold),
        unit,
        blocking: true,
        timeout: None,
        retry: 0,
        escalation: None,
        baseline: None,
        gradual: None,
    }
}

pub fn standard_gates() -> BTreeMap<String, QualityGateSpec> {
    use MetricUnit::*;
    BTreeMap::from([
        (
            "basic-checks".into(),
            gate("basic_checks_passed", Operator::Eq, 1.0, Some(Boolean)),
        ),
        (
            "security-scan".into(),
            gate("critical_vulnerabilities", Operator::Lte, 0.0, Some(Count)),
        ),
        (
            "code-coverage".into(),
            gate("test_coverage", Operator::Gte, 80.0, Some(Percentage)),
        ),
        (
            "performance-test".into(),
            gate("p95_latency", Operator::Lte, 500.0, Some(Milliseconds)),
        ),
        (
            "final-checks".into(),
            gate("final_checks_passed", Operator::Eq, 1.0, Some(Boolean)),
        ),
        (
            "compliance-audit".into(),
            gate("compliance_score", Operator::Gte, 90.0, Some(Score)),
        ),
    ])
}

pub fn agent(caps: &[&str], capacity: u32) -> AgentView {
    AgentView {
        spec: AgentSpec {
            specialization: None,
            capabilities: caps.iter().map(|c| c.to_string()).collect(),
            load_capacity: capacity,
            priority: Priority::Medium,
            default_timeout: None,
            health: HealthPolicy::default(),
            job: AgentJob {
                image: "ghcr.io/example/agent:1".into(),
                command: vec![],
                args: vec![],
                env: vec![],
                resources: None,
                service_account_name: None,
            },
        },
        running: 0,
        healthy: true,
    }
}

pub fn standard_agents() -> BTreeMap<String, AgentView> {
    BTreeMap::from([
        (
            "qms-dor-validator".into(),
            agent(&["dor-validation", "basic-checks"], 10),
        ),
        ("qms-code-reviewer".into(), agent(&["code-review"], 10)),
        ("qms-testing-specialist".into(), agent(&["testing"], 10)),
        ("qms-dod-validator".into(), agent(&["dod-validation"], 10)),
        (
            "qms-quality-coordinator".into(),
            agent(&["final-review"], 10),
        ),
    ])
}

/// A result document with the given metrics.
pub fn result_json(success: bool, metrics: &[(&str, f64)]) -> String {
    let m: serde_json::Map<String, serde_json::Value> = metrics
        .iter()
        .map(|(k, v)| (k.to_string(), serde_json::json!(v)))
        .collect();
    serde_json::json!({
        "status": if success { "success" } else { "failure" },
        "metrics": m,
        "summary": "done",
    })
    .to_string()
}

/// Metrics that pass every standard gate, by agent.
pub fn good_metrics(agent: &str) -> Vec<(&'static str, f64)> {
    match agent {
        "qms-dor-validator" => vec![
            ("basic_checks_passed", 1.0),
            ("critical_vulnerabilities", 0.0),
        ],
        "qms-code-reviewer" => vec![("test_coverage", 85.0)],
        "qms-testing-specialist" => vec![("p95_latency", 120.0), ("test_coverage", 90.0)],
        "qms-dod-validator" => vec![("final_checks_passed", 1.0), ("compliance_score", 95.0)],
        _ => vec![],
    }
}

/// A simulated world: what the operator would observe, and what the engine's actions change.
pub struct World {
    pub wf: QmsWorkflow,
    pub template: Option<WorkflowTemplateSpec>,
    pub gates: BTreeMap<String, QualityGateSpec>,
    pub agents: BTreeMap<String, AgentView>,
    pub jobs: BTreeMap<String, JobObservation>,
    pub baselines: BTreeMap<String, f64>,
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
        let wf = QmsWorkflow {
            metadata: ObjectMeta {
                name: Some("pr-42".into()),
                namespace: Some("qms".into()),
                uid: Some("0f8c2a9e-1111-2222-3333-444455556666".into()),
                generation: Some(1),
                ..Default::default()
            },
            spec: QmsWorkflowSpec {
                repository: "creo/creo-roo-commander".into(),
                pull_request: 42,
                head_sha: SHA.into(),
                base_ref: "main".into(),
                head_ref: "feature/qms".into(),
                template_ref: TemplateRef {
                    name: "standard-qms-review".into(),
                },
                approvals: vec![],
                overrides: vec![],
                retry: None,
                merge_group: None,
            },
            status: None,
        };
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
