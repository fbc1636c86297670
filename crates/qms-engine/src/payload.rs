//! The task payload of spec §3.2, given to the agent container as JSON (env `config.payload_env`).
//!
//! There is no callback server: instead of `callback_url` the payload says where and how to
//! report — the agent writes its result (see [`crate::result`]) to `result_path`, the container's
//! termination message, which the operator reads from the finished Pod.
//!
//! `workflow_id` is `<namespace>/<name>` of the QmsWorkflow (unique and directly usable with
//! kubectl); `task_id` is the Job name.

use std::time::Duration;

use qms_api::QmsWorkflow;
use serde_json::{Value, json};

pub const RESULT_PATH: &str = "/dev/termination-log";
pub const RESULT_FORMAT: &str = "json: {\"status\": \"success\"|\"failure\", \"metrics\": {\"<name>\": <number> | {\"value\": <number>, \"unit\": \"<unit>\"}}, \"summary\": \"...\", \"annotations\": [{\"path\", \"start_line\", \"end_line\", \"annotation_level\": \"notice\"|\"warning\"|\"failure\", \"message\", \"title\"?}]}";

/// A gate requirement as the agent sees it (the threshold in force when the task starts).
#[derive(Clone, Debug, PartialEq)]
pub struct GateRequirement {
    pub name: String,
    pub metric: Option<String>,
    pub operator: Option<&'static str>,
    pub threshold: Option<f64>,
    pub unit: Option<&'static str>,
}

pub struct TaskInfo<'a> {
    pub job_name: &'a str,
    pub agent: &'a str,
    pub step: &'a str,
    pub run: u32,
    pub attempt: u32,
    pub timeout: Duration,
    pub correlation_id: &'a str,
    pub gates: &'a [GateRequirement],
}

pub fn workflow_id(wf: &QmsWorkflow) -> String {
    format!(
        "{}/{}",
        wf.metadata.namespace.as_deref().unwrap_or("default"),
        wf.metadata.name.as_deref().unwrap_or("")
    )
}

pub fn build(wf: &QmsWorkflow, task: &TaskInfo<'_>) -> Value {
    let gates: Vec<Value> = task
        .gates
        .iter()
        .map(|g| {
            json!({
                "name": g.name,
                "metric": g.metric,
                "operator": g.operator,
                "threshold": g.threshold,
                "unit": g.unit,
            })
        })
        .collect();
    json!({
        "task_id": task.job_name,
        "workflow_id": workflow_id(wf),
        "agent_id": task.agent,
        "task_type": task.step,
        "payload": {
            "pr_number": wf.spec.pull_request,
            "repository": wf.spec.repository,
            "branch": wf.spec.head_ref,
            "base_branch": wf.spec.base_ref,
            "head_sha": wf.spec.head_sha,
            "step": task.step,
            "attempt": task.attempt,
            "requirements": { "gates": gates },
        },
        "timeout": task.timeout.as_secs().max(1),
        "result_path": RESULT_PATH,
        "result_format": RESULT_FORMAT,
        "metadata": {
            "correlation_id": task.correlation_id,
            "run": task.run,
            "template": wf.spec.template_ref.name,
        },
    })
}
