//! Live configuration (spec §7.2): the `--config` file changed under a running operator on
//! kube-sim. A valid change applies without a restart; an invalid one is refused with the key
//! named while the last good configuration stays in force; Events and metrics say which.

use std::time::Duration;

use crate::common::*;
use kube::ResourceExt;
use qms_api::WorkflowState;
use qms_operator::config::{SettingsArgs, config_hash};

const POD: &str = "qms-operator-test";

fn config(name: &str, max: u32) -> String {
    format!(
        "orchestrator:\n  name: {name}\n  workflow_engine:\n    max_concurrent_workflows: {max}\n"
    )
}

fn metric(op: &qms_operator::OperatorHandle, series: &str) -> Option<f64> {
    op.metrics()
        .render()
        .lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

async fn wait_metric(op: &qms_operator::OperatorHandle, series: &str, want: f64) {
    let start = tokio::time::Instant::now();
    while metric(op, series) != Some(want) {
        assert!(
            start.elapsed() < DEADLINE,
            "{series} is {:?}, want {want}",
            metric(op, series)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The note of the event `reason` about the operator's Pod that contains `text`.
async fn wait_note(env: &Env, reason: &str, text: &str) -> String {
    let start = tokio::time::Instant::now();
    loop {
        let notes: Vec<String> = env
            .events(POD)
            .await
            .into_iter()
            .filter(|e| e.reason.as_deref() == Some(reason))
            .filter_map(|e| e.note)
            .collect();
        if let Some(n) = notes.iter().find(|n| n.contains(text)) {
            return n.clone();
        }
        assert!(
            start.elapsed() < DEADLINE,
            "no {reason} event containing {text:?} about {POD}; have {notes:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_config_file_applies_live_and_an_invalid_one_is_refused() {
    let env = Env::start().await;
    let dir = tempfile::tempdir().unwrap();
    let release = dir.path().join("release");
    // The agent's Jobs run until the test creates `release`: the first workflow holds the only
    // slot for as long as the test needs.
    // (and no timeout cuts that short however slow the machine).
    env.apply(
        &agent(
            "holder",
            5,
            &format!(
                "while [ ! -e '{}' ]; do sleep 0.1; done; {}",
                release.display(),
                result("success", "", 0)
            ),
        )
        .replace("defaultTimeout: 30s", "defaultTimeout: 600s"),
    )
    .await;
    env.apply(
        r#"apiVersion: qms.creo.dev/v1
kind: WorkflowTemplate
metadata:
  name: hold
spec:
  steps:
    - name: check
      type: parallel
      agents: [{name: holder}]
      timeout: 600s
      states: {pending: DOR_PENDING, failed: DOR_FAILED}
"#,
    )
    .await;

    let path = dir.path().join("config.yaml");
    std::fs::write(&path, config("first", 1)).unwrap();
    let args = SettingsArgs {
        config: Some(path.clone()),
        config_reload_interval: Some("200ms".into()),
        leader_elect: false,
        ..SettingsArgs::default()
    };
    let mut settings = qms_operator::Settings::load(&args).expect("config loads");
    settings.event_target = Some(k8s_openapi::api::core::v1::ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        namespace: Some(env.ns.clone()),
        name: Some(POD.into()),
        ..Default::default()
    });
    let op = env.operator(settings).await;
    assert_eq!(
        metric(&op, "qms_config_hash"),
        Some(config_hash(&config("first", 1)) as f64)
    );
    // Both reload series exist from start-up (0), so an alert on `rejected` increasing sees the
    // first rejection (`increase()` misses a series' first sample).
    for result in ["applied", "rejected"] {
        assert_eq!(
            metric(
                &op,
                &format!("qms_config_reloads_total{{result=\"{result}\"}}")
            ),
            Some(0.0),
            "{result}"
        );
    }

    env.apply(&workflow("first", "hold", "1111111")).await;
    env.wait_state("first", WorkflowState::DorPending).await;
    env.apply(&workflow("second", "hold", "2222222")).await;
    env.wait_for("second", "queued", |wf| wf.status.is_some())
        .await;
    assert_eq!(
        state_of(&env.get("second").await),
        WorkflowState::Initialized
    );

    // Invalid: refused with the key named, the old value stays in force.
    std::fs::write(
        &path,
        "orchestrator:\n  workflow_engine:\n    max_concurrent_workflows: 0\n",
    )
    .unwrap();
    let note = wait_note(&env, "ConfigRejected", "max_concurrent_workflows").await;
    assert!(
        note.contains("orchestrator.workflow_engine.max_concurrent_workflows")
            && note.contains("the last good configuration stays in force"),
        "{note}"
    );
    wait_metric(&op, "qms_config_reloads_total{result=\"rejected\"}", 1.0).await;
    assert_eq!(
        metric(&op, "qms_config_reloads_total{result=\"applied\"}"),
        Some(0.0)
    );
    assert_eq!(op.shared.live().max_concurrent_workflows, 1);
    assert_eq!(
        metric(&op, "qms_config_hash"),
        Some(config_hash(&config("first", 1)) as f64),
        "the hash is that of the configuration in force"
    );
    // An unknown key, likewise.
    std::fs::write(&path, "orchestrator:\n  event_bus: {type: redis}\n").unwrap();
    wait_note(&env, "ConfigRejected", "event_bus").await;
    wait_metric(&op, "qms_config_reloads_total{result=\"rejected\"}", 2.0).await;
    assert_eq!(
        state_of(&env.get("second").await),
        WorkflowState::Initialized
    );

    // Valid: two slots, the queued workflow starts while the first still holds its slot; the
    // renamed orchestrator is reported as restart-only.
    std::fs::write(&path, config("renamed", 2)).unwrap();
    env.wait_for("second", "started with the second slot", |wf| {
        state_of(wf) != WorkflowState::Initialized
    })
    .await;
    assert_eq!(
        state_of(&env.get("first").await),
        WorkflowState::DorPending,
        "the first workflow still holds its slot"
    );
    let note = wait_note(&env, "ConfigReloaded", "applied").await;
    assert!(
        note.contains("orchestrator.workflow_engine.max_concurrent_workflows"),
        "{note}"
    );
    let note = wait_note(&env, "ConfigRestartRequired", "orchestrator.name").await;
    assert_eq!(
        note,
        "key orchestrator.name changed: takes effect after a restart"
    );
    wait_metric(&op, "qms_config_reloads_total{result=\"applied\"}", 1.0).await;
    assert_eq!(
        metric(&op, "qms_config_hash"),
        Some(config_hash(&config("renamed", 2)) as f64)
    );
    assert!(metric(&op, "qms_config_last_reload_success_timestamp_seconds").unwrap() > 0.0);

    // Without an OTLP endpoint nothing carries a trace context.
    assert!(env.list_jobs().await.iter().all(|j| {
        !j.annotations()
            .contains_key(qms_operator::telemetry::ANNOTATION_TRACEPARENT)
    }));

    std::fs::write(&release, "").unwrap();
    env.wait_state("first", WorkflowState::Completed).await;
    env.wait_state("second", WorkflowState::Completed).await;
    op.stop().await;
}
