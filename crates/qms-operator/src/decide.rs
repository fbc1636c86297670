//! Decide stage: the pure engine (`qms_engine::decide`) on an [`Observation`]. The one exception to
//! "no API call here": a timeout would delete a Job the cache shows running, and a lagging Job
//! watch may not have delivered its completion; such Jobs are read first
//! ([`gaps::confirm_running`]) and the engine decides again on what they say.

use qms_api::QmsWorkflow;
use qms_engine::{Decision, Observed};

use crate::context::Shared;
use crate::error::Error;
use crate::observe::gaps;
use crate::observe::snapshot::Observation;
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

/// [`decide`], with the Jobs due for a timeout confirmed as running first (rare: only at a
/// deadline, so the decide lock is held for it). `obs.jobs` takes what the reads found.
pub async fn decide_confirmed(
    shared: &Shared,
    wf: &QmsWorkflow,
    obs: &mut Observation,
) -> Result<Decision, Error> {
    let mut decision = decide(wf, obs);
    crate::telemetry::record_correlation_id(
        &tracing::Span::current(),
        decision
            .status
            .correlation_id
            .as_deref()
            .unwrap_or_default(),
    );
    let timing_out = timeouts_to_confirm(&decision.actions, &obs.jobs);
    let ns = wf.metadata.namespace.clone().unwrap_or_default();
    if !timing_out.is_empty()
        && gaps::confirm_running(shared, &ns, &timing_out, &mut obs.jobs, obs.now).await?
    {
        decision = decide(wf, obs);
    }
    Ok(decision)
}
