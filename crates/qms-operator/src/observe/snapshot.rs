//! The observation one decision is made on: the caches of one scope (plus what the lagging-watch
//! reads found, [`super::gaps`]) reduced to the engine's inputs in one go. Taken under the decide
//! lock, so the agents' load and the slots are counted from one snapshot.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;
use qms_api::{BaselineValue, QmsWorkflow, QualityGateSpec, WorkflowTemplate};
use qms_engine::{AgentView, JobObservation, JobPhase};

use super::gaps::CacheGaps;
use super::{SlotOffer, agent_views, gates_in, slot_offer, workflow_jobs};
use crate::config::LiveSettings;
use crate::context::{Scope, Shared};

/// What the engine is told about one workflow, owned (the engine borrows it).
pub struct Observation {
    pub now: DateTime<Utc>,
    pub template: Option<Arc<WorkflowTemplate>>,
    pub gates: BTreeMap<String, QualityGateSpec>,
    pub agents: BTreeMap<String, AgentView>,
    /// The workflow's Jobs: cached, read because the cache lacked them, or created and not yet
    /// cached (expected).
    pub jobs: BTreeMap<String, JobObservation>,
    /// When a finished Job still waits for its Pod result in the cache: look again then.
    pub recheck: Option<Duration>,
    pub slots: SlotOffer,
    pub baselines: BTreeMap<String, BaselineValue>,
    pub live: Arc<LiveSettings>,
}

/// Observes `wf` from the caches of `scope` and the `gaps` read from the API server.
pub fn take(shared: &Shared, scope: &Scope, wf: &QmsWorkflow, gaps: CacheGaps) -> Observation {
    let stores = &scope.stores;
    let now = Utc::now();
    let ns = wf.namespace().unwrap_or_default();
    let uid = wf.uid().unwrap_or_default();
    let template = stores
        .templates
        .get(&ObjectRef::new(&wf.spec.template_ref.name).within(&ns));
    let all_gates = stores.gates.state();
    let gates = gates_in(&ns, &all_gates);
    let mut all_jobs = stores.jobs.state();
    // Only what the cache still lacks, so no Job is counted twice towards an agent's load.
    let cached: Vec<String> = all_jobs.iter().map(|j| j.name_any()).collect();
    all_jobs.extend(
        gaps.jobs
            .into_iter()
            .filter(|j| !cached.contains(&j.name_any())),
    );
    let mut pods = stores.pods.state();
    pods.extend(gaps.pods);
    let in_flight = shared.in_flight(&ns, &all_jobs);
    let agents = agent_views(&ns, &stores.agents.state(), &all_jobs, &in_flight, now);
    let (mut jobs, recheck) = workflow_jobs(wf, &all_jobs, &pods, now);
    crate::results::attach(&mut jobs, gaps.stored);
    for (name, expected) in shared.expected_for(&uid) {
        jobs.entry(name.clone()).or_insert_with(|| JobObservation {
            name,
            phase: JobPhase::Active,
            labels: expected.labels.clone(),
            created_at: chrono::Duration::from_std(expected.at.elapsed())
                .ok()
                .map(|d| now - d),
            finished_at: None,
            termination_message: None,
            exit_code: None,
            reason: None,
            deleting: false,
            stored_result: None,
        });
    }
    // One snapshot for both, as for the agents' load above.
    let all_workflows = shared.all_workflows();
    let admitted = shared.admitted_uids(&all_workflows);
    let live = shared.live();
    let slots = slot_offer(wf, &all_workflows, &admitted, live.max_concurrent_workflows);
    Observation {
        now,
        template,
        gates,
        agents,
        jobs,
        recheck,
        slots,
        baselines: gaps.baselines,
        live,
    }
}
