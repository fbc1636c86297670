//! `Agent`: a specialised reviewer and the Job it runs (spec §3.1).

use k8s_openapi::api::core::v1::{EnvVar, ResourceRequirements};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use crate::common::Condition;
use crate::duration::KubeDuration;

/// Agent priority; among agents with the same capability and free capacity, higher wins.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    Low,
    #[default]
    Medium,
    High,
    Critical,
}

/// When an agent counts as unhealthy: `failureThreshold` task failures or timeouts within `window`.
/// An unhealthy agent receives no new task while another agent with the capability can take it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct HealthPolicy {
    #[serde(default = "default_failure_threshold")]
    #[schemars(range(min = 1, max = 1000))]
    pub failure_threshold: u32,
    #[serde(default = "default_window")]
    pub window: KubeDuration,
}

fn default_failure_threshold() -> u32 {
    3
}
fn default_window() -> KubeDuration {
    KubeDuration::from_secs(HealthPolicy::DEFAULT_WINDOW.as_secs())
}

impl HealthPolicy {
    /// `window` when not given (ten minutes).
    pub const DEFAULT_WINDOW: std::time::Duration = std::time::Duration::from_secs(600);

    /// `window` as a duration; the default when it does not parse (the CRD schema refuses such a
    /// value, so only an object stored before that check gets here).
    pub fn window_or_default(&self) -> std::time::Duration {
        self.window.to_std().unwrap_or(Self::DEFAULT_WINDOW)
    }
}

impl HealthPolicy {
    /// An agent is healthy while its recent failures (within [`Self::window`]) stay below
    /// `failureThreshold`: task placement, the `Healthy` condition and `qms_agent_healthy` all
    /// use this one rule.
    pub fn is_healthy(&self, recent_failures: u32) -> bool {
        recent_failures < self.failure_threshold
    }
}

impl Default for HealthPolicy {
    fn default() -> Self {
        Self {
            failure_threshold: default_failure_threshold(),
            window: default_window(),
        }
    }
}

/// The container an agent task runs as. The operator wraps it in a Job, adds the task payload
/// (`QMS_TASK` env, JSON of spec §3.2) and reads the result from the termination message.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgentJob {
    #[schemars(length(min = 1))]
    pub image: String,
    #[serde(default)]
    pub command: Vec<String>,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub env: Vec<EnvVar>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,
}

#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[kube(
    group = "qms.creo.dev",
    version = "v1",
    kind = "Agent",
    namespaced,
    status = "AgentStatus",
    shortname = "qa",
    category = "qms",
    printcolumn = r#"{"name":"Capabilities","type":"string","jsonPath":".spec.capabilities"}"#,
    printcolumn = r#"{"name":"Running","type":"integer","jsonPath":".status.runningTasks"}"#,
    printcolumn = r#"{"name":"Capacity","type":"integer","jsonPath":".spec.loadCapacity"}"#,
    printcolumn = r#"{"name":"Priority","type":"string","jsonPath":".spec.priority"}"#,
    printcolumn = r#"{"name":"Healthy","type":"string","jsonPath":".status.conditions[?(@.type==\"Healthy\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct AgentSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub specialization: Option<String>,
    #[schemars(length(min = 1, max = 32))]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub capabilities: Vec<String>,
    /// Tasks of this agent that may run at the same time (live Jobs are counted).
    #[serde(default = "default_load_capacity")]
    #[schemars(range(min = 1, max = 1000))]
    pub load_capacity: u32,
    #[serde(default)]
    pub priority: Priority,
    /// Task timeout when the step sets none (the seed's `timeout_default`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_timeout: Option<KubeDuration>,
    #[serde(default)]
    pub health: HealthPolicy,
    pub job: AgentJob,
}

fn default_load_capacity() -> u32 {
    10
}

#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgentStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default)]
    pub running_tasks: u32,
    /// Succeeded tasks / finished tasks among the recent ones (0..1); absent before the first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recent_success_rate: Option<f64>,
    #[serde(default)]
    pub recent_failures: u32,
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_window_defaults_to_ten_minutes() {
        let h: HealthPolicy = serde_json::from_str("{}").unwrap();
        assert_eq!(h.window.as_str(), "600s");
        assert_eq!(h.window_or_default(), std::time::Duration::from_secs(600));
        let h: HealthPolicy = serde_json::from_str(r#"{"window":"2m"}"#).unwrap();
        assert_eq!(h.window_or_default(), std::time::Duration::from_secs(120));
        let h = HealthPolicy {
            window: KubeDuration::from_secs(0),
            ..HealthPolicy::default()
        };
        assert_eq!(h.window_or_default(), std::time::Duration::ZERO);
    }
}
