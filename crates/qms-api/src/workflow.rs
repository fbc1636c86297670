//! `QmsWorkflow`: one quality review of one pull request at one head SHA.
//!
//! The spec says what to review and carries people's decisions (approvals, overrides, retries);
//! the status is the engine's progress, the only place it lives, so a restarted operator resumes
//! exactly where it stopped.

use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use crate::common::{Condition, WorkflowState};
use crate::gate::{MetricUnit, Operator};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct TemplateRef {
    #[schemars(length(min = 1))]
    pub name: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    Approve,
    Reject,
}

/// A person's decision on a manual step. Only counts for the head SHA it names.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Approval {
    pub step: String,
    pub decision: Decision,
    /// Who decided (GitHub login or Kubernetes user), kept for the audit trail.
    #[schemars(length(min = 1))]
    pub by: String,
    #[serde(default)]
    pub reason: String,
    #[schemars(regex(pattern = r"^[0-9a-f]{7,64}$"))]
    pub sha: String,
    /// RFC 3339 time of the decision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
}

/// An emergency override of a failing gate: honoured only for `sha` and until `expires`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Override {
    pub gate: String,
    #[schemars(length(min = 1))]
    pub by: String,
    #[schemars(length(min = 1))]
    pub reason: String,
    /// RFC 3339 expiry.
    pub expires: String,
    #[schemars(regex(pattern = r"^[0-9a-f]{7,64}$"))]
    pub sha: String,
}

/// Ask for a re-run: each new `id` is acted on once. Without `step`, the failed step (or, after
/// ERROR, the step that errored) runs again.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct RetryRequest {
    #[schemars(length(min = 1, max = 63))]
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
}

#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[kube(
    group = "qms.creo.dev",
    version = "v1",
    kind = "QmsWorkflow",
    namespaced,
    status = "QmsWorkflowStatus",
    shortname = "qwf",
    category = "qms",
    printcolumn = r#"{"name":"Repository","type":"string","jsonPath":".spec.repository"}"#,
    printcolumn = r#"{"name":"PR","type":"integer","jsonPath":".spec.pullRequest"}"#,
    printcolumn = r#"{"name":"State","type":"string","jsonPath":".status.state"}"#,
    printcolumn = r#"{"name":"Step","type":"string","jsonPath":".status.currentStep"}"#,
    printcolumn = r#"{"name":"Gates","type":"string","jsonPath":".status.gates"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.pullRequest >= 1 || has(self.push)").message("pullRequest must be at least 1 (0 only for the review of a push)"))]
pub struct QmsWorkflowSpec {
    /// `owner/name`.
    #[schemars(regex(pattern = r"^[A-Za-z0-9_.\-]+/[A-Za-z0-9_.\-]+$"))]
    pub repository: String,
    /// The pull request; `0` for a push (see `push`).
    pub pull_request: u64,
    /// The commit under review; a new value supersedes the run.
    #[schemars(regex(pattern = r"^[0-9a-f]{7,64}$"))]
    pub head_sha: String,
    #[serde(default)]
    pub base_ref: String,
    #[serde(default)]
    pub head_ref: String,
    pub template_ref: TemplateRef,
    #[serde(default)]
    #[schemars(length(max = 256))]
    pub approvals: Vec<Approval>,
    #[serde(default)]
    #[schemars(length(max = 64))]
    pub overrides: Vec<Override>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryRequest>,
    /// Set when this workflow reviews a GitHub merge queue's merge group (`merge_group` event)
    /// instead of a pull request's head; `pullRequest` is then the pull request at the head of
    /// the group and `headSha` the group's commit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merge_group: Option<MergeGroupRef>,
    /// Set when this workflow reviews a push to a branch (`push` event, for templates with
    /// `pushes`) instead of a pull request; `pullRequest` is then 0, `headSha` the pushed commit
    /// and `baseRef` the branch whose baseline its COMPLETED values become.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub push: Option<PushRef>,
}

/// The push a workflow reviews.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct PushRef {
    /// The branch's previous head (`before` of the push).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9a-f]{7,64}$"))]
    pub before: Option<String>,
    /// RFC 3339 time of the push: it orders baselines, so a run of an older push that finishes
    /// after a newer one never replaces the newer push's values.
    #[schemars(length(min = 1, max = 64))]
    pub pushed_at: String,
    /// Who pushed (the payload's `pusher.name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 255))]
    pub pusher: Option<String>,
    /// Whether it was a force push.
    #[serde(default)]
    pub forced: bool,
}

/// The merge group a workflow reviews (GitHub merge queue).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct MergeGroupRef {
    /// The group's temporary branch, e.g. `refs/heads/gh-readonly-queue/main/pr-123-<sha>`.
    #[schemars(length(min = 1, max = 255))]
    pub head_ref: String,
    /// The base branch commit the group was built on.
    #[schemars(regex(pattern = r"^[0-9a-f]{7,64}$"))]
    pub base_sha: String,
}

/// Progress of one step in the current run.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema, Default,
)]
pub enum StepPhase {
    #[default]
    Pending,
    Running,
    /// Waiting for the retry backoff to elapse.
    Backoff,
    /// Manual step waiting for a decision.
    WaitingForApproval,
    Succeeded,
    Failed,
    Skipped,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum TaskPhase {
    Pending,
    Running,
    Succeeded,
    Failed,
    TimedOut,
    /// Deleted by the operator (superseded or cancelled).
    Cancelled,
}

/// What an agent reported, as far as the status keeps it.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TaskResultSummary {
    /// `success` or `failure`, as the agent said.
    pub status: String,
    #[serde(default)]
    pub summary: String,
    /// Numeric metrics by name, already in their reported unit.
    #[serde(default)]
    pub metrics: std::collections::BTreeMap<String, f64>,
    /// The unit each metric was reported in, when the agent named one (gates convert from it).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub units: std::collections::BTreeMap<String, MetricUnit>,
    #[serde(default)]
    pub annotations: u32,
    /// The ConfigMap (in the workflow's namespace, owned by it) holding the full result — every
    /// annotation, the summary and the metrics, gzip-compressed — when the agent submitted it to
    /// the result endpoint. Status keeps only the counts and a short summary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result_config_map: Option<String>,
}

/// One agent's task in one attempt of a step: one Job.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TaskStatus {
    /// Deterministic Job name.
    pub job_name: String,
    pub agent: String,
    /// The selector key (agent name or capability) this task fills.
    pub selector: String,
    pub attempt: u32,
    pub phase: TaskPhase,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<TaskResultSummary>,
    #[serde(default)]
    pub message: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum GateVerdict {
    Passed,
    Failed,
    /// Failed, but the gate is advisory.
    Warning,
    /// Failed, but an unexpired override for this SHA lets it pass.
    Overridden,
    /// Could not be decided (missing metric, unknown gate, crashed agent): counts as failed.
    Error,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GateResult {
    pub name: String,
    #[serde(default)]
    pub metric: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator: Option<Operator>,
    /// The threshold actually applied (after gradual enforcement and baseline ratchet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<MetricUnit>,
    pub verdict: GateVerdict,
    pub blocking: bool,
    #[serde(default)]
    pub message: String,
    /// The base-branch baseline the gate looked at (ratchet or carried value), used or not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<BaselineUse>,
    /// The gate's missing-metric policy when it was evaluated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_missing: Option<crate::gate::OnMissing>,
    /// `value` is the base branch's value carried forward (`onMissing: carryForward`), not a
    /// measurement of this commit.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub carried: bool,
}

/// A baseline as a gate used it: where it came from and whether it applied.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BaselineUse {
    /// Commit the baseline value was measured on.
    pub sha: String,
    pub value: f64,
    /// RFC 3339 time it became the baseline.
    pub at: String,
    /// The ratchet's tolerance (0 for a carried value).
    #[serde(default)]
    pub tolerance: f64,
    /// False when it was not used (older than the gate's maximum age); `note` says why.
    pub used: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl GateVerdict {
    /// Does the step pass this gate? Errors never pass (fail closed).
    pub fn passes(self) -> bool {
        matches!(self, Self::Passed | Self::Warning | Self::Overridden)
    }
}

#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StepStatus {
    pub name: String,
    pub phase: StepPhase,
    /// 1-based attempt of the step in the current run (0 before it started).
    #[serde(default)]
    pub attempt: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// When the next attempt may start (phase Backoff).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<String>,
    #[serde(default)]
    pub tasks: Vec<TaskStatus>,
    #[serde(default)]
    pub gates: Vec<GateResult>,
    #[serde(default)]
    pub escalated: bool,
    #[serde(default)]
    pub message: String,
}

/// One state change, for the audit trail.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Transition {
    pub at: String,
    pub from: WorkflowState,
    pub to: WorkflowState,
    pub reason: String,
    #[serde(default)]
    pub sha: String,
}

#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct QmsWorkflowStatus {
    #[serde(default)]
    pub state: WorkflowState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_step: Option<String>,
    /// The head SHA the current run reviews.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_sha: Option<String>,
    /// Counts runs of this workflow (new SHA or explicit retry start a new run); part of Job names.
    #[serde(default)]
    pub run: u32,
    /// The last `spec.retry.id` acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_retry_id: Option<String>,
    /// `passed/total` gates of the current run, for `kubectl get`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gates: Option<String>,
    #[serde(default)]
    pub steps: Vec<StepStatus>,
    /// Identifier linking events, Jobs and checks of this run (spec §6.1 `correlation_id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The most recent transitions, oldest first (bounded; see `HISTORY_LIMIT`).
    #[serde(default)]
    pub history: Vec<Transition>,
    /// The GitHub check runs of this workflow as last synced by qms-github (field manager
    /// `qms-github`; the operator never writes it, hence skipped when empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name", "run"]))]
    pub check_runs: Vec<CheckRunRef>,
    /// Keys of the `repository_dispatch` events already sent (field manager `qms-github`), so
    /// each occurrence is sent once.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub dispatches: Vec<String>,
}

/// A GitHub check run created for a workflow: `QMS` (summary) or `QMS / <step>`, for one run.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CheckRunRef {
    /// The check run name on GitHub.
    pub name: String,
    /// The step it reports; none for the summary check `QMS`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    /// `status.run` the check belongs to; a new run gets new check runs.
    pub run: u32,
    pub head_sha: String,
    /// GitHub's check run id.
    pub id: i64,
    /// `queued`, `in_progress` or `completed`, as last written to GitHub.
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conclusion: Option<String>,
    /// Hash of the last output written, so an unchanged check run is not written again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// Annotations already sent (GitHub takes 50 per request; the rest follow in later updates).
    #[serde(default)]
    pub annotations_sent: u32,
}

impl QmsWorkflowStatus {
    /// Transitions kept in status; older ones are dropped (Events and logs keep the full trail).
    pub const HISTORY_LIMIT: usize = 50;

    pub fn step(&self, name: &str) -> Option<&StepStatus> {
        self.steps.iter().find(|s| s.name == name)
    }

    pub fn step_mut(&mut self, name: &str) -> Option<&mut StepStatus> {
        self.steps.iter_mut().find(|s| s.name == name)
    }
}
