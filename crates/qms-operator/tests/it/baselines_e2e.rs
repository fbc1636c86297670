//! Baselines from the base branch's real history, end to end: kube-sim (Jobs run as local `sh`
//! processes) + the operator with GitHub on + the fake GitHub REST API. Only a merged pull
//! request's last COMPLETED values become the `QualityBaseline` of `<repository>@<base branch>`;
//! closed or approved-but-unmerged pull requests never change it. `/qms explain <gate>` replies
//! with the gate's value, rule, baseline, missing-metric policy and verdict.
//!
//! Every wait polls for a condition with a hang-protection deadline; nothing asserts on timing.

use std::net::SocketAddr;
use std::time::Duration;

use crate::common::webhook::{post_webhook, sign};
use crate::common::*;
use crate::fake_github::FakeGithub;
use qms_api::{QualityBaseline, WorkflowState, baseline_name};
use qms_github::{Credentials, GithubConfig, Secret};
use qms_operator::{Http, OperatorHandle, Settings};
use serde_json::{Value, json};

const SECRET: &str = "whsec-baselines-e2e";
const TOKEN: &str = "ghp_baselinese2etoken01234";
const REPO: &str = "creo/creo-roo-commander";
const PR: u64 = 815;
const SHA1: &str = "1111111d41e8b6c05d9a7e1f2b3c4d5e6f708192";
const SHA2: &str = "2222222d5e4f30211223344556677889900aabbc";
const SHA3: &str = "3333333d5e4f30211223344556677889900aabbc";

/// The examples' coverage gate with the ratchet on.
const RATCHETED_COVERAGE: &str = "apiVersion: qms.creo.dev/v1
kind: QualityGate
metadata:
  name: code-coverage
spec:
  step: progress-reviews
  type: threshold
  metric: test_coverage
  operator: gte
  threshold: 80.0
  unit: percentage
  blocking: true
  baseline:
    enabled: true
    tolerance: 0.5
    maxAge: 720h
";

struct Rig {
    env: Env,
    gh: FakeGithub,
    _op: OperatorHandle,
    addr: SocketAddr,
    deliveries: u32,
}

impl Rig {
    async fn start() -> Rig {
        let env = Env::start().await;
        env.apply_examples(false).await;
        env.apply(RATCHETED_COVERAGE).await;
        let gh = FakeGithub::start().await;
        gh.lock().permissions.insert("alice".into(), "write".into());
        let settings = Settings {
            http_addr: "127.0.0.1:0".parse().unwrap(),
            github: Some(GithubConfig {
                api_base_url: gh.uri(),
                webhook_secrets: vec![Secret::new(SECRET)],
                credentials: Credentials::Token(Secret::new(TOKEN)),
                namespace: "default".into(),
                writes_per_minute: 6000,
                ..GithubConfig::default()
            }),
            ..env.settings()
        };
        let op = qms_operator::start(env.client.clone(), settings, Http::On { extra: None })
            .await
            .expect("operator starts");
        let addr = op.http_addr.expect("HTTP server");
        op.wait_ready().await;
        Rig {
            env,
            gh,
            _op: op,
            addr,
            deliveries: 0,
        }
    }

    fn name(&self) -> String {
        qms_github::naming::workflow_name(REPO, PR)
    }

    async fn deliver(&mut self, event: &str, payload: &Value) -> (u16, Value) {
        self.deliveries += 1;
        let body = serde_json::to_vec(payload).unwrap();
        let id = format!("baselines-delivery-{}", self.deliveries);
        post_webhook(self.addr, event, &id, &sign(SECRET, &body), &body).await
    }

    async fn pr(&mut self, action: &str, sha: &str, merged: bool) -> Value {
        let (code, answer) = self
            .deliver("pull_request", &pull_request(action, sha, merged))
            .await;
        assert!(
            code == 200 || (code == 202 && answer["status"] == "ignored"),
            "pull_request {action}: {code} {answer}"
        );
        answer
    }

    async fn comment(&mut self, body: &str) -> Value {
        let (code, answer) = self.deliver("issue_comment", &comment("alice", body)).await;
        assert_eq!(code, 200, "{answer}");
        answer
    }

    /// Opens (or reopens) the PR at `sha`, approves it, and waits for COMPLETED.
    async fn review_to_completion(&mut self, action: &str, sha: &str) {
        let name = self.name();
        self.pr(action, sha, false).await;
        self.env
            .wait_for(&name, "waiting for approval", |wf| {
                wf.spec.head_sha == sha && state_of(wf) == WorkflowState::FinalPending
            })
            .await;
        self.comment("/qms approve ship it").await;
        self.env
            .wait_for(&name, "completed", |wf| {
                wf.spec.head_sha == sha && state_of(wf) == WorkflowState::Completed
            })
            .await;
    }

    async fn baseline(&self) -> Option<QualityBaseline> {
        let api: kube::Api<QualityBaseline> =
            kube::Api::namespaced(self.env.client.clone(), "default");
        api.get_opt(&baseline_name(REPO, "main"))
            .await
            .expect("readable")
    }

    async fn gone(&self) {
        let name = self.name();
        let start = tokio::time::Instant::now();
        while self.env.workflows().get_opt(&name).await.unwrap().is_some() {
            assert!(start.elapsed() < DEADLINE, "{name} was not deleted");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn reply_containing(&self, needle: &str) -> String {
        let start = tokio::time::Instant::now();
        loop {
            if let Some((_, body)) = self
                .gh
                .lock()
                .comments
                .iter()
                .find(|(_, b)| b.contains(needle))
            {
                return body.clone();
            }
            assert!(
                start.elapsed() < DEADLINE,
                "no reply containing {needle:?}: {:?}",
                self.gh.lock().comments
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn repository() -> Value {
    json!({
        "id": 880001,
        "name": "creo-roo-commander",
        "full_name": REPO,
        "owner": {"login": "creo", "type": "Organization"},
        "fork": false
    })
}

fn pull_request(action: &str, sha: &str, merged: bool) -> Value {
    json!({
        "action": action,
        "number": PR,
        "pull_request": {
            "number": PR,
            "state": if action == "closed" { "closed" } else { "open" },
            "draft": false,
            "merged": merged,
            "html_url": format!("https://github.com/{REPO}/pull/{PR}"),
            "user": {"login": "bob", "type": "User"},
            "head": {"sha": sha, "ref": "feature/ratchet", "repo": repository()},
            "base": {"sha": "0000000000000000000000000000000000000001", "ref": "main", "repo": repository()}
        },
        "repository": repository(),
        "sender": {"login": "bob", "type": "User"}
    })
}

fn comment(login: &str, body: &str) -> Value {
    json!({
        "action": "created",
        "issue": {
            "number": PR,
            "pull_request": {"url": format!("https://api.github.com/repos/{REPO}/pulls/{PR}")}
        },
        "comment": {"id": 90001, "body": body, "user": {"login": login, "type": "User"}},
        "repository": repository(),
        "sender": {"login": login, "type": "User"}
    })
}

/// Approved-but-unmerged and closed-unmerged pull requests never set the baseline; a merge does,
/// with the merged head SHA and that run's values; a merge of a review that did not complete for
/// the merged commit leaves it unchanged. The next review's ratcheted gate names the baseline's
/// SHA, value and tolerance on its check run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_merged_pull_requests_set_the_baseline() {
    let mut rig = Rig::start().await;

    // Approved and COMPLETED, then closed without merging: no baseline.
    rig.review_to_completion("opened", SHA1).await;
    assert!(
        rig.baseline().await.is_none(),
        "a completed run alone set a baseline"
    );
    let answer = rig.pr("closed", SHA1, false).await;
    assert_eq!(answer["status"], "applied", "{answer}");
    rig.gone().await;
    assert!(
        rig.baseline().await.is_none(),
        "a closed, unmerged PR set the baseline"
    );

    // Reopened at a new head, approved, merged: its values become the baseline.
    rig.review_to_completion("reopened", SHA2).await;
    let completed = rig.env.get(&rig.name()).await;
    let coverage = completed
        .status
        .as_ref()
        .and_then(|s| s.step("progress-reviews"))
        .and_then(|s| s.gates.iter().find(|g| g.name == "code-coverage"))
        .and_then(|g| g.value)
        .expect("coverage measured");
    let answer = rig.pr("closed", SHA2, true).await;
    assert_eq!(answer["status"], "applied", "{answer}");
    rig.gone().await;
    let b = rig.baseline().await.expect("a merged PR sets the baseline");
    assert_eq!(
        (b.spec.repository.as_str(), b.spec.branch.as_str()),
        (REPO, "main")
    );
    assert_eq!(b.spec.sha.as_deref(), Some(SHA2));
    assert_eq!(b.spec.pull_request, Some(PR));
    let v = b.spec.value("code-coverage").expect("coverage recorded");
    assert_eq!((v.value, v.sha.as_str()), (coverage, SHA2));
    // Redelivering the merge changes nothing (and the review is already gone).
    let again = rig.pr("closed", SHA2, true).await;
    assert_eq!(again["status"], "ignored", "{again}");
    let same = rig.baseline().await.unwrap();
    assert_eq!(same.spec, b.spec);

    // The next review of the PR compares against it, and its check run says so.
    rig.pr("reopened", SHA3, false).await;
    let name = rig.name();
    let wf = rig
        .env
        .wait_for(&name, "coverage evaluated", |wf| {
            wf.spec.head_sha == SHA3
                && wf.status.as_ref().is_some_and(|s| {
                    s.head_sha.as_deref() == Some(SHA3)
                        && s.step("progress-reviews")
                            .is_some_and(|st| st.gates.iter().any(|g| g.name == "code-coverage"))
                })
        })
        .await;
    let g = wf
        .status
        .as_ref()
        .unwrap()
        .step("progress-reviews")
        .unwrap()
        .gates
        .iter()
        .find(|g| g.name == "code-coverage")
        .unwrap()
        .clone();
    let used = g.baseline.clone().expect("the baseline is named");
    assert!(used.used, "{g:?}");
    assert_eq!(
        (used.sha.as_str(), used.value, used.tolerance),
        (SHA2, coverage, 0.5)
    );
    assert!(g.message.contains("baseline 2222222"), "{}", g.message);
    assert_eq!(g.threshold, Some((coverage - 0.5).max(80.0)));
    let start = tokio::time::Instant::now();
    loop {
        let summary = rig
            .gh
            .check("QMS / progress-reviews", SHA3)
            .map(|c| c.summary)
            .unwrap_or_default();
        if summary.contains("`code-coverage` baseline `2222222`") {
            assert!(summary.contains("tolerance 0.5"), "{summary}");
            break;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "check run does not name the baseline: {summary}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Merged while waiting for approval (not COMPLETED): the baseline is unchanged.
    rig.env
        .wait_for(&name, "waiting for approval", |wf| {
            state_of(wf) == WorkflowState::FinalPending
        })
        .await;
    let answer = rig.pr("closed", SHA3, true).await;
    assert_eq!(answer["status"], "applied", "{answer}");
    assert!(
        answer["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("not COMPLETED"),
        "{answer}"
    );
    rig.gone().await;
    assert_eq!(rig.baseline().await.unwrap().spec, b.spec);
}

/// `/qms explain <gate>` replies with value, threshold, operator, baseline (SHA, value, age),
/// missing-metric policy and verdict for the current head SHA; an unknown gate is named as
/// deciding nothing (never as passed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_replies_with_the_gate_decision() {
    let mut rig = Rig::start().await;
    // A baseline as a merge leaves it, two days old.
    let at = (chrono::Utc::now() - chrono::Duration::hours(49))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    rig.env
        .apply(&format!(
            "apiVersion: qms.creo.dev/v1
kind: QualityBaseline
metadata:
  name: {}
spec:
  repository: {REPO}
  branch: main
  sha: {SHA1}
  values:
  - gate: code-coverage
    metric: test_coverage
    value: 84
    unit: percentage
    sha: {SHA1}
    at: \"{at}\"
",
            baseline_name(REPO, "main")
        ))
        .await;
    rig.pr("opened", SHA2, false).await;
    rig.env
        .wait_state(&rig.name(), WorkflowState::FinalPending)
        .await;
    let answer = rig.comment("/qms explain code-coverage").await;
    assert_eq!(answer["status"], "replied", "{answer}");
    let reply = rig.reply_containing("QMS gate `code-coverage`").await;
    for needle in [
        "for head `2222222`",
        "step `progress-reviews`",
        "Verdict: **Passed** (blocking)",
        "`test_coverage` = 85.2 percentage",
        "Rule: >= 83.5 percentage",
        "Baseline: `1111111` = 84 percentage, 2d1h old, tolerance 0.5 (used)",
        "Missing-metric policy: `fail`",
    ] {
        assert!(reply.contains(needle), "{needle:?} missing in:\n{reply}");
    }
    rig.comment("/qms explain no-such-gate").await;
    let reply = rig.reply_containing("QMS gate `no-such-gate`").await;
    assert!(reply.contains("decides nothing"), "{reply}");
    assert!(!reply.contains("Passed"), "{reply}");
}
