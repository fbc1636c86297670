//! Check runs out, against a fake GitHub (wiremock). The operator is simulated by writing the
//! workflow status step by step; what the sync returns is stored back as the operator would.
//! Time is a manual clock: nothing sleeps.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::common::github::FakeGithub;
use crate::common::*;
use qms_api::{QmsWorkflow, RepositoryDispatch, WorkflowTemplateSpec};
use qms_github::checks::render::{CheckAnnotation, RenderConfig, StepAnnotations};
use qms_github::checks::sync::{SyncInput, SyncReport, sync};
use qms_github::client::GithubError;
use qms_github::{Credentials, GithubClient, GithubConfig, ManualClock, Secret};

fn config(uri: &str) -> GithubConfig {
    GithubConfig {
        api_base_url: uri.to_owned(),
        credentials: Credentials::Token(Secret::new("ghp_testtoken0123456789")),
        namespace: NS.into(),
        details_url_template: Some("https://qms.example.com/{namespace}/{name}".into()),
        ..GithubConfig::default()
    }
}

struct Harness {
    gh: FakeGithub,
    clock: ManualClock,
    client: GithubClient,
    template: WorkflowTemplateSpec,
    wf: QmsWorkflow,
    annotations: StepAnnotations,
}

impl Harness {
    async fn new() -> Self {
        let gh = FakeGithub::start().await;
        let clock = ManualClock::new(t0());
        let client = GithubClient::new(&config(&gh.uri()), Arc::new(clock.clone())).unwrap();
        Self {
            gh,
            clock,
            client,
            template: template().spec,
            wf: workflow(SHA1),
            annotations: BTreeMap::new(),
        }
    }

    /// One sync; its result is stored in the workflow's status as the reconcile would.
    async fn sync(&mut self) -> SyncReport {
        let report = sync(
            &self.client,
            &RenderConfig {
                details_url_template: Some("https://qms.example.com/{namespace}/{name}".into()),
                ..RenderConfig::default()
            },
            SyncInput {
                workflow: &self.wf,
                template: Some(&self.template),
                annotations: &self.annotations,
            },
        )
        .await;
        let st = self.wf.status.get_or_insert_with(Default::default);
        st.check_runs = report.check_runs.clone();
        st.dispatches = report.dispatches.clone();
        report
    }

    /// The operator writes a new status (keeping what qms-github owns).
    fn operator_sets(&mut self, mut status: qms_api::QmsWorkflowStatus) {
        if let Some(old) = &self.wf.status {
            status.check_runs = old.check_runs.clone();
            status.dispatches = old.dispatches.clone();
        }
        self.wf.status = Some(status);
    }

    /// Syncs until converged, advancing the clock whenever GitHub (or the pacing) says "later".
    async fn sync_until_converged(&mut self, max_rounds: usize) -> usize {
        for round in 1..=max_rounds {
            let r = self.sync().await;
            if r.converged {
                return round;
            }
            let at = r
                .retry_at
                .unwrap_or_else(|| panic!("not retryable: {:?}", r.error));
            self.clock.set(at);
        }
        panic!("did not converge in {max_rounds} rounds");
    }
}

#[tokio::test]
async fn a_pull_request_from_opened_to_completed_makes_exactly_these_calls() {
    let mut h = Harness::new().await;
    // Created by the webhook, operator not started: nothing on GitHub yet.
    assert!(h.sync().await.converged);
    assert!(h.gh.take_calls().is_empty());

    let expected: [&[&str]; 6] = [
        // DoR running: the summary and the step's check appear (looked up first: adopt after a crash).
        &[
            "GET check-runs",
            "POST QMS in_progress",
            "GET check-runs",
            "POST QMS / dor-validation in_progress",
        ],
        // DoR passed, progress reviews running.
        &[
            "PATCH #1 in_progress",
            "PATCH #2 completed success",
            "GET check-runs",
            "POST QMS / progress-reviews in_progress",
        ],
        &[
            "PATCH #1 in_progress",
            "PATCH #3 completed success",
            "GET check-runs",
            "POST QMS / dod-validation in_progress",
        ],
        &[
            "PATCH #1 in_progress",
            "PATCH #4 completed success",
            "GET check-runs",
            "POST QMS / final-review in_progress",
        ],
        // The manual step waits: action_required with Approve/Reject.
        &["PATCH #1 in_progress", "PATCH #5 completed action_required"],
        // Approved: success everywhere.
        &["PATCH #1 completed success", "PATCH #5 completed success"],
    ];
    for (stage, calls) in expected.iter().enumerate() {
        h.clock.advance(Duration::from_secs(60)); // steps take minutes; the write pacing refills
        h.operator_sets(progress(1, SHA1, stage as u32));
        let r = h.sync().await;
        assert!(r.converged, "stage {stage}: {:?}", r.error);
        assert_eq!(h.gh.take_calls(), *calls, "stage {stage}");
        if stage == 4 {
            assert_eq!(
                h.gh.check("QMS / final-review", SHA1).unwrap().actions,
                ["approve", "reject"]
            );
        }
    }
    // Level-triggered and idempotent: nothing changed, nothing sent.
    let r = h.sync().await;
    assert!(r.converged && !r.changed && r.writes == 0);
    assert!(h.gh.take_calls().is_empty());

    let final_review = h.gh.check("QMS / final-review", SHA1).unwrap();
    assert!(
        final_review.actions.is_empty(),
        "buttons removed after the decision"
    );
    let summary = h.gh.check("QMS", SHA1).unwrap();
    assert_eq!(
        (summary.status.as_str(), summary.conclusion.as_deref()),
        ("completed", Some("success"))
    );
    assert!(
        summary
            .summary
            .contains("| compliance-audit | compliance_score | 97 | >= | 95 | ✅ passed | yes |")
    );
    assert_eq!(summary.external_id, format!("{NS}/{}/1", wf_name()));
    // The ids are kept in status.
    let refs = &h.wf.status.as_ref().unwrap().check_runs;
    assert_eq!(refs.len(), 5);
    assert!(
        refs.iter()
            .all(|r| r.status == "completed" && r.head_sha == SHA1 && r.run == 1)
    );
    h.gh.assert_no_violations();
}

#[tokio::test]
async fn a_push_mid_run_cancels_the_old_sha_checks_and_starts_new_ones() {
    let mut h = Harness::new().await;
    h.operator_sets(progress(1, SHA1, 2));
    h.sync().await;
    h.gh.take_calls();
    // synchronize: the webhook moved spec.headSha; the operator has not reacted yet.
    h.wf.spec.head_sha = SHA2.into();
    assert!(h.sync().await.converged);
    // The open ones (summary #1, dod-validation #4) are cancelled; completed ones stay as they are.
    assert_eq!(
        h.gh.take_calls(),
        [
            "PATCH #1 completed cancelled",
            "PATCH #4 completed cancelled"
        ]
    );
    assert!(
        h.gh.check("QMS", SHA1)
            .unwrap()
            .summary
            .contains("Superseded")
    );
    assert_eq!(
        h.gh.check("QMS / dor-validation", SHA1)
            .unwrap()
            .conclusion
            .as_deref(),
        Some("success")
    );
    // The operator starts run 2 on the new SHA: new check runs, never the old ones reopened.
    h.operator_sets(progress(2, SHA2, 0));
    assert!(h.sync().await.converged);
    assert_eq!(
        h.gh.take_calls(),
        [
            "GET check-runs",
            "POST QMS in_progress",
            "GET check-runs",
            "POST QMS / dor-validation in_progress"
        ]
    );
    assert_eq!(h.gh.check("QMS", SHA2).unwrap().id, 5);
    // Old run's records are dropped from status once completed.
    let refs = &h.wf.status.as_ref().unwrap().check_runs;
    assert!(
        refs.iter().all(|r| r.run == 2 && r.head_sha == SHA2),
        "{refs:?}"
    );
    h.gh.assert_no_violations();
}

#[tokio::test]
async fn a_429_with_retry_after_is_honoured_without_sleeping() {
    let mut h = Harness::new().await;
    h.operator_sets(progress(1, SHA1, 0));
    h.gh.lock()
        .fail_next
        .push_back((429, vec![("retry-after".into(), "30".into())]));
    let r = h.sync().await;
    assert!(!r.converged);
    assert!(
        matches!(r.error, Some(GithubError::RateLimited { .. })),
        "{:?}",
        r.error
    );
    assert_eq!(r.retry_at, Some(t0() + chrono::Duration::seconds(30)));
    assert_eq!(h.gh.take_calls().len(), 1);
    // Before the time GitHub named, nothing is sent at all.
    h.clock.advance(Duration::from_secs(29));
    let r = h.sync().await;
    assert!(!r.converged);
    assert!(h.gh.take_calls().is_empty());
    h.clock.advance(Duration::from_secs(1));
    assert!(h.sync().await.converged);
    assert_eq!(
        h.gh.check("QMS / dor-validation", SHA1).unwrap().status,
        "in_progress"
    );
}

#[tokio::test]
async fn primary_rate_limit_waits_for_x_ratelimit_reset() {
    let mut h = Harness::new().await;
    h.operator_sets(progress(1, SHA1, 0));
    let reset = t0().timestamp() + 600;
    h.gh.lock().fail_next.push_back((
        403,
        vec![
            ("x-ratelimit-remaining".into(), "0".into()),
            ("x-ratelimit-reset".into(), reset.to_string()),
        ],
    ));
    let r = h.sync().await;
    assert_eq!(r.retry_at.map(|t| t.timestamp()), Some(reset));
    h.clock.advance(Duration::from_secs(599));
    h.sync().await;
    assert_eq!(h.gh.take_calls().len(), 1, "nothing sent before the reset");
    h.clock.advance(Duration::from_secs(1));
    assert!(h.sync().await.converged);
}

#[tokio::test]
async fn a_ten_minute_outage_during_a_run_converges_afterwards() {
    let mut h = Harness::new().await;
    h.operator_sets(progress(1, SHA1, 0));
    assert!(h.sync().await.converged);
    h.gh.take_calls();

    // GitHub answers 503 to everything for 10 minutes, while the workflow keeps running.
    h.gh.lock().down = Some((503, vec![]));
    let outage_end = t0() + chrono::Duration::minutes(10);
    let mut stage = 0;
    let mut attempts = 0;
    while h.clock.now_utc() < outage_end {
        stage = (stage + 1).min(5);
        h.operator_sets(progress(1, SHA1, stage));
        let r = h.sync().await;
        assert!(!r.converged);
        assert!(matches!(
            r.error,
            Some(GithubError::Unavailable { .. }) | Some(GithubError::RateLimited { .. })
        ));
        attempts += h.gh.take_calls().len();
        h.clock.set(r.retry_at.expect("retryable"));
    }
    // Backoff (jittered exponential, capped at 5 min) keeps the attempts few: no hammering.
    assert!(
        (3..=12).contains(&attempts),
        "{attempts} attempts during the outage"
    );
    assert_eq!(stage, 5, "the workflow completed during the outage");

    h.gh.lock().down = None;
    let rounds = h.sync_until_converged(10).await;
    assert!(rounds <= 2, "{rounds}");
    for (name, conclusion) in [
        ("QMS", "success"),
        ("QMS / dor-validation", "success"),
        ("QMS / progress-reviews", "success"),
        ("QMS / dod-validation", "success"),
        ("QMS / final-review", "success"),
    ] {
        let c =
            h.gh.check(name, SHA1)
                .unwrap_or_else(|| panic!("{name} missing"));
        assert_eq!(
            (c.status.as_str(), c.conclusion.as_deref()),
            ("completed", Some(conclusion)),
            "{name}"
        );
    }
    assert_eq!(h.gh.lock().checks.len(), 5, "no duplicate check runs");
    h.gh.assert_no_violations();
}

#[tokio::test]
async fn annotations_beyond_50_go_in_several_requests_once() {
    let mut h = Harness::new().await;
    let anns: Vec<CheckAnnotation> = (0..120)
        .map(|i| CheckAnnotation {
            path: format!("src/module{}.rs", i % 7),
            start_line: i + 1,
            end_line: i + 2,
            annotation_level: if i % 2 == 0 {
                "warning".into()
            } else {
                "notice".into()
            },
            message: format!("finding {i}"),
            title: Some("qms-dor-validator".into()),
        })
        .collect();
    h.annotations.insert("dor-validation".into(), anns);
    h.operator_sets(progress(1, SHA1, 1));
    assert!(h.sync().await.converged);
    let raw = h.gh.take_raw_calls();
    let calls: Vec<String> = raw.iter().map(crate::common::github::Call::short).collect();
    // Created with the first 50, then two updates with the next 50 and the last 20.
    assert_eq!(
        calls[3..6],
        [
            "POST QMS / dor-validation completed success",
            "PATCH #2 +50 annotations",
            "PATCH #2 +20 annotations"
        ],
        "{calls:?}"
    );
    assert_eq!(
        raw[3].body["output"]["annotations"]
            .as_array()
            .map(Vec::len),
        Some(50)
    );
    let c = h.gh.check("QMS / dor-validation", SHA1).unwrap();
    assert_eq!(c.annotations, 120);
    assert_eq!(
        h.wf.status
            .as_ref()
            .unwrap()
            .check_runs
            .iter()
            .find(|r| r.name == "QMS / dor-validation")
            .unwrap()
            .annotations_sent,
        120
    );
    // Not sent again.
    h.sync().await;
    assert!(h.gh.take_calls().is_empty());
    assert_eq!(
        h.gh.check("QMS / dor-validation", SHA1)
            .unwrap()
            .annotations,
        120
    );
    h.gh.assert_no_violations();
}

#[tokio::test]
async fn writes_are_paced_under_80_per_minute() {
    let mut h = Harness::new().await;
    let mut writes_at = Vec::new();
    // 40 workflows' worth of check runs wanted at once: the bucket spreads them out.
    for pr in 0..40u64 {
        h.wf = workflow(SHA1);
        h.wf.metadata.name = Some(format!("wf-{pr}"));
        h.operator_sets(progress(1, SHA1, 1));
        loop {
            let r = h.sync().await;
            let writes =
                h.gh.take_raw_calls()
                    .iter()
                    .filter(|c| c.method != "GET")
                    .count();
            writes_at.extend(std::iter::repeat_n(h.clock.now_utc(), writes));
            if r.converged {
                break;
            }
            h.clock.set(r.retry_at.expect("paced"));
        }
    }
    assert_eq!(writes_at.len(), 40 * 3);
    for (i, t) in writes_at.iter().enumerate() {
        let in_minute = writes_at[i..]
            .iter()
            .take_while(|u| **u < *t + chrono::Duration::seconds(60))
            .count();
        assert!(
            in_minute <= 80,
            "{in_minute} writes in the minute after {t}"
        );
    }
    h.gh.assert_no_violations();
}

#[tokio::test]
async fn repository_dispatch_events_are_sent_once_per_occurrence() {
    let mut h = Harness::new().await;
    h.template.repository_dispatch = Some(RepositoryDispatch {
        enabled: true,
        types: vec!["step_completed".into(), "workflow_failed".into()],
    });
    h.operator_sets(progress(1, SHA1, 2));
    assert!(h.sync().await.converged);
    h.sync().await;
    let sent = h.gh.lock().dispatches.clone();
    let kinds: Vec<(String, String)> = sent
        .iter()
        .map(|d| {
            (
                d["client_payload"]["type"].as_str().unwrap().to_owned(),
                d["client_payload"]["step"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("step_completed".into(), "dor-validation".into()),
            ("step_completed".into(), "progress-reviews".into())
        ]
    );
    for d in &sent {
        assert_eq!(d["event_type"], "qms_workflow");
        assert!(
            d["client_payload"].as_object().unwrap().len() <= 10,
            "GitHub allows 10 top-level keys"
        );
    }
    let mut st = progress(1, SHA1, 2);
    st.state = qms_api::WorkflowState::DodFailed;
    st.steps[2].phase = qms_api::StepPhase::Failed;
    h.operator_sets(st);
    // The step the failure left unrun gets a concluded check run too: more writes than the
    // pacing allows at once, so let the clock move.
    h.sync_until_converged(10).await;
    h.sync().await;
    let types: Vec<String> =
        h.gh.lock()
            .dispatches
            .iter()
            .map(|d| d["client_payload"]["type"].as_str().unwrap().to_owned())
            .collect();
    assert_eq!(
        types,
        [
            "step_completed",
            "step_completed",
            "step_completed",
            "workflow_failed"
        ]
    );
    assert_eq!(h.wf.status.as_ref().unwrap().dispatches.len(), 4);
}

#[tokio::test]
async fn a_check_run_created_before_a_crash_is_adopted_not_duplicated() {
    let mut h = Harness::new().await;
    h.operator_sets(progress(1, SHA1, 0));
    assert!(h.sync().await.converged);
    // The operator crashed before storing the ids: status has no checkRuns.
    h.wf.status.as_mut().unwrap().check_runs.clear();
    h.gh.take_calls();
    h.operator_sets(progress(1, SHA1, 1));
    assert!(h.sync().await.converged);
    let calls = h.gh.take_calls();
    assert_eq!(
        calls.iter().filter(|c| c.starts_with("POST")).count(),
        1,
        "only progress-reviews is new: {calls:?}"
    );
    assert_eq!(h.gh.lock().checks.len(), 3);
    assert_eq!(
        h.gh.check("QMS / dor-validation", SHA1)
            .unwrap()
            .conclusion
            .as_deref(),
        Some("success")
    );
}

/// One sync of `wf` at `stage` with `client`; the result is stored back into `wf`.
async fn sync_stage(client: &GithubClient, wf: &mut QmsWorkflow, stage: u32) -> SyncReport {
    let mut st = progress(1, SHA1, stage);
    st.check_runs = wf
        .status
        .as_ref()
        .map(|s| s.check_runs.clone())
        .unwrap_or_default();
    wf.status = Some(st);
    let t = template().spec;
    let none = BTreeMap::new();
    let r = sync(
        client,
        &RenderConfig::default(),
        SyncInput {
            workflow: wf,
            template: Some(&t),
            annotations: &none,
        },
    )
    .await;
    wf.status.as_mut().unwrap().check_runs = r.check_runs.clone();
    r
}

#[tokio::test]
async fn github_app_tokens_are_minted_per_installation_cached_and_refreshed() {
    let gh = FakeGithub::start().await;
    let clock = ManualClock::new(t0());
    let key = std::fs::read_to_string(fixture_path("test-app-key.pem")).unwrap();
    let cfg = GithubConfig {
        api_base_url: gh.uri(),
        credentials: Credentials::App {
            app_id: 123456,
            private_key: Secret::new(key),
        },
        ..GithubConfig::default()
    };
    let client = GithubClient::new(&cfg, Arc::new(clock.clone())).unwrap();
    let mut wf = workflow(SHA1);
    let r = sync_stage(&client, &mut wf, 0).await;
    assert!(r.converged, "{:?}", r.error);
    let calls = gh.take_raw_calls();
    // First the app JWT buys an installation token; then every call uses that token.
    assert_eq!(calls[0].path, "/app/installations/4242/access_tokens");
    let claims = jwt_claims(calls[0].auth.as_deref().unwrap());
    assert_eq!(claims["iss"], "123456");
    assert_eq!(claims["iat"].as_i64(), Some(t0().timestamp() - 60));
    assert!(claims["exp"].as_i64().unwrap() - t0().timestamp() <= 600);
    assert!(calls.len() > 1);
    assert!(
        calls[1..]
            .iter()
            .all(|c| c.auth.as_deref() == Some("Bearer ghs_installation4242token1"))
    );
    // Within the hour: the cached token.
    clock.advance(Duration::from_secs(30 * 60));
    assert!(sync_stage(&client, &mut wf, 1).await.converged);
    assert_eq!(gh.lock().tokens_issued, 1);
    // The token expires at 07:10 and is replaced 5 minutes before: at 06:66 = 07:06, a new one.
    clock.advance(Duration::from_secs(26 * 60));
    assert!(sync_stage(&client, &mut wf, 2).await.converged);
    assert_eq!(gh.lock().tokens_issued, 2);
    assert!(
        gh.take_raw_calls()
            .iter()
            .any(|c| c.auth.as_deref() == Some("Bearer ghs_installation4242token2"))
    );
    // Neither the key nor a token is printable.
    let printed = format!("{cfg:?} {client:?}");
    assert!(
        !printed.contains("PRIVATE KEY") && !printed.contains("ghs_"),
        "{printed}"
    );
}

fn jwt_claims(auth: &str) -> serde_json::Value {
    let token = auth.strip_prefix("Bearer ").unwrap();
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&base64_decode(payload)).unwrap()
}

/// Minimal base64url decoder (no padding) for reading the JWT claims in the test.
fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => (c - b'A') as u32,
            b'a'..=b'z' => (c - b'a' + 26) as u32,
            b'0'..=b'9' => (c - b'0' + 52) as u32,
            b'-' | b'+' => 62,
            _ => 63,
        }
    };
    let bytes: Vec<u8> = s.bytes().filter(|c| *c != b'=').collect();
    let mut out = Vec::new();
    for chunk in bytes.chunks(4) {
        let mut n = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            n |= val(*c) << (18 - 6 * i);
        }
        out.push((n >> 16) as u8);
        if chunk.len() > 2 {
            out.push((n >> 8) as u8);
        }
        if chunk.len() > 3 {
            out.push(n as u8);
        }
    }
    out
}

trait NowUtc {
    fn now_utc(&self) -> chrono::DateTime<chrono::Utc>;
}

impl NowUtc for ManualClock {
    fn now_utc(&self) -> chrono::DateTime<chrono::Utc> {
        use qms_github::Clock;
        self.now()
    }
}

#[tokio::test]
async fn a_check_run_deleted_on_github_is_created_again_not_retried_forever() {
    let mut h = Harness::new().await;
    h.operator_sets(progress(1, SHA1, 1));
    assert!(h.sync().await.converged);
    h.gh.lock().checks.remove(&3); // QMS / progress-reviews vanished on GitHub
    h.gh.take_calls();
    h.clock.advance(Duration::from_secs(60));
    h.operator_sets(progress(1, SHA1, 2));
    h.sync().await;
    h.sync().await;
    let calls = h.gh.take_calls();
    assert!(
        calls.contains(&"PATCH #3 completed success".to_owned()),
        "{calls:?}"
    );
    assert!(
        calls.contains(&"POST QMS / progress-reviews completed success".to_owned()),
        "{calls:?}"
    );
    assert_eq!(
        h.gh.check("QMS / progress-reviews", SHA1)
            .unwrap()
            .conclusion
            .as_deref(),
        Some("success")
    );
    assert!(h.sync().await.converged);
    assert!(h.gh.take_calls().is_empty());
}

/// The messages of the annotations sent to check run `id`, in the order they were sent.
fn sent_messages(calls: &[crate::common::github::Call], id: i64) -> Vec<String> {
    calls
        .iter()
        .filter(|c| {
            c.status < 300
                && (c.path.ends_with(&format!("/check-runs/{id}"))
                    || (c.method == "POST" && c.path.ends_with("/check-runs")))
        })
        .flat_map(|c| {
            c.body["output"]["annotations"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|a| a["message"].as_str().map(str::to_owned))
        .collect()
}

/// 1,500 findings, a crash after some batches went out (the status lost that progress, even the
/// check run's id): the restarted sync asks GitHub what it holds and sends each of the first
/// 1,000 (failures first) exactly once.
#[tokio::test]
async fn a_crash_between_annotation_batches_neither_resends_nor_skips_one() {
    for lose_the_id in [false, true] {
        let mut h = Harness::new().await;
        let mut anns = Vec::new();
        for i in 0..1_500u64 {
            let level = ["notice", "warning", "failure"][(i % 3) as usize];
            anns.push(CheckAnnotation {
                path: format!("src/m{i}.rs"),
                start_line: 1,
                end_line: 1,
                annotation_level: level.into(),
                message: format!("{level} {i}"),
                title: None,
            });
        }
        h.annotations.insert("dor-validation".into(), anns);
        h.operator_sets(progress(1, SHA1, 0));
        h.sync_until_converged(10).await;
        let before_crash = h.wf.status.as_ref().unwrap().check_runs.clone();
        h.clock.advance(Duration::from_secs(120));
        h.operator_sets(progress(1, SHA1, 1));
        // Sync until some but not all batches are on GitHub (the write pacing stops it).
        let mut partial = 0;
        for _ in 0..40 {
            let r = h.sync().await;
            partial =
                h.gh.check("QMS / dor-validation", SHA1)
                    .unwrap()
                    .annotations;
            if partial > 0 && partial < 1_000 {
                break;
            }
            assert!(!r.converged, "converged before a partial state was seen");
            h.clock.set(r.retry_at.unwrap());
        }
        assert!(partial > 0 && partial < 1_000, "{partial}");
        // Crash: the status written before the batches went out is all that is left.
        let st = h.wf.status.as_mut().unwrap();
        st.check_runs = if lose_the_id {
            Vec::new()
        } else {
            before_crash.clone()
        };
        h.sync_until_converged(60).await;
        let id = h.gh.check("QMS / dor-validation", SHA1).unwrap().id;
        let sent = sent_messages(&h.gh.take_raw_calls(), id);
        assert_eq!(sent.len(), 1_000, "lose_the_id={lose_the_id}");
        let unique: std::collections::BTreeSet<&String> = sent.iter().collect();
        assert_eq!(unique.len(), 1_000, "an annotation was sent twice");
        // Failures first (all 500), then warnings; no notice made the cap.
        assert!(sent[..500].iter().all(|m| m.starts_with("failure")));
        assert!(sent[500..].iter().all(|m| m.starts_with("warning")));
        assert_eq!(
            h.gh.check("QMS / dor-validation", SHA1)
                .unwrap()
                .annotations,
            1_000
        );
        let rec =
            h.wf.status
                .as_ref()
                .unwrap()
                .check_runs
                .iter()
                .find(|r| r.name == "QMS / dor-validation")
                .cloned()
                .unwrap();
        assert_eq!(rec.annotations_sent, 1_000);
        let summary = h.gh.check("QMS / dor-validation", SHA1).unwrap().summary;
        assert!(
            summary.contains("**500 more annotations** (0 failures, 0 warnings, 500 notices)"),
            "{summary}"
        );
        h.gh.assert_no_violations();
    }
}
