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
use kube::api::ListParams;
use qms_api::{QualityBaseline, WorkflowState, baseline_name};
use qms_github::{Credentials, GithubConfig, Secret};
use qms_operator::{OperatorHandle, Settings};
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
        let (op, addr) = start_with_http(&env, settings).await;
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
        let id = format!("baselines-delivery-{}", self.deliveries);
        self.deliver_as(&id, event, payload).await
    }

    /// Delivers with the delivery id `id` (GitHub keeps it when redelivering).
    async fn deliver_as(&self, id: &str, event: &str, payload: &Value) -> (u16, Value) {
        let body = serde_json::to_vec(payload).unwrap();
        post_webhook(self.addr, event, id, &sign(SECRET, &body), &body).await
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

const SHA_A: &str = "aaaaaaa0d5e4f30211223344556677889900aabb";
const SHA_B: &str = "bbbbbbb0d5e4f30211223344556677889900aabb";
const SHA_C: &str = "ccccccc0d5e4f30211223344556677889900aabb";

/// A template that reviews pull requests of REPO and pushes to main and release/*, with one
/// automated step whose agent measures a coverage that depends on the commit, once the test
/// releases that commit (a file named after the SHA in `dir`), so the test decides which run
/// completes first.
fn push_review(dir: &std::path::Path) -> String {
    let dir = dir.display();
    format!(
        r#"apiVersion: qms.creo.dev/v1
kind: Agent
metadata:
  name: branch-coverage
spec:
  capabilities: [branch-coverage]
  loadCapacity: 10
  defaultTimeout: 80s
  job:
    image: busybox:1.37
    command: ["sh", "-c"]
    args:
      - |
        while [ ! -f "{dir}/$QMS_HEAD_SHA" ]; do sleep 0.1; done
        case "$QMS_HEAD_SHA" in a*) V=71;; b*) V=92;; *) V=50;; esac
        printf '{{"status":"success","summary":"coverage %s","metrics":{{"test_coverage":%s}}}}' "$V" "$V" > /dev/termination-log
---
apiVersion: qms.creo.dev/v1
kind: QualityGate
metadata:
  name: branch-coverage
spec:
  type: threshold
  metric: test_coverage
  operator: gte
  threshold: 10
  unit: percentage
  blocking: true
---
apiVersion: qms.creo.dev/v1
kind: WorkflowTemplate
metadata:
  name: branch-review
spec:
  repositories: [{REPO}]
  pushes:
    branches: [main, "release/*"]
  steps:
    - name: check
      type: parallel
      agents: [{{name: branch-coverage}}]
      qualityGates: [branch-coverage]
      timeout: 80s
"#
    )
}

fn push(ref_: &str, before: &str, after: &str, pushed_at: i64) -> Value {
    let mut repo = repository();
    repo["pushed_at"] = pushed_at.into();
    json!({
        "ref": ref_,
        "before": before,
        "after": after,
        "created": false,
        "deleted": after.bytes().all(|b| b == b'0'),
        "forced": false,
        "head_commit": {"id": after, "timestamp": "2026-01-01T00:00:00Z"},
        "repository": repo,
        "pusher": {"name": "alice", "email": "alice@example.com"},
        "sender": {"login": "alice", "type": "User"}
    })
}

fn at(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// A push to a configured branch runs the template on the pushed commit (same check names) and
/// its COMPLETED values become the branch's baseline, with the commit and the push's time; a tag,
/// a branch deletion and an unconfigured branch are ignored with the reason; a redelivery makes
/// no second review. An older push whose run completes after a newer one's, and a merged pull
/// request whose `closed` arrives after a newer push, leave the newer value in place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_to_configured_branches_set_the_baseline_in_push_order() {
    let mut rig = Rig::start().await;
    let release = tempfile::tempdir().unwrap();
    rig.env.apply(&push_review(release.path())).await;
    let workflows = rig.env.workflows();
    let push_reviews = || async {
        workflows
            .list(&ListParams::default().labels("qms.creo.dev/push=true"))
            .await
            .unwrap()
            .items
    };
    let t1 = chrono::Utc::now().timestamp() - 600;
    let t2 = t1 + 60;

    // Nothing to review: a tag, a deleted branch, a branch no template names.
    let zeros = "0000000000000000000000000000000000000000";
    for (payload, why) in [
        (
            push("refs/tags/v1.0.0", zeros, SHA_A, t1),
            "tags are not reviewed",
        ),
        (
            push("refs/heads/main", SHA_A, zeros, t1),
            "deleted refs/heads/main",
        ),
        (
            push("refs/heads/feature/x", SHA1, SHA_A, t1),
            "no WorkflowTemplate reviews pushes to creo/creo-roo-commander@feature/x",
        ),
    ] {
        let (code, answer) = rig.deliver("push", &payload).await;
        assert_eq!(
            (code, answer["status"].as_str()),
            (202, Some("ignored")),
            "{answer}"
        );
        let detail = answer["detail"].as_str().unwrap_or_default();
        assert!(detail.contains(why), "{why:?} not in {detail:?}");
    }
    assert!(
        push_reviews().await.is_empty(),
        "an ignored push made a review"
    );

    // Two pushes to main, the older (A) first; A is delivered again, under its own delivery id
    // (a redelivery) and under another (a second hook): one review per push.
    let push_a = push("refs/heads/main", SHA1, SHA_A, t1);
    let (code, answer) = rig.deliver_as("push-a", "push", &push_a).await;
    assert_eq!(
        (code, answer["status"].as_str()),
        (200, Some("applied")),
        "{answer}"
    );
    let (code, answer) = rig
        .deliver("push", &push("refs/heads/main", SHA_A, SHA_B, t2))
        .await;
    assert_eq!(
        (code, answer["status"].as_str()),
        (200, Some("applied")),
        "{answer}"
    );
    let (_, again) = rig.deliver_as("push-a", "push", &push_a).await;
    assert_eq!(again["status"], "duplicate", "{again}");
    let (_, other_hook) = rig.deliver("push", &push_a).await;
    assert_eq!(other_hook["status"], "ignored", "{other_hook}");
    assert!(
        other_hook["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("already reviewing"),
        "{other_hook}"
    );
    let mut names: Vec<_> = push_reviews()
        .await
        .iter()
        .map(|w| (w.spec.head_sha.clone(), w.spec.base_ref.clone()))
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            (SHA_A.to_owned(), "main".to_owned()),
            (SHA_B.to_owned(), "main".to_owned())
        ]
    );
    let name_a = qms_github::naming::push_workflow_name(REPO, "main", SHA_A);
    let name_b = qms_github::naming::push_workflow_name(REPO, "main", SHA_B);

    // The newer push completes first: its value is the baseline of main, with its commit and
    // push time, and its checks are reported on the pushed commit under the template's names.
    std::fs::write(release.path().join(SHA_B), "").unwrap();
    rig.env.wait_state(&name_b, WorkflowState::Completed).await;
    rig.gh
        .check_until("QMS", SHA_B, "completed", Some("success"), DEADLINE)
        .await;
    rig.gh
        .check_until("QMS / check", SHA_B, "completed", Some("success"), DEADLINE)
        .await;
    let b = rig
        .baseline()
        .await
        .expect("a completed push sets the baseline");
    assert_eq!(
        (
            b.spec.sha.as_deref(),
            b.spec.pull_request,
            b.spec.updated_at.clone()
        ),
        (Some(SHA_B), None, Some(at(t2)))
    );
    let v = b
        .spec
        .value("branch-coverage")
        .expect("the push's gate value");
    assert_eq!(
        (v.value, v.sha.as_str(), v.at.clone()),
        (92.0, SHA_B, at(t2))
    );
    assert!(
        rig.gh.lock().comments.is_empty(),
        "a push review commented on a pull request"
    );

    // The older push completes later: it is not the branch head any more; main keeps B's value.
    std::fs::write(release.path().join(SHA_A), "").unwrap();
    rig.env.wait_state(&name_a, WorkflowState::Completed).await;
    rig.gh
        .check_until("QMS", SHA_A, "completed", Some("success"), DEADLINE)
        .await;
    assert_eq!(rig.baseline().await.unwrap().spec, b.spec);

    // A pull request merged before push B, whose `closed` is delivered only now: main keeps B.
    std::fs::write(release.path().join(SHA_C), "").unwrap();
    rig.pr("opened", SHA_C, false).await;
    rig.env
        .wait_state(&rig.name(), WorkflowState::Completed)
        .await;
    let mut merged = pull_request("closed", SHA_C, true);
    merged["pull_request"]["merged_at"] = at(t1 - 3600).into();
    let (code, answer) = rig.deliver("pull_request", &merged).await;
    assert_eq!(
        (code, answer["status"].as_str()),
        (200, Some("applied")),
        "{answer}"
    );
    rig.gone().await;
    assert_eq!(rig.baseline().await.unwrap().spec, b.spec);

    // A later push to main: the finished push reviews of main are removed, its own stays.
    std::fs::write(release.path().join(SHA3), "").unwrap();
    let (code, answer) = rig
        .deliver("push", &push("refs/heads/main", SHA_B, SHA3, t2 + 60))
        .await;
    assert_eq!(code, 200, "{answer}");
    let name_3 = qms_github::naming::push_workflow_name(REPO, "main", SHA3);
    let start = tokio::time::Instant::now();
    loop {
        let left: Vec<_> = push_reviews()
            .await
            .into_iter()
            .filter_map(|w| w.metadata.name)
            .collect();
        if left == [name_3.clone()] {
            break;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "finished push reviews not pruned: {left:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    rig.gh.assert_no_violations();
}
