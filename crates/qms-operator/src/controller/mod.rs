//! The controllers: `workflow` (QmsWorkflow), `catalog` (WorkflowTemplate, QualityGate, Agent) and,
//! with GitHub on, `github` (QmsWorkflow → Check Runs).

pub mod catalog;
pub mod github;
pub mod workflow;

use std::time::Duration;

use crate::context::{Shared, lock};

/// The controller part of the failure keys of the workflow controller (`record::workflow_key`)
/// and of the check-run sync.
pub const WORKFLOW_FAILURES: &str = "QmsWorkflow";
pub const GITHUB_FAILURES: &str = "GithubChecks";

/// The key of an object's consecutive-failure count (`Shared::failures`): controller, namespace
/// and name, so that it can be dropped when the object is deleted.
pub fn failure_key(controller: &str, namespace: &str, name: &str) -> String {
    format!("{controller}/{namespace}/{name}")
}

/// Per-object exponential backoff by error category (no flat requeue), with ±20 % jitter.
pub fn backoff_delay(
    shared: &Shared,
    key: &str,
    category: crate::error::ErrorCategory,
) -> Duration {
    let n = {
        let mut failures = lock(&shared.failures);
        let n = failures.entry(key.to_owned()).or_insert(0);
        *n = n.saturating_add(1);
        *n
    };
    let (base, cap) = category.backoff();
    let exp = base.saturating_mul(1u32 << (n - 1).min(16));
    let d = exp.min(cap);
    let jitter: f64 = rand::random_range(0.8..1.2);
    d.mul_f64(jitter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_workflow_controllers_failure_key_is_the_one_dropped_on_deletion() {
        let wf: qms_api::QmsWorkflow = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "wf", "namespace": "ns"},
            "spec": {"repository": "o/r", "pullRequest": 1, "headSha": "abc1234",
                     "baseRef": "main", "templateRef": {"name": "t"}},
        }))
        .unwrap();
        assert_eq!(
            crate::record::workflow_key(&wf),
            failure_key(WORKFLOW_FAILURES, "ns", "wf")
        );
    }
}
