//! `qms_agent_healthy{agent}` (what the QmsAgentUnavailable alert reads) follows the health the
//! operator decides task placement by: an agent whose failed tasks reach its health policy's
//! `failureThreshold` is exported as 0 while its `Healthy` condition is False; a sound one is 1.

use crate::common::*;
use qms_api::{Agent, ConditionStatus};

fn healthy_gauge(op: &qms_operator::OperatorHandle, agent: &str) -> Option<i64> {
    let text = qms_operator::http::render_metrics(&op.shared);
    let series = format!("qms_agent_healthy{{agent=\"{agent}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&series)?.trim().parse().ok())
}

fn one_step(name: &str, agent: &str) -> String {
    format!(
        r#"apiVersion: qms.creo.dev/v1
kind: WorkflowTemplate
metadata:
  name: {name}
spec:
  steps:
    - name: check
      type: parallel
      agents: [{{name: {agent}}}]
      timeout: 60s
      states: {{pending: DOR_PENDING, failed: DOR_FAILED}}
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_whose_failures_reach_its_threshold_is_exported_unhealthy() {
    let env = Env::start().await;
    env.apply(
        &agent("flaky", 5, &result("failure", "", 1))
            .replace("failureThreshold: 100", "failureThreshold: 1"),
    )
    .await;
    env.apply(&agent("steady", 5, &result("success", "", 0)))
        .await;
    env.apply(&one_step("t-flaky", "flaky")).await;
    env.apply(&one_step("t-steady", "steady")).await;
    let op = env.operator(env.settings()).await;

    // Before any task: both take tasks.
    let start = tokio::time::Instant::now();
    while healthy_gauge(&op, "flaky") != Some(1) || healthy_gauge(&op, "steady") != Some(1) {
        assert!(start.elapsed() < DEADLINE, "agents not exported as healthy");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    env.apply(&workflow("wf-flaky", "t-flaky", "1111111")).await;
    env.apply(&workflow("wf-steady", "t-steady", "2222222"))
        .await;
    env.wait_state("wf-steady", qms_api::WorkflowState::Completed)
        .await;
    env.wait_for("wf-flaky", "its task failed", |wf| {
        wf.status.as_ref().is_some_and(|s| {
            s.steps
                .iter()
                .flat_map(|st| st.tasks.iter())
                .any(|t| t.phase == qms_api::TaskPhase::Failed)
        })
    })
    .await;

    let agents: kube::Api<Agent> = kube::Api::namespaced(env.client.clone(), &env.ns);
    let start = tokio::time::Instant::now();
    loop {
        let condition = agents
            .get("flaky")
            .await
            .ok()
            .and_then(|a| a.status)
            .and_then(|s| qms_api::Condition::find(&s.conditions, "Healthy").cloned());
        let gauge = healthy_gauge(&op, "flaky");
        if gauge == Some(0)
            && condition
                .as_ref()
                .is_some_and(|c| c.status == ConditionStatus::False)
        {
            break;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "flaky: gauge {gauge:?}, Healthy condition {condition:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(healthy_gauge(&op, "steady"), Some(1));
    op.stop().await;
}
