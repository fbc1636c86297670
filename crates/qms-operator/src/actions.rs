//! Performing the engine's actions against the API server. Every action is idempotent: creating a
//! Job that exists (AlreadyExists) or deleting one that is gone (NotFound) counts as done.

use std::collections::BTreeMap;
use std::time::Instant;

use k8s_openapi::api::batch::v1::Job;
use kube::api::{DeleteParams, PostParams};
use kube::runtime::events::{Event as KubeEvent, EventType as KubeEventType};
use kube::{Api, Resource, ResourceExt};
use qms_api::QmsWorkflow;
use qms_engine::{AgentView, EngineEvent, TaskSpec};

use crate::context::{ExpectedJob, Shared, lock};
use crate::error::{Error, api_code};
use crate::jobs::build_job;
use crate::metrics::{ActionKind, ActionOutcome};

pub const FIELD_MANAGER: &str = "qms-operator";

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

/// The Kubernetes Event for an engine event: reason as given, the action is the spec's event type
/// (`gate.passed`), and the note carries the message, the event type and the correlation id.
pub fn kube_event(ev: &EngineEvent, correlation_id: Option<&str>) -> KubeEvent {
    let mut note = format!(
        "{} [{} correlation_id={}]",
        ev.message,
        ev.event_type.as_str(),
        correlation_id.unwrap_or("-")
    );
    truncate_utf8(&mut note, 1000);
    let mut reason = ev.reason.clone();
    truncate_utf8(&mut reason, 128);
    KubeEvent {
        type_: if ev.warning {
            KubeEventType::Warning
        } else {
            KubeEventType::Normal
        },
        reason,
        note: Some(note),
        action: event_action(ev),
        secondary: None,
    }
}

/// kube's `Recorder` folds events with the same (type, reason, action, object) into one series
/// that keeps the first note, so six different gates passing would show as one "GatePassed x6"
/// with the first gate's message. The action therefore names what the event is about — the
/// spec's event type, its subject (gate, task or step) and the run — so each stays its own event
/// while a true repeat (the same thing again) still folds.
fn event_action(ev: &EngineEvent) -> String {
    let p = &ev.payload;
    let subject = ["gate_name", "task_id", "step"]
        .iter()
        .find_map(|k| p.get(*k).and_then(serde_json::Value::as_str));
    let mut action = ev.event_type.as_str().to_owned();
    if let Some(subject) = subject {
        action.push(' ');
        action.push_str(subject);
    }
    if let Some(run) = p.get("run").and_then(serde_json::Value::as_u64) {
        action.push_str(&format!(" run {run}"));
    }
    // The API limits `action` to 128 characters.
    truncate_utf8(&mut action, 128);
    action
}

fn truncate_utf8(s: &mut String, max: usize) {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
}

/// Publishes engine events. Events are best effort: a failure is logged and counted, never fails
/// the reconcile (the transition itself is recorded in `.status.history`).
pub async fn emit(shared: &Shared, workflow: &QmsWorkflow, events: &[&EngineEvent]) {
    if events.is_empty() {
        return;
    }
    let reference = workflow.object_ref(&());
    let correlation = workflow
        .status
        .as_ref()
        .and_then(|s| s.correlation_id.clone());
    for ev in events {
        tracing::info!(
            event_type = ev.event_type.as_str(),
            reason = %ev.reason,
            correlation_id = correlation.as_deref().unwrap_or("-"),
            payload = %ev.payload,
            "{}", ev.message
        );
        let k = kube_event(ev, correlation.as_deref());
        match shared.recorder.publish(&k, &reference).await {
            Ok(()) => shared
                .metrics
                .action(ActionKind::emit_event, ActionOutcome::done),
            Err(e) => {
                shared
                    .metrics
                    .action(ActionKind::emit_event, ActionOutcome::failed);
                tracing::warn!(error = %e, reason = %ev.reason, "could not record event");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use qms_engine::EventType;

    #[test]
    fn event_carries_type_and_correlation_id() {
        let ev = EngineEvent {
            event_type: EventType::GatePassed,
            reason: "GatePassed".into(),
            message: "gate code-coverage passed: 85.2 >= 80".into(),
            warning: false,
            payload: serde_json::json!({}),
        };
        let k = kube_event(&ev, Some("corr-1"));
        assert_eq!(k.reason, "GatePassed");
        assert!(k.action.starts_with("gate.passed"), "{}", k.action);
        let note = k.note.unwrap();
        assert!(
            note.contains("gate.passed") && note.contains("correlation_id=corr-1"),
            "{note}"
        );
        assert_eq!(k.type_, KubeEventType::Normal);
    }

    #[test]
    fn long_messages_are_cut_on_a_char_boundary() {
        let ev = EngineEvent {
            event_type: EventType::ErrorOccurred,
            reason: "X".repeat(200),
            message: "é".repeat(2000),
            warning: true,
            payload: serde_json::json!({}),
        };
        let k = kube_event(&ev, None);
        assert!(k.note.unwrap().len() <= 1000);
        assert_eq!(k.reason.len(), 128);
        assert_eq!(k.type_, KubeEventType::Warning);
    }
}
