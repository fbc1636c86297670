//! The QmsWorkflow controller (spec: Workflow Controller, State Manager, Agent Coordinator and
//! Quality Gate Processor, with the decisions themselves in `qms_engine::decide`).
//!
//! One reconcile: wait for the caches → finalizer → the pipeline in `apply`: observe
//! (`observe::gaps`, `observe::snapshot`) → decide (`decide`) → act (Jobs, `act`) → status (one
//! server-side apply, only when the status changed, `status`) → record (metrics, baselines,
//! events, `record`) → requeue exactly when the engine says something is due. GitHub check runs are not done here but by `controller::github`,
//! so GitHub never delays a decision; the status apply leaves the fields that one owns alone.
//! Deletion: `finalizer()` removes only `qms.creo.dev/cleanup`, after the Jobs are deleted.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::channel::mpsc::UnboundedReceiver;
use k8s_openapi::api::batch::v1::Job;
use kube::api::ListParams;
use kube::runtime::controller::{Action, Config, Controller};
use kube::runtime::finalizer::{Event as FinalizerEvent, finalizer};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, ResourceExt};
use qms_api::QmsWorkflow;

use super::backoff_delay;
use crate::act;
use crate::context::{Scope, Shared, lock};
use crate::error::Error;
use crate::jobs::{MANAGED_BY, MANAGED_BY_LABEL, owned_by};
use crate::metrics::ControllerKind;
use crate::observe;
use crate::observe::gaps;
use crate::record::{self, workflow_key as key};
use crate::{decide, status};

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
        F::AddFinalizer(e) | F::RemoveFinalizer(e) => Error::FinalizerWrite(e),
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

/// The pipeline of one workflow: observe → decide → act → status → record, in that order.
async fn apply(wf: Arc<QmsWorkflow>, ctx: &Ctx) -> Result<Action, Error> {
    let shared = &ctx.shared;
    if awaits_own_write(shared, &wf) {
        return Ok(Action::requeue(Duration::from_secs(2)));
    }
    // Observe: the lagging-watch reads first (API calls), then the caches, decided on and
    // reserved in one short critical section without API calls.
    let gaps = gaps::read(shared, &ctx.scope.stores, &wf).await?;
    let decided = decide::decide_and_reserve(shared, &ctx.scope, &wf, gaps).await?;
    let (obs, decision) = (&decided.observation, &decided.decision);
    let events = act::perform(shared, &wf, &obs.agents, &decision.actions).await?;
    let written = status::apply_workflow(shared, &wf, &decision.status, decided.admitted).await?;
    record::workflow(shared, &wf, written.as_ref(), &decision.status, &events).await;
    Ok(
        match observe::min_opt(decision.requeue_after, obs.recheck) {
            Some(d) => Action::requeue(d.max(Duration::from_millis(50))),
            None => Action::await_change(),
        },
    )
}

/// Our own last status write is not in the cache yet: deciding on the older status would only
/// redo (or undo) work. The watch event of the write triggers the next reconcile.
fn awaits_own_write(shared: &Shared, wf: &QmsWorkflow) -> bool {
    let uid = wf.uid().unwrap_or_default();
    let mut stale = lock(&shared.stale_versions);
    match stale.get(&uid) {
        Some(rv) if wf.resource_version().as_ref() == Some(rv) => true,
        // The cache moved past the version our last write was based on.
        Some(_) => {
            stale.remove(&uid);
            false
        }
        None => false,
    }
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
