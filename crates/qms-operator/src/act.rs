//! Act stage: performing the engine's actions against the API server. Every action is idempotent:
//! creating a Job that exists (AlreadyExists) or deleting one that is gone (NotFound) counts as
//! done. Engine events are handed on to the record stage.

use std::collections::BTreeMap;
use std::time::Instant;

use k8s_openapi::api::batch::v1::Job;
use kube::api::{DeleteParams, PostParams};
use kube::{Api, ResourceExt};
use qms_api::{QmsWorkflow, QmsWorkflowStatus};
use qms_engine::{Action as EngineAction, AgentView, EngineEvent, TaskSpec};

use crate::context::{Admission, ExpectedJob, Shared, lock};
use crate::error::{Error, api_code};
use crate::jobs::{build_job, job_labels};
use crate::metrics::{ActionKind, ActionOutcome};

pub const FIELD_MANAGER: &str = "qms-operator";

/// Performs the Job actions of a decision in order, outside the decide lock (the places were
/// reserved by [`reserve`]), and returns the events for the record stage. The first failure fails
/// the reconcile and releases the reservations not used; the retry redoes the rest, idempotently.
pub async fn perform<'a>(
    shared: &Shared,
    wf: &QmsWorkflow,
    agents: &BTreeMap<String, AgentView>,
    actions: &'a [EngineAction],
) -> Result<Vec<&'a EngineEvent>, Error> {
    let ns = wf.namespace().unwrap_or_default();
    let mut events = Vec::new();
    for (i, action) in actions.iter().enumerate() {
        let done = match action {
            EngineAction::CreateJob(task) => create_job(shared, wf, task, agents).await.map(drop),
            EngineAction::DeleteJob { job_name, reason } => {
                delete_job(shared, &ns, job_name, reason).await.map(drop)
            }
            EngineAction::Emit(ev) => {
                events.push(ev);
                Ok(())
            }
        };
        if let Err(e) = done {
            release(shared, &ns, &actions[i..]);
            return Err(e);
        }
    }
    Ok(events)
}

/// Reserves the agents' places the decision's Jobs take: each Job to create is recorded as
/// expected before it is created (called under the decide lock, so the next decision counts it
/// against the agent's `loadCapacity`, see `Shared::in_flight`). A create that fails releases its
/// reservation ([`perform`]); one the cache shows is pruned by the next snapshot.
pub fn reserve(shared: &Shared, wf: &QmsWorkflow, actions: &[EngineAction]) {
    let ns = wf.namespace().unwrap_or_default();
    let uid = wf.uid().unwrap_or_default();
    let name = wf.name_any();
    let mut expected = lock(&shared.expected_jobs);
    for action in actions {
        if let EngineAction::CreateJob(task) = action {
            expected.insert(
                (ns.clone(), task.job_name.clone()),
                ExpectedJob {
                    namespace: ns.clone(),
                    workflow_uid: uid.clone(),
                    agent: task.agent.clone(),
                    labels: job_labels(task, &name),
                    at: Instant::now(),
                },
            );
        }
    }
}

/// Releases the reservations of the Jobs `actions` would have created (a failed reconcile: the
/// retry decides and reserves again).
fn release(shared: &Shared, namespace: &str, actions: &[EngineAction]) {
    let mut expected = lock(&shared.expected_jobs);
    for action in actions {
        if let EngineAction::CreateJob(task) = action {
            expected.remove(&(namespace.to_owned(), task.job_name.clone()));
        }
    }
}

/// Remembers that `decided` gives `wf` a slot until the cache shows the status write (so the next
/// decision of another workflow counts it as held). True when it does.
pub fn admit(shared: &Shared, wf: &QmsWorkflow, decided: &QmsWorkflowStatus) -> bool {
    let admits = crate::observe::takes_slot(wf, decided);
    if admits {
        let admission = Admission {
            decided_on: wf.resource_version(),
            at: Instant::now(),
        };
        lock(&shared.admitted).insert(wf.uid().unwrap_or_default(), admission);
    }
    admits
}

/// Creates the Job of `task`. AlreadyExists = already done (Tekton #4741).
pub async fn create_job(
    shared: &Shared,
    workflow: &QmsWorkflow,
    task: &TaskSpec,
    agents: &BTreeMap<String, AgentView>,
) -> Result<ActionOutcome, Error> {
    let agent = agents.get(&task.agent).ok_or_else(|| Error::MissingAgent {
        agent: task.agent.clone(),
        job: task.job_name.clone(),
    })?;
    let mut job = build_job(
        task,
        workflow,
        &agent.spec,
        &shared.settings.engine.payload_env,
    )
    .map_err(|e| Error::BuildJob {
        job: task.job_name.clone(),
        message: e.to_string(),
    })?;
    // The Job continues the reconcile's trace (spec §5.3); only when traces are exported.
    let span = tracing::info_span!("create job", job = %task.job_name, agent = %task.agent);
    if let Some(tp) = span.in_scope(crate::telemetry::current_traceparent) {
        job.metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(crate::telemetry::ANNOTATION_TRACEPARENT.to_owned(), tp);
    }
    // The result endpoint's URL and the task's token Secret (when the endpoint is served).
    crate::results::prepare_job(shared, workflow, &mut job).await?;
    let ns = workflow.namespace().unwrap_or_default();
    let api: Api<Job> = Api::namespaced(shared.client.clone(), &ns);
    let pp = PostParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..PostParams::default()
    };
    let outcome = match tracing::Instrument::instrument(api.create(&pp, &job), span).await {
        Ok(_) => ActionOutcome::done,
        Err(e) if api_code(&e) == Some(409) => ActionOutcome::already_done,
        Err(e) => {
            shared
                .metrics
                .action(ActionKind::create_job, ActionOutcome::failed);
            return Err(e.into());
        }
    };
    shared.metrics.action(ActionKind::create_job, outcome);
    tracing::info!(job = %task.job_name, agent = %task.agent, step = %task.step, attempt = task.attempt, ?outcome, "created Job");
    lock(&shared.expected_jobs).insert(
        (ns.clone(), task.job_name.clone()),
        ExpectedJob {
            namespace: ns,
            workflow_uid: workflow.uid().unwrap_or_default(),
            agent: task.agent.clone(),
            labels: job.metadata.labels.clone().unwrap_or_default(),
            at: Instant::now(),
        },
    );
    Ok(outcome)
}

/// Deletes a Job (Background propagation: its Pods are garbage-collected). NotFound = done.
pub async fn delete_job(
    shared: &Shared,
    namespace: &str,
    job_name: &str,
    reason: &str,
) -> Result<ActionOutcome, Error> {
    let api: Api<Job> = Api::namespaced(shared.client.clone(), namespace);
    let outcome = match api.delete(job_name, &DeleteParams::background()).await {
        Ok(_) => ActionOutcome::done,
        Err(e) if api_code(&e) == Some(404) => ActionOutcome::already_done,
        Err(e) => {
            shared
                .metrics
                .action(ActionKind::delete_job, ActionOutcome::failed);
            return Err(e.into());
        }
    };
    lock(&shared.expected_jobs).remove(&(namespace.to_owned(), job_name.to_owned()));
    shared.metrics.action(ActionKind::delete_job, outcome);
    tracing::info!(job = %job_name, %reason, ?outcome, "deleted Job");
    Ok(outcome)
}
