//! Reading the base branch's baseline (`QualityBaseline`) of a workflow's repository and base
//! branch for the engine. Written only by qms-github when a pull request is merged, so a value
//! here always comes from code that is on the branch.

use std::collections::BTreeMap;
use std::sync::Arc;

use kube::{Api, ResourceExt};
use qms_api::{BaselineValue, OnMissing, QmsWorkflow, QualityBaseline, QualityGate, baseline_name};

use crate::context::Shared;
use crate::error::Error;

/// Whether any gate of the workflow's namespace looks at baselines (ratchet or carry-forward);
/// otherwise no read is needed.
pub fn needed(workflow: &QmsWorkflow, gates: &[Arc<QualityGate>]) -> bool {
    let ns = workflow.namespace();
    gates.iter().filter(|g| g.namespace() == ns).any(|g| {
        g.spec.baseline.as_ref().is_some_and(|b| b.enabled)
            || g.spec.on_missing == OnMissing::CarryForward
    })
}

/// The base branch's last value per gate. A read error fails the reconcile (it is retried): a
/// ratchet or carry-forward silently missing its baseline would loosen the gate.
pub async fn for_workflow(
    shared: &Shared,
    workflow: &QmsWorkflow,
    gates: &[Arc<QualityGate>],
) -> Result<BTreeMap<String, BaselineValue>, Error> {
    if !needed(workflow, gates) {
        return Ok(BTreeMap::new());
    }
    let ns = workflow.namespace().unwrap_or_default();
    let api: Api<QualityBaseline> = Api::namespaced(shared.client.clone(), &ns);
    let name = baseline_name(&workflow.spec.repository, &workflow.spec.base_ref);
    Ok(values_of(api.get_opt(&name).await?.as_ref(), workflow))
}

/// The values of `baseline` if it is the one of the workflow's repository and base branch (a
/// hash collision or a hand-made object for another branch is never used).
pub fn values_of(
    baseline: Option<&QualityBaseline>,
    workflow: &QmsWorkflow,
) -> BTreeMap<String, BaselineValue> {
    baseline
        .filter(|b| {
            b.spec
                .repository
                .eq_ignore_ascii_case(&workflow.spec.repository)
                && b.spec.branch == workflow.spec.base_ref
        })
        .map(|b| {
            b.spec
                .values
                .iter()
                .map(|v| (v.gate.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default()
}
