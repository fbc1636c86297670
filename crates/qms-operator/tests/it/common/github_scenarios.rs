//! The GitHub end-to-end scenarios, shared by kube-sim (`github_e2e.rs`) and the real Kubernetes
//! 1.20.2 control plane (`github_e2e_real.rs`): the operator in-process with GitHub on (webhooks
//! served by its HTTP server, check runs synced by its own controller) + a fake GitHub REST API on
//! wiremock (the one of qms-github's tests, which enforces GitHub's rules: ≤ 50 annotations per
//! request, no completed check run moved back, …). Each takes a started [`Env`].
//!
//! Webhooks are signed here with an independent HMAC-SHA256 and POSTed over TCP. Every wait polls
//! for a condition with a hang-protection deadline; nothing asserts on timing.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use kube::ResourceExt;
use qms_api::{Decision, QmsWorkflow, WorkflowState};
use qms_github::{Credentials, GithubConfig, Secret};
use qms_operator::{OperatorHandle, Settings};
use serde_json::{Value, json};

use super::webhook::{post_webhook, sign};
use super::*;
use crate::fake_github::{self, Call, FakeGithub};

const SECRET: &str = "whsec-e2e-5b1d0c";
const TOKEN: &str = "ghp_e2etoken0123456789";
const REPO: &str = "creo/creo-roo-commander";
const PR: u64 = 4711;
const SHA1: &str = "3f7c2a9d41e8b6c05d9a7e1f2b3c4d5e6f708192";
const SHA2: &str = "9a8b7c6d5e4f30211223344556677889900aabbc";

const STEPS: [&str; 4] = [
    "dor-validation",
    "progress-reviews",
    "dod-validation",
    "final-review",
];

fn check_names() -> BTreeSet<String> {
    std::iter::once("QMS".to_owned())
        .chain(STEPS.iter().map(|s| format!("QMS / {s}")))
        .collect()
}

struct Rig<'a> {
    env: &'a Env,
    gh: FakeGithub,
    op: OperatorHandle,
    addr: SocketAddr,
    deliveries: u32,
}

fn github_config(gh: &FakeGithub, trusted_logins: &[&str], namespace: &str) -> GithubConfig {
    GithubConfig {
        api_base_url: gh.uri(),
        webhook_secrets: vec![Secret::new(SECRET)],
        credentials: Credentials::Token(Secret::new(TOKEN)),
        namespace: namespace.to_owned(),
        trusted_logins: trusted_logins.iter().map(|l| (*l).to_owned()).collect(),
        // GitHub's 80/min would make the sync wait for the bucket in a run that takes seconds.
        writes_per_minute: 6000,
        ..GithubConfig::default()
    }
}

impl<'a> Rig<'a> {
    /// The server of `env` with the examples' catalog (agents, gates, the default template), the
    /// fake GitHub (alice has write permission), the operator with GitHub on (reviews in `env`'s
    /// namespace).
    async fn start(env: &'a Env, trusted_logins: &[&str], agents_yaml: Option<&str>) -> Rig<'a> {
        env.apply_examples(false).await;
        if let Some(yaml) = agents_yaml {
            env.apply(yaml).await;
        }
        let gh = FakeGithub::start().await;
        gh.lock().permissions.insert("alice".into(), "write".into());
        let settings = Settings {
            http_addr: "127.0.0.1:0".parse().unwrap(),
            github: Some(github_config(&gh, trusted_logins, &env.ns)),
            ..env.settings()
        };
        let (op, addr) = start_with_http(env, settings).await;
        Rig {
            env,
            gh,
            op,
            addr,
            deliveries: 0,
        }
    }

    fn name(&self) -> String {
        qms_github::naming::workflow_name(REPO, PR)
    }

    /// POSTs a signed delivery to the operator; returns status and JSON answer.
    async fn deliver(&mut self, event: &str, payload: &Value) -> (u16, Value) {
        self.deliveries += 1;
        let body = serde_json::to_vec(payload).unwrap();
        let id = format!("e2e-delivery-{}", self.deliveries);
        post_webhook(self.addr, event, &id, &sign(SECRET, &body), &body).await
    }

    async fn open(&mut self, action: &str, sha: &str) {
        let (code, answer) = self
            .deliver("pull_request", &pull_request(action, sha))
            .await;
        assert_eq!(code, 200, "pull_request {action}: {answer}");
        assert_eq!(answer["status"], "applied", "{answer}");
    }

    async fn comment(&mut self, login: &str, body: &str) -> (u16, Value) {
        self.deliver("issue_comment", &comment(login, body)).await
    }

    /// Polls the fake GitHub until `pred` holds.
    async fn github_until(&self, what: &str, pred: impl Fn(&fake_github::State) -> bool) {
        self.gh.until(what, DEADLINE, pred).await;
    }

    /// The check run `name` on `sha` has `status`/`conclusion` on GitHub.
    async fn check_until(&self, name: &str, sha: &str, status: &str, conclusion: Option<&str>) {
        self.gh
            .check_until(name, sha, status, conclusion, DEADLINE)
            .await;
    }

    async fn metrics(&self) -> String {
        http_get(self.addr, "/metrics").await
    }
}

async fn http_get(addr: SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).await.unwrap();
    buf
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

/// A `pull_request` delivery as GitHub documents it (the fields qms-github reads, and some).
fn pull_request(action: &str, sha: &str) -> Value {
    json!({
        "action": action,
        "number": PR,
        "pull_request": {
            "number": PR,
            "state": "open",
            "draft": false,
            "html_url": format!("https://github.com/{REPO}/pull/{PR}"),
            "user": {"login": "bob", "type": "User"},
            "head": {"sha": sha, "ref": "feature/qms-integration", "repo": repository()},
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

/// Check-run calls (create and update) as (method, name, head_sha, status, conclusion); updates
/// are resolved to their check run's name and SHA.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct CheckCall {
    method: String,
    name: String,
    head_sha: String,
    status: Option<String>,
    conclusion: Option<String>,
}

fn check_calls(gh: &FakeGithub) -> Vec<CheckCall> {
    let st = gh.lock();
    let s = |b: &Value, k: &str| b.get(k).and_then(Value::as_str).map(str::to_owned);
    st.calls
        .iter()
        .filter(|c| c.status < 300 && c.path.contains("/check-runs"))
        .filter_map(|c| match c.method.as_str() {
            "POST" => Some(CheckCall {
                method: "POST".into(),
                name: s(&c.body, "name").unwrap_or_default(),
                head_sha: s(&c.body, "head_sha").unwrap_or_default(),
                status: s(&c.body, "status"),
                conclusion: s(&c.body, "conclusion"),
            }),
            "PATCH" => {
                let id: i64 = c.path.rsplit('/').next()?.parse().ok()?;
                let check = st.checks.get(&id)?;
                Some(CheckCall {
                    method: "PATCH".into(),
                    name: check.name.clone(),
                    head_sha: check.head_sha.clone(),
                    status: s(&c.body, "status"),
                    conclusion: s(&c.body, "conclusion"),
                })
            }
            _ => None,
        })
        .collect()
}

/// (name, head_sha) of every check run created, in order.
fn created(calls: &[CheckCall]) -> Vec<(String, String)> {
    calls
        .iter()
        .filter(|c| c.method == "POST")
        .map(|c| (c.name.clone(), c.head_sha.clone()))
        .collect()
}

/// Every conclusion written per (name, head_sha), in order, without repeats in a row.
fn conclusions(calls: &[CheckCall]) -> BTreeMap<(String, String), Vec<String>> {
    let mut out: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for c in calls {
        if let Some(conclusion) = &c.conclusion {
            let list = out.entry((c.name.clone(), c.head_sha.clone())).or_default();
            if list.last() != Some(conclusion) {
                list.push(conclusion.clone());
            }
        }
    }
    out
}

fn final_checks(gh: &FakeGithub) -> BTreeMap<(String, String), (String, Option<String>)> {
    gh.lock()
        .checks
        .values()
        .map(|c| {
            (
                (c.name.clone(), c.head_sha.clone()),
                (c.status.clone(), c.conclusion.clone()),
            )
        })
        .collect()
}

async fn wait_gone(env: &Env, name: &str) {
    let start = tokio::time::Instant::now();
    loop {
        match env.workflows().get_opt(name).await {
            Ok(None) => return,
            Ok(Some(wf)) if start.elapsed() > DEADLINE => panic!(
                "{name} was not deleted; finalizers {:?}, deleting {}",
                wf.finalizers(),
                wf.metadata.deletion_timestamp.is_some()
            ),
            _ => {}
        }
        assert!(start.elapsed() <= DEADLINE, "{name}: not readable");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn run_of(wf: &QmsWorkflow) -> (u32, Option<String>) {
    wf.status
        .as_ref()
        .map(|s| (s.run, s.head_sha.clone()))
        .unwrap_or_default()
}

/// A PR opened on GitHub is reviewed by the operator and mirrored to check runs: one per step
/// plus `QMS`, on the head SHA, completed as steps pass; the manual step asks for a decision with
/// Approve/Reject; `/qms approve` by a user with write permission completes the review. Closing
/// the PR deletes the review past both finalizers.
pub async fn pull_request_review_is_mirrored_to_check_runs_and_approved_by_comment(env: &Env) {
    let mut rig = Rig::start(env, &[], None).await;
    let name = rig.name();

    rig.open("opened", SHA1).await;
    let wf = rig.env.get(&name).await;
    assert_eq!(wf.spec.head_sha, SHA1);
    assert_eq!(wf.spec.template_ref.name, "standard-qms-review");
    // Both controllers' finalizers end up on it, neither removes the other's.
    let wf = rig
        .env
        .wait_for(&name, "both finalizers", |wf| wf.finalizers().len() == 2)
        .await;
    assert_eq!(
        wf.finalizers().iter().cloned().collect::<BTreeSet<_>>(),
        BTreeSet::from([
            "qms.creo.dev/cleanup".to_owned(),
            "qms.creo.dev/github-checks".to_owned()
        ])
    );

    // The manual step waits on GitHub with the buttons.
    rig.check_until(
        "QMS / final-review",
        SHA1,
        "completed",
        Some("action_required"),
    )
    .await;
    let waiting = rig.gh.check("QMS / final-review", SHA1).unwrap();
    assert_eq!(waiting.actions, ["approve", "reject"]);
    let wf = rig.env.wait_state(&name, WorkflowState::FinalPending).await;
    assert_eq!(
        qms_operator::dev::waiting_step(&wf).as_deref(),
        Some("final-review")
    );
    for step in ["dor-validation", "progress-reviews", "dod-validation"] {
        rig.check_until(&format!("QMS / {step}"), SHA1, "completed", Some("success"))
            .await;
    }
    rig.check_until("QMS", SHA1, "in_progress", None).await;
    // The code reviewer's result carries one annotation; it reached its step's check run.
    assert_eq!(
        rig.gh
            .check("QMS / progress-reviews", SHA1)
            .unwrap()
            .annotations,
        1
    );

    // Someone without a word in it is refused (reply comment), nothing changes.
    let (code, answer) = rig.comment("mallory", "/qms approve").await;
    assert_eq!(code, 200, "{answer}");
    assert_eq!(answer["status"], "replied", "{answer}");
    assert!(rig.env.get(&name).await.spec.approvals.is_empty());

    let (code, answer) = rig.comment("alice", "/qms approve looks good").await;
    assert_eq!(code, 200, "{answer}");
    assert_eq!(answer["status"], "applied", "{answer}");
    let wf = rig.env.wait_state(&name, WorkflowState::Completed).await;
    let approval = &wf.spec.approvals[0];
    assert_eq!(
        (
            approval.step.as_str(),
            approval.decision,
            approval.by.as_str(),
            approval.sha.as_str()
        ),
        ("final-review", Decision::Approve, "alice", SHA1)
    );
    assert!(approval.reason.contains("looks good"), "{approval:?}");
    rig.check_until("QMS", SHA1, "completed", Some("success"))
        .await;
    rig.check_until("QMS / final-review", SHA1, "completed", Some("success"))
        .await;

    // Exactly these check runs were created: one per step and the summary, on the head SHA,
    // each once.
    let calls = check_calls(&rig.gh);
    let made = created(&calls);
    assert_eq!(made.len(), 5, "{made:?}");
    assert_eq!(
        made.iter().cloned().collect::<BTreeSet<_>>(),
        check_names()
            .into_iter()
            .map(|n| (n, SHA1.to_owned()))
            .collect()
    );
    assert!(calls.iter().all(|c| c.head_sha == SHA1), "{calls:?}");
    let concluded = conclusions(&calls);
    let expect = |c: &[&str]| c.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    for step in ["dor-validation", "progress-reviews", "dod-validation"] {
        assert_eq!(
            concluded[&(format!("QMS / {step}"), SHA1.to_owned())],
            expect(&["success"])
        );
    }
    assert_eq!(
        concluded[&("QMS / final-review".to_owned(), SHA1.to_owned())],
        expect(&["action_required", "success"])
    );
    assert_eq!(
        concluded[&("QMS".to_owned(), SHA1.to_owned())],
        expect(&["success"])
    );
    let done = final_checks(&rig.gh);
    assert_eq!(done.len(), 5);
    assert!(
        done.values()
            .all(|(s, c)| s == "completed" && c.as_deref() == Some("success")),
        "{done:?}"
    );
    // The buttons went away with the decision.
    assert!(
        rig.gh
            .check("QMS / final-review", SHA1)
            .unwrap()
            .actions
            .is_empty()
    );
    {
        let st = rig.gh.lock();
        let perms: Vec<&Call> = st
            .calls
            .iter()
            .filter(|c| c.path.ends_with("/permission"))
            .collect();
        assert!(
            perms.iter().any(|c| c.path.contains("/alice/")),
            "{perms:?}"
        );
        assert!(
            st.calls
                .iter()
                .all(|c| c.auth.as_deref() == Some(&format!("Bearer {TOKEN}") as &str)),
            "every request carries the token"
        );
        assert!(
            st.comments
                .iter()
                .any(|(n, t)| *n == PR && t.contains("mallory")),
            "{:?}",
            st.comments
        );
    }
    rig.gh.assert_no_violations();
    // No Job was created twice.
    assert_eq!(rig.env.list_jobs().await.len(), 5);
    // The operator's status apply never claimed the fields qms-github owns.
    let wf = rig.env.get(&name).await;
    assert_eq!(wf.status.as_ref().unwrap().check_runs.len(), 5);
    let fields_of = |manager: &str| -> String {
        wf.managed_fields()
            .iter()
            .filter(|m| m.manager.as_deref() == Some(manager))
            .filter_map(|m| m.fields_v1.as_ref())
            .map(|f| f.0.to_string())
            .collect()
    };
    let operator = fields_of("qms-operator");
    assert!(operator.contains("f:steps"), "{operator}");
    assert!(
        !operator.contains("f:checkRuns") && !operator.contains("f:dispatches"),
        "{operator}"
    );
    assert!(fields_of("qms-github").contains("f:checkRuns"));

    // A sync on a cache that does not show its own last write yet (here: the object without
    // `checkRuns`) must not take the check runs for missing (list, adopt, rewrite them).
    let mut stale = rig.env.get(&name).await;
    if let Some(st) = stale.status.as_mut() {
        st.check_runs.clear();
        st.dispatches.clear();
    }
    let before = rig.gh.lock().calls.len();
    let ctx = std::sync::Arc::new(qms_operator::controller::github::Ctx {
        shared: rig.op.shared.clone(),
        scope: rig.op.shared.scopes[0].clone(),
        github: rig.op.shared.github.clone().expect("GitHub is on"),
    });
    qms_operator::controller::github::reconcile(std::sync::Arc::new(stale), ctx)
        .await
        .expect("sync");
    let extra: Vec<String> = rig.gh.lock().calls[before..]
        .iter()
        .map(Call::short)
        .collect();
    assert!(extra.is_empty(), "{extra:?}");

    // The webhook counters and the sync outcomes are on /metrics.
    let text = rig.metrics().await;
    assert!(
        text.contains("qms_github_webhook_deliveries_total 3"),
        "{text}"
    );
    assert!(
        text.contains(r#"qms_github_webhook_outcomes_total{outcome="applied"} 2"#),
        "{text}"
    );
    assert!(
        text.contains(r#"qms_github_webhook_outcomes_total{outcome="bad_signature"} 0"#),
        "{text}"
    );
    assert!(
        text.contains(r#"qms_github_check_syncs_total{outcome="converged"}"#),
        "{text}"
    );
    assert!(
        !text.contains(TOKEN) && !text.contains(SECRET),
        "no secret on /metrics"
    );

    // A forged delivery is refused before anything is parsed.
    let body = serde_json::to_vec(&pull_request("closed", SHA1)).unwrap();
    let (code, _) = post_webhook(
        rig.addr,
        "pull_request",
        "forged-1",
        &sign("not-the-secret", &body),
        &body,
    )
    .await;
    assert_eq!(code, 401);
    assert!(rig.env.workflows().get_opt(&name).await.unwrap().is_some());

    // Closing the PR deletes the review: the Jobs go (our finalizer), the check runs are all
    // completed already so nothing is cancelled (qms-github's finalizer), then the object goes.
    rig.deliver("pull_request", &pull_request("closed", SHA1))
        .await;
    wait_gone(rig.env, &name).await;
    let after = check_calls(&rig.gh);
    assert_eq!(after.len(), calls.len(), "{:?}", &after[calls.len()..]);
    rig.op.stop().await;
}

/// Agents that finish at once, except the DoR validator for SHA1, which runs until the test
/// lets it go: so a push arrives while the first run's DoR check is in progress.
fn blocking_dor_agent(marker: &std::path::Path) -> String {
    let script = format!(
        "if [ \"$QMS_HEAD_SHA\" = \"{SHA1}\" ]; then while [ ! -f {m} ]; do sleep 0.1; done; fi\n{}",
        result(
            "success",
            r#""basic_checks_failed":0,"security_critical_findings":0"#,
            0
        ),
        m = marker.display()
    );
    agent("qms-dor-validator", 10, &script).replace(
        "capabilities: [qms-dor-validator]",
        "capabilities: [dor-validation, basic-checks, security-scan]",
    )
}

/// A push (`synchronize`) mid-run: the old SHA's open check runs are completed as `cancelled`, the
/// new SHA gets its own; the new run completes. Then closing the PR mid-way through a later run
/// cancels what is open and the review goes past both finalizers.
pub async fn push_mid_run_cancels_the_old_checks_and_reviews_the_new_sha(env: &Env) {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("release-dor");
    let mut rig = Rig::start(env, &[], Some(&blocking_dor_agent(&marker))).await;
    let name = rig.name();

    rig.open("opened", SHA1).await;
    rig.check_until("QMS / dor-validation", SHA1, "in_progress", None)
        .await;
    rig.check_until("QMS", SHA1, "in_progress", None).await;

    rig.open("synchronize", SHA2).await;
    let wf = rig
        .env
        .wait_for(&name, "run 2 on the new SHA", |wf| {
            run_of(wf) == (2, Some(SHA2.to_owned()))
        })
        .await;
    assert_eq!(wf.spec.head_sha, SHA2);
    rig.check_until("QMS / dor-validation", SHA1, "completed", Some("cancelled"))
        .await;
    rig.check_until("QMS", SHA1, "completed", Some("cancelled"))
        .await;

    rig.check_until(
        "QMS / final-review",
        SHA2,
        "completed",
        Some("action_required"),
    )
    .await;
    let (code, answer) = rig.comment("alice", "/qms approve").await;
    assert_eq!(
        (code, &answer["status"]),
        (200, &json!("applied")),
        "{answer}"
    );
    rig.env
        .wait_for(&name, "COMPLETED on the new SHA", |wf| {
            state_of(wf) == WorkflowState::Completed && run_of(wf) == (2, Some(SHA2.to_owned()))
        })
        .await;
    rig.check_until("QMS", SHA2, "completed", Some("success"))
        .await;

    let calls = check_calls(&rig.gh);
    let made = created(&calls);
    let on = |sha: &str| -> Vec<String> {
        made.iter()
            .filter(|(_, s)| s == sha)
            .map(|(n, _)| n.clone())
            .collect()
    };
    let mut old = on(SHA1);
    old.sort();
    assert_eq!(old, ["QMS", "QMS / dor-validation"], "{made:?}");
    let new = on(SHA2);
    assert_eq!(new.len(), 5, "each once: {new:?}");
    assert_eq!(new.into_iter().collect::<BTreeSet<_>>(), check_names());
    let concluded = conclusions(&calls);
    for n in ["QMS", "QMS / dor-validation"] {
        assert_eq!(
            concluded[&(n.to_owned(), SHA1.to_owned())],
            ["cancelled"],
            "{n}"
        );
    }
    for n in check_names() {
        let want: &[&str] = if n == "QMS / final-review" {
            &["action_required", "success"]
        } else {
            &["success"]
        };
        assert_eq!(concluded[&(n.clone(), SHA2.to_owned())], want, "{n}");
    }
    // Nothing written to the old SHA after it was cancelled.
    let first_cancel = calls
        .iter()
        .position(|c| c.head_sha == SHA1 && c.conclusion.as_deref() == Some("cancelled"))
        .unwrap();
    let sha1_after: Vec<&CheckCall> = calls[first_cancel..]
        .iter()
        .filter(|c| c.head_sha == SHA1 && c.conclusion.as_deref() != Some("cancelled"))
        .collect();
    assert!(sha1_after.is_empty(), "{sha1_after:?}");
    rig.gh.assert_no_violations();

    // Another push, and the PR is closed while that run's DoR is still in progress.
    rig.open("synchronize", SHA1).await;
    rig.env
        .wait_for(&name, "run 3", |wf| {
            run_of(wf) == (3, Some(SHA1.to_owned()))
        })
        .await;
    rig.check_until("QMS / dor-validation", SHA1, "in_progress", None)
        .await;
    rig.deliver("pull_request", &pull_request("closed", SHA1))
        .await;
    wait_gone(rig.env, &name).await;
    {
        let st = rig.gh.lock();
        let open: Vec<_> = st
            .checks
            .values()
            .filter(|c| c.status != "completed")
            .collect();
        assert!(open.is_empty(), "left open: {open:?}");
        // Run 3's DoR check (the last one made) was cancelled by the close.
        let last_dor = st
            .checks
            .values()
            .rfind(|c| c.name == "QMS / dor-validation")
            .unwrap();
        assert_eq!(
            (last_dor.head_sha.as_str(), last_dor.conclusion.as_deref()),
            (SHA1, Some("cancelled"))
        );
        assert!(
            last_dor.external_id.ends_with("/3/dor-validation"),
            "{last_dor:?}"
        );
    }
    rig.gh.assert_no_violations();
    std::fs::write(&marker, b"").unwrap();
    rig.op.stop().await;
}

/// GitHub answers 503 for a part of the run: the review goes on (Jobs, gates, the approval from a
/// trusted login), and once GitHub is back the check runs converge to the final state with
/// every check created once.
pub async fn github_outage_does_not_stop_the_review_and_checks_converge_after(env: &Env) {
    let mut rig = Rig::start(env, &["alice"], None).await;
    let name = rig.name();

    rig.open("opened", SHA1).await;
    rig.check_until("QMS", SHA1, "in_progress", None).await;
    rig.gh.lock().down = Some((503, vec![]));

    // The review runs to the manual step without GitHub…
    rig.env.wait_state(&name, WorkflowState::FinalPending).await;
    rig.github_until("the sync tried GitHub during the outage", |st| {
        st.calls.iter().any(|c| c.status == 503)
    })
    .await;
    // …and a trusted login approves by comment (no GitHub call needed for that).
    let (code, answer) = rig.comment("alice", "/qms approve").await;
    assert_eq!(
        (code, &answer["status"]),
        (200, &json!("applied")),
        "{answer}"
    );
    rig.env.wait_state(&name, WorkflowState::Completed).await;
    assert_eq!(rig.env.list_jobs().await.len(), 5);
    let text = rig.metrics().await;
    assert!(
        text.contains(r#"qms_github_check_syncs_total{outcome="unavailable"}"#),
        "{text}"
    );

    rig.gh.lock().down = None;
    rig.check_until("QMS", SHA1, "completed", Some("success"))
        .await;
    for step in STEPS {
        rig.check_until(&format!("QMS / {step}"), SHA1, "completed", Some("success"))
            .await;
    }
    let calls = check_calls(&rig.gh);
    let made = created(&calls);
    assert_eq!(made.len(), 5, "{made:?}");
    assert_eq!(
        made.iter().map(|(n, _)| n.clone()).collect::<BTreeSet<_>>(),
        check_names()
    );
    assert!(made.iter().all(|(_, sha)| sha == SHA1));
    rig.gh.assert_no_violations();
    rig.op.stop().await;
}
