//! Record stage: what a reconcile leaves behind besides the status — Kubernetes Events for the
//! engine's events, metrics of written transitions (durations, gate results), and the baselines of
//! a completed run (handed to the QualityGate controller). Best effort: nothing here fails a
//! reconcile.

use chrono::Utc;
use kube::runtime::events::{Event as KubeEvent, EventType as KubeEventType};
use kube::{Resource, ResourceExt};
use qms_api::{GateVerdict, QmsWorkflow, QmsWorkflowStatus};
use qms_engine::EngineEvent;

use crate::context::Shared;
use crate::metrics::{ActionKind, ActionOutcome, GateLabels, WorkflowLabels};
use crate::status::Written;

/// How a workflow is named in logs and backoff keys.
pub fn workflow_key(wf: &QmsWorkflow) -> String {
    format!(
        "QmsWorkflow/{}/{}",
        wf.namespace().unwrap_or_default(),
        wf.name_any()
    )
}

/// The record stage of a workflow reconcile: metrics of a written transition, then the engine's
/// events (baselines are recorded from merged pull requests by qms-github, not here) (against the decided status, so they carry
/// its correlation id).
pub async fn workflow(
    shared: &Shared,
    wf: &QmsWorkflow,
    written: Option<&Written>,
    decided: &QmsWorkflowStatus,
    events: &[&EngineEvent],
) {
    if let Some(w) = written {
        record_transition(shared, wf, &w.before, &w.after);
    }
    let mut status_wf = wf.clone();
    status_wf.status = Some(decided.clone());
    emit(shared, &status_wf, events).await;
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

/// Metrics of a written transition: the final duration and the gate results newly decided.
pub fn record_transition(
    shared: &Shared,
    wf: &QmsWorkflow,
    old: &QmsWorkflowStatus,
    new: &QmsWorkflowStatus,
) {
    if old.state != new.state {
        tracing::info!(
            workflow = %workflow_key(wf),
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
