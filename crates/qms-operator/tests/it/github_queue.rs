//! End-to-end with GitHub (kube-sim + the real operator with GitHub on + the fake GitHub REST
//! API of qms-github's tests), for busy repositories (issue 8):
//! - GitHub's merge queue: `merge_group` `checks_requested` reviews the group's head SHA and
//!   reports there the check names its pull requests have, every one concluded; `destroyed`
//!   cancels what is still open;
//! - more pull requests than `max_concurrent_workflows`, all left waiting for a person: every one
//!   still gets its check runs (a workflow waiting only for a person holds no slot).
//!
//! Webhooks are signed with an independent HMAC-SHA256 and POSTed over TCP. Every wait polls for a
//! condition with a hang-protection deadline; nothing asserts on timing.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::common::webhook::{post_webhook, sign};
use crate::common::*;
use crate::fake_github::FakeGithub;
use kube::ResourceExt;
use qms_api::{ConditionStatus, WorkflowState};
use qms_github::{Credentials, GithubConfig, Secret};
use qms_operator::{OperatorHandle, Settings};
use serde_json::{Value, json};

const SECRET: &str = "whsec-queue-7c2e1a";
const TOKEN: &str = "ghp_queuetoken0123456789";
const REPO: &str = "creo/creo-roo-commander";
const PR: u64 = 4711;
const SHA1: &str = "3f7c2a9d41e8b6c05d9a7e1f2b3c4d5e6f708192";
const BASE: &str = "0d1e2f3a4b5c6d7e8f90a1b2c3d4e5f6a7b8c9d0";
/// Head SHAs of two merge groups of PR 4711 (GitHub builds a new group when the queue changes).
const MG1: &str = "b1e2c3d4a5f60718293a4b5c6d7e8f9012345678";
const MG2: &str = "c2f3d4e5b6a70819203b4c5d6e7f8a9b01234567";

struct Rig {
    env: Env,
    gh: FakeGithub,
    op: OperatorHandle,
    addr: SocketAddr,
    deliveries: u32,
}

impl Rig {
    /// kube-sim with `catalog` applied, the fake GitHub, the operator with GitHub on and
    /// `max_concurrent_workflows` slots.
    async fn start(catalog: &[String], max_concurrent_workflows: u32) -> Rig {
        let env = Env::start().await;
        for yaml in catalog {
            env.apply(yaml).await;
        }
        let gh = FakeGithub::start().await;
        let settings = Settings {
            http_addr: "127.0.0.1:0".parse().unwrap(),
            max_concurrent_workflows,
            github: Some(GithubConfig {
                api_base_url: gh.uri(),
                webhook_secrets: vec![Secret::new(SECRET)],
                credentials: Credentials::Token(Secret::new(TOKEN)),
                namespace: "default".into(),
                // GitHub's 80/min would make the sync wait for the bucket in a run of seconds.
                writes_per_minute: 6000,
                writes_per_hour: 60_000,
                ..GithubConfig::default()
            }),
            ..env.settings()
        };
        let (op, addr) = start_with_http(&env, settings).await;
        Rig {
            env,
            gh,
            op,
            addr,
            deliveries: 0,
        }
    }

    /// POSTs a signed delivery with a new delivery id; returns status and JSON answer.
    async fn deliver(&mut self, event: &str, payload: &Value) -> (u16, Value) {
        self.deliveries += 1;
        let body = serde_json::to_vec(payload).unwrap();
        let id = format!("queue-delivery-{}", self.deliveries);
        post_webhook(self.addr, event, &id, &sign(SECRET, &body), &body).await
    }

    async fn deliver_ok(&mut self, event: &str, payload: &Value, status: &str) -> Value {
        let (code, answer) = self.deliver(event, payload).await;
        assert_eq!(answer["status"], status, "{event}: {code} {answer}");
        answer
    }

    /// Polls the fake GitHub until `pred` holds.
    async fn github_until(&self, what: &str, pred: impl Fn(&crate::fake_github::State) -> bool) {
        self.gh.until(what, DEADLINE, pred).await;
    }

    async fn check_until(&self, name: &str, sha: &str, status: &str, conclusion: Option<&str>) {
        self.gh
            .check_until(name, sha, status, conclusion, DEADLINE)
            .await;
    }

    /// Every check run in `names` exists on `sha` and is completed (not necessarily all others).
    async fn all_completed(&self, sha: &str, names: &[&str]) {
        self.github_until(&format!("{names:?} completed on {sha}"), |st| {
            names.iter().all(|n| {
                st.checks
                    .values()
                    .any(|c| c.name == *n && c.head_sha == sha && c.status == "completed")
            })
        })
        .await;
    }

    /// The check runs on `sha`: name → (status, conclusion), and how many were created per name.
    fn checks_on(&self, sha: &str) -> (ChecksOn, BTreeMap<String, usize>) {
        let st = self.gh.lock();
        let mut state = BTreeMap::new();
        let mut made = BTreeMap::new();
        for c in st.checks.values().filter(|c| c.head_sha == sha) {
            state.insert(c.name.clone(), (c.status.clone(), c.conclusion.clone()));
            *made.entry(c.name.clone()).or_insert(0) += 1;
        }
        (state, made)
    }
}

/// Check name → (status, conclusion) on one SHA.
type ChecksOn = BTreeMap<String, (String, Option<String>)>;

fn repository() -> Value {
    json!({
        "id": 880001,
        "name": "creo-roo-commander",
        "full_name": REPO,
        "owner": {"login": "creo", "type": "Organization"},
        "fork": false
    })
}

fn pull_request(number: u64, action: &str, sha: &str) -> Value {
    json!({
        "action": action,
        "number": number,
        "pull_request": {
            "number": number,
            "state": "open",
            "draft": false,
            "html_url": format!("https://github.com/{REPO}/pull/{number}"),
            "user": {"login": "bob", "type": "User"},
            "head": {"sha": sha, "ref": format!("feature/f-{number}"), "repo": repository()},
            "base": {"sha": BASE, "ref": "main", "repo": repository()}
        },
        "repository": repository(),
        "sender": {"login": "bob", "type": "User"}
    })
}

/// A `merge_group` delivery as GitHub sends it for PR `PR` (at `SHA1`) at the head of a group.
fn merge_group(action: &str, head_sha: &str) -> Value {
    let mut v = json!({
        "action": action,
        "merge_group": {
            "head_sha": head_sha,
            "head_ref": format!("refs/heads/gh-readonly-queue/main/pr-{PR}-{SHA1}"),
            "base_sha": BASE,
            "base_ref": "refs/heads/main",
            "head_commit": {"id": head_sha, "message": format!("Merge pull request #{PR}")}
        },
        "repository": repository(),
        "sender": {"login": "github-merge-queue[bot]", "type": "Bot"}
    });
    if action == "destroyed" {
        v["reason"] = json!("dequeued");
    }
    v
}

/// A two-step template for `REPO` without a person in it (what a merge queue runs), with the
/// agents: the DoR agent runs until `marker` exists when reviewing `MG2`, else finishes at once.
fn queue_catalog(marker: &std::path::Path) -> Vec<String> {
    let dor = format!(
        "if [ \"$QMS_HEAD_SHA\" = \"{MG2}\" ]; then while [ ! -f {m} ]; do sleep 0.1; done; fi\n{}",
        result("success", "", 0),
        m = marker.display()
    );
    vec![
        agent("mq-dor", 10, &dor),
        agent("mq-review", 10, &result("success", "", 0)),
        format!(
            r#"apiVersion: qms.creo.dev/v1
kind: WorkflowTemplate
metadata:
  name: queue-review
spec:
  repositories: ["{REPO}"]
  steps:
    - name: dor-validation
      type: parallel
      agents: [{{name: mq-dor}}]
      timeout: 600s
      states: {{pending: DOR_PENDING, failed: DOR_FAILED}}
    - name: progress-reviews
      type: conditional
      condition: dor-validation.success
      agents: [{{name: mq-review}}]
      timeout: 600s
      states: {{pending: PROGRESS_PENDING, failed: PROGRESS_BLOCKED}}
"#
        ),
    ]
}

const QUEUE_CHECKS: [&str; 3] = ["QMS", "QMS / dor-validation", "QMS / progress-reviews"];

/// The merge queue: the group's head SHA gets the same check names as the pull request, each
/// created once and concluded `success`; a second delivery of the same group changes nothing;
/// a group that leaves the queue while its review runs has its open check runs `cancelled`, its
/// Jobs and workflow removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merge_group_gets_the_pull_requests_check_names_and_destroyed_cancels_them() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("release-mg2");
    let mut rig = Rig::start(&queue_catalog(&marker), 10).await;
    let want: BTreeSet<String> = QUEUE_CHECKS.iter().map(|s| (*s).to_owned()).collect();

    // The pull request's own review.
    rig.deliver_ok("pull_request", &pull_request(PR, "opened", SHA1), "applied")
        .await;
    rig.all_completed(SHA1, &QUEUE_CHECKS).await;
    let (on_pr, _) = rig.checks_on(SHA1);
    assert_eq!(on_pr.keys().cloned().collect::<BTreeSet<_>>(), want);

    // The queue asks for the required checks on the group's commit.
    rig.deliver_ok(
        "merge_group",
        &merge_group("checks_requested", MG1),
        "applied",
    )
    .await;
    let mg1 = qms_github::naming::merge_group_workflow_name(REPO, PR, MG1);
    let wf = rig.env.get(&mg1).await;
    assert_eq!(wf.spec.head_sha, MG1);
    assert_eq!(wf.spec.template_ref.name, "queue-review");
    let mref = wf.spec.merge_group.as_ref().expect("a merge-group review");
    assert_eq!(mref.base_sha, BASE);
    rig.env.wait_state(&mg1, WorkflowState::Completed).await;
    rig.check_until("QMS", MG1, "completed", Some("success"))
        .await;
    // Redelivered by GitHub (a new delivery id): the same group is not reviewed twice.
    let answer = rig
        .deliver_ok(
            "merge_group",
            &merge_group("checks_requested", MG1),
            "ignored",
        )
        .await;
    assert!(
        answer["detail"]
            .as_str()
            .unwrap_or("")
            .contains("already reviewing"),
        "{answer}"
    );
    rig.all_completed(MG1, &QUEUE_CHECKS).await;
    let (on_mg1, made) = rig.checks_on(MG1);
    assert_eq!(
        on_mg1.keys().cloned().collect::<BTreeSet<_>>(),
        on_pr.keys().cloned().collect::<BTreeSet<_>>(),
        "the merge group has the pull request's check names"
    );
    assert!(
        made.values().all(|n| *n == 1),
        "each created once: {made:?}"
    );
    for (name, (status, conclusion)) in &on_mg1 {
        assert_eq!(
            (status.as_str(), conclusion.as_deref()),
            ("completed", Some("success")),
            "{name}"
        );
    }
    // A merge group is not a pull request: nothing was posted as a comment.
    assert!(rig.gh.lock().comments.is_empty());

    // The queue changes: a new group, whose DoR agent is still running when it is dequeued.
    rig.deliver_ok(
        "merge_group",
        &merge_group("checks_requested", MG2),
        "applied",
    )
    .await;
    let mg2 = qms_github::naming::merge_group_workflow_name(REPO, PR, MG2);
    assert_ne!(mg1, mg2);
    rig.check_until("QMS / dor-validation", MG2, "in_progress", None)
        .await;
    rig.check_until("QMS", MG2, "in_progress", None).await;
    let jobs_of_mg2 = |jobs: &[k8s_openapi::api::batch::v1::Job]| {
        jobs.iter()
            .filter(|j| j.owner_references().iter().any(|o| o.name == mg2))
            .count()
    };
    assert!(
        jobs_of_mg2(&rig.env.list_jobs().await) > 0,
        "MG2's DoR Job runs"
    );

    let answer = rig
        .deliver_ok("merge_group", &merge_group("destroyed", MG2), "applied")
        .await;
    assert!(
        answer["detail"].as_str().unwrap_or("").contains("dequeued"),
        "{answer}"
    );
    wait_workflow_gone(&rig.env, &mg2).await;
    let (on_mg2, made) = rig.checks_on(MG2);
    assert!(made.values().all(|n| *n == 1), "{made:?}");
    assert!(on_mg2.contains_key("QMS") && on_mg2.contains_key("QMS / dor-validation"));
    for (name, (status, conclusion)) in &on_mg2 {
        assert_eq!(
            (status.as_str(), conclusion.as_deref()),
            ("completed", Some("cancelled")),
            "{name} on the dequeued group"
        );
    }
    // Its Jobs are deleted.
    let start = tokio::time::Instant::now();
    while jobs_of_mg2(&rig.env.list_jobs().await) > 0 {
        assert!(start.elapsed() <= DEADLINE, "MG2's Jobs were not deleted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Destroyed again (redelivery): nothing to cancel, nothing changes.
    let answer = rig
        .deliver_ok("merge_group", &merge_group("destroyed", MG2), "ignored")
        .await;
    assert!(
        answer["detail"]
            .as_str()
            .unwrap_or("")
            .contains("no review to cancel"),
        "{answer}"
    );
    // The first group and the pull request were not touched.
    assert_eq!(rig.checks_on(MG1).0, on_mg1);
    assert_eq!(rig.checks_on(SHA1).0, on_pr);
    assert!(rig.env.workflows().get_opt(&mg1).await.unwrap().is_some());
    rig.gh.assert_no_violations();
    // Every delivery's answer time is in the webhook histogram (QmsWebhookLatencyHigh reads it),
    // and the healthy agents are exported as such (QmsAgentUnavailable).
    let text = qms_operator::http::render_metrics(&rig.op.shared);
    let value = |series: &str| -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
    };
    assert_eq!(
        value("qms_github_webhook_duration_seconds_count "),
        Some(f64::from(rig.deliveries)),
        "{text}"
    );
    assert_eq!(
        value("qms_github_webhook_duration_seconds_bucket{le=\"+Inf\"} "),
        Some(f64::from(rig.deliveries))
    );
    for agent in ["mq-dor", "mq-review"] {
        assert_eq!(
            value(&format!("qms_agent_healthy{{agent=\"{agent}\"}} ")),
            Some(1.0),
            "{text}"
        );
    }
    std::fs::write(&marker, b"").unwrap();
    rig.op.stop().await;
}

async fn wait_workflow_gone(env: &Env, name: &str) {
    let start = tokio::time::Instant::now();
    while env.workflows().get_opt(name).await.unwrap().is_some() {
        assert!(start.elapsed() <= DEADLINE, "{name} was not deleted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One automated step, whose agent runs until `marker` exists (so the test sees the slots
/// taken and the queue behind them), and a manual one.
fn slots_catalog(marker: &std::path::Path) -> Vec<String> {
    vec![
        agent(
            "slot-agent",
            10,
            &format!(
                "while [ ! -f {} ]; do sleep 0.1; done; {}",
                marker.display(),
                result("success", "", 0)
            ),
        ),
        format!(
            r#"apiVersion: qms.creo.dev/v1
kind: WorkflowTemplate
metadata:
  name: reviewed-by-people
spec:
  repositories: ["{REPO}"]
  steps:
    - name: check
      type: parallel
      agents: [{{name: slot-agent}}]
      timeout: 600s
      states: {{pending: DOR_PENDING, failed: DOR_FAILED}}
    - name: final-review
      type: manual
      condition: check.success
      states: {{pending: FINAL_PENDING, failed: FINAL_REJECTED}}
"#
        ),
    ]
}

/// Seven pull requests, two slots, nobody approves: every pull request still gets its check runs
/// (`QMS / check` success, `QMS / final-review` asking for a decision, `QMS` in progress), because
/// a workflow waiting only for a person gives its slot to the next one. While the first two run
/// their agents the other five queue; never more than two hold a slot at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_pull_requests_than_slots_all_waiting_for_approval_all_get_their_checks() {
    use futures::StreamExt;
    use kube::runtime::{WatchStreamExt, watcher};

    const SLOTS: u32 = 2;
    let prs: Vec<(u64, String)> = (1..=7u64)
        .map(|i| (100 + i, format!("{:040x}", 0xa11ce000_u64 + i)))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("release-agents");
    let mut rig = Rig::start(&slots_catalog(&marker), SLOTS).await;

    // The most workflows holding a slot at once, and which ever showed Queued=True (a watch sees
    // every revision in order).
    let max_holding = Arc::new(AtomicUsize::new(0));
    let ever_queued = Arc::new(std::sync::Mutex::new(BTreeSet::<String>::new()));
    let tracker = {
        let api = rig.env.workflows();
        let (max_holding, ever_queued) = (max_holding.clone(), ever_queued.clone());
        tokio::spawn(async move {
            let mut holding = BTreeSet::new();
            let stream = watcher(api, watcher::Config::default())
                .default_backoff()
                .applied_objects();
            let mut stream = std::pin::pin!(stream);
            while let Some(Ok(wf)) = stream.next().await {
                let status = wf.status.clone().unwrap_or_default();
                if qms_engine::slots::holds_slot(&status) {
                    holding.insert(wf.name_any());
                } else {
                    holding.remove(&wf.name_any());
                }
                if qms_api::Condition::find(&status.conditions, "Queued")
                    .is_some_and(|c| c.status == ConditionStatus::True)
                {
                    ever_queued.lock().unwrap().insert(wf.name_any());
                }
                max_holding.fetch_max(holding.len(), Ordering::SeqCst);
            }
        })
    };

    for (number, sha) in &prs {
        rig.deliver_ok(
            "pull_request",
            &pull_request(*number, "opened", sha),
            "applied",
        )
        .await;
    }
    // Both slots are taken by agents that wait: the other five queue, oldest first.
    let start = tokio::time::Instant::now();
    loop {
        let list = rig.env.workflows().list(&Default::default()).await.unwrap();
        let holding = list
            .items
            .iter()
            .filter(|wf| {
                wf.status
                    .as_ref()
                    .is_some_and(qms_engine::slots::holds_slot)
            })
            .count();
        let queued = list
            .items
            .iter()
            .filter(|wf| {
                wf.status.as_ref().is_some_and(|s| {
                    qms_api::Condition::find(&s.conditions, "Queued")
                        .is_some_and(|c| c.status == ConditionStatus::True)
                })
            })
            .count();
        if holding == SLOTS as usize && queued == prs.len() - SLOTS as usize {
            break;
        }
        assert!(
            start.elapsed() <= DEADLINE,
            "{holding} holding a slot, {queued} queued: {:?}",
            list.items
                .iter()
                .map(|w| (w.name_any(), w.status.as_ref().map(|s| s.state)))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    std::fs::write(&marker, b"").unwrap();
    for (number, sha) in &prs {
        rig.check_until(
            "QMS / final-review",
            sha,
            "completed",
            Some("action_required"),
        )
        .await;
        let name = qms_github::naming::workflow_name(REPO, *number);
        let wf = rig.env.wait_state(&name, WorkflowState::FinalPending).await;
        assert_eq!(wf.spec.head_sha, *sha);
    }
    // Let the sync settle, then look at every pull request's check runs.
    rig.github_until("every QMS summary in progress", |st| {
        prs.iter().all(|(_, sha)| {
            st.checks
                .values()
                .any(|c| c.name == "QMS" && c.head_sha == *sha && c.status == "in_progress")
        })
    })
    .await;
    for (number, sha) in &prs {
        let (checks, made) = rig.checks_on(sha);
        assert_eq!(
            checks,
            BTreeMap::from([
                ("QMS".to_owned(), ("in_progress".to_owned(), None)),
                (
                    "QMS / check".to_owned(),
                    ("completed".to_owned(), Some("success".to_owned()))
                ),
                (
                    "QMS / final-review".to_owned(),
                    ("completed".to_owned(), Some("action_required".to_owned()))
                ),
            ]),
            "PR {number}"
        );
        assert!(made.values().all(|n| *n == 1), "PR {number}: {made:?}");
        let waiting = rig.gh.check("QMS / final-review", sha).unwrap();
        assert_eq!(waiting.actions, ["approve", "reject"], "PR {number}");
    }
    tracker.abort();
    let max = max_holding.load(Ordering::SeqCst);
    assert!(
        max >= 1 && max <= SLOTS as usize,
        "at most {SLOTS} held a slot at once: {max}"
    );
    assert!(
        !ever_queued.lock().unwrap().is_empty(),
        "7 pull requests, 2 slots: some must have waited for a slot"
    );
    // One Job per pull request: nothing ran twice.
    assert_eq!(rig.env.list_jobs().await.len(), prs.len());
    rig.gh.assert_no_violations();
    rig.op.stop().await;
}

/// The README's table of checks to require names exactly the check runs the operator makes: the
/// summary (`render::SUMMARY_CHECK`) and one `<summary> / <step>` per step, the names the two
/// reviews above found on GitHub.
#[test]
fn readme_lists_exactly_the_check_names_the_operator_reports() {
    use qms_github::checks::render::SUMMARY_CHECK;
    let readme = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md"),
    )
    .expect("read README.md");
    let (_, after) = readme
        .split_once("**Checks to require**")
        .expect("README has the checks to require");
    let names: BTreeSet<String> = after
        .lines()
        .skip_while(|l| !l.starts_with("| Check |"))
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .filter_map(|l| {
            let cell = l.trim_start_matches('|').split('|').next()?.trim();
            Some(cell.trim_matches('`').to_owned())
        })
        .collect();
    assert_eq!(
        names,
        BTreeSet::from([
            SUMMARY_CHECK.to_owned(),
            format!("{SUMMARY_CHECK} / <step>")
        ])
    );
    // The merge-queue test's names are of these two shapes.
    for name in QUEUE_CHECKS {
        assert!(
            name == SUMMARY_CHECK || name.starts_with(&format!("{SUMMARY_CHECK} / ")),
            "{name}"
        );
    }
    assert!(
        after.contains("`merge_group`") && after.contains("Merge queues read"),
        "the README says to subscribe to merge_group with its permission"
    );
}
