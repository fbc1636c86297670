//! A result submitted to the result endpoint (stored by the operator, its summary on the Job's
//! observation) is the task's result, whatever the termination message says; a stored failure
//! fails the task and a stored result never lets a gate pass on a metric it lacks.

use crate::support::*;
use qms_api::{TaskPhase, TaskResultSummary, WorkflowState};
use qms_engine::JobPhase;

fn stored(status: &str, metrics: &[(&str, f64)]) -> TaskResultSummary {
    TaskResultSummary {
        status: status.into(),
        summary: "300 findings".into(),
        metrics: metrics.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect(),
        annotations: 300,
        result_config_map: Some("qms-result-x".into()),
        ..TaskResultSummary::default()
    }
}

fn finish_dor_with(w: &mut World, summary: TaskResultSummary, message: Option<&str>) -> String {
    let job = w.active_jobs("dor-validation").pop().expect("a DoR job");
    w.finish_job(&job, JobPhase::Succeeded, message.map(str::to_owned));
    w.jobs.get_mut(&job).unwrap().stored_result = Some(summary);
    job
}

#[test]
fn a_stored_result_is_the_task_result() {
    let mut w = World::standard();
    w.step_once();
    w.advance(5);
    // The termination message is empty (the agent used the endpoint).
    let summary = stored(
        "success",
        &[
            ("basic_checks_passed", 1.0),
            ("critical_vulnerabilities", 0.0),
        ],
    );
    finish_dor_with(&mut w, summary.clone(), None);
    w.step_once();
    assert_eq!(w.state(), WorkflowState::ProgressPending);
    let t = &w.step("dor-validation").tasks[0];
    assert_eq!(t.phase, TaskPhase::Succeeded);
    assert_eq!(t.result.as_ref(), Some(&summary));
    assert_eq!(t.message, "300 findings");
}

#[test]
fn a_stored_failure_or_a_missing_metric_never_passes() {
    let mut w = World::standard();
    w.step_once();
    w.advance(5);
    // A good-looking termination message does not override the stored failure.
    finish_dor_with(
        &mut w,
        stored(
            "failure",
            &[
                ("basic_checks_passed", 1.0),
                ("critical_vulnerabilities", 0.0),
            ],
        ),
        Some(
            r#"{"status":"success","metrics":{"basic_checks_passed":1,"critical_vulnerabilities":0}}"#,
        ),
    );
    w.step_once();
    let t = &w.step("dor-validation").tasks[0];
    assert_eq!(t.phase, TaskPhase::Failed);
    assert!(
        t.message.starts_with("agent reported failure"),
        "{}",
        t.message
    );
    assert_ne!(w.state(), WorkflowState::ProgressPending);

    let mut w = World::standard();
    w.step_once();
    w.advance(5);
    finish_dor_with(
        &mut w,
        stored("success", &[("basic_checks_passed", 1.0)]),
        None,
    );
    w.step_once();
    assert_eq!(
        w.step("dor-validation").tasks[0].phase,
        TaskPhase::Succeeded
    );
    assert_ne!(
        w.state(),
        WorkflowState::ProgressPending,
        "critical_vulnerabilities is missing: its gate cannot pass"
    );
}
