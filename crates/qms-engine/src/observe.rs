//! What the engine is told about the world. The operator builds an [`Observed`] from its caches.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use qms_api::{AgentSpec, QmsWorkflow, QualityGateSpec, WorkflowTemplateSpec};

/// Everything `decide` needs about one workflow, borrowed from the operator's caches.
pub struct Observed<'a> {
    pub now: DateTime<Utc>,
    /// The workflow as last read (metadata name/namespace/uid/generation, spec, status).
    pub workflow: &'a QmsWorkflow,
    /// The template named by `spec.templateRef`; `None` when it does not exist.
    pub template: Option<&'a WorkflowTemplateSpec>,
    /// Every QualityGate in the workflow's namespace, by name.
    pub gates: &'a BTreeMap<String, QualityGateSpec>,
    /// Every Agent in the workflow's namespace, by name, with its live load and health.
    pub agents: &'a BTreeMap<String, AgentView>,
    /// The Jobs that belong to this workflow (label-selected, any run), by Job name.
    pub jobs: &'a BTreeMap<String, JobObservation>,
    /// Whether this workflow may take a slot now, should it need one (the operator counts the live
    /// workflows that hold one against `maxConcurrentWorkflows`, oldest waiting first; see
    /// [`crate::slots`]). A workflow that holds a slot keeps it whatever this says.
    pub slot_available: bool,
    /// This workflow's place in the slot queue, when it waits (or would wait) for a slot; shown in
    /// the `Queued` condition. `None`: not known (the message then names no place).
    pub queue_place: Option<crate::slots::QueuePlace>,
    /// The base branch's last value per gate name (the `QualityBaseline` of the workflow's
    /// repository and base branch; §4.2 ratchet and `onMissing: carryForward`).
    pub baselines: &'a BTreeMap<String, qms_api::BaselineValue>,
    pub config: &'a EngineConfig,
}

/// An Agent as the engine sees it: its spec plus what is live right now.
#[derive(Clone, Debug)]
pub struct AgentView {
    pub spec: AgentSpec,
    /// Live (not finished) Jobs of this agent across all workflows.
    pub running: u32,
    /// False when the agent had too many recent failures/timeouts (its health policy).
    pub healthy: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobPhase {
    /// Created, pod not finished yet.
    Active,
    Succeeded,
    Failed,
}

/// One Job of the workflow, as observed.
#[derive(Clone, Debug)]
pub struct JobObservation {
    pub name: String,
    pub phase: JobPhase,
    /// Labels the operator put on the Job (run, step, attempt, agent, head SHA).
    pub labels: BTreeMap<String, String>,
    pub created_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// The pod's `state.terminated.message` (the agent's result), if any.
    pub termination_message: Option<String>,
    pub exit_code: Option<i32>,
    /// e.g. `BackoffLimitExceeded`, `DeadlineExceeded`, `Error`, `OOMKilled`.
    pub reason: Option<String>,
    /// The Job is being deleted.
    pub deleting: bool,
    /// What the status keeps of the result the agent submitted to the result endpoint (the full
    /// result is in the ConfigMap it names); when set it is the task's result, whatever the
    /// termination message says.
    pub stored_result: Option<qms_api::TaskResultSummary>,
}

/// Orchestrator settings (spec §7.1) that affect decisions.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Step timeout when neither the step nor the agent sets one (`default_timeout`).
    pub default_timeout: Duration,
    /// Growth factor of retry backoff when a step has no retry policy (`retry_exponential_base`).
    pub retry_base: f64,
    /// Extra time given to gates after the step's timeout (`quality_gates.timeout_buffer`).
    pub gate_timeout_buffer: Duration,
    /// When a gate's `escalation` is enabled without a `threshold`, it escalates when still
    /// undecided this long after its step's attempt started (`quality_gates.escalation_threshold`).
    pub gate_escalation_threshold: Duration,
    /// Largest agent result accepted, in bytes.
    pub max_result_bytes: usize,
    /// Key under which the task payload is passed to the agent container.
    pub payload_env: String,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            default_timeout: Duration::from_secs(1800),
            retry_base: 2.0,
            gate_timeout_buffer: Duration::from_secs(30),
            gate_escalation_threshold: Duration::from_secs(600),
            max_result_bytes: 64 * 1024,
            payload_env: "QMS_TASK".to_owned(),
        }
    }
}
