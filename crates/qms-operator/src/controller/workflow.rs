//! The QmsWorkflow controller (spec: Workflow Controller, State Manager, Agent Coordinator and
//! Quality Gate Processor, with the decisions themselves in `qms_engine::decide`).
//!
//! One reconcile: wait for the caches → finalizer → observe → decide → act (Jobs) → write status
//! (one server-side apply, only when the status changed) → record events → requeue exactly when the
//! engine says something is due. GitHub check runs are not done here but by `controller::github`,
//! so GitHub never delays a decision; the status apply leaves the fields that one owns alone.
//! Deletion: `finalizer()` removes only `qms.creo.dev/cleanup`, after the Jobs are deleted.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use futures::StreamExt;
use futures::channel::mpsc::UnboundedReceiver;
use k8s_openapi::api::batch::v1::Job;
use kube::api::ListParams;
use kube::runtime::controller::{Action, Config, Controller};
use kube::runtime::finalizer::{Event as FinalizerEvent, finalizer};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, ResourceExt};
use qms_api::{QmsWorkflow, WorkflowState};
use qms_engine::{Action as EngineAction, JobObservation, JobPhase, Observed};

use super::backoff_delay;
use crate::act;
use crate::context::{Admission, EXPECTATION_TRUSTED, Scope, Shared, lock};
use crate::error::Error;
use crate::jobs::{MANAGED_BY, MANAGED_BY_LABEL, owned_by};
use crate::metrics::{ActionKind, ActionOutcome, ControllerKind};
use crate::observe;
use crate::observe::gaps::{confirm_running, read_cache_gaps};
use crate::record::{self, record_transition, workflow_key as key};
use crate::status::{operator_owned, write_workflow_status};

pub const FINALIZER: &str = "qms.creo.dev/cleanup";

pub struct Ctx {
    pub shared: Arc<Shared>,
    pub scope: Arc<Scope>,
}

/// Runs the controller of one scope until the task is aborted.
pub async fn run(
    shared: Arc<Shared>,
    scope: Arc<Scope>,
    triggers: UnboundedReceiver<ObjectRef<QmsWorkflow>>,
) {
    let concurrency = shared.settings.workflow_concurrency;
    let reader = scope.stores.workflows.clone();
    let ctx = Arc::new(Ctx { shared, scope });
    Controller::for_stream(
        futures::stream::pending::<Result<QmsWorkflow, watcher::Error>>(),
        reader,
    )
    .reconcile_on(triggers)
    // Bounded concurrency: kube-rs has no client-side rate limiter, so this (times the few
    // requests of one reconcile) is what bounds our request rate against the API server.
    .with_config(Config::default().concurrency(concurrency))
    .run(reconcile, error_policy, ctx)
    .for_each(|res| async move {
        if let Err(e) = res {
            tracing::debug!(error = %e, "workflow reconcile did not run");
        }
    })
    .await;
}

pub async fn reconcile(wf: Arc<QmsWorkflow>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    // A child of the delivery's trace (the workflow's traceparent annotation), spec §5.3.
    let span = crate::telemetry::reconcile_span(&wf);
    tracing::Instrument::instrument(reconcile_in_span(wf, ctx), span).await
}

async fn reconcile_in_span(wf: Arc<QmsWorkflow>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    ctx.shared.wait_ready().await;
    let started = Instant::now();
    let ns = wf
        .namespace()
        .ok_or_else(|| Error::Other("QmsWorkflow without namespace".to_owned()))?;
    let api: Api<QmsWorkflow> = Api::namespaced(ctx.shared.client.clone(), &ns);
    let k = key(&wf);
    let result = finalizer(&api, FINALIZER, wf, |event| async {
        match event {
            FinalizerEvent::Apply(wf) => apply(wf, &ctx).await,
            FinalizerEvent::Cleanup(wf) => cleanup(wf, &ctx).await,
        }
    })
    .await
    .map_err(from_finalizer);
    ctx.shared
        .metrics
        .reconciled(ControllerKind::qmsworkflow, started.elapsed());
    if result.is_ok() {
        lock(&ctx.shared.failures).remove(&k);
    }
    result
}

fn from_finalizer(e: kube::runtime::finalizer::Error<Error>) -> Error {
    use kube::runtime::finalizer::Error as F;
    match e {
        F::ApplyFailed(e) | F::CleanupFailed(e) => e,
        F::AddFinalizer(e) | F::RemoveFinalizer(e) => Error::Kube(e),
        other => Error::Finalizer(other.to_string()),
    }
}

/// Per-object exponential backoff by error category (no flat requeue), with ±20 % jitter.
pub fn error_policy(wf: Arc<QmsWorkflow>, err: &Error, ctx: Arc<Ctx>) -> Action {
    let category = err.category();
    ctx.shared
        .metrics
        .error(ControllerKind::qmsworkflow, category);
    let delay = backoff_delay(&ctx.shared, &key(&wf), category);
    tracing::warn!(workflow = %key(&wf), category = category.as_str(), error = %err, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

async fn apply(wf: Arc<QmsWorkflow>, ctx: &Ctx) -> Result<Action, Error> {
    let shared = &ctx.shared;
    let scope = &ctx.scope;
    let uid = wf.uid().unwrap_or_default();
    let ns = wf.namespace().unwrap_or_default();

    // Our own last status write is not in the cache yet: deciding on the older status would only
    // redo (or undo) work. The watch event of the write triggers the next reconcile.
    {
        let mut stale = lock(&shared.stale_versions);
        match stale.get(&uid) {
            Some(rv) if wf.resource_version().as_ref() == Some(rv) => {
                return Ok(Action::requeue(Duration::from_secs(2)));
            }
            // The cache moved past the version our last write was based on.
            Some(_) => {
                stale.remove(&uid);
            }
            None => {}
        }
    }

    let stores = &scope.stores;
    // Outside the decide lock: these may be API calls.
    let trusted: Vec<String> = shared
        .expected_for(&uid)
        .into_iter()
        .filter(|(_, e)| e.at.elapsed() < EXPECTATION_TRUSTED)
        .map(|(name, _)| name)
        .collect();
    let (read_jobs, read_pods) = read_cache_gaps(
        shared,
        &wf,
        &stores.jobs.state(),
        &stores.pods.state(),
        &trusted,
    )
    .await?;

    let guard = shared.decide_lock.lock().await;
    let now = Utc::now();
    let template = stores
        .templates
        .get(&ObjectRef::new(&wf.spec.template_ref.name).within(&ns));
    let all_gates = stores.gates.state();
    let gates = observe::gates_in(&ns, &all_gates);
    let mut all_jobs = stores.jobs.state();
    // Only what the cache still lacks, so no Job is counted twice towards an agent's load.
    let cached: Vec<String> = all_jobs.iter().map(|j| j.name_any()).collect();
    all_jobs.extend(
        read_jobs
            .into_iter()
            .filter(|j| !cached.contains(&j.name_any())),
    );
    let mut pods = stores.pods.state();
    pods.extend(read_pods);
    let in_flight = shared.in_flight(&ns, &all_jobs);
    let agents = observe::agent_views(&ns, &stores.agents.state(), &all_jobs, &in_flight, now);
    let (mut jobs, recheck) = observe::workflow_jobs(&wf, &all_jobs, &pods, now);
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
        });
    }
    // One snapshot for both, as for the agents' load above.
    let all_workflows = shared.all_workflows();
    let admitted = shared.admitted_uids(&all_workflows);
    let live = shared.live();
    let slots = observe::slot_offer(
        &wf,
        &all_workflows,
        &admitted,
        live.max_concurrent_workflows,
    );
    let baselines = observe::baselines(&wf, &all_gates);
    let decide = |jobs: &BTreeMap<String, JobObservation>| {
        qms_engine::decide(&Observed {
            now,
            workflow: &wf,
            template: template.as_ref().map(|t| &t.spec),
            gates: &gates,
            agents: &agents,
            jobs,
            slot_available: slots.available,
            queue_place: slots.place,
            baselines: &baselines,
            config: &live.engine,
        })
    };
    let mut decision = decide(&jobs);
    crate::telemetry::record_correlation_id(
        &tracing::Span::current(),
        decision
            .status
            .correlation_id
            .as_deref()
            .unwrap_or_default(),
    );
    // A timeout deletes a Job the cache shows running; a lagging Job watch may not have delivered
    // its completion. Confirm with the API server first (rare: only at a deadline, so the decide
    // lock is held for it) and decide again if the Job did finish.
    let timing_out = observe::timeouts_to_confirm(&decision.actions, &jobs);
    if !timing_out.is_empty() && confirm_running(shared, &ns, &timing_out, &mut jobs, now).await? {
        decision = decide(&jobs);
    }

    let mut events = Vec::new();
    for action in &decision.actions {
        match action {
            EngineAction::CreateJob(task) => {
                act::create_job(shared, &wf, task, &agents).await?;
            }
            EngineAction::DeleteJob { job_name, reason } => {
                act::delete_job(shared, &ns, job_name, reason).await?;
            }
            EngineAction::Emit(ev) => events.push(ev),
        }
    }
    let current = operator_owned(wf.status.clone().unwrap_or_default());
    let new_status = operator_owned(decision.status.clone());
    let admits = observe::takes_slot(&wf, &decision.status);
    if admits {
        let admission = Admission {
            decided_on: wf.resource_version(),
            at: Instant::now(),
        };
        lock(&shared.admitted).insert(uid.clone(), admission);
    }
    drop(guard);

    if new_status != current {
        if let Err(e) = write_workflow_status(shared, &wf, &new_status).await {
            if admits {
                lock(&shared.admitted).remove(&uid);
            }
            return Err(e);
        }
        record_transition(shared, &wf, &current, &new_status);
        if decision.status.state == WorkflowState::Completed
            && current.state != WorkflowState::Completed
        {
            record::record_baselines(shared, &wf, &decision.status).await;
        }
    } else {
        shared
            .metrics
            .action(ActionKind::write_status, ActionOutcome::already_done);
    }
    let mut status_wf = (*wf).clone();
    status_wf.status = Some(decision.status.clone());
    record::emit(shared, &status_wf, &events).await;

    Ok(match observe::min_opt(decision.requeue_after, recheck) {
        Some(d) => Action::requeue(d.max(Duration::from_millis(50))),
        None => Action::await_change(),
    })
}

/// Deleting a workflow: delete its Jobs (listed from the API, so a Job the cache has not shown yet
/// is not missed). Safe to repeat; Jobs already gone are fine.
async fn cleanup(wf: Arc<QmsWorkflow>, ctx: &Ctx) -> Result<Action, Error> {
    let shared = &ctx.shared;
    let ns = wf.namespace().unwrap_or_default();
    let uid = wf.uid().unwrap_or_default();
    let api: Api<Job> = Api::namespaced(shared.client.clone(), &ns);
    let jobs = api
        .list(&ListParams::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY}")))
        .await?;
    let mut deleted = BTreeMap::new();
    for job in jobs.items.iter().filter(|j| owned_by(j, &uid)) {
        if job.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let name = job.name_any();
        let outcome = act::delete_job(shared, &ns, &name, "workflow deleted").await?;
        deleted.insert(name, outcome);
    }
    lock(&shared.expected_jobs).retain(|_, e| e.workflow_uid != uid);
    lock(&shared.stale_versions).remove(&uid);
    lock(&shared.admitted).remove(&uid);
    tracing::info!(workflow = %key(&wf), jobs = deleted.len(), "cleaned up");
    Ok(Action::await_change())
}
