//! The controllers: `workflow` (QmsWorkflow), `catalog` (WorkflowTemplate, QualityGate, Agent) and,
//! with GitHub on, `github` (QmsWorkflow → Check Runs).

pub mod catalog;
pub mod github;
pub mod workflow;

use std::time::Duration;

use crate::context::{Shared, lock};

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
