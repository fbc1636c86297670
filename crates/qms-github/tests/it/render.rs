//! Status → desired check runs: conclusions, Markdown, GitHub's size limits, annotation batches.

use crate::common::*;
use qms_api::{GateVerdict, Operator, StepPhase, TaskPhase, WorkflowState};
use qms_github::checks::render::{
    AnnotationPlan, CheckAnnotation, CheckStatus, Conclusion, DesiredCheck, MAX_OUTPUT_BYTES,
    RenderConfig, annotation_batches, attach_annotations, desired_checks, truncate_utf8,
};

fn cfg() -> RenderConfig {
    RenderConfig {
        details_url_template: Some(
            "https://qms.example.com/{namespace}/{name}/runs/{run}#{step}".into(),
        ),
        ..RenderConfig::default()
    }
}

fn render(st: qms_api::QmsWorkflowStatus) -> Vec<DesiredCheck> {
    let mut wf = workflow(SHA1);
    wf.status = Some(st);
    desired_checks(&wf, Some(&template().spec), &cfg())
}

fn find<'a>(checks: &'a [DesiredCheck], name: &str) -> &'a DesiredCheck {
    checks.iter().find(|c| c.name == name).unwrap_or_else(|| {
        panic!(
            "no check {name} in {:?}",
            checks.iter().map(|c| &c.name).collect::<Vec<_>>()
        )
    })
}

#[test]
fn one_check_per_started_step_plus_the_summary() {
    let checks = render(progress(1, SHA1, 1));
    let names: Vec<&str> = checks.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        ["QMS", "QMS / dor-validation", "QMS / progress-reviews"]
    );
    let dor = find(&checks, "QMS / dor-validation");
    assert_eq!(
        (dor.status, dor.conclusion),
        (CheckStatus::Completed, Some(Conclusion::Success))
    );
    assert_eq!(
        dor.external_id,
        format!("{NS}/{}/1/dor-validation", wf_name())
    );
    assert_eq!(dor.head_sha, SHA1);
    assert_eq!(
        dor.details_url.as_deref(),
        Some(
            format!(
                "https://qms.example.com/{NS}/{}/runs/1#dor-validation",
                wf_name()
            )
            .as_str()
        )
    );
    let prog = find(&checks, "QMS / progress-reviews");
    assert_eq!(
        (prog.status, prog.conclusion),
        (CheckStatus::InProgress, None)
    );
    let summary = find(&checks, "QMS");
    assert_eq!(
        (summary.status, summary.conclusion),
        (CheckStatus::InProgress, None)
    );
    assert_eq!(summary.external_id, format!("{NS}/{}/1", wf_name()));
}

#[test]
fn the_summary_has_the_gate_table_agents_state_and_link() {
    let checks = render(progress(1, SHA1, 5));
    let s = find(&checks, "QMS");
    assert_eq!(
        (s.status, s.conclusion),
        (CheckStatus::Completed, Some(Conclusion::Success))
    );
    assert_eq!(s.title, "COMPLETED — 6/6 gates passed");
    let md = &s.summary;
    assert!(
        md.contains("| Gate | Metric | Value | Operator | Threshold | Verdict | Blocking |"),
        "{md}"
    );
    assert!(
        md.contains("| code-coverage | test_coverage | 85.2 | >= | 80 | ✅ passed | yes |"),
        "{md}"
    );
    assert!(md.contains("state **COMPLETED**"), "{md}");
    assert!(
        md.contains("**qms-testing-specialist** (attempt 1, Succeeded): coverage 85.2%"),
        "{md}"
    );
    assert!(
        md.contains(&format!(
            "[Details](https://qms.example.com/{NS}/{}/runs/1#)",
            wf_name()
        )),
        "{md}"
    );
}

#[test]
fn manual_step_waiting_is_action_required_with_approve_and_reject_buttons() {
    let checks = render(progress(1, SHA1, 4));
    let fin = find(&checks, "QMS / final-review");
    assert_eq!(
        (fin.status, fin.conclusion),
        (CheckStatus::Completed, Some(Conclusion::ActionRequired))
    );
    let ids: Vec<&str> = fin.actions.iter().map(|a| a.identifier.as_str()).collect();
    assert_eq!(ids, ["approve", "reject"]);
    for a in &fin.actions {
        assert!(
            a.label.chars().count() <= 20
                && a.description.chars().count() <= 40
                && a.identifier.len() <= 20
        );
    }
    assert!(fin.summary.contains("/qms approve"));
    // Approved: success, buttons gone.
    let done = render(progress(1, SHA1, 5));
    let fin = find(&done, "QMS / final-review");
    assert_eq!(fin.conclusion, Some(Conclusion::Success));
    assert!(fin.actions.is_empty());
}

#[test]
fn warnings_are_neutral_timeouts_timed_out_and_errors_never_stay_in_progress() {
    let mut st = progress(1, SHA1, 2);
    st.steps[1].gates[1].verdict = GateVerdict::Warning;
    let checks = render(st);
    assert_eq!(
        find(&checks, "QMS / progress-reviews").conclusion,
        Some(Conclusion::Neutral)
    );
    assert!(
        find(&checks, "QMS / progress-reviews")
            .summary
            .contains("⚠️ warning")
    );

    let mut st = progress(1, SHA1, 2);
    st.state = WorkflowState::DodFailed;
    st.steps[2].phase = StepPhase::Failed;
    st.steps[2].tasks = vec![task(
        "dod-validation",
        "qms-dod-validator",
        TaskPhase::TimedOut,
        "",
    )];
    let checks = render(st);
    assert_eq!(
        find(&checks, "QMS / dod-validation").conclusion,
        Some(Conclusion::TimedOut)
    );
    assert_eq!(find(&checks, "QMS").conclusion, Some(Conclusion::Failure));

    // ERROR while a step runs: that step's check still ends (failure), as does the summary.
    let mut st = progress(1, SHA1, 1);
    st.state = WorkflowState::Error;
    let checks = render(st);
    assert_eq!(
        find(&checks, "QMS / progress-reviews").status,
        CheckStatus::Completed
    );
    assert_eq!(
        find(&checks, "QMS / progress-reviews").conclusion,
        Some(Conclusion::Failure)
    );
    assert_eq!(find(&checks, "QMS").conclusion, Some(Conclusion::Failure));

    let mut st = progress(1, SHA1, 1);
    st.steps[1].phase = StepPhase::Skipped;
    assert_eq!(
        find(&render(st), "QMS / progress-reviews").conclusion,
        Some(Conclusion::Skipped)
    );
}

#[test]
fn nothing_is_desired_before_the_run_after_a_new_sha_or_when_deleted() {
    let mut wf = workflow(SHA1);
    assert!(desired_checks(&wf, Some(&template().spec), &cfg()).is_empty());
    wf.status = Some(progress(1, SHA1, 1));
    wf.spec.head_sha = SHA2.into(); // pushed; the operator has not started the new run yet
    assert!(desired_checks(&wf, Some(&template().spec), &cfg()).is_empty());
    wf.spec.head_sha = SHA1.into();
    wf.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
    ));
    assert!(desired_checks(&wf, Some(&template().spec), &cfg()).is_empty());
}

#[test]
fn a_100_kb_summary_is_cut_at_a_utf8_boundary_within_65535_bytes() {
    let mut st = progress(1, SHA1, 2);
    // 100 KB of 3- and 4-byte characters from an agent's summary.
    let long: String = "é€😀|".repeat(100 * 1024 / 10);
    assert!(long.len() >= 100 * 1024);
    st.steps[1].tasks[0].result.as_mut().unwrap().summary = long;
    st.steps[1].message = "ü".repeat(70_000);
    let checks = render(st);
    for c in &checks {
        assert!(
            c.summary.len() <= MAX_OUTPUT_BYTES,
            "{} summary is {} bytes",
            c.name,
            c.summary.len()
        );
        if let Some(t) = &c.text {
            assert!(t.len() <= MAX_OUTPUT_BYTES);
        }
    }
    let prog = find(&checks, "QMS / progress-reviews");
    assert!(
        prog.summary
            .ends_with("(truncated: GitHub keeps at most 65,535 bytes)"),
        "{}",
        &prog.summary[prog.summary.len() - 80..]
    );
    assert!(
        prog.summary.len() > MAX_OUTPUT_BYTES - 4,
        "cut as late as possible"
    );
    assert!(prog.text.as_ref().unwrap().ends_with("65,535 bytes)"));
}

#[test]
fn truncation_edge_cases() {
    assert_eq!(truncate_utf8("short", 10), "short");
    let s = "€".repeat(10); // 30 bytes
    let cut = truncate_utf8(&s, 20);
    assert!(cut.len() <= 20);
    assert!(cut.starts_with('€') || cut.is_empty());
    let big = "a".repeat(70_000);
    let cut = truncate_utf8(&big, MAX_OUTPUT_BYTES);
    assert_eq!(cut.len(), MAX_OUTPUT_BYTES);
}

#[test]
fn annotations_go_50_per_request() {
    let anns: Vec<CheckAnnotation> = (0..120)
        .map(|i| CheckAnnotation {
            path: format!("src/file{i}.rs"),
            start_line: i + 1,
            end_line: i + 1,
            annotation_level: "warning".into(),
            message: "m".into(),
            title: None,
        })
        .collect();
    let sizes: Vec<usize> = annotation_batches(&anns, 0)
        .iter()
        .map(|b| b.len())
        .collect();
    assert_eq!(sizes, [50, 50, 20]);
    let rest: Vec<usize> = annotation_batches(&anns, 50)
        .iter()
        .map(|b| b.len())
        .collect();
    assert_eq!(rest, [50, 20]);
    assert!(annotation_batches(&anns, 120).is_empty());
    assert!(annotation_batches(&anns, 500).is_empty());
}

#[test]
fn a_completed_step_is_not_rewritten_when_later_steps_move() {
    let a = render(progress(1, SHA1, 2));
    let b = render(progress(1, SHA1, 3));
    assert_eq!(
        find(&a, "QMS / dor-validation").fingerprint,
        find(&b, "QMS / dor-validation").fingerprint
    );
    assert_ne!(find(&a, "QMS").fingerprint, find(&b, "QMS").fingerprint);
    let _ = Operator::Gte;
}

/// Every terminal state, whatever step the run stopped at: every step of the template has a
/// check run and every check run is concluded (a required check never waits), and only a
/// completed run may mark a step that did not run as skipped (GitHub counts skipped as passing).
#[test]
fn every_check_of_a_finished_run_is_concluded_and_unrun_steps_fail_closed() {
    let steps = [
        "dor-validation",
        "progress-reviews",
        "dod-validation",
        "final-review",
    ];
    for state in WorkflowState::ALL.into_iter().filter(|s| s.is_terminal()) {
        for stage in 0..=4 {
            let mut st = progress(1, SHA1, stage);
            st.state = state;
            let checks = render(st.clone());
            for name in steps {
                let c = find(&checks, &format!("QMS / {name}"));
                assert_eq!(
                    c.status,
                    CheckStatus::Completed,
                    "{state} stage {stage}: {name}"
                );
                let phase = st.step(name).unwrap().phase;
                if phase == StepPhase::Pending {
                    let expected = if state == WorkflowState::Completed {
                        Conclusion::Skipped
                    } else {
                        Conclusion::Cancelled
                    };
                    assert_eq!(
                        c.conclusion,
                        Some(expected),
                        "{state} stage {stage}: {name}"
                    );
                    assert!(c.summary.contains("did not run"), "{}", c.summary);
                }
                assert!(c.conclusion.is_some(), "{state} stage {stage}: {name}");
            }
            let summary = find(&checks, "QMS");
            assert_eq!(summary.status, CheckStatus::Completed, "{state}");
            let expected = if state == WorkflowState::Completed {
                Conclusion::Success
            } else {
                Conclusion::Failure
            };
            assert_eq!(summary.conclusion, Some(expected), "{state}");
        }
    }
    // While the run goes on, steps not reached yet have no check run (nothing to report yet).
    let checks = render(progress(1, SHA1, 1));
    assert!(checks.iter().all(|c| c.name != "QMS / dod-validation"));
}

#[test]
fn a_merge_group_review_says_what_it_reviews_under_the_same_check_names() {
    let mut wf = workflow(SHA2);
    wf.spec.merge_group = Some(qms_api::MergeGroupRef {
        head_ref: format!("refs/heads/gh-readonly-queue/main/pr-{PR}-{SHA1}"),
        base_sha: "0d1e2f3a4b5c6d7e8f90a1b2c3d4e5f6a7b8c9d0".into(),
    });
    wf.status = Some(progress(1, SHA2, 1));
    let checks = desired_checks(&wf, Some(&template().spec), &cfg());
    let pr = {
        let mut pr = workflow(SHA2);
        pr.status = Some(progress(1, SHA2, 1));
        desired_checks(&pr, Some(&template().spec), &cfg())
    };
    let names = |c: &[DesiredCheck]| c.iter().map(|c| c.name.clone()).collect::<Vec<_>>();
    assert_eq!(names(&checks), names(&pr));
    assert!(checks.iter().all(|c| c.head_sha == SHA2));
    let summary = find(&checks, "QMS");
    assert!(
        summary
            .summary
            .contains(&format!("merge group `gh-readonly-queue/main/pr-{PR}-")),
        "{}",
        summary.summary
    );
}

fn ann(level: &str, i: usize) -> CheckAnnotation {
    CheckAnnotation {
        path: format!("src/{level}{i}.rs"),
        start_line: 1,
        end_line: 1,
        annotation_level: level.into(),
        message: format!("{level} {i}"),
        title: None,
    }
}

/// Notices, warnings and failures interleaved as agents report them.
fn mixed(failures: usize, warnings: usize, notices: usize) -> Vec<CheckAnnotation> {
    let mut out = Vec::new();
    for i in 0..failures.max(warnings).max(notices) {
        if i < notices {
            out.push(ann("notice", i));
        }
        if i < warnings {
            out.push(ann("warning", i));
        }
        if i < failures {
            out.push(ann("failure", i));
        }
    }
    out
}

fn completed_step_check() -> DesiredCheck {
    find(&render(progress(1, SHA1, 2)), "QMS / progress-reviews").clone()
}

#[test]
fn annotations_are_capped_failures_first_and_the_rest_counted_with_where_to_see_them() {
    let all = mixed(300, 900, 400);
    let plan = AnnotationPlan::new(&all, 1_000);
    assert_eq!(plan.send.len(), 1_000);
    let levels: Vec<&str> = plan
        .send
        .iter()
        .map(|a| a.annotation_level.as_str())
        .collect();
    assert!(levels[..300].iter().all(|l| *l == "failure"));
    assert!(levels[300..].iter().all(|l| *l == "warning"));
    // Within a level the agents' order is kept.
    assert_eq!(plan.send[0].message, "failure 0");
    assert_eq!(plan.send[299].message, "failure 299");
    assert_eq!(plan.omitted, [0, 200, 400]);
    // The same input always gives the same plan (restarts resume on the same order).
    assert_eq!(plan, AnnotationPlan::new(&all, 1_000));

    let d = completed_step_check();
    let (with, plan) = attach_annotations(d.clone(), &all, 1_000);
    assert_eq!(plan.send.len(), 1_000);
    assert!(
        with.summary.contains(
            "**600 more annotations** (0 failures, 200 warnings, 400 notices) are not shown here"
        ),
        "{}",
        with.summary
    );
    assert!(with.summary.contains("at most 1000, failures first"));
    assert!(with.summary.contains(&format!(
        "`kubectl describe qmsworkflow {NS}/{}`",
        wf_name()
    )));
    let url = d.details_url.clone().unwrap();
    assert!(with.summary.contains(&format!("[details]({url})")));
    assert_ne!(
        with.fingerprint, d.fingerprint,
        "the note is part of what is written"
    );

    // Under the cap: everything is sent, no note.
    let (same, plan) = attach_annotations(d.clone(), &mixed(3, 2, 1), 1_000);
    assert_eq!(plan.send.len(), 6);
    assert_eq!(plan.send[0].annotation_level, "failure");
    assert_eq!(same.summary, d.summary);
    assert_eq!(same.fingerprint, d.fingerprint);
    // A cap of 0: nothing sent, everything counted.
    let (none, plan) = attach_annotations(d.clone(), &mixed(1, 1, 1), 0);
    assert!(plan.send.is_empty());
    assert!(
        none.summary
            .contains("**3 more annotations** (1 failures, 1 warnings, 1 notices)")
    );
    // A check run still in progress gets none yet (its set is not final).
    let running = find(&render(progress(1, SHA1, 1)), "QMS / progress-reviews").clone();
    assert_eq!(running.status, CheckStatus::InProgress);
    let (r, plan) = attach_annotations(running.clone(), &all, 1_000);
    assert!(plan.send.is_empty());
    assert_eq!(r.summary, running.summary);
}

#[test]
fn the_remaining_count_survives_a_summary_at_githubs_byte_limit() {
    let mut d = completed_step_check();
    d.summary = "é".repeat(MAX_OUTPUT_BYTES); // 2 bytes each: far over the limit
    let (with, _) = attach_annotations(d, &mixed(0, 0, 1_500), 1_000);
    assert!(
        with.summary.len() <= MAX_OUTPUT_BYTES,
        "{}",
        with.summary.len()
    );
    assert!(with.summary.contains("**500 more annotations**"));
    assert!(with.summary.trim_end().ends_with('.'), "the note is whole");
}
