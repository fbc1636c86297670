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
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Config, Controller};
use kube::runtime::finalizer::{Event as FinalizerEvent, finalizer};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, Resource, ResourceExt};
use qms_api::{GateVerdict, QmsWorkflow, QmsWorkflowStatus, WorkflowState};
use qms_engine::{Action as EngineAction, JobObservation, JobPhase, Observed};

use crate::actions::{self, FIELD_MANAGER};
use crate::context::{Admission, EXPECTATION_TRUSTED, Scope, Shared, lock};
use crate::error::Error;
use crate::jobs::{JOB_NAME_LABEL, MANAGED_BY, MANAGED_BY_LABEL, owned_by};
use crate::metrics::{
    ActionKind, ActionOutcome, CacheGapKind, ControllerKind, GateLabels, WorkflowLabels,
};
use crate::observe;

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

fn key(wf: &QmsWorkflow) -> String {
    format!(
        "QmsWorkflow/{}/{}",
        wf.namespace().unwrap_or_default(),
        wf.name_any()
    )
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
    // Results submitted to the result endpoint by tasks whose Job has finished (API reads).
    let stored = {
        let mut known = stores.jobs.state();
        known.extend(read_jobs.iter().cloned());
        crate::results::stored_results(shared, &wf, &known).await?
    };

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
    crate::results::attach(&mut jobs, stored);
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
                actions::create_job(shared, &wf, task, &agents).await?;
            }
            EngineAction::DeleteJob { job_name, reason } => {
                actions::delete_job(shared, &ns, job_name, reason).await?;
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
        if let Err(e) = write_status(shared, &wf, &new_status).await {
            if admits {
                lock(&shared.admitted).remove(&uid);
            }
            return Err(e);
        }
        record_transition(shared, &wf, &current, &new_status);
        if decision.status.state == WorkflowState::Completed
            && current.state != WorkflowState::Completed
        {
            super::catalog::record_baselines(shared, &wf, &decision.status).await;
        }
    } else {
        shared
            .metrics
            .action(ActionKind::write_status, ActionOutcome::already_done);
    }
    let mut status_wf = (*wf).clone();
    status_wf.status = Some(decision.status.clone());
    actions::emit(shared, &status_wf, &events).await;

    Ok(match observe::min_opt(decision.requeue_after, recheck) {
        Some(d) => Action::requeue(d.max(Duration::from_millis(50))),
        None => Action::await_change(),
    })
}

/// Reads from the API server what the caches lack for a sound decision: the Jobs of running
/// tasks that the Job cache does not hold ([`observe::uncached_task_jobs`]), and the Pods of
/// finished Jobs whose result the Pod cache does not hold ([`observe::jobs_awaiting_pod_result`]).
/// A watch in backoff after API errors can lag for many seconds; deciding on it would declare a
/// Job lost or a result missing for a task that succeeded. An error fails the reconcile (retried
/// with backoff) instead.
async fn read_cache_gaps(
    shared: &Shared,
    wf: &QmsWorkflow,
    jobs: &[Arc<Job>],
    pods: &[Arc<Pod>],
    trusted: &[String],
) -> Result<(Vec<Arc<Job>>, Vec<Arc<Pod>>), Error> {
    let ns = wf.namespace().unwrap_or_default();
    let mut read_jobs = Vec::new();
    let uncached = observe::uncached_task_jobs(wf, jobs, trusted);
    if !uncached.is_empty() {
        let api: Api<Job> = Api::namespaced(shared.client.clone(), &ns);
        for name in &uncached {
            let job = api.get_opt(name).await?;
            shared.metrics.cache_gap_read(CacheGapKind::job);
            tracing::debug!(job = %name, found = job.is_some(), "read a Job the cache lacks");
            read_jobs.extend(job.map(Arc::new));
        }
    }
    let all_jobs: Vec<Arc<Job>> = jobs.iter().chain(&read_jobs).cloned().collect();
    let mut read_pods = Vec::new();
    let awaiting = observe::jobs_awaiting_pod_result(wf, &all_jobs, pods);
    for job in &awaiting {
        let pods = read_job_pods(shared, &ns, job).await?;
        shared.metrics.cache_gap_read(CacheGapKind::pods);
        tracing::debug!(%job, pods = pods.len(), "read the Pods of a finished Job the cache lacks");
        read_pods.extend(pods.into_iter().map(Arc::new));
    }
    Ok((read_jobs, read_pods))
}

/// The Pods of Job `job`, by the label the Job controller sets (ownership is checked by the caller).
async fn read_job_pods(shared: &Shared, ns: &str, job: &str) -> Result<Vec<Pod>, Error> {
    let api: Api<Pod> = Api::namespaced(shared.client.clone(), ns);
    let lp = ListParams::default().labels(&format!("{JOB_NAME_LABEL}={job}"));
    Ok(api.list(&lp).await?.items)
}

/// Reads the Jobs named in `names` (and, when finished, their Pods) from the API server and
/// replaces their observation in `jobs` when they are not running any more. True when one was.
async fn confirm_running(
    shared: &Shared,
    ns: &str,
    names: &[String],
    jobs: &mut BTreeMap<String, JobObservation>,
    now: chrono::DateTime<Utc>,
) -> Result<bool, Error> {
    let job_api: Api<Job> = Api::namespaced(shared.client.clone(), ns);
    let mut changed = false;
    for name in names {
        shared
            .metrics
            .cache_gap_read(CacheGapKind::job_before_timeout);
        let Some(job) = job_api.get_opt(name).await? else {
            continue;
        };
        if observe::job_phase(&job) == JobPhase::Active {
            continue;
        }
        let pods = read_job_pods(shared, ns, name).await?;
        let pods: Vec<&Pod> = pods
            .iter()
            .filter(|p| observe::pod_of_job(p, &job))
            .collect();
        let (obs, _) = observe::observe_job(&job, &pods, now);
        if obs.phase != JobPhase::Active {
            tracing::info!(job = %name, phase = ?obs.phase, "a Job due for a timeout had finished; the cache had not caught up");
            jobs.insert(name.clone(), obs);
            changed = true;
        }
    }
    Ok(changed)
}

/// The status without the fields qms-github owns (`checkRuns`, `dispatches`, field manager
/// `qms-github`). The engine starts from the cached status, so its decision carries them; applying
/// them as `qms-operator` would make us a co-owner that writes back stale check run ids and keeps
/// entries qms-github drops. Both are skipped when empty, so the apply leaves them alone.
fn operator_owned(mut status: QmsWorkflowStatus) -> QmsWorkflowStatus {
    status.check_runs.clear();
    status.dispatches.clear();
    status
}

/// One server-side apply of the whole status (but what qms-github owns, see [`operator_owned`]) on
/// the status subresource, field manager `qms-operator`, forced, with the resourceVersion we
/// decided on as precondition (a concurrent change answers 409 and we decide again instead of
/// overwriting newer facts).
async fn write_status(
    shared: &Shared,
    wf: &QmsWorkflow,
    status: &QmsWorkflowStatus,
) -> Result<(), Error> {
    let ns = wf.namespace().unwrap_or_default();
    let api: Api<QmsWorkflow> = Api::namespaced(shared.client.clone(), &ns);
    let mut metadata = serde_json::json!({ "name": wf.name_any() });
    if let Some(rv) = wf.resource_version() {
        metadata["resourceVersion"] = rv.into();
    }
    let body = serde_json::json!({
        "apiVersion": QmsWorkflow::api_version(&()),
        "kind": QmsWorkflow::kind(&()),
        "metadata": metadata,
        "status": status,
    });
    let pp = PatchParams::apply(FIELD_MANAGER).force();
    match api
        .patch_status(&wf.name_any(), &pp, &Patch::Apply(&body))
        .await
    {
        Ok(_) => {
            shared
                .metrics
                .action(ActionKind::write_status, ActionOutcome::done);
            if let Some(rv) = wf.resource_version() {
                lock(&shared.stale_versions).insert(wf.uid().unwrap_or_default(), rv);
            }
            Ok(())
        }
        Err(e) => {
            shared
                .metrics
                .action(ActionKind::write_status, ActionOutcome::failed);
            Err(e.into())
        }
    }
}

/// Metrics of a written transition: the final duration and the gate results newly decided.
fn record_transition(
    shared: &Shared,
    wf: &QmsWorkflow,
    old: &QmsWorkflowStatus,
    new: &QmsWorkflowStatus,
) {
    if old.state != new.state {
        tracing::info!(
            workflow = %key(wf),
            from = %old.state,
            to = %new.state,
            step = new.current_step.as_deref().unwrap_or("-"),
            run = new.run,
            "state changed"
        );
    }
    let same_run = old.run == new.run;
    if new.state.is_terminal() && (!same_run || old.state != new.state) {
        let parse = |s: &Option<String>| {
            s.as_deref()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.to_utc())
        };
        if let Some(start) = parse(&new.started_at) {
            let end = parse(&new.completed_at).unwrap_or_else(Utc::now);
            let secs = (end - start).num_milliseconds().max(0) as f64 / 1000.0;
            shared
                .metrics
                .workflow_duration
                .get_or_create(&WorkflowLabels {
                    workflow_type: wf.spec.template_ref.name.clone(),
                    status: new.state.as_str().to_owned(),
                })
                .observe(secs);
        }
    }
    for step in &new.steps {
        let old_step = old.steps.iter().find(|s| s.name == step.name && same_run);
        for gate in &step.gates {
            let before = old_step.and_then(|s| s.gates.iter().find(|g| g.name == gate.name));
            if before.map(|g| g.verdict) != Some(gate.verdict) {
                shared
                    .metrics
                    .gate_results
                    .get_or_create(&GateLabels {
                        gate_name: gate.name.clone(),
                        result: verdict_label(gate.verdict).to_owned(),
                    })
                    .inc();
            }
        }
    }
}

fn verdict_label(v: GateVerdict) -> &'static str {
    match v {
        GateVerdict::Passed => "passed",
        GateVerdict::Failed => "failed",
        GateVerdict::Warning => "warning",
        GateVerdict::Overridden => "overridden",
        GateVerdict::Error => "error",
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
        let outcome = actions::delete_job(shared, &ns, &name, "workflow deleted").await?;
        deleted.insert(name, outcome);
    }
    lock(&shared.expected_jobs).retain(|_, e| e.workflow_uid != uid);
    lock(&shared.stale_versions).remove(&uid);
    lock(&shared.admitted).remove(&uid);
    tracing::info!(workflow = %key(&wf), jobs = deleted.len(), "cleaned up");
    Ok(Action::await_change())
}
