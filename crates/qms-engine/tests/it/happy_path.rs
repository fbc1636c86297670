//! The standard template end to end: four steps, gates, approval.

use crate::support;

use qms_api::{Decision as Verdict, StepPhase, WorkflowState};
use qms_engine::EventType;
use support::*;

#[test]
fn standard_review_runs_to_completed() {
    let mut w = World::standard();
    let d = w.step_once();
    assert_eq!(w.state(), WorkflowState::DorPending);
    assert_eq!(creates(&d).len(), 1);
    assert_eq!(w.count_events(EventType::WorkflowStarted), 1);
    assert_eq!(w.status().run, 1);
    assert!(d.requeue_after.is_some());

    w.advance(5);
    w.pass_step("dor-validation");
    let d = w.step_once();
    assert_eq!(w.state(), WorkflowState::ProgressPending);
    assert_eq!(creates(&d).len(), 2, "parallel reviews start both agents");
    assert_eq!(w.step("dor-validation").phase, StepPhase::Succeeded);
    assert_eq!(w.count_events(EventType::GatePassed), 2);

    w.advance(5);
    w.pass_step("progress-reviews");
    w.step_once();
    assert_eq!(w.state(), WorkflowState::DodPending);

    w.advance(5);
    w.pass_step("dod-validation");
    w.step_once();
    assert_eq!(w.state(), WorkflowState::FinalPending);
    w.advance(5);
    w.pass_step("final-review");
    let d = w.step_once();
    assert_eq!(w.step("final-review").phase, StepPhase::WaitingForApproval);
    assert_fixed_point(&w, &d);

    w.advance(60);
    w.approve("final-review", Verdict::Approve, "alice");
    let d = w.step_once();
    assert_eq!(w.state(), WorkflowState::Completed);
    assert_eq!(d.requeue_after, None);
    assert_eq!(w.status().gates.as_deref(), Some("6/6"));
    assert!(w.step("final-review").message.contains("alice"));
    assert_eq!(w.count_events(EventType::WorkflowCompleted), 1);
    let last = w.status().history.last().cloned().expect("history");
    assert!(last.reason.contains("alice"), "{}", last.reason);
    assert_fixed_point(&w, &d);
}
