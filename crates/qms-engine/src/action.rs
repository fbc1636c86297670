//! What the engine asks the operator to do.

use std::collections::BTreeMap;
use std::time::Duration;

use qms_api::QmsWorkflowStatus;

/// The result of one decision: the status to write (only if it differs from the current one), the
/// side effects to perform, and when to look again at the latest.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    pub status: QmsWorkflowStatus,
    pub actions: Vec<Action>,
    /// The earliest moment something is due (a timeout, a backoff, an override expiring);
    /// `None` when only an outside change (a Job finishing, a spec edit) can move the workflow.
    pub requeue_after: Option<Duration>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Create the Job for a task. Idempotent by name: AlreadyExists means it was already done.
    CreateJob(TaskSpec),
    /// Delete a Job (superseded run, cancelled or timed-out task). NotFound means already done.
    DeleteJob { job_name: String, reason: String },
    /// Record an event (Kubernetes Event; later also GitHub dispatch).
    Emit(EngineEvent),
}

/// Everything needed to build an agent's Job.
#[derive(Clone, Debug, PartialEq)]
pub struct TaskSpec {
    pub job_name: String,
    pub agent: String,
    pub step: String,
    pub run: u32,
    pub attempt: u32,
    /// The task payload of spec §3.2, passed to the container as JSON.
    pub payload: serde_json::Value,
    /// Deadline of the task (the Job's `activeDeadlineSeconds`).
    pub timeout: Duration,
    /// Labels identifying the task (workflow, run, step, attempt, agent, head SHA).
    pub labels: BTreeMap<String, String>,
}

/// The core event types of spec §6.1 that the operator emits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    WorkflowStarted,
    StepCompleted,
    GatePassed,
    GateFailed,
    AgentTaskCompleted,
    WorkflowCompleted,
    ErrorOccurred,
}

impl EventType {
    /// The spec's name, e.g. `gate.passed`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::WorkflowStarted => "workflow.started",
            Self::StepCompleted => "step.completed",
            Self::GatePassed => "gate.passed",
            Self::GateFailed => "gate.failed",
            Self::AgentTaskCompleted => "agent.task_completed",
            Self::WorkflowCompleted => "workflow.completed",
            Self::ErrorOccurred => "error.occurred",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct EngineEvent {
    pub event_type: EventType,
    /// CamelCase Kubernetes event reason, e.g. `GatePassed`, `StepEscalated`.
    pub reason: String,
    pub message: String,
    /// Warning (true) or Normal event.
    pub warning: bool,
    /// The spec's event payload (§6.1), e.g. gate_name, result, metric_value, threshold.
    pub payload: serde_json::Value,
}
