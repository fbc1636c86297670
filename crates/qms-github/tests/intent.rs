//! The pure decision: webhook payload (GitHub's documented shapes, tests/fixtures) + facts →
//! the change to make.

mod common;

use common::*;
use qms_api::{Decision, StepPhase, WorkflowState, WorkflowTemplate};
use qms_github::events::{self, Event};
use qms_github::intent::{Change, Facts, Outcome, decide, select_template};
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
