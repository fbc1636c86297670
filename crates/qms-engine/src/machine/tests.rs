//! Transition tests of the state machine, one behaviour each.

#[path = "../../tests/it/support.rs"]
mod support;

use std::time::Duration;

use qms_api::{
    Condition, ConditionStatus, Decision as Verdict, GateVerdict, Override, RetryPolicy,
    RetryRequest, StepPhase, StepStates, TaskPhase, WorkflowState,
};
use support::*;

use crate::{Action, EventType, JobPhase};

fn cond(w: &World, t: &str) -> Option<ConditionStatus> {
    Condition::find(&w.status().conditions, t).map(|c| c.status)
}

fn deletes(d: &crate::Decision) -> Vec<String> {
    d.actions
        .iter()
        .filter_map(|a| match a {
            Action::DeleteJob { job_name, .. } => Some(job_name.clone()),
            _ => None,
        })
        .collect()
}

/// Runs the standard template up to the manual step waiting for approval.
fn to_final_review(w: &mut World) {
    w.step_once();
    for s in [
        "dor-validation",
        "progress-reviews",
        "dod-validation",
        "final-review",
    ] {
        w.advance(5);
        w.pass_step(s);
        w.step_once();
    }
    assert_eq!(w.step("final-review").phase, StepPhase::WaitingForApproval);
}

#[test]
fn positional_state_mapping() {
    use super::states_by_position as m;
    use WorkflowState::*;
    assert_eq!(m(0, 1), (DorPending, DorFailed));
    assert_eq!(m(0, 2), (DorPending, DorFailed));
    assert_eq!(m(1, 2), (FinalPending, FinalRejected));
    assert_eq!(m(1, 3), (ProgressPending, ProgressBlocked));
    assert_eq!(m(2, 3), (FinalPending, FinalRejected));
    assert_eq!(m(2, 4), (DodPending, DodFailed));
    assert_eq!(m(3, 4), (FinalPending, FinalRejected));
    assert_eq!(m(4, 6), (FinalPending, FinalRejected));
}

#[test]
fn explicit_step_states_win_over_position() {
    let mut w = World::standard();
    w.template.as_mut().unwrap().steps[0].states = Some(StepStates {
        pending: WorkflowState::DodPending,
        failed: WorkflowState::DodFailed,
    });
    w.step_once();
    assert_eq!(w.state(), WorkflowState::DodPending);
}

#[test]
fn waits_in_initialized_without_a_slot_then_starts_and_keeps_it() {
    let mut w = World::standard();
    w.slot_available = false;
    let d = w.step_once();
    assert_eq!(w.state(), WorkflowState::Initialized);
    assert!(creates(&d).is_empty());
    assert_eq!(cond(&w, "Queued"), Some(ConditionStatus::True));
    assert_eq!(d.requeue_after, Some(super::WAIT_POLL));
    assert_fixed_point(&w, &d);
    w.slot_available = true;
    let d = w.step_once();
    assert_eq!(w.state(), WorkflowState::DorPending);
    assert_eq!(creates(&d).len(), 1);
    assert_eq!(cond(&w, "Queued"), Some(ConditionStatus::False));
    // Once started it keeps its slot even if the operator says none is free.
    w.slot_available = false;
    w.advance(5);
    w.pass_step("dor-validation");
    w.step_once();
    assert_eq!(w.state(), WorkflowState::ProgressPending);
}

#[test]
fn missing_template_is_error_and_retry_recovers() {
    let mut w = World::standard();
    let template = w.template.take();
    let d = w.step_once();
    assert_eq!(w.state(), WorkflowState::Error);
    assert_eq!(w.count_events(EventType::ErrorOccurred), 1);
    assert_eq!(cond(&w, "Failed"), Some(ConditionStatus::True));
    assert_fixed_point(&w, &d);
    w.template = template;
    w.step_once();
    assert_eq!(
        w.state(),
        WorkflowState::Error,
        "ERROR is left only by a retry or a new SHA"
    );
    w.wf.spec.retry = Some(RetryRequest {
        id: "r1".into(),
        step: None,
        by: Some("bob".into()),
    });
    let d = w.step_once();
    assert_eq!(w.state(), WorkflowState::DorPending);
    assert_eq!(w.status().run, 2);
    assert_eq!(creates(&d).len(), 1);
}

#[test]
fn invalid_templates_are_error_with_a_reason() {
    type Breaker = Box<dyn Fn(&mut World)>;
    let cases: Vec<(&str, Breaker)> = vec![
        (
            "unknown step",
            Box::new(|w| {
                w.template.as_mut().unwrap().steps[1].condition = Some("nope.success".into())
            }),
        ),
        (
            "not earlier",
            Box::new(|w| {
                w.template.as_mut().unwrap().steps[1].condition =
                    Some("final-review.success".into())
            }),
        ),
        (
            "no Agent",
            Box::new(|w| {
                w.agents.remove("qms-code-reviewer");
            }),
        ),
        (
            "needs at least one agent",
            Box::new(|w| w.template.as_mut().unwrap().steps[0].agents.clear()),
        ),
    ];
    for (why, break_it) in cases {
        let mut w = World::standard();
        break_it(&mut w);
        let d = w.step_once();
        assert_eq!(w.state(), WorkflowState::Error, "{why}");
        assert!(creates(&d).is_empty(), "{why}");
        let msg = w.status().history.last().unwrap().reason.clone();
        assert!(msg.contains(why), "{why}: {msg}");
    }
}

#[test]
fn failing_gate_retries_with_backoff_then_fails_with_escalation() {
    let mut w = World::standard();
    w.template.as_mut().unwrap().steps[0].retry_policy = Some(RetryPolicy {
        max_attempts: 2,
        jitter: 0.0,
        ..RetryPolicy::default()
    });
    w.template.as_mut().unwrap().steps[0].escalation = Some(qms_api::Escalation {
        enabled: true,
        after: None,
    });
    w.step_once();
    let first = w.active_jobs("dor-validation");
    w.advance(5);
    w.finish_job(
        &first[0],
        JobPhase::Succeeded,
        Some(result_json(
            true,
            &[
                ("basic_checks_passed", 1.0),
                ("critical_vulnerabilities", 3.0),
            ],
        )),
    );
    let d = w.step_once();
    let s = w.step("dor-validation");
    assert_eq!(s.phase, StepPhase::Backoff);
    assert_eq!(
        s.gates
            .iter()
            .find(|g| g.name == "security-scan")
            .unwrap()
            .verdict,
        GateVerdict::Failed
    );
    assert_eq!(
        d.requeue_after,
        Some(Duration::from_secs(10)),
        "initial delay without jitter"
    );
    assert_eq!(w.state(), WorkflowState::DorPending);
    assert_fixed_point(&w, &d);
    w.advance(10);
    let d = w.step_once();
    let new = creates(&d);
    assert_eq!(new.len(), 1);
    assert_eq!(new[0].attempt, 2);
    assert_ne!(new[0].job_name, first[0]);
    w.advance(5);
    w.finish_job(
        &new[0].job_name.clone(),
        JobPhase::Succeeded,
        Some(result_json(
            true,
            &[
                ("basic_checks_passed", 1.0),
                ("critical_vulnerabilities", 3.0),
            ],
        )),
    );
    let d = w.step_once();
    assert_eq!(w.state(), WorkflowState::DorFailed);
    assert_eq!(w.step("progress-reviews").phase, StepPhase::Skipped);
    assert!(w.step("dor-validation").escalated);
    assert_eq!(cond(&w, "Escalated"), Some(ConditionStatus::True));
    assert!(emits(&d).iter().any(|(_, r)| r == "StepEscalated"));
    assert_eq!(d.requeue_after, None);
    assert_fixed_point(&w, &d);
}

#[test]
fn step_timeout_is_enforced_by_the_engine() {
    let mut w = World::standard();
    let d = w.step_once();
    assert_eq!(creates(&d)[0].timeout, Duration::from_secs(300));
    assert_eq!(
        d.requeue_after,
        Some(Duration::from_secs(30)),
        "lost-Job grace comes first"
    );
    w.advance(299);
    let d = w.step_once();
    assert_eq!(w.step("dor-validation").phase, StepPhase::Running);
    assert_eq!(d.requeue_after, Some(Duration::from_secs(1)));
    w.advance(1);
    let job = w.active_jobs("dor-validation")[0].clone();
    let d = w.step_once();
    assert!(deletes(&d).contains(&job));
    let s = w.step("dor-validation");
    assert_eq!(
        s.phase,
        StepPhase::Backoff,
        "the seed's dor step has a retry policy"
    );
    assert_eq!(s.tasks[0].phase, TaskPhase::TimedOut);
}

#[test]
fn agent_timeout_caps_the_task() {
    let mut w = World::standard();
    w.agents
        .get_mut("qms-dor-validator")
        .unwrap()
        .spec
        .default_timeout = Some(dur("60s"));
    let d = w.step_once();
    assert_eq!(creates(&d)[0].timeout, Duration::from_secs(60));
    w.advance(60);
    let d = w.step_once();
    assert_eq!(deletes(&d).len(), 1);
    assert_eq!(w.step("dor-validation").tasks[0].phase, TaskPhase::TimedOut);
}

#[test]
fn a_vanished_job_is_lost_after_the_grace_period() {
    let mut w = World::standard();
    w.step_once();
    let job = w.active_jobs("dor-validation")[0].clone();
    w.jobs.remove(&job);
    w.advance(10);
    let d = w.step_once();
    assert_eq!(
        w.step("dor-validation").tasks[0].phase,
        TaskPhase::Running,
        "cache may lag"
    );
    assert!(creates(&d).is_empty());
    w.advance(20);
    w.step_once();
    let s = w.step("dor-validation");
    assert_eq!(s.tasks[0].phase, TaskPhase::Failed);
    assert!(s.tasks[0].message.contains("JobLost"));
    assert_eq!(s.phase, StepPhase::Backoff);
}

#[test]
fn unreadable_results_fail_the_task_with_the_reason() {
    for (message, expect) in [
        (None, "agent wrote no result"),
        (
            Some(r#"{"status":"success","metrics":{"test_coverage":"abc"}}"#.to_owned()),
            "metrics.test_coverage: expected a number",
        ),
    ] {
        let mut w = World::standard();
        w.template.as_mut().unwrap().steps[0].retry_policy = None;
        w.step_once();
        let job = w.active_jobs("dor-validation")[0].clone();
        w.finish_job(&job, JobPhase::Succeeded, message);
        w.step_once();
        let t = &w.step("dor-validation").tasks[0];
        assert_eq!(t.phase, TaskPhase::Failed);
        assert!(t.message.contains(expect), "{}", t.message);
        assert_eq!(w.state(), WorkflowState::DorFailed);
        let gates = w.step("dor-validation").gates;
        assert!(
            gates.iter().all(|g| g.verdict == GateVerdict::Error),
            "crashed agent: fail closed"
        );
    }
}

#[test]
fn rejection_fails_final_review_and_stale_or_foreign_decisions_do_not_count() {
    let mut w = World::standard();
    to_final_review(&mut w);
    w.approve("final-review", Verdict::Approve, "mallory");
    w.wf.spec.approvals[0].sha = SHA2.into();
    w.approve("dod-validation", Verdict::Approve, "mallory");
    w.step_once();
    assert_eq!(w.step("final-review").phase, StepPhase::WaitingForApproval);
    // Same time: the rejection wins.
    w.approve("final-review", Verdict::Approve, "alice");
    w.approve("final-review", Verdict::Reject, "bob");
    let d = w.step_once();
    assert_eq!(w.state(), WorkflowState::FinalRejected);
    assert!(w.step("final-review").message.contains("bob"));
    assert!(
        !w.step("final-review").escalated,
        "a rejection is a decision, not an escalation"
    );
    assert_fixed_point(&w, &d);
}

#[test]
fn latest_decision_wins() {
    let mut w = World::standard();
    to_final_review(&mut w);
    w.approve("final-review", Verdict::Reject, "bob");
    w.advance(1);
    w.approve("final-review", Verdict::Approve, "alice");
    w.step_once();
    assert_eq!(w.state(), WorkflowState::Completed);
}

#[test]
fn manual_step_escalates_once_then_times_out() {
    let mut w = World::standard();
    to_final_review(&mut w);
    let d = w.decide();
    assert_eq!(d.requeue_after, Some(Duration::from_secs(1800)));
    w.advance(1800);
    let d = w.step_once();
    assert_eq!(
        emits(&d)
            .iter()
            .filter(|(_, r)| r == "StepEscalated")
            .count(),
        1
    );
    assert_eq!(w.step("final-review").phase, StepPhase::WaitingForApproval);
    assert_eq!(cond(&w, "Escalated"), Some(ConditionStatus::True));
    assert_fixed_point(&w, &d);
    // The step timeout counts from the step's start (5 s before the agents finished).
    assert_eq!(d.requeue_after, Some(Duration::from_secs(3600 - 1800 - 5)));
    w.advance(3600);
    let d = w.step_once();
    assert_eq!(w.state(), WorkflowState::FinalRejected);
    assert!(
        w.step("final-review")
            .message
            .starts_with("ApprovalTimeout")
    );
    assert!(
        emits(&d).iter().all(|(_, r)| r != "StepEscalated"),
        "escalated once only"
    );
}

#[test]
fn undecided_gate_escalates_once_at_its_threshold_and_the_step_keeps_running() {
    let mut w = World::standard();
    w.gates.get_mut("code-coverage").unwrap().escalation = Some(qms_api::GateEscalation {
        enabled: true,
        threshold: Some(dur("300s")),
    });
    w.step_once();
    w.advance(5);
    w.pass_step("dor-validation");
    w.step_once();
    assert_eq!(w.step("progress-reviews").phase, StepPhase::Running);
    let d = w.decide();
    assert_eq!(
        d.requeue_after,
        Some(Duration::from_secs(300)),
        "due exactly then"
    );
    let escalations = |d: &crate::Decision| {
        emits(d)
            .iter()
            .filter(|(_, r)| r == "GateEscalated")
            .count()
    };
    w.advance(299);
    let d = w.step_once();
    assert_eq!(escalations(&d), 0);
    assert_eq!(cond(&w, "Escalated"), Some(ConditionStatus::False));
    w.advance(1);
    let d = w.step_once();
    assert_eq!(escalations(&d), 1);
    assert_eq!(cond(&w, "Escalated"), Some(ConditionStatus::True));
    assert_eq!(
        w.state(),
        WorkflowState::ProgressPending,
        "escalation alone fails nothing"
    );
    assert_eq!(w.step("progress-reviews").phase, StepPhase::Running);
    assert_fixed_point(&w, &d);
    w.advance(60);
    let d = w.step_once();
    assert_eq!(escalations(&d), 0, "once per step run");
    w.pass_step("progress-reviews");
    w.step_once();
    assert_eq!(w.state(), WorkflowState::DodPending);

    // Without a threshold the configured default applies; disabled: never.
    for (esc, escalates) in [
        (
            qms_api::GateEscalation {
                enabled: true,
                threshold: None,
            },
            true,
        ),
        (
            qms_api::GateEscalation {
                enabled: false,
                threshold: Some(dur("300s")),
            },
            false,
        ),
    ] {
        let mut w = World::standard();
        w.config.gate_escalation_threshold = Duration::from_secs(600);
        w.gates.get_mut("code-coverage").unwrap().escalation = Some(esc);
        w.step_once();
        w.advance(5);
        w.pass_step("dor-validation");
        w.step_once();
        w.advance(599);
        assert_eq!(escalations(&w.step_once()), 0);
        w.advance(1);
        let d = w.step_once();
        assert_eq!(escalations(&d), usize::from(escalates), "{escalates}");
    }
}

#[test]
fn new_head_sha_cancels_and_restarts() {
    let mut w = World::standard();
    w.step_once();
    w.advance(5);
    w.pass_step("dor-validation");
    w.step_once();
    let running = w.active_jobs("progress-reviews");
    assert_eq!(running.len(), 2);
    w.wf.spec.head_sha = SHA2.into();
    w.advance(1);
    let d = w.step_once();
    for j in &running {
        assert!(deletes(&d).contains(j), "old run's Job {j} deleted");
    }
    let st = w.status();
    assert_eq!((st.run, st.head_sha.as_deref()), (2, Some(SHA2)));
    assert_eq!(st.state, WorkflowState::DorPending);
    assert_eq!(st.history.last().unwrap().reason, "NewHeadSha");
    assert_eq!(creates(&d).len(), 1);
    assert!(creates(&d)[0].job_name.contains("-r2-"));
    assert_eq!(creates(&d)[0].labels["qms.creo.dev/head-sha"], SHA2);
    assert_fixed_point(&w, &d);
}

#[test]
fn completed_is_left_only_on_a_new_sha() {
    let mut w = World::standard();
    to_final_review(&mut w);
    w.approve("final-review", Verdict::Approve, "alice");
    w.step_once();
    assert_eq!(w.state(), WorkflowState::Completed);
    w.jobs.clear();
    w.advance(100_000);
    w.wf.spec.retry = Some(RetryRequest {
        id: "x".into(),
        step: None,
        by: None,
    });
    let d = w.step_once();
    assert_eq!(w.state(), WorkflowState::Completed);
    assert!(creates(&d).is_empty());
    let retry = Condition::find(&w.status().conditions, "Retry")
        .cloned()
        .unwrap();
    assert_eq!(
        (retry.status, retry.reason.as_str()),
        (ConditionStatus::False, "Ignored")
    );
    w.wf.spec.head_sha = SHA2.into();
    w.step_once();
    assert_eq!(w.state(), WorkflowState::DorPending);
    let h = w.status().history.last().cloned().unwrap();
    assert_eq!(
        (h.from, h.reason.as_str()),
        (WorkflowState::Completed, "NewHeadSha")
    );
}

#[test]
fn retry_reruns_the_failed_step_and_after_with_a_new_run() {
    let mut w = World::standard();
    w.step_once();
    w.advance(5);
    w.pass_step("dor-validation");
    w.step_once();
    for j in w.active_jobs("progress-reviews") {
        w.finish_job(&j, JobPhase::Failed, None);
    }
    w.step_once();
    assert_eq!(w.state(), WorkflowState::ProgressBlocked);
    assert_eq!(w.step("dod-validation").phase, StepPhase::Skipped);
    w.wf.spec.retry = Some(RetryRequest {
        id: "r1".into(),
        step: None,
        by: Some("dev".into()),
    });
    w.advance(60);
    let d = w.step_once();
    assert_eq!(w.state(), WorkflowState::ProgressPending);
    assert_eq!(w.status().run, 2);
    assert_eq!(
        w.step("dor-validation").phase,
        StepPhase::Succeeded,
        "earlier steps are kept"
    );
    assert_eq!(creates(&d).len(), 2);
    assert!(creates(&d).iter().all(|c| c.job_name.contains("-r2-")));
    assert!(
        w.status()
            .history
            .last()
            .unwrap()
            .reason
            .starts_with("RetryRequested")
    );
    assert_fixed_point(&w, &d);
    // The same id again is not a new request.
    w.advance(5);
    let d = w.step_once();
    assert!(creates(&d).is_empty());
}

#[test]
fn retry_while_running_is_ignored_and_consumed() {
    let mut w = World::standard();
    w.step_once();
    w.wf.spec.retry = Some(RetryRequest {
        id: "early".into(),
        step: None,
        by: None,
    });
    w.step_once();
    assert_eq!(w.status().run, 1);
    assert_eq!(w.status().last_retry_id.as_deref(), Some("early"));
    assert_eq!(
        Condition::find(&w.status().conditions, "Retry")
            .unwrap()
            .reason,
        "Ignored"
    );
}

#[test]
fn approvals_from_before_a_retry_do_not_count() {
    let mut w = World::standard();
    to_final_review(&mut w);
    w.approve("final-review", Verdict::Reject, "bob");
    w.step_once();
    assert_eq!(w.state(), WorkflowState::FinalRejected);
    w.advance(10);
    w.wf.spec.retry = Some(RetryRequest {
        id: "again".into(),
        step: Some("final-review".into()),
        by: None,
    });
    w.step_once();
    w.advance(5);
    w.pass_step("final-review");
    w.step_once();
    assert_eq!(w.step("final-review").phase, StepPhase::WaitingForApproval);
    w.approve("final-review", Verdict::Approve, "alice");
    w.step_once();
    assert_eq!(w.state(), WorkflowState::Completed);
}

#[test]
fn sequential_runs_agents_in_order_and_stops_at_the_first_failure() {
    let mut w = World::standard();
    w.template.as_mut().unwrap().steps[0].agents = vec![
        qms_api::AgentSelector::by_name("qms-dor-validator"),
        qms_api::AgentSelector::by_name("qms-code-reviewer"),
    ];
    w.template.as_mut().unwrap().steps[0].type_ = qms_api::StepType::Sequential;
    w.template.as_mut().unwrap().steps[0].retry_policy = None;
    let d = w.step_once();
    assert_eq!(creates(&d).len(), 1);
    assert_eq!(creates(&d)[0].agent, "qms-dor-validator");
    w.advance(5);
    w.pass_step("dor-validation");
    let d = w.step_once();
    assert_eq!(creates(&d).len(), 1);
    assert_eq!(creates(&d)[0].agent, "qms-code-reviewer");
    let job = creates(&d)[0].job_name.clone();
    w.finish_job(&job, JobPhase::Failed, None);
    w.step_once();
    assert_eq!(w.state(), WorkflowState::DorFailed);
}

#[test]
fn always_steps_run_after_a_failure_and_the_first_failure_decides_the_state() {
    let mut w = World::standard();
    let t = w.template.as_mut().unwrap();
    t.steps[0].retry_policy = None;
    t.steps[2].condition = Some("always".into());
    w.step_once();
    let job = w.active_jobs("dor-validation")[0].clone();
    w.finish_job(&job, JobPhase::Failed, None);
    let d = w.step_once();
    assert_eq!(w.step("progress-reviews").phase, StepPhase::Skipped);
    assert_eq!(w.state(), WorkflowState::DodPending, "the always step runs");
    assert_eq!(creates(&d).len(), 1);
    w.advance(5);
    w.pass_step("dod-validation");
    w.step_once();
    // final-review's condition (dod-validation.success) holds, so it runs too.
    assert_eq!(w.state(), WorkflowState::FinalPending);
    w.advance(5);
    w.pass_step("final-review");
    w.approve("final-review", Verdict::Approve, "alice");
    let d = w.step_once();
    assert_eq!(w.state(), WorkflowState::DorFailed);
    assert!(
        w.status()
            .history
            .last()
            .unwrap()
            .reason
            .starts_with("dor-validation failed")
    );
    assert_fixed_point(&w, &d);
}

#[test]
fn a_full_agent_makes_the_task_wait_without_a_job() {
    let mut w = World::standard();
    w.agents.get_mut("qms-dor-validator").unwrap().running = 10;
    let d = w.step_once();
    assert!(creates(&d).is_empty());
    let t = &w.step("dor-validation").tasks[0];
    assert_eq!(t.phase, TaskPhase::Pending);
    assert_eq!(d.requeue_after, Some(super::WAIT_POLL));
    assert_fixed_point(&w, &d);
    w.agents.get_mut("qms-dor-validator").unwrap().running = 9;
    w.advance(10);
    let d = w.step_once();
    assert_eq!(creates(&d).len(), 1);
}

#[test]
fn capacity_counts_tasks_started_in_the_same_decision() {
    let mut w = World::standard();
    let t = w.template.as_mut().unwrap();
    t.steps[0].agents = vec![qms_api::AgentSelector::by_capability("dor-validation"); 3];
    w.agents
        .get_mut("qms-dor-validator")
        .unwrap()
        .spec
        .load_capacity = 2;
    let d = w.step_once();
    assert_eq!(creates(&d).len(), 2);
    let pending = w
        .step("dor-validation")
        .tasks
        .iter()
        .filter(|t| t.phase == TaskPhase::Pending)
        .count();
    assert_eq!(pending, 1);
}

#[test]
fn an_existing_job_is_adopted_not_created_again() {
    let mut w = World::standard();
    let d = w.decide();
    // The Job was created but the status write was lost (crash): decide again from the old status.
    w.apply(&crate::Decision {
        status: w.status(),
        actions: d.actions.clone(),
        requeue_after: None,
    });
    w.wf.status = None;
    let d2 = w.step_once();
    assert!(creates(&d2).is_empty(), "{:?}", creates(&d2));
    assert_eq!(w.step("dor-validation").tasks[0].phase, TaskPhase::Running);
    assert_eq!(w.step("dor-validation").tasks[0].agent, "qms-dor-validator");
}

#[test]
fn override_lets_a_failing_gate_pass_and_its_expiry_is_due() {
    let mut w = World::standard();
    w.wf.spec.overrides.push(Override {
        gate: "code-coverage".into(),
        by: "carol".into(),
        reason: "hotfix".into(),
        expires: "2025-08-17T07:00:00Z".into(),
        sha: SHA.into(),
    });
    w.step_once();
    w.advance(5);
    w.pass_step("dor-validation");
    w.step_once();
    for j in w.active_jobs("progress-reviews") {
        w.finish_job(
            &j,
            JobPhase::Succeeded,
            Some(result_json(
                true,
                &[("test_coverage", 50.0), ("p95_latency", 100.0)],
            )),
        );
    }
    w.step_once();
    let g = w
        .step("progress-reviews")
        .gates
        .into_iter()
        .find(|g| g.name == "code-coverage")
        .unwrap();
    assert_eq!(g.verdict, GateVerdict::Overridden);
    assert!(g.message.contains("carol"));
    assert_eq!(w.state(), WorkflowState::DodPending);
}

#[test]
fn gate_retry_reruns_agents_for_a_missing_metric() {
    let mut w = World::standard();
    w.template.as_mut().unwrap().steps[0].retry_policy = None;
    w.gates.get_mut("security-scan").unwrap().retry = 1;
    w.step_once();
    let job = w.active_jobs("dor-validation")[0].clone();
    w.finish_job(
        &job,
        JobPhase::Succeeded,
        Some(result_json(true, &[("basic_checks_passed", 1.0)])),
    );
    w.step_once();
    assert_eq!(w.step("dor-validation").phase, StepPhase::Backoff);
    w.advance(60);
    w.step_once();
    w.advance(5);
    let job = w.active_jobs("dor-validation")[0].clone();
    w.finish_job(
        &job,
        JobPhase::Succeeded,
        Some(result_json(true, &[("basic_checks_passed", 1.0)])),
    );
    w.step_once();
    assert_eq!(w.state(), WorkflowState::DorFailed, "one gate retry only");
}

#[test]
fn advisory_gate_failure_does_not_block() {
    let mut w = World::standard();
    w.gates.get_mut("security-scan").unwrap().blocking = false;
    w.step_once();
    let job = w.active_jobs("dor-validation")[0].clone();
    w.finish_job(
        &job,
        JobPhase::Succeeded,
        Some(result_json(
            true,
            &[
                ("basic_checks_passed", 1.0),
                ("critical_vulnerabilities", 2.0),
            ],
        )),
    );
    w.step_once();
    assert_eq!(w.state(), WorkflowState::ProgressPending);
    assert_eq!(w.status().gates.as_deref(), Some("2/2"));
    assert!(w.events.iter().any(|(_, r)| r == "GateWarning"));
}

#[test]
fn history_is_bounded() {
    let mut w = World::standard();
    w.template.as_mut().unwrap().steps[0].retry_policy = None;
    for n in 0..40 {
        w.step_once();
        let job = w.active_jobs("dor-validation")[0].clone();
        w.finish_job(&job, JobPhase::Failed, None);
        w.step_once();
        w.wf.spec.retry = Some(RetryRequest {
            id: format!("r{n}"),
            step: None,
            by: None,
        });
        w.advance(1);
    }
    assert_eq!(
        w.status().history.len(),
        qms_api::QmsWorkflowStatus::HISTORY_LIMIT
    );
}

#[test]
fn every_task_carries_payload_and_labels() {
    let mut w = World::standard();
    let d = w.step_once();
    let spec = creates(&d)[0].clone();
    let p = &spec.payload;
    assert_eq!(p["task_id"], spec.job_name.as_str());
    assert_eq!(p["workflow_id"], "qms/pr-42");
    assert_eq!(p["agent_id"], "qms-dor-validator");
    assert_eq!(p["task_type"], "dor-validation");
    assert_eq!(p["payload"]["pr_number"], 42);
    assert_eq!(p["payload"]["branch"], "feature/qms");
    assert_eq!(
        p["payload"]["requirements"]["gates"][1]["name"],
        "security-scan"
    );
    assert_eq!(p["payload"]["requirements"]["gates"][1]["operator"], "lte");
    assert_eq!(p["timeout"], 300);
    assert_eq!(p["result_path"], "/dev/termination-log");
    assert_eq!(p["metadata"]["run"], 1);
    for key in [
        crate::naming::LABEL_MANAGED_BY,
        crate::naming::LABEL_WORKFLOW,
        crate::naming::LABEL_RUN,
        crate::naming::LABEL_STEP,
        crate::naming::LABEL_ATTEMPT,
        crate::naming::LABEL_AGENT,
        crate::naming::LABEL_HEAD_SHA,
    ] {
        assert!(spec.labels.contains_key(key), "{key}");
    }
    let corr = w.status().correlation_id.unwrap();
    assert_eq!(corr, "corr-0f8c2a9e-1");
    assert_eq!(p["metadata"]["correlation_id"], corr.as_str());
}

#[test]
fn an_override_expiring_while_waiting_for_approval_fails_the_gate() {
    let mut w = World::standard();
    w.template.as_mut().unwrap().steps[3].quality_gates = vec!["code-coverage".into()];
    w.wf.spec.overrides.push(Override {
        gate: "code-coverage".into(),
        by: "carol".into(),
        reason: "hotfix".into(),
        expires: "2025-08-17T06:10:00Z".into(),
        sha: SHA.into(),
    });
    to_final_review(&mut w);
    let g = w.step("final-review").gates[0].clone();
    assert_eq!(g.verdict, GateVerdict::Overridden, "{}", g.message);
    let d = w.decide();
    let expiry = crate::time::parse("2025-08-17T06:10:00Z").unwrap();
    assert_eq!(d.requeue_after, Some((expiry - w.now).to_std().unwrap()));
    w.now = expiry;
    w.step_once();
    assert_eq!(w.state(), WorkflowState::FinalRejected);
    assert!(w.step("final-review").message.contains("code-coverage"));
}

#[test]
fn slot_is_held_only_by_a_started_unfinished_run() {
    let mut w = World::standard();
    assert!(!super::holds_slot(&w.status()));
    w.step_once();
    assert!(super::holds_slot(&w.status()));
}

#[test]
fn an_agent_removed_mid_run_is_a_configuration_error_that_stops_everything() {
    let mut w = World::standard();
    w.step_once();
    let job = w.active_jobs("dor-validation")[0].clone();
    w.agents.remove("qms-testing-specialist");
    w.advance(1);
    let d = w.step_once();
    assert_eq!(w.state(), WorkflowState::Error);
    assert!(deletes(&d).contains(&job));
    assert_eq!(
        w.step("dor-validation").tasks[0].phase,
        TaskPhase::Cancelled
    );
    let h = w.status().history.last().cloned().unwrap();
    assert!(
        h.reason.starts_with("ConfigurationError") && h.reason.contains("qms-testing-specialist"),
        "{}",
        h.reason
    );
    assert_eq!(d.requeue_after, None);
    assert_fixed_point(&w, &d);
}

#[test]
fn a_job_past_its_deadline_is_a_timed_out_task() {
    let mut w = World::standard();
    w.template.as_mut().unwrap().steps[0].retry_policy = None;
    w.step_once();
    let job = w.active_jobs("dor-validation")[0].clone();
    w.jobs.get_mut(&job).unwrap().reason = Some("DeadlineExceeded".into());
    w.finish_job(&job, JobPhase::Failed, None);
    let d = w.step_once();
    assert_eq!(w.step("dor-validation").tasks[0].phase, TaskPhase::TimedOut);
    assert_eq!(w.state(), WorkflowState::DorFailed);
    assert!(
        emits(&d)
            .iter()
            .any(|(t, _)| *t == EventType::AgentTaskCompleted)
    );
    assert!(
        emits(&d)
            .iter()
            .any(|(t, r)| *t == EventType::WorkflowCompleted && r == "WorkflowFailed")
    );
}

#[test]
fn waiting_for_approval_releases_the_slot_and_a_new_sha_queues_for_one() {
    let mut w = World::standard();
    to_final_review(&mut w);
    assert!(
        !super::holds_slot(&w.status()),
        "agents done, gates evaluated: only a person is awaited"
    );
    // Nothing about waiting needs a slot: the approval still completes the run without one.
    w.slot_available = false;
    let d = w.step_once();
    assert!(creates(&d).is_empty());
    assert_eq!(cond(&w, "Queued"), Some(ConditionStatus::False));
    assert_fixed_point(&w, &d);
    // A push needs agents again: it queues in INITIALIZED, with its place in the queue.
    w.queue_place = Some(crate::slots::QueuePlace {
        position: 2,
        waiting: 5,
        limit: 2,
    });
    w.wf.spec.head_sha = "1111111111111111111111111111111111111111".into();
    w.advance(5);
    let d = w.step_once();
    assert_eq!(w.state(), WorkflowState::Initialized);
    assert_eq!(w.status().run, 2);
    assert!(creates(&d).is_empty());
    let queued = Condition::find(&w.status().conditions, "Queued")
        .cloned()
        .unwrap();
    assert_eq!(
        (queued.status, queued.reason.as_str()),
        (ConditionStatus::True, "WaitingForSlot")
    );
    assert!(
        queued.message.starts_with("position 2 of 5 waiting"),
        "{}",
        queued.message
    );
    assert_eq!(d.requeue_after, Some(super::WAIT_POLL));
    assert_fixed_point(&w, &d);
    w.slot_available = true;
    w.queue_place = None;
    let d = w.step_once();
    assert_eq!(w.state(), WorkflowState::DorPending);
    assert_eq!(creates(&d).len(), 1);
    let h = w.status().history.last().cloned().unwrap();
    assert_eq!(h.reason, super::run::REASON_SLOT_TAKEN);
}

#[test]
fn an_approval_that_ends_the_run_or_a_rejection_needs_no_slot() {
    for verdict in [Verdict::Approve, Verdict::Reject] {
        let mut w = World::standard();
        to_final_review(&mut w);
        w.slot_available = false;
        w.approve("final-review", verdict, "alice");
        w.step_once();
        let want = if verdict == Verdict::Approve {
            WorkflowState::Completed
        } else {
            WorkflowState::FinalRejected
        };
        assert_eq!(w.state(), want);
        assert_eq!(cond(&w, "Queued"), Some(ConditionStatus::False));
    }
}

#[test]
fn an_approval_followed_by_automated_work_waits_for_a_slot() {
    let mut w = World::standard();
    // progress-reviews becomes a manual step; dod-validation (agents) follows it.
    w.template.as_mut().unwrap().steps[1].type_ = qms_api::StepType::Manual;
    w.step_once();
    w.advance(5);
    w.pass_step("dor-validation");
    w.step_once();
    w.advance(5);
    w.pass_step("progress-reviews");
    w.step_once();
    assert_eq!(
        w.step("progress-reviews").phase,
        StepPhase::WaitingForApproval
    );
    assert!(!super::holds_slot(&w.status()));
    w.slot_available = false;
    w.approve("progress-reviews", Verdict::Approve, "alice");
    let d = w.step_once();
    assert_eq!(w.step("progress-reviews").phase, StepPhase::Succeeded);
    assert_eq!(w.step("dod-validation").phase, StepPhase::Pending);
    assert!(creates(&d).is_empty(), "no Job without a slot");
    assert_eq!(w.state(), WorkflowState::ProgressPending);
    assert_eq!(cond(&w, "Queued"), Some(ConditionStatus::True));
    assert_eq!(cond(&w, "Progressing"), Some(ConditionStatus::False));
    assert_eq!(
        crate::slots::slot_use(Some(&w.status())),
        crate::slots::SlotUse::Waits
    );
    assert_eq!(d.requeue_after, Some(super::WAIT_POLL));
    assert_fixed_point(&w, &d);
    w.slot_available = true;
    let d = w.step_once();
    assert_eq!(w.state(), WorkflowState::DodPending);
    assert_eq!(creates(&d).len(), 1);
    assert_eq!(cond(&w, "Queued"), Some(ConditionStatus::False));
    assert!(super::holds_slot(&w.status()));
}

#[test]
fn backoff_between_attempts_keeps_the_slot() {
    let mut w = World::standard();
    w.step_once();
    for j in w.active_jobs("dor-validation") {
        w.finish_job(&j, JobPhase::Failed, None);
    }
    w.slot_available = false;
    w.step_once();
    assert_eq!(w.step("dor-validation").phase, StepPhase::Backoff);
    assert!(super::holds_slot(&w.status()));
    let at = w.step("dor-validation").next_attempt_at.unwrap();
    w.now = crate::time::parse(&at).unwrap();
    let d = w.step_once();
    assert_eq!(w.step("dor-validation").attempt, 2);
    assert_eq!(creates(&d).len(), 1, "the retry runs without queueing");
}

#[test]
fn a_retry_that_waited_for_a_slot_ignores_decisions_from_before_it() {
    let mut w = World::standard();
    to_final_review(&mut w);
    w.approve("final-review", Verdict::Reject, "bob");
    w.step_once();
    assert_eq!(w.state(), WorkflowState::FinalRejected);
    w.advance(10);
    w.slot_available = false;
    w.wf.spec.retry = Some(RetryRequest {
        id: "again".into(),
        step: Some("final-review".into()),
        by: None,
    });
    w.step_once();
    assert_eq!(w.state(), WorkflowState::Initialized, "queued for a slot");
    w.advance(10);
    w.slot_available = true;
    w.step_once();
    w.advance(5);
    w.pass_step("final-review");
    w.step_once();
    assert_eq!(
        w.step("final-review").phase,
        StepPhase::WaitingForApproval,
        "bob's rejection came before the retry"
    );
    w.approve("final-review", Verdict::Approve, "alice");
    w.step_once();
    assert_eq!(w.state(), WorkflowState::Completed);
}
