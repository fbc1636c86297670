//! The working state of one decision.

use chrono::{DateTime, Utc};
use qms_api::{QmsWorkflowStatus, Transition, WorkflowState};
use serde_json::{Map, Value, json};

use crate::action::{Action, EngineEvent, EventType};
use crate::observe::Observed;
use crate::payload;
use crate::result::truncate;
use crate::time;

pub struct Ctx<'o, 'a> {
    pub obs: &'o Observed<'a>,
    pub now: DateTime<Utc>,
    /// The status being built (starts as a copy of the observed one).
    pub st: QmsWorkflowStatus,
    pub actions: Vec<Action>,
    /// A system fault found while advancing: (reason, message). Leads to ERROR.
    pub fatal: Option<(String, String)>,
    /// A new run was set up in this decision and must start (or queue).
    pub needs_start: bool,
    /// The workflow waits for a slot.
    pub queued: bool,
    /// Whether the workflow held a running slot before this decision.
    pub held_slot: bool,
    /// Reason for the next state transition (a run start caused by a new SHA or a retry).
    pub pending_reason: Option<String>,
}

impl<'o, 'a> Ctx<'o, 'a> {
    pub fn new(obs: &'o Observed<'a>) -> Self {
        let st = obs.workflow.status.clone().unwrap_or_default();
        let held_slot = super::holds_slot(&st);
        Self {
            obs,
            now: obs.now,
            st,
            actions: Vec::new(),
            fatal: None,
            needs_start: false,
            queued: false,
            held_slot,
            pending_reason: None,
        }
    }

    pub fn now_str(&self) -> String {
        time::format(self.now)
    }

    /// Moves the workflow to `to`, recording the transition (no-op when already there).
    pub fn set_state(&mut self, to: WorkflowState, reason: &str) {
        if self.st.state == to {
            return;
        }
        let reason = self
            .pending_reason
            .take()
            .unwrap_or_else(|| reason.to_owned());
        self.st.history.push(Transition {
            at: self.now_str(),
            from: self.st.state,
            to,
            reason: truncate(&reason, 512),
            sha: self.obs.workflow.spec.head_sha.clone(),
        });
        let limit = qms_api::QmsWorkflowStatus::HISTORY_LIMIT;
        if self.st.history.len() > limit {
            let excess = self.st.history.len() - limit;
            self.st.history.drain(..excess);
        }
        self.st.state = to;
    }

    /// Emits a core event with the fields every event carries (spec §6.1 metadata).
    pub fn emit(
        &mut self,
        event_type: EventType,
        reason: &str,
        message: String,
        warning: bool,
        fields: Value,
    ) {
        let wf = self.obs.workflow;
        let mut payload = Map::new();
        if let Value::Object(extra) = fields {
            payload.extend(extra);
        }
        let common = json!({
            "workflow_id": payload::workflow_id(wf),
            "correlation_id": self.st.correlation_id.clone().unwrap_or_default(),
            "pr_number": wf.spec.pull_request,
            "repository": wf.spec.repository,
            "head_sha": wf.spec.head_sha,
            "run": self.st.run,
            "timestamp": self.now_str(),
        });
        if let Value::Object(common) = common {
            for (k, v) in common {
                payload.entry(k).or_insert(v);
            }
        }
        self.actions.push(Action::Emit(EngineEvent {
            event_type,
            reason: reason.to_owned(),
            message,
            warning,
            payload: Value::Object(payload),
        }));
    }

    pub fn delete_job(&mut self, job_name: &str, reason: &str) {
        let already = self
            .actions
            .iter()
            .any(|a| matches!(a, Action::DeleteJob { job_name: n, .. } if n == job_name));
        if !already {
            self.actions.push(Action::DeleteJob {
                job_name: job_name.to_owned(),
                reason: reason.to_owned(),
            });
        }
    }

    pub fn workflow_name(&self) -> &str {
        self.obs.workflow.metadata.name.as_deref().unwrap_or("")
    }
}
