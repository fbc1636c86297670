//! Decide stage: the pure engine (`qms_engine::decide`) on an [`Observation`], taken and decided
//! in one short critical section (`Shared::decide_lock`, no API call inside) that also reserves
//! what the decision takes — the agents' places of the Jobs it creates ([`act::reserve`]) and a
//! workflow slot ([`act::admit`]) — so the next decision, of any workflow, counts them. The Jobs
//! themselves are created afterwards, outside the lock.
//!
//! One exception to "decide on the caches": a timeout would delete a Job the cache shows running,
//! and a lagging Job watch may not have delivered its completion. Such Jobs are read first
//! ([`gaps::confirm_running`], outside the lock) and the engine decides again on a fresh snapshot
//! with what they say.

use std::collections::BTreeMap;

use kube::ResourceExt;
use qms_api::QmsWorkflow;
use qms_engine::{Decision, JobObservation, Observed};

use crate::act;
use crate::context::{Scope, Shared};
use crate::error::Error;
use crate::observe::gaps::{self, CacheGaps};
use crate::observe::snapshot::{self, Observation};
use crate::observe::timeouts_to_confirm;

/// The engine's decision for `wf` on `obs` (pure).
pub fn decide(wf: &QmsWorkflow, obs: &Observation) -> Decision {
    qms_engine::decide(&Observed {
        now: obs.now,
        workflow: wf,
        template: obs.template.as_ref().map(|t| &t.spec),
        gates: &obs.gates,
        agents: &obs.agents,
        jobs: &obs.jobs,
        slot_available: obs.slots.available,
        queue_place: obs.slots.place,
        baselines: &obs.baselines,
        config: &obs.live.engine,
    })
}

/// A decision with what it reserved.
pub struct Decided {
    pub observation: Observation,
    pub decision: Decision,
    /// The decision gave the workflow a slot (remembered until the status write is cached).
    pub admitted: bool,
}

/// Observes `wf` (the caches of `scope` plus `gaps`), decides and reserves, in one critical
/// section; with Jobs due for a timeout, confirms them first and does it once more.
pub async fn decide_and_reserve(
    shared: &Shared,
    scope: &Scope,
    wf: &QmsWorkflow,
    gaps: CacheGaps,
) -> Result<Decided, Error> {
    let ns = wf.namespace().unwrap_or_default();
    let mut confirmed: Option<BTreeMap<String, JobObservation>> = None;
    loop {
        let guard = shared.decide_lock.lock().await;
        let mut obs = snapshot::take(shared, scope, wf, gaps.clone());
        if let Some(finished) = &confirmed {
            obs.jobs.extend(finished.clone());
        }
        let decision = decide(wf, &obs);
        let timing_out = match confirmed {
            Some(_) => Vec::new(),
            None => timeouts_to_confirm(&decision.actions, &obs.jobs),
        };
        if timing_out.is_empty() {
            act::reserve(shared, wf, &decision.actions);
            let admitted = act::admit(shared, wf, &decision.status);
            drop(guard);
            crate::telemetry::record_correlation_id(
                &tracing::Span::current(),
                decision
                    .status
                    .correlation_id
                    .as_deref()
                    .unwrap_or_default(),
            );
            return Ok(Decided {
                observation: obs,
                decision,
                admitted,
            });
        }
        drop(guard);
        // Rare (only at a deadline): read the Jobs, then decide again on a fresh snapshot.
        let mut finished = BTreeMap::new();
        gaps::confirm_running(shared, &ns, &timing_out, &mut finished, obs.now).await?;
        confirmed = Some(finished);
    }
}
