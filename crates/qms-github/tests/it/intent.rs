//! The pure decision: webhook payload (GitHub's documented shapes, tests/fixtures) + facts →
//! the change to make.

use crate::common::*;
use qms_api::{Decision, MergeGroups, StepPhase, WorkflowState, WorkflowTemplate};
use qms_github::events::{self, Event};
use qms_github::intent::{
    Change, Facts, Outcome, decide, select_merge_group_template, select_push_template,
    select_template,
};
use qms_github::naming::{self, DeliveryKey};
use serde_json::Value;

fn event(kind: &str, v: &Value) -> Event {
    events::parse(kind, v.to_string().as_bytes()).unwrap()
}

fn facts<'a>(
    key: &'a DeliveryKey,
    wf: Option<&'a qms_api::QmsWorkflow>,
    t: Option<&'a WorkflowTemplate>,
    trusted: Option<bool>,
) -> Facts<'a> {
    Facts {
        now: t0(),
        namespace: NS,
        run_drafts: false,
        delivery: key,
        workflow: wf,
        template: t,
        trusted,
        pull_request: None,
    }
}

fn key() -> DeliveryKey {
    DeliveryKey::new(
        Some("123456"),
        Some("501234"),
        "72d3162e-cc78-11e3-81ab-4c9367dc0958",
    )
}

fn spec_of(o: Outcome) -> qms_api::QmsWorkflowSpec {
    match o {
        Outcome::Apply {
            change: Change::UpdateSpec(spec),
            ..
        } => *spec,
        other => panic!("expected a spec update, got {other:?}"),
    }
}

fn reply_of(o: Outcome) -> String {
    match o {
        Outcome::Reply(r) => r,
        other => panic!("expected a reply, got {other:?}"),
    }
}

#[test]
fn opened_creates_the_workflow_with_deterministic_name_template_and_delivery() {
    let t = template();
    let k = key();
    let ev = event("pull_request", &fixture("pull_request.opened.json"));
    let Outcome::Apply {
        change: Change::Create(wf),
        ..
    } = decide(&ev, &facts(&k, None, Some(&t), None))
    else {
        panic!("expected a create")
    };
    assert_eq!(wf.metadata.name.as_deref(), Some(wf_name().as_str()));
    assert_eq!(wf.metadata.namespace.as_deref(), Some(NS));
    assert_eq!(wf.spec.repository, REPO);
    assert_eq!(wf.spec.pull_request, PR);
    assert_eq!(wf.spec.head_sha, SHA1);
    assert_eq!(wf.spec.base_ref, "main");
    assert_eq!(wf.spec.head_ref, "feature/qms-integration");
    assert_eq!(wf.spec.template_ref.name, "standard-qms-review");
    assert_eq!(
        wf.metadata.finalizers,
        Some(vec![naming::FINALIZER.to_owned()])
    );
    let ann = wf.metadata.annotations.as_ref().unwrap();
    assert_eq!(
        naming::recorded_deliveries(Some(ann)),
        vec![k.as_str().to_owned()]
    );
    assert_eq!(ann[naming::ANNOTATION_INSTALLATION], "4242");
    assert_eq!(
        wf.metadata.labels.as_ref().unwrap()[naming::LABEL_PULL_REQUEST],
        "12345"
    );
}

#[test]
fn drafts_wait_for_ready_for_review_unless_configured() {
    let t = template();
    let k = key();
    let mut v = fixture("pull_request.opened.json");
    v["pull_request"]["draft"] = true.into();
    let ev = event("pull_request", &v);
    assert!(
        matches!(decide(&ev, &facts(&k, None, Some(&t), None)), Outcome::Ignore(r) if r.contains("draft"))
    );
    let mut f = facts(&k, None, Some(&t), None);
    f.run_drafts = true;
    assert!(matches!(
        decide(&ev, &f),
        Outcome::Apply {
            change: Change::Create(_),
            ..
        }
    ));
    v["action"] = "ready_for_review".into();
    v["pull_request"]["draft"] = false.into();
    let ev = event("pull_request", &v);
    assert!(matches!(
        decide(&ev, &facts(&k, None, Some(&t), None)),
        Outcome::Apply {
            change: Change::Create(_),
            ..
        }
    ));
}

#[test]
fn synchronize_moves_the_head_and_a_repeat_changes_nothing() {
    let t = template();
    let k = key();
    let wf = workflow(SHA1);
    let ev = event("pull_request", &fixture("pull_request.synchronize.json"));
    let spec = spec_of(decide(&ev, &facts(&k, Some(&wf), Some(&t), None)));
    assert_eq!(spec.head_sha, SHA2);
    let moved = workflow(SHA2);
    assert!(matches!(
        decide(&ev, &facts(&k, Some(&moved), Some(&t), None)),
        Outcome::Ignore(_)
    ));
}

#[test]
fn closed_deletes_and_no_template_is_explained() {
    let t = template();
    let k = key();
    let wf = workflow(SHA1);
    let ev = event("pull_request", &fixture("pull_request.closed.json"));
    assert!(matches!(
        decide(&ev, &facts(&k, Some(&wf), Some(&t), None)),
        Outcome::Apply {
            change: Change::Delete,
            ..
        }
    ));
    assert!(matches!(
        decide(&ev, &facts(&k, None, Some(&t), None)),
        Outcome::Ignore(_)
    ));
    let opened = event("pull_request", &fixture("pull_request.opened.json"));
    assert!(
        matches!(decide(&opened, &facts(&k, None, None, None)), Outcome::Ignore(r) if r.contains("no WorkflowTemplate"))
    );
}

fn closed(merged: bool, sha: &str) -> Event {
    let mut v = fixture("pull_request.closed.json");
    v["pull_request"]["merged"] = merged.into();
    v["pull_request"]["head"]["sha"] = sha.into();
    event("pull_request", &v)
}

#[test]
fn only_a_merged_pull_request_with_a_completed_review_of_its_head_records_a_baseline() {
    let t = template();
    let k = key();
    let mut wf = workflow(SHA1);
    wf.status = Some(progress(1, SHA1, 5));
    // Completed and approved, but closed without merging: deleted, no baseline.
    assert!(matches!(
        decide(&closed(false, SHA1), &facts(&k, Some(&wf), Some(&t), None)),
        Outcome::Apply {
            change: Change::Delete,
            ..
        }
    ));
    // Merged: that run's values, for the merged head SHA, become the baseline of main.
    let Outcome::Apply {
        change: Change::Merged(update),
        note,
        ..
    } = decide(&closed(true, SHA1), &facts(&k, Some(&wf), Some(&t), None))
    else {
        panic!("expected a baseline update")
    };
    assert!(note.contains("baseline"), "{note}");
    assert_eq!(
        (
            update.repository.as_str(),
            update.branch.as_str(),
            update.sha.as_str(),
            update.pull_request
        ),
        (REPO, "main", SHA1, Some(PR))
    );
    let cov = update
        .values
        .iter()
        .find(|v| v.gate == "code-coverage")
        .unwrap();
    assert_eq!((cov.value, cov.sha.as_str()), (85.2, SHA1));
    assert_eq!(update.values.len(), 6);
    // A carried value is not a measurement of the merged commit: never recorded again.
    let mut carried = wf.clone();
    carried.status.as_mut().unwrap().steps[1].gates[0].carried = true;
    let Outcome::Apply {
        change: Change::Merged(update),
        ..
    } = decide(
        &closed(true, SHA1),
        &facts(&k, Some(&carried), Some(&t), None),
    )
    else {
        panic!("expected a baseline update")
    };
    assert!(update.values.iter().all(|v| v.gate != "code-coverage"));
    // Merged while waiting for approval, or merged at another commit than the one completed:
    // deleted, baseline unchanged, saying why.
    let mut waiting = workflow(SHA1);
    waiting.status = Some(progress(1, SHA1, 4));
    for (wf, sha, why) in [
        (&waiting, SHA1, "not COMPLETED"),
        (&wf, SHA2, "not for the commit"),
    ] {
        match decide(&closed(true, sha), &facts(&k, Some(wf), Some(&t), None)) {
            Outcome::Apply {
                change: Change::Delete,
                note,
                ..
            } => assert!(note.contains(why), "{note}"),
            other => panic!("expected a plain delete, got {other:?}"),
        }
    }
}

#[test]
fn explain_replies_with_the_gate_decision_for_the_current_head() {
    let t = template();
    let k = key();
    let mut wf = workflow(SHA1);
    wf.status = Some(progress(1, SHA1, 4));
    {
        let g = &mut wf.status.as_mut().unwrap().steps[1].gates[0];
        g.on_missing = Some(qms_api::OnMissing::CarryForward);
        g.baseline = Some(qms_api::BaselineUse {
            sha: SHA2.into(),
            value: 84.0,
            at: "2025-08-15T05:10:00Z".into(),
            tolerance: 0.5,
            used: true,
            note: None,
        });
    }
    let ask = |body: &str, wf: &qms_api::QmsWorkflow| {
        let mut v = fixture("issue_comment.created.json");
        v["comment"]["body"] = body.into();
        reply_of(decide(
            &event("issue_comment", &v),
            &facts(&k, Some(wf), Some(&t), Some(true)),
        ))
    };
    let reply = ask("/qms explain code-coverage", &wf);
    for needle in [
        "**QMS gate `code-coverage`** for head `3f7c2a9` (step `progress-reviews`)",
        "Verdict: **Passed** (blocking)",
        "`test_coverage` = 85.2",
        "Rule: >= 80",
        "Baseline: `9a8b7c6` = 84, 2d1h old, tolerance 0.5 (used)",
        "Missing-metric policy: `carryForward`",
    ] {
        assert!(reply.contains(needle), "{needle:?} in\n{reply}");
    }
    // Not a gate of the template: it decides nothing (never reported as passed).
    let reply = ask("/qms explain no-such-gate", &wf);
    assert!(reply.contains("decides nothing"), "{reply}");
    // The head moved and the new run has not started: not evaluated yet.
    let mut moved = wf.clone();
    moved.spec.head_sha = SHA2.into();
    assert!(ask("/qms explain code-coverage", &moved).contains("not evaluated yet"));
    // Missing gate argument: explained.
    assert!(ask("/qms explain", &wf).contains("needs a gate"));
}

#[test]
fn template_selection_prefers_the_most_specific_match_then_default() {
    let mut exact = template();
    exact.metadata.name = Some("exact".into());
    exact.spec.default = false;
    exact.spec.repositories = vec![REPO.into()];
    let mut owner = template();
    owner.metadata.name = Some("owner".into());
    owner.spec.default = false;
    owner.spec.repositories = vec!["creo/*".into()];
    let mut fallback = template();
    fallback.metadata.name = Some("fallback".into());
    fallback.spec.repositories = vec![];
    let all = vec![fallback.clone(), owner.clone(), exact.clone()];
    let name = |t: Option<&WorkflowTemplate>| t.and_then(|t| t.metadata.name.clone());
    assert_eq!(name(select_template(&all, REPO)), Some("exact".into()));
    assert_eq!(
        name(select_template(&all, "creo/other")),
        Some("owner".into())
    );
    assert_eq!(
        name(select_template(&all, "else/where")),
        Some("fallback".into())
    );
    assert_eq!(name(select_template(&[owner], "else/where")), None);
}

#[test]
fn fork_prs_wait_unless_the_author_is_trusted() {
    let t = template();
    let k = key();
    let ev = event("pull_request", &fixture("pull_request.opened.fork.json"));
    match decide(&ev, &facts(&k, None, Some(&t), Some(false))) {
        Outcome::ForkPending {
            repository,
            pull_request,
            head_sha,
        } => {
            assert_eq!((repository.as_str(), pull_request), (REPO, 12346));
            assert_eq!(head_sha, "c0ffee00d15ea5e0123456789abcdef012345678");
        }
        other => panic!("expected ForkPending, got {other:?}"),
    }
    let Outcome::Apply {
        change: Change::Create(wf),
        ..
    } = decide(&ev, &facts(&k, None, Some(&t), Some(true)))
    else {
        panic!("a trusted author's fork PR runs")
    };
    assert!(
        wf.metadata.annotations.unwrap()[naming::ANNOTATION_OK_TO_TEST]
            .contains("outside-contributor")
    );
}

#[test]
fn ok_to_test_from_a_trusted_user_creates_the_review() {
    let t = template();
    let k = key();
    let mut v = fixture("issue_comment.created.json");
    v["issue"]["number"] = 12346.into();
    v["comment"]["body"] = "/qms ok-to-test".into();
    let ev = event("issue_comment", &v);
    let pr: events::PullRequest = serde_json::from_value(fixture("pulls.12346.json")).unwrap();
    let mut f = facts(&k, None, Some(&t), Some(true));
    f.pull_request = Some(&pr);
    let Outcome::Apply {
        change: Change::Create(wf),
        ..
    } = decide(&ev, &f)
    else {
        panic!("expected a create")
    };
    assert_eq!(wf.spec.pull_request, 12346);
    assert_eq!(
        wf.metadata.annotations.unwrap()[naming::ANNOTATION_OK_TO_TEST],
        "qms-lead"
    );
    // Untrusted: a reply, nothing created.
    let r = reply_of(decide(&ev, &facts(&k, None, Some(&t), Some(false))));
    assert!(r.contains("not allowed") && r.contains("ok-to-test"), "{r}");
}

#[test]
fn approve_binds_to_the_waiting_step_the_current_sha_and_the_login() {
    let t = template();
    let k = key();
    let mut wf = workflow(SHA1);
    wf.status = Some(progress(1, SHA1, 4));
    let ev = event("issue_comment", &fixture("issue_comment.created.json"));
    let spec = spec_of(decide(&ev, &facts(&k, Some(&wf), Some(&t), Some(true))));
    assert_eq!(spec.approvals.len(), 1);
    let a = &spec.approvals[0];
    assert_eq!(
        (a.step.as_str(), a.decision, a.by.as_str(), a.sha.as_str()),
        ("final-review", Decision::Approve, "qms-lead", SHA1)
    );
    assert_eq!(a.reason, "ready to merge");
    assert_eq!(a.at.as_deref(), Some("2025-08-17T06:10:00Z"));
    // Before the step waits, the template's manual step is named.
    let mut early = workflow(SHA1);
    early.status = Some(progress(1, SHA1, 1));
    assert_eq!(
        spec_of(decide(&ev, &facts(&k, Some(&early), Some(&t), Some(true)))).approvals[0].step,
        "final-review"
    );
    // The same approval twice is one approval.
    let mut again = wf.clone();
    again.spec = spec;
    assert!(matches!(
        decide(&ev, &facts(&k, Some(&again), Some(&t), Some(true))),
        Outcome::Ignore(_)
    ));
}

#[test]
fn unauthorized_commands_change_nothing_and_are_answered() {
    let t = template();
    let k = key();
    let mut wf = workflow(SHA1);
    wf.status = Some(progress(1, SHA1, 4));
    let ev = event("issue_comment", &fixture("issue_comment.created.json"));
    let r = reply_of(decide(&ev, &facts(&k, Some(&wf), Some(&t), Some(false))));
    assert!(
        r.contains("@qms-lead") && r.contains("/qms approve") && r.contains("Nothing was changed"),
        "{r}"
    );
}

#[test]
fn reject_override_retry_and_their_errors() {
    let t = template();
    let k = key();
    let wf = workflow(SHA1);
    let comment = |body: &str| {
        let mut v = fixture("issue_comment.created.json");
        v["comment"]["body"] = body.into();
        event("issue_comment", &v)
    };
    let f = facts(&k, Some(&wf), Some(&t), Some(true));
    let s = spec_of(decide(&comment("/qms reject no rollback plan"), &f));
    assert_eq!(s.approvals[0].decision, Decision::Reject);
    let s = spec_of(decide(
        &comment("/qms override code-coverage hotfix for INC-42 --expires 2h"),
        &f,
    ));
    let o = &s.overrides[0];
    assert_eq!(
        (o.gate.as_str(), o.by.as_str(), o.sha.as_str()),
        ("code-coverage", "qms-lead", SHA1)
    );
    assert_eq!(o.expires, "2025-08-17T08:10:00Z");
    assert_eq!(o.reason, "hotfix for INC-42");
    let s = spec_of(decide(&comment("/qms retry dod-validation"), &f));
    let r = s.retry.unwrap();
    assert_eq!(
        (r.step.as_deref(), r.by.as_deref()),
        (Some("dod-validation"), Some("qms-lead"))
    );
    assert_eq!(r.id, k.short_id("retry-0"));
    assert!(
        reply_of(decide(&comment("/qms override no-such-gate because"), &f))
            .contains("no-such-gate")
    );
    assert!(reply_of(decide(&comment("/qms retry no-such-step"), &f)).contains("no-such-step"));
    assert!(reply_of(decide(&comment("/qms reject"), &f)).contains("needs a reason"));
    // Several commands in one comment: one change holding all of them.
    let s = spec_of(decide(
        &comment("/qms override code-coverage flaky\n/qms approve"),
        &f,
    ));
    assert_eq!((s.overrides.len(), s.approvals.len()), (1, 1));
}

#[test]
fn check_run_rerequested_retries_exactly_that_step() {
    let t = template();
    let k = key();
    let wf = workflow(SHA1);
    let mut v = fixture("check_run.rerequested.json");
    v["check_run"]["external_id"] = format!("{NS}/{}/1/dod-validation", wf_name()).into();
    let ev = event("check_run", &v);
    let s = spec_of(decide(&ev, &facts(&k, Some(&wf), Some(&t), None)));
    assert_eq!(s.retry.unwrap().step.as_deref(), Some("dod-validation"));
    // The summary check re-runs the failed step.
    v["check_run"]["external_id"] = format!("{NS}/{}/1", wf_name()).into();
    let s = spec_of(decide(
        &event("check_run", &v),
        &facts(&k, Some(&wf), Some(&t), None),
    ));
    assert_eq!(s.retry.unwrap().step, None);
}

#[test]
fn approve_button_decides_the_manual_step_for_trusted_users_on_the_current_sha() {
    let t = template();
    let k = key();
    let mut wf = workflow(SHA1);
    wf.status = Some(progress(1, SHA1, 4));
    let mut v = fixture("check_run.requested_action.json");
    v["check_run"]["external_id"] = format!("{NS}/{}/1/final-review", wf_name()).into();
    let ev = event("check_run", &v);
    let s = spec_of(decide(&ev, &facts(&k, Some(&wf), Some(&t), Some(true))));
    assert_eq!(
        (
            s.approvals[0].step.as_str(),
            s.approvals[0].decision,
            s.approvals[0].sha.as_str()
        ),
        ("final-review", Decision::Approve, SHA1)
    );
    assert!(
        reply_of(decide(&ev, &facts(&k, Some(&wf), Some(&t), Some(false)))).contains("not allowed")
    );
    // A button on the previous SHA's check run decides nothing.
    let moved = workflow(SHA2);
    assert!(
        reply_of(decide(&ev, &facts(&k, Some(&moved), Some(&t), Some(true))))
            .contains("nothing was changed")
    );
    // Not a manual step.
    v["check_run"]["external_id"] = format!("{NS}/{}/1/dor-validation", wf_name()).into();
    assert!(matches!(
        decide(
            &event("check_run", &v),
            &facts(&k, Some(&wf), Some(&t), Some(true))
        ),
        Outcome::Ignore(_)
    ));
}

#[test]
fn check_suite_rerequested_retries_the_failed_steps() {
    let t = template();
    let k = key();
    let mut wf = workflow(SHA1);
    let mut st = progress(1, SHA1, 2);
    st.state = WorkflowState::DodFailed;
    st.steps[2].phase = StepPhase::Failed;
    wf.status = Some(st);
    let ev = event("check_suite", &fixture("check_suite.rerequested.json"));
    let s = spec_of(decide(&ev, &facts(&k, Some(&wf), Some(&t), None)));
    let r = s.retry.unwrap();
    assert_eq!(r.step, None);
    assert_eq!(r.by.as_deref(), Some("alice-dev"));
}

#[test]
fn ping_other_events_and_bots() {
    let k = key();
    assert!(matches!(
        decide(
            &events::parse("ping", b"{}").unwrap(),
            &facts(&k, None, None, None)
        ),
        Outcome::Ignore(_)
    ));
    assert!(matches!(
        events::parse("star", b"{}").unwrap(),
        Event::Other(_)
    ));
    let mut v = fixture("issue_comment.created.json");
    v["comment"]["user"]["type"] = "Bot".into();
    let wf = workflow(SHA1);
    assert!(matches!(
        decide(
            &event("issue_comment", &v),
            &facts(&k, Some(&wf), None, Some(true))
        ),
        Outcome::Ignore(_)
    ));
}

/// GitHub's `merge_group` payload (tests/fixtures, the documented shape).
fn merge_group_event(action: &str) -> (Event, Value) {
    let v = fixture(&format!("merge_group.{action}.json"));
    (event("merge_group", &v), v)
}

#[test]
fn merge_group_payloads_parse_with_the_group_and_its_pull_request() {
    let (ev, v) = merge_group_event("checks_requested");
    let Event::MergeGroup(e) = &ev else {
        panic!("expected a merge_group event, got {ev:?}")
    };
    assert_eq!(e.action, "checks_requested");
    assert_eq!(e.merge_group.head_sha, v["merge_group"]["head_sha"]);
    assert_eq!(e.merge_group.base_ref, "refs/heads/main");
    assert_eq!(e.merge_group.pull_request(), Some(PR));
    assert_eq!(ev.installation(), Some(4242));
    assert_eq!(ev.repository().unwrap().full_name, REPO);
    let (ev, _) = merge_group_event("destroyed");
    let Event::MergeGroup(e) = &ev else { panic!() };
    assert_eq!(e.reason.as_deref(), Some("dequeued"));
    // A payload without the group is refused with the field named, not a panic.
    let mut bad = v.clone();
    bad.as_object_mut().unwrap().remove("merge_group");
    let err = events::parse("merge_group", bad.to_string().as_bytes()).unwrap_err();
    assert!(err.to_string().contains("merge_group"), "{err}");
    // Refs of another shape name no pull request.
    let mut other = e.merge_group.clone();
    for r in [
        "refs/heads/main",
        "refs/heads/gh-readonly-queue/main/pr-x-abc",
        "pr-0-abc",
    ] {
        other.head_ref = r.into();
        assert_eq!(other.pull_request(), None, "{r}");
    }
}

#[test]
fn checks_requested_creates_the_merge_group_review_on_its_head_sha() {
    let t = template();
    let k = key();
    let (ev, v) = merge_group_event("checks_requested");
    let head = v["merge_group"]["head_sha"].as_str().unwrap();
    let Outcome::Apply {
        change: Change::Create(wf),
        reply: None,
        ..
    } = decide(&ev, &facts(&k, None, Some(&t), None))
    else {
        panic!("expected a create")
    };
    let expected = naming::merge_group_workflow_name(REPO, PR, head);
    assert_eq!(wf.metadata.name.as_deref(), Some(expected.as_str()));
    assert_ne!(
        expected,
        wf_name(),
        "apart from the pull request's own review"
    );
    assert_eq!(wf.spec.head_sha, head);
    assert_eq!(wf.spec.pull_request, PR);
    assert_eq!(wf.spec.base_ref, "main");
    assert_eq!(
        wf.spec.head_ref,
        "gh-readonly-queue/main/pr-12345-3f7c2a9d41e8b6c05d9a7e1f2b3c4d5e6f708192"
    );
    assert_eq!(wf.spec.template_ref.name, "standard-qms-review");
    let mg = wf.spec.merge_group.as_ref().unwrap();
    assert_eq!(mg.head_ref, v["merge_group"]["head_ref"]);
    assert_eq!(mg.base_sha, v["merge_group"]["base_sha"]);
    let labels = wf.metadata.labels.as_ref().unwrap();
    assert_eq!(labels[naming::LABEL_MERGE_GROUP], "true");
    assert!(!labels.contains_key(naming::LABEL_PULL_REQUEST));
    assert_eq!(
        wf.metadata.finalizers,
        Some(vec![naming::FINALIZER.to_owned()])
    );
    let ann = wf.metadata.annotations.as_ref().unwrap();
    assert_eq!(
        naming::recorded_deliveries(Some(ann)),
        vec![k.as_str().to_owned()]
    );
    assert_eq!(ann[naming::ANNOTATION_INSTALLATION], "4242");

    // Asked again for the same group: nothing to do.
    let again = decide(&ev, &facts(&k, Some(&wf), Some(&t), None));
    assert!(matches!(again, Outcome::Ignore(r) if r.contains("already reviewing")));
    // No template: explained, nothing created.
    assert!(matches!(
        decide(&ev, &facts(&k, None, None, None)),
        Outcome::Ignore(r) if r.contains("merge groups")
    ));
    // A head SHA that is not a commit id is refused.
    let mut bad = v.clone();
    bad["merge_group"]["head_sha"] = "not-a-sha".into();
    assert!(matches!(
        decide(
            &event("merge_group", &bad),
            &facts(&k, None, Some(&t), None)
        ),
        Outcome::Ignore(_)
    ));
}

#[test]
fn destroyed_cancels_the_merge_group_review() {
    let t = template();
    let k = key();
    let (requested, _) = merge_group_event("checks_requested");
    let Outcome::Apply {
        change: Change::Create(wf),
        ..
    } = decide(&requested, &facts(&k, None, Some(&t), None))
    else {
        panic!("expected a create")
    };
    let (destroyed, _) = merge_group_event("destroyed");
    match decide(&destroyed, &facts(&k, Some(&wf), Some(&t), None)) {
        Outcome::Apply {
            change: Change::Delete,
            note,
            ..
        } => assert!(note.contains("dequeued"), "{note}"),
        other => panic!("expected a delete, got {other:?}"),
    }
    assert!(matches!(
        decide(&destroyed, &facts(&k, None, Some(&t), None)),
        Outcome::Ignore(_)
    ));
    let mut deleting = (*wf).clone();
    deleting.metadata.deletion_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
        ));
    assert!(matches!(
        decide(&destroyed, &facts(&k, Some(&deleting), Some(&t), None)),
        Outcome::Ignore(r) if r.contains("already")
    ));
}

#[test]
fn merge_groups_use_a_merge_group_template_else_the_repositorys() {
    let mut exact = template();
    exact.metadata.name = Some("exact".into());
    exact.spec.default = false;
    exact.spec.repositories = vec![REPO.into()];
    let mut queue = template();
    queue.metadata.name = Some("queue".into());
    queue.spec.default = false;
    queue.spec.repositories = vec!["creo/*".into()];
    queue.spec.merge_groups = MergeGroups::Only;
    let mut fallback = template();
    fallback.metadata.name = Some("fallback".into());
    fallback.spec.repositories = vec![];
    let name = |t: Option<&WorkflowTemplate>| t.and_then(|t| t.metadata.name.clone());
    let all = vec![fallback.clone(), queue.clone(), exact.clone()];
    // A merge-group template wins for merge groups, even over a more specific PR template...
    assert_eq!(
        name(select_merge_group_template(&all, REPO)),
        Some("queue".into())
    );
    // ...and is never used for pull requests.
    assert_eq!(name(select_template(&all, REPO)), Some("exact".into()));
    assert_eq!(
        name(select_template(&all, "creo/other")),
        Some("fallback".into())
    );
    // Without one, a merge group gets the repository's own template (same check names).
    let no_queue = vec![fallback.clone(), exact.clone()];
    assert_eq!(
        name(select_merge_group_template(&no_queue, REPO)),
        Some("exact".into())
    );
    assert_eq!(
        name(select_merge_group_template(&no_queue, "else/where")),
        Some("fallback".into())
    );
    // A default merge-group template comes after the repository's own match.
    let mut default_queue = queue.clone();
    default_queue.spec.repositories = vec![];
    default_queue.spec.default = true;
    let both = vec![fallback, default_queue, exact];
    assert_eq!(
        name(select_merge_group_template(&both, REPO)),
        Some("exact".into())
    );
    assert_eq!(
        name(select_merge_group_template(&both, "else/where")),
        Some("queue".into())
    );
    assert_eq!(
        name(select_template(&both, "else/where")),
        Some("fallback".into())
    );
}

/// GitHub's `push` payload (tests/fixtures, the documented shape), changed by `edit`.
fn push_event(edit: impl FnOnce(&mut Value)) -> Event {
    let mut v = fixture("push.json");
    edit(&mut v);
    event("push", &v)
}

fn push_template(branches: &[&str]) -> WorkflowTemplate {
    let mut t = template();
    t.spec.pushes = Some(qms_api::Pushes {
        branches: branches.iter().map(|b| (*b).to_owned()).collect(),
    });
    t
}

#[test]
fn a_push_to_a_configured_branch_creates_the_review_of_the_pushed_commit() {
    let t = push_template(&["main", "release/*"]);
    let k = key();
    let ev = push_event(|_| {});
    let Event::Push(e) = &ev else {
        panic!("expected a push event, got {ev:?}")
    };
    assert_eq!(e.branch(), Some("main"));
    assert_eq!(ev.installation(), Some(4242));
    assert_eq!(ev.repository().unwrap().full_name, REPO);
    // `repository.pushed_at` (Unix seconds in push payloads) orders the baselines.
    assert_eq!(
        e.pushed_at().map(|t| t.to_rfc3339()),
        Some("2025-08-17T07:05:05+00:00".into())
    );
    let sha = "5a6b7c8d9e0f11223344556677889900aabbccdd";
    let Outcome::Apply {
        change: Change::Create(wf),
        reply: None,
        ..
    } = decide(&ev, &facts(&k, None, Some(&t), None))
    else {
        panic!("expected a create")
    };
    assert_eq!(
        wf.metadata.name.as_deref(),
        Some(naming::push_workflow_name(REPO, "main", sha).as_str())
    );
    let labels = wf.metadata.labels.as_ref().unwrap();
    assert_eq!(labels[naming::LABEL_PUSH], "true");
    let spec = &wf.spec;
    assert_eq!(
        (
            spec.head_sha.as_str(),
            spec.base_ref.as_str(),
            spec.pull_request
        ),
        (sha, "main", 0)
    );
    let push = spec.push.as_ref().expect("a push review");
    assert_eq!(push.pushed_at, "2025-08-17T07:05:05Z");
    assert_eq!(
        push.before.as_deref(),
        Some("0d1e2f3a4b5c6d7e8f90a1b2c3d4e5f6a7b8c9d0")
    );
    assert_eq!(push.pusher.as_deref(), Some("alice-dev"));
    // Without `repository.pushed_at`, the head commit's time.
    let ev = push_event(|v| {
        v["repository"].as_object_mut().unwrap().remove("pushed_at");
    });
    let Event::Push(e) = &ev else { panic!() };
    assert_eq!(
        e.pushed_at().map(|t| t.to_rfc3339()),
        Some("2025-08-17T07:05:00+00:00".into())
    );
    // A pattern branch is configured too; a created branch has no `before`.
    let ev = push_event(|v| {
        v["ref"] = "refs/heads/release/2.1".into();
        v["created"] = true.into();
        v["before"] = "0000000000000000000000000000000000000000".into();
    });
    let Outcome::Apply {
        change: Change::Create(wf),
        ..
    } = decide(&ev, &facts(&k, None, Some(&t), None))
    else {
        panic!("expected a create")
    };
    assert_eq!(wf.spec.base_ref, "release/2.1");
    assert_eq!(wf.spec.push.as_ref().unwrap().before, None);
    // The review exists already (a redelivery, a second hook): nothing to do.
    let ev = push_event(|_| {});
    assert!(matches!(
        decide(&ev, &facts(&k, Some(&wf), Some(&t), None)),
        Outcome::Ignore(r) if r.contains("already reviewing")
    ));
}

#[test]
fn deleted_refs_tags_and_branches_no_template_reviews_are_ignored_with_the_reason() {
    let t = push_template(&["main", "release/*"]);
    let k = key();
    type Edit = Box<dyn FnOnce(&mut Value)>;
    let cases: [(Edit, &str); 5] = [
        (
            Box::new(|v: &mut Value| {
                v["deleted"] = true.into();
                v["after"] = "0000000000000000000000000000000000000000".into();
            }),
            "deleted",
        ),
        (
            Box::new(|v: &mut Value| {
                v["after"] = "0000000000000000000000000000000000000000".into();
            }),
            "deleted",
        ),
        (
            Box::new(|v: &mut Value| v["ref"] = "refs/tags/v1.2.0".into()),
            "tags are not reviewed",
        ),
        (
            Box::new(|v: &mut Value| v["ref"] = "refs/heads/feature/x".into()),
            "no WorkflowTemplate reviews pushes to creo/creo-roo-commander@feature/x",
        ),
        (
            Box::new(|v: &mut Value| v["after"] = "not-a-sha".into()),
            "not a commit id",
        ),
    ];
    for (edit, why) in cases {
        match decide(&push_event(edit), &facts(&k, None, Some(&t), None)) {
            Outcome::Ignore(r) => assert!(r.contains(why), "{why:?} not in {r:?}"),
            other => panic!("expected ignored ({why}), got {other:?}"),
        }
    }
    // A template without `pushes` (the repository's pull-request template) reviews no push.
    let ev = push_event(|_| {});
    assert!(matches!(
        decide(&ev, &facts(&k, None, Some(&template()), None)),
        Outcome::Ignore(r) if r.contains("spec.pushes.branches")
    ));
    // A payload without `after` is refused with the field named, not a panic.
    let mut bad = fixture("push.json");
    bad.as_object_mut().unwrap().remove("after");
    let err = events::parse("push", bad.to_string().as_bytes()).unwrap_err();
    assert!(err.to_string().contains("after"), "{err}");
}

#[test]
fn pushes_use_the_most_specific_template_configured_for_the_branch() {
    let mut prs = template();
    prs.metadata.name = Some("prs".into());
    prs.spec.default = false;
    prs.spec.repositories = vec![REPO.into()];
    let mut owner = push_template(&["main"]);
    owner.metadata.name = Some("owner".into());
    owner.spec.default = false;
    owner.spec.repositories = vec!["creo/*".into()];
    let mut releases = push_template(&["release/*"]);
    releases.metadata.name = Some("releases".into());
    releases.spec.repositories = vec![];
    let all = vec![prs.clone(), owner.clone(), releases.clone()];
    let name = |t: Option<&WorkflowTemplate>| t.and_then(|t| t.metadata.name.clone());
    // The exact repository match has no `pushes`: the owner's template reviews main.
    assert_eq!(
        name(select_push_template(&all, REPO, "main")),
        Some("owner".into())
    );
    // release/* only by the default one; other branches by none.
    assert_eq!(
        name(select_push_template(&all, REPO, "release/3")),
        Some("releases".into())
    );
    assert_eq!(name(select_push_template(&all, REPO, "develop")), None);
    assert_eq!(name(select_push_template(&all, "else/where", "main")), None);
    // Pull requests still get their template.
    assert_eq!(name(select_template(&all, REPO)), Some("prs".into()));
}

#[test]
fn a_merged_pull_request_records_its_merge_time_not_the_delivery_time() {
    let t = template();
    let k = key();
    let mut wf = workflow(SHA1);
    wf.status = Some(progress(1, SHA1, 5));
    let mut v = fixture("pull_request.closed.json");
    v["pull_request"]["merged"] = true.into();
    v["pull_request"]["head"]["sha"] = SHA1.into();
    v["pull_request"]["merged_at"] = "2025-08-16T09:30:00Z".into();
    let Outcome::Apply {
        change: Change::Merged(update),
        ..
    } = decide(
        &event("pull_request", &v),
        &facts(&k, Some(&wf), Some(&t), None),
    )
    else {
        panic!("expected a baseline update")
    };
    assert_eq!(update.at, "2025-08-16T09:30:00Z");
    assert!(update.values.iter().all(|x| x.at == update.at));
}
