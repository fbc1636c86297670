//! `repository_dispatch` events (spec §5.2) so GitHub Actions workflows can react to QMS progress:
//! `event_type: qms_workflow`, `client_payload.type` one of `step_completed`,
//! `quality_gate_passed`, `workflow_failed`. Pure: status → the occurrences that exist now, each
//! with a stable key; `sync` sends those whose key is not yet in `status.dispatches`.

use qms_api::{QmsWorkflow, QmsWorkflowStatus, StepPhase, StepStatus, WorkflowTemplateSpec};
use serde_json::{Value, json};

pub const EVENT_TYPE: &str = "qms_workflow";
pub const TYPES: [&str; 3] = ["step_completed", "quality_gate_passed", "workflow_failed"];

#[derive(Clone, Debug, PartialEq)]
pub struct DispatchEvent {
    /// `<run>/<type>/<step>[/<gate>]`: one occurrence, sent once.
    pub key: String,
    /// The request body of `POST /repos/{owner}/{repo}/dispatches`.
    pub body: Value,
}

pub fn desired_dispatches(
    wf: &QmsWorkflow,
    template: Option<&WorkflowTemplateSpec>,
) -> Vec<DispatchEvent> {
    let Some(cfg) = template.and_then(|t| t.repository_dispatch.as_ref()) else {
        return Vec::new();
    };
    if !cfg.enabled {
        return Vec::new();
    }
    let wanted = |t: &str| cfg.types.is_empty() || cfg.types.iter().any(|x| x == t);
    let Some(status) = &wf.status else {
        return Vec::new();
    };
    if status.head_sha.as_deref() != Some(wf.spec.head_sha.as_str())
        || wf.metadata.deletion_timestamp.is_some()
    {
        return Vec::new();
    }
    let payload = Payload {
        wf,
        status,
        workflow: format!(
            "{}/{}",
            wf.metadata.namespace.as_deref().unwrap_or(""),
            wf.metadata.name.as_deref().unwrap_or("")
        ),
    };
    let run = status.run;
    let mut out = Vec::new();
    for step in &status.steps {
        step_events(&payload, step, &wanted, &mut out);
    }
    if status.state.is_failure() && wanted("workflow_failed") {
        out.push(DispatchEvent {
            key: format!("{run}/workflow_failed"),
            body: payload.body(
                "workflow_failed",
                status.current_step.as_deref(),
                Value::Null,
            ),
        });
    }
    out
}

/// The occurrences of one step: completed, and each of its gates that passed.
fn step_events(
    payload: &Payload<'_>,
    step: &StepStatus,
    wanted: &dyn Fn(&str) -> bool,
    out: &mut Vec<DispatchEvent>,
) {
    let run = payload.status.run;
    let done = matches!(
        step.phase,
        StepPhase::Succeeded | StepPhase::Failed | StepPhase::Skipped
    );
    if done && wanted("step_completed") {
        out.push(DispatchEvent {
            key: format!("{run}/step_completed/{}", step.name),
            body: payload.body(
                "step_completed",
                Some(&step.name),
                json!({ "phase": format!("{:?}", step.phase) }),
            ),
        });
    }
    if wanted("quality_gate_passed") {
        for g in step.gates.iter().filter(|g| g.verdict.passes()) {
            out.push(DispatchEvent {
                key: format!("{run}/quality_gate_passed/{}/{}", step.name, g.name),
                body: payload.body(
                    "quality_gate_passed",
                    Some(&step.name),
                    json!({
                        "name": g.name, "metric": g.metric, "value": g.value,
                        "threshold": g.threshold, "verdict": g.verdict,
                    }),
                ),
            });
        }
    }
}

/// What every event of one workflow run carries.
struct Payload<'a> {
    wf: &'a QmsWorkflow,
    status: &'a QmsWorkflowStatus,
    /// `<namespace>/<name>`.
    workflow: String,
}

impl Payload<'_> {
    /// GitHub allows at most 10 top-level properties in client_payload.
    fn body(&self, kind: &str, step: Option<&str>, gate: Value) -> Value {
        json!({
            "event_type": EVENT_TYPE,
            "client_payload": {
                "type": kind,
                "workflow": self.workflow,
                "repository": self.wf.spec.repository,
                "pull_request": self.wf.spec.pull_request,
                "sha": self.wf.spec.head_sha,
                "run": self.status.run,
                "state": self.status.state.as_str(),
                "step": step,
                "gate": gate,
                "correlation_id": self.status.correlation_id,
            }
        })
    }
}
