//! Webhooks in, end to end: the axum router in front of a kube-sim API server (CRDs from qms-api)
//! and a fake GitHub. The operator is simulated by writing the workflow status with server-side
//! apply as field manager `qms-operator`, as the real one does.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::common::github::FakeGithub;
use crate::common::*;
use axum::Router;
use axum::body::Body;
use http::{Request, StatusCode};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams, PostParams};
use qms_api::{Decision, QmsWorkflow, WorkflowTemplate};
use qms_github::checks::CheckSyncer;
use qms_github::naming;
use qms_github::signature::sign;
use qms_github::{
    Credentials, GithubClient, GithubConfig, ManualClock, Secret, WebhookState, router,
};
use serde_json::{Value, json};
use tower::ServiceExt;

const SECRET: &str = "whsec-current-2f1c9a";
const OLD_SECRET: &str = "whsec-previous-77aa01";
const TOKEN: &str = "ghp_webhooktesttoken42";

struct Env {
    _sim: kube_sim::KubeSim,
    kube: kube::Client,
    gh: FakeGithub,
    cfg: GithubConfig,
    github: Arc<GithubClient>,
    clock: ManualClock,
    state: WebhookState,
    app: Router,
}

impl Env {
    async fn start() -> Self {
        let sim = kube_sim::KubeSim::builder()
            .without_kubelet()
            .start()
            .await
            .expect("kube-sim starts");
        let kube = sim.client();
        let crds: Api<CustomResourceDefinition> = Api::all(kube.clone());
        for (_, crd) in qms_api::crds::all() {
            crds.create(&PostParams::default(), &crd)
                .await
                .expect("CRD installs");
        }
        let ns: Api<Namespace> = Api::all(kube.clone());
        let mut n = Namespace::default();
        n.metadata.name = Some(NS.into());
        ns.create(&PostParams::default(), &n)
            .await
            .expect("namespace");
        let templates: Api<WorkflowTemplate> = Api::namespaced(kube.clone(), NS);
        templates
            .create(&PostParams::default(), &template())
            .await
            .expect("template");

        let gh = FakeGithub::start().await;
        {
            let mut st = gh.lock();
            st.permissions.insert("qms-lead".into(), "maintain".into());
            st.permissions.insert("alice-dev".into(), "read".into());
            st.pulls.insert(12346, fixture("pulls.12346.json"));
        }
        let cfg = GithubConfig {
            api_base_url: gh.uri(),
            webhook_secrets: vec![Secret::new(OLD_SECRET), Secret::new(SECRET)],
            credentials: Credentials::Token(Secret::new(TOKEN)),
            namespace: NS.into(),
            writes_per_minute: 600,
            ..GithubConfig::default()
        };
        let clock = ManualClock::new(t0());
        let github = Arc::new(GithubClient::new(&cfg, Arc::new(clock.clone())).unwrap());
        let state = WebhookState::new(cfg.clone(), github.clone(), kube.clone());
        let app = router(state.clone());
        Self {
            _sim: sim,
            kube,
            gh,
            cfg,
            github,
            clock,
            state,
            app,
        }
    }

    fn workflows(&self) -> Api<QmsWorkflow> {
        Api::namespaced(self.kube.clone(), NS)
    }

    async fn wf(&self, name: &str) -> Option<QmsWorkflow> {
        self.workflows().get_opt(name).await.unwrap()
    }

    /// Delivers `body` as GitHub does (signed with the current secret).
    async fn deliver(&self, event: &str, delivery: &str, body: &Value) -> (StatusCode, Value) {
        let bytes = body.to_string().into_bytes();
        let sig = sign(&Secret::new(SECRET), &bytes);
        self.send(request(
            event,
            delivery,
            Some(&sig),
            "application/json",
            bytes,
        ))
        .await
    }

    async fn send(&self, req: Request<Body>) -> (StatusCode, Value) {
        let resp = self.app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    /// The operator writes status (SSA, manager qms-operator), without qms-github's fields.
    async fn operator_status(&self, name: &str, status: qms_api::QmsWorkflowStatus) {
        let body = json!({
            "apiVersion": "qms.creo.dev/v1", "kind": "QmsWorkflow",
            "metadata": { "name": name },
            "status": status,
        });
        self.workflows()
            .patch_status(
                name,
                &PatchParams::apply("qms-operator").force(),
                &Patch::Apply(&body),
            )
            .await
            .expect("operator status");
    }

    async fn reconcile_checks(&self, name: &str) {
        // Time passes between reconciles (and the write pacing refills).
        self.clock.advance(std::time::Duration::from_secs(60));
        let syncer = CheckSyncer::new(&self.cfg, self.github.clone(), self.kube.clone());
        let wf = self.wf(name).await.expect("workflow");
        let out = syncer
            .reconcile(&wf, &Default::default())
            .await
            .expect("reconcile");
        assert!(out.report.converged, "{:?}", out.report.error);
        assert_eq!(out.requeue_after, None);
    }
}

fn request(
    event: &str,
    delivery: &str,
    sig: Option<&str>,
    content_type: &str,
    body: Vec<u8>,
) -> Request<Body> {
    let mut b = Request::builder()
        .method("POST")
        .uri("/webhooks/github")
        .header("content-type", content_type)
        .header("content-length", body.len())
        .header("x-github-event", event)
        .header("x-github-delivery", delivery)
        .header("x-github-hook-id", "501234")
        .header("x-github-hook-installation-target-id", "123456")
        .header("user-agent", "GitHub-Hookshot/044aadd");
    if let Some(sig) = sig {
        b = b.header("x-hub-signature-256", sig);
    }
    b.body(Body::from(body)).unwrap()
}

fn comment(body: &str, login: &str, pr: u64) -> Value {
    let mut v = fixture("issue_comment.created.json");
    v["comment"]["body"] = body.into();
    v["comment"]["user"]["login"] = login.into();
    v["sender"]["login"] = login.into();
    v["issue"]["number"] = pr.into();
    v
}

#[tokio::test]
async fn signature_size_and_content_type_are_checked_before_anything_else() {
    let env = Env::start().await;
    let body = fixture("pull_request.opened.json").to_string().into_bytes();
    let m = env.state.metrics();

    // Bad and missing signatures: 401, nothing stored.
    let forged = sign(&Secret::new("guessed"), &body);
    let (s, _) = env
        .send(request(
            "pull_request",
            "d-1",
            Some(&forged),
            "application/json",
            body.clone(),
        ))
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _) = env
        .send(request(
            "pull_request",
            "d-2",
            None,
            "application/json",
            body.clone(),
        ))
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let mut tampered = body.clone();
    tampered[10] ^= 1;
    let good_sig = sign(&Secret::new(SECRET), &body);
    let (s, _) = env
        .send(request(
            "pull_request",
            "d-3",
            Some(&good_sig),
            "application/json",
            tampered,
        ))
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(env.wf(&wf_name()).await.is_none());
    assert_eq!(m.bad_signature.load(Ordering::Relaxed), 3);

    // Over 25 MB: 413 without hashing — declared by Content-Length, or streamed without one.
    let checks_before = m.signature_checks.load(Ordering::Relaxed);
    let big = vec![b' '; 25 * 1024 * 1024 + 1];
    let (s, _) = env
        .send(request(
            "pull_request",
            "d-4",
            Some(&good_sig),
            "application/json",
            big.clone(),
        ))
        .await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    let chunks: Vec<Result<bytes::Bytes, std::io::Error>> = big
        .chunks(1 << 20)
        .map(|c| Ok(bytes::Bytes::copy_from_slice(c)))
        .collect();
    let streamed = Request::builder()
        .method("POST")
        .uri("/webhooks/github")
        .header("content-type", "application/json")
        .header("x-github-event", "pull_request")
        .header("x-github-delivery", "d-5")
        .header("x-hub-signature-256", &good_sig)
        .body(Body::from_stream(futures_stream(chunks)))
        .unwrap();
    let (s, _) = env.send(streamed).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        m.signature_checks.load(Ordering::Relaxed),
        checks_before,
        "oversize bodies are never hashed"
    );
    assert_eq!(m.too_large.load(Ordering::Relaxed), 2);

    // Content types: text/plain is 415; GitHub's form encoding (payload=…) is accepted.
    let sig = sign(&Secret::new(SECRET), b"hello");
    let (s, _) = env
        .send(request(
            "pull_request",
            "d-6",
            Some(&sig),
            "text/plain",
            b"hello".to_vec(),
        ))
        .await;
    assert_eq!(s, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let form: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("payload", &String::from_utf8(body.clone()).unwrap())
        .finish();
    let sig = sign(&Secret::new(OLD_SECRET), form.as_bytes()); // a secret being rotated out still works
    let (s, v) = env
        .send(request(
            "pull_request",
            "d-7",
            Some(&sig),
            "application/x-www-form-urlencoded",
            form.into_bytes(),
        ))
        .await;
    assert_eq!(
        (s, v["status"].as_str()),
        (StatusCode::OK, Some("applied")),
        "{v}"
    );
    assert!(env.wf(&wf_name()).await.is_some());

    // ping → 200; unknown events → 202 "ignored".
    let (s, v) = env.deliver("ping", "d-8", &fixture("ping.json")).await;
    assert_eq!((s, v["status"].as_str()), (StatusCode::OK, Some("pong")));
    let (s, v) = env
        .deliver("star", "d-9", &json!({"action": "created"}))
        .await;
    assert_eq!(
        (s, v["status"].as_str()),
        (StatusCode::ACCEPTED, Some("ignored"))
    );
    // Signed but not a valid payload: 400, never a panic.
    let (s, _) = env
        .deliver("pull_request", "d-10", &json!({"action": 1}))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
}

fn futures_stream(
    chunks: Vec<Result<bytes::Bytes, std::io::Error>>,
) -> impl futures_core_stream::Stream<Item = Result<bytes::Bytes, std::io::Error>> {
    futures_core_stream::iter(chunks)
}

mod futures_core_stream {
    pub use futures::stream::{Stream, iter};
}

#[tokio::test]
async fn a_delivery_repeated_100_times_makes_one_workflow_and_one_change() {
    let env = Env::start().await;
    let name = wf_name();
    let (s, _) = env
        .deliver(
            "pull_request",
            "open-1",
            &fixture("pull_request.opened.json"),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let rv_created = env.wf(&name).await.unwrap().metadata.resource_version;

    // The same opened delivery 100 times, concurrently: all duplicates, nothing changes.
    let body = fixture("pull_request.opened.json");
    let answers =
        futures::future::join_all((0..100).map(|_| env.deliver("pull_request", "open-1", &body)))
            .await;
    assert!(
        answers
            .iter()
            .all(|(s, v)| *s == StatusCode::OK && v["status"] == "duplicate")
    );
    assert_eq!(
        env.wf(&name).await.unwrap().metadata.resource_version,
        rv_created
    );

    // An approval comment delivered 100 times (concurrently) is applied once.
    let approve = comment("/qms approve shipped", "qms-lead", PR);
    let answers = futures::future::join_all(
        (0..100).map(|_| env.deliver("issue_comment", "cmt-1", &approve)),
    )
    .await;
    let applied = answers
        .iter()
        .filter(|(_, v)| v["status"] == "applied")
        .count();
    assert_eq!(applied, 1, "{answers:?}");
    let wf = env.wf(&name).await.unwrap();
    assert_eq!(wf.spec.approvals.len(), 1);
    let rv = wf.metadata.resource_version.clone();

    // After a restart (empty memory), a redelivery is recognised from the cluster.
    let restarted = WebhookState::new(env.cfg.clone(), env.github.clone(), env.kube.clone());
    let app = router(restarted);
    let bytes = approve.to_string().into_bytes();
    let sig = sign(&Secret::new(SECRET), &bytes);
    let resp = app
        .oneshot(request(
            "issue_comment",
            "cmt-1",
            Some(&sig),
            "application/json",
            bytes,
        ))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let v: Value = serde_json::from_slice(
        &axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(v["status"], "duplicate");
    let wf = env.wf(&name).await.unwrap();
    assert_eq!(
        (wf.spec.approvals.len(), wf.metadata.resource_version),
        (1, rv)
    );
    assert!(
        naming::recorded_deliveries(wf.metadata.annotations.as_ref())
            .contains(&"123456:501234:cmt-1".to_owned())
    );
    let lists = env.state.metrics().duplicates.load(Ordering::Relaxed);
    assert!(lists >= 199, "{lists}");
}

#[tokio::test]
async fn a_pull_request_from_opened_to_completed_through_webhooks_and_checks() {
    let env = Env::start().await;
    let name = wf_name();
    let (s, v) = env
        .deliver("pull_request", "p-1", &fixture("pull_request.opened.json"))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let wf = env.wf(&name).await.unwrap();
    assert_eq!(
        (
            wf.spec.head_sha.as_str(),
            wf.spec.template_ref.name.as_str()
        ),
        (SHA1, "standard-qms-review")
    );
    assert_eq!(
        wf.metadata.finalizers.as_deref(),
        Some(&[naming::FINALIZER.to_owned()][..])
    );

    // The operator starts; qms-github syncs the checks and stores their ids (own field manager).
    env.operator_status(&name, progress(1, SHA1, 0)).await;
    env.reconcile_checks(&name).await;
    let wf = env.wf(&name).await.unwrap();
    assert_eq!(wf.status.as_ref().unwrap().check_runs.len(), 2);
    // The operator's next status apply does not mention checkRuns: they survive.
    env.operator_status(&name, progress(1, SHA1, 2)).await;
    let wf = env.wf(&name).await.unwrap();
    assert_eq!(
        wf.status.as_ref().unwrap().check_runs.len(),
        2,
        "the two field managers do not fight"
    );
    env.reconcile_checks(&name).await;
    env.operator_status(&name, progress(1, SHA1, 4)).await;
    env.reconcile_checks(&name).await;
    let fin = env.gh.check("QMS / final-review", SHA1).unwrap();
    assert_eq!(
        (fin.conclusion.as_deref(), fin.actions.clone()),
        (
            Some("action_required"),
            vec!["approve".to_owned(), "reject".to_owned()]
        )
    );

    // Someone clicks "Approve" on the manual step's check run.
    let mut click = fixture("check_run.requested_action.json");
    click["check_run"]["external_id"] = format!("{NS}/{name}/1/final-review").into();
    let (s, v) = env.deliver("check_run", "p-2", &click).await;
    assert_eq!(
        (s, v["status"].as_str()),
        (StatusCode::OK, Some("applied")),
        "{v}"
    );
    let wf = env.wf(&name).await.unwrap();
    let a = &wf.spec.approvals[0];
    assert_eq!(
        (a.step.as_str(), a.decision, a.by.as_str(), a.sha.as_str()),
        ("final-review", Decision::Approve, "qms-lead", SHA1)
    );

    env.operator_status(&name, progress(1, SHA1, 5)).await;
    env.reconcile_checks(&name).await;
    for c in env.gh.lock().checks.values() {
        assert_eq!(
            (c.status.as_str(), c.conclusion.as_deref()),
            ("completed", Some("success")),
            "{}",
            c.name
        );
    }
    assert_eq!(env.gh.lock().checks.len(), 5);

    // Closed after completion: deleted, nothing left to cancel, released.
    let (s, _) = env
        .deliver("pull_request", "p-3", &fixture("pull_request.closed.json"))
        .await;
    assert_eq!(s, StatusCode::OK);
    env.reconcile_checks(&name).await;
    assert!(env.wf(&name).await.is_none());
    assert!(
        env.gh
            .lock()
            .checks
            .values()
            .all(|c| c.conclusion.as_deref() == Some("success"))
    );
    env.gh.assert_no_violations();
}

#[tokio::test]
async fn closing_mid_run_cancels_the_open_checks_before_the_workflow_goes() {
    let env = Env::start().await;
    let name = wf_name();
    env.deliver("pull_request", "c-1", &fixture("pull_request.opened.json"))
        .await;
    env.operator_status(&name, progress(1, SHA1, 1)).await;
    env.reconcile_checks(&name).await;
    let (s, v) = env
        .deliver("pull_request", "c-2", &fixture("pull_request.closed.json"))
        .await;
    assert_eq!(
        (s, v["status"].as_str()),
        (StatusCode::OK, Some("applied")),
        "{v}"
    );
    let wf = env.wf(&name).await.expect("held by qms-github's finalizer");
    assert!(wf.metadata.deletion_timestamp.is_some());
    env.reconcile_checks(&name).await;
    assert!(
        env.wf(&name).await.is_none(),
        "released once the checks are closed"
    );
    assert_eq!(
        env.gh.check("QMS", SHA1).unwrap().conclusion.as_deref(),
        Some("cancelled")
    );
    assert_eq!(
        env.gh
            .check("QMS / progress-reviews", SHA1)
            .unwrap()
            .conclusion
            .as_deref(),
        Some("cancelled")
    );
    assert_eq!(
        env.gh
            .check("QMS / dor-validation", SHA1)
            .unwrap()
            .conclusion
            .as_deref(),
        Some("success")
    );
    // A redelivered "closed" finds nothing to do.
    let (s, v) = env
        .deliver("pull_request", "c-3", &fixture("pull_request.closed.json"))
        .await;
    assert_eq!(
        (s, v["status"].as_str()),
        (StatusCode::ACCEPTED, Some("ignored"))
    );
}

#[tokio::test]
async fn synchronize_mid_run_moves_the_head_and_cancels_the_old_checks() {
    let env = Env::start().await;
    let name = wf_name();
    env.deliver("pull_request", "s-1", &fixture("pull_request.opened.json"))
        .await;
    env.operator_status(&name, progress(1, SHA1, 1)).await;
    env.reconcile_checks(&name).await;
    let (s, _) = env
        .deliver(
            "pull_request",
            "s-2",
            &fixture("pull_request.synchronize.json"),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(env.wf(&name).await.unwrap().spec.head_sha, SHA2);
    env.reconcile_checks(&name).await;
    for c in env.gh.lock().checks.values() {
        assert_eq!(c.status, "completed", "{} left open on the old SHA", c.name);
    }
    assert_eq!(
        env.gh
            .check("QMS / progress-reviews", SHA1)
            .unwrap()
            .conclusion
            .as_deref(),
        Some("cancelled")
    );
    env.operator_status(&name, progress(2, SHA2, 0)).await;
    env.reconcile_checks(&name).await;
    assert_eq!(env.gh.check("QMS", SHA2).unwrap().status, "in_progress");
    assert_eq!(
        env.gh.check("QMS / dor-validation", SHA2).unwrap().status,
        "in_progress"
    );
}

#[tokio::test]
async fn a_fork_pr_waits_for_a_trusted_ok_to_test() {
    let env = Env::start().await;
    let fork = fixture("pull_request.opened.fork.json");
    let fork_sha = fork["pull_request"]["head"]["sha"]
        .as_str()
        .unwrap()
        .to_owned();
    let fork_name = naming::workflow_name(REPO, 12346);
    let (s, v) = env.deliver("pull_request", "f-1", &fork).await;
    assert_eq!(
        (s, v["status"].as_str()),
        (StatusCode::ACCEPTED, Some("waiting")),
        "{v}"
    );
    assert!(
        env.wf(&fork_name).await.is_none(),
        "no workflow, so no agent runs"
    );
    let c = env.gh.check("QMS", &fork_sha).unwrap();
    assert_eq!(
        (c.status.as_str(), c.conclusion.as_deref()),
        ("completed", Some("action_required"))
    );
    assert!(c.summary.contains("/qms ok-to-test"));
    // Another delivery for the same SHA (e.g. reopened) does not add a second check run.
    let mut again = fork.clone();
    again["action"] = "reopened".into();
    env.deliver("pull_request", "f-2", &again).await;
    assert_eq!(env.gh.lock().checks.len(), 1);

    // The contributor cannot approve their own PR's run.
    let (s, v) = env
        .deliver(
            "issue_comment",
            "f-3",
            &comment("/qms ok-to-test", "outside-contributor", 12346),
        )
        .await;
    assert_eq!((s, v["status"].as_str()), (StatusCode::OK, Some("replied")));
    assert!(env.wf(&fork_name).await.is_none());
    assert!(
        env.gh
            .lock()
            .comments
            .iter()
            .any(|(pr, b)| *pr == 12346 && b.contains("not allowed"))
    );

    // A maintainer says ok-to-test: the review is created at the PR's current head.
    let (s, v) = env
        .deliver(
            "issue_comment",
            "f-4",
            &comment("/qms ok-to-test", "qms-lead", 12346),
        )
        .await;
    assert_eq!(
        (s, v["status"].as_str()),
        (StatusCode::OK, Some("applied")),
        "{v}"
    );
    let wf = env.wf(&fork_name).await.expect("created after ok-to-test");
    assert_eq!(wf.spec.head_sha, fork_sha);
    let ann = wf.metadata.annotations.unwrap();
    assert_eq!(ann[naming::ANNOTATION_OK_TO_TEST], "qms-lead");
    assert_eq!(ann[naming::ANNOTATION_FORK], "true");
}

#[tokio::test]
async fn unauthorized_approve_changes_nothing_and_gets_a_reply() {
    let env = Env::start().await;
    let name = wf_name();
    env.deliver("pull_request", "u-1", &fixture("pull_request.opened.json"))
        .await;
    env.operator_status(&name, progress(1, SHA1, 4)).await;
    let before = env.wf(&name).await.unwrap();
    // alice-dev has read permission only (and is the PR author).
    let (s, v) = env
        .deliver(
            "issue_comment",
            "u-2",
            &comment("/qms approve I think it is fine", "alice-dev", PR),
        )
        .await;
    assert_eq!(
        (s, v["status"].as_str()),
        (StatusCode::OK, Some("replied")),
        "{v}"
    );
    let after = env.wf(&name).await.unwrap();
    assert_eq!(after.spec, before.spec);
    assert_eq!(
        after.metadata.resource_version,
        before.metadata.resource_version
    );
    let comments = env.gh.lock().comments.clone();
    assert_eq!(comments.len(), 1);
    assert!(
        comments[0].1.contains("@alice-dev") && comments[0].1.contains("not allowed"),
        "{comments:?}"
    );
    // A trusted login from the configured list may, whatever their permission.
    let mut cfg = env.cfg.clone();
    cfg.trusted_logins = vec!["Alice-Dev".into()];
    let app = router(WebhookState::new(cfg, env.github.clone(), env.kube.clone()));
    let body = comment("/qms approve fine", "alice-dev", PR)
        .to_string()
        .into_bytes();
    let sig = sign(&Secret::new(SECRET), &body);
    let resp = app
        .oneshot(request(
            "issue_comment",
            "u-3",
            Some(&sig),
            "application/json",
            body,
        ))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        env.wf(&name).await.unwrap().spec.approvals[0].by,
        "alice-dev"
    );
}

#[tokio::test]
async fn rerequested_check_runs_and_suites_retry_only_what_was_asked() {
    let env = Env::start().await;
    let name = wf_name();
    env.deliver("pull_request", "r-1", &fixture("pull_request.opened.json"))
        .await;
    let mut rerun = fixture("check_run.rerequested.json");
    rerun["check_run"]["external_id"] = format!("{NS}/{name}/1/dod-validation").into();
    let (s, v) = env.deliver("check_run", "r-2", &rerun).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let retry = env.wf(&name).await.unwrap().spec.retry.unwrap();
    assert_eq!(
        (retry.step.as_deref(), retry.by.as_deref()),
        (Some("dod-validation"), Some("alice-dev"))
    );
    let (s, _) = env
        .deliver(
            "check_suite",
            "r-3",
            &fixture("check_suite.rerequested.json"),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let retry2 = env.wf(&name).await.unwrap().spec.retry.unwrap();
    assert_eq!(retry2.step, None, "the failed steps, not all of them");
    assert_ne!(retry2.id, retry.id);
    // Commands with an override and a retry in one comment.
    let (s, v) = env.deliver("issue_comment", "r-4", &comment("/qms override code-coverage INC-7 hotfix --expires 4h\n/qms retry progress-reviews", "qms-lead", PR)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let wf = env.wf(&name).await.unwrap();
    assert_eq!(wf.spec.overrides[0].expires, "2025-08-17T10:10:00Z");
    assert_eq!(
        wf.spec.retry.unwrap().step.as_deref(),
        Some("progress-reviews")
    );
}

#[tokio::test]
async fn secrets_never_appear_in_logs_errors_or_debug_output() {
    use std::io::Write;
    #[derive(Clone, Default)]
    struct Buf(Arc<std::sync::Mutex<Vec<u8>>>);
    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buf = Buf::default();
    let writer = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    // With a single registered dispatcher, tracing-core computes a callsite's interest from the
    // default dispatcher of whichever thread hits it first: another test thread (no subscriber)
    // reaching `webhook refused` first would cache "never" for every thread, and this test would
    // miss its own log line. With a second live dispatcher, interest comes from all of them.
    let _second = tracing::Dispatch::new(tracing::subscriber::NoSubscriber::default());
    let _guard = tracing::subscriber::set_default(subscriber);

    let env = Env::start().await;
    env.gh.lock().down = Some((401, vec![])); // GitHub refuses our token
    let name = wf_name();
    env.deliver("pull_request", "x-1", &fixture("pull_request.opened.json"))
        .await;
    let bad = sign(&Secret::new("wrong"), b"{}");
    env.send(request(
        "pull_request",
        "x-2",
        Some(&bad),
        "application/json",
        b"{}".to_vec(),
    ))
    .await;
    env.deliver(
        "issue_comment",
        "x-3",
        &comment("/qms approve", "qms-lead", PR),
    )
    .await;
    env.operator_status(&name, progress(1, SHA1, 0)).await;
    let syncer = CheckSyncer::new(&env.cfg, env.github.clone(), env.kube.clone());
    let out = syncer
        .reconcile(&env.wf(&name).await.unwrap(), &Default::default())
        .await
        .unwrap();
    let err = format!(
        "{:?} {}",
        out.report.error,
        out.report
            .error
            .as_ref()
            .map(|e| e.to_string())
            .unwrap_or_default()
    );
    let debug = format!("{:?} {:?} {:?}", env.cfg, env.github, out);
    let logs = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("webhook refused"),
        "logs were captured: {logs}"
    );
    for secret in [SECRET, OLD_SECRET, TOKEN] {
        for (what, text) in [("logs", &logs), ("errors", &err), ("debug", &debug)] {
            assert!(!text.contains(secret), "{what} contain a secret: {text}");
        }
    }
    // The token did reach GitHub, so it was really in use.
    assert!(
        env.gh
            .lock()
            .calls
            .iter()
            .any(|c| c.auth.as_deref() == Some(&format!("Bearer {TOKEN}")))
    );
    let _ = env.clock.clone();
}

#[tokio::test]
async fn concurrent_commands_on_one_workflow_are_not_lost() {
    let env = Env::start().await;
    let name = wf_name();
    env.deliver("pull_request", "k-1", &fixture("pull_request.opened.json"))
        .await;
    let gates = [
        "basic-checks",
        "security-scan",
        "code-coverage",
        "performance-test",
        "final-checks",
        "compliance-audit",
    ];
    let bodies: Vec<(String, Value)> = gates
        .iter()
        .map(|g| {
            (
                format!("k-{g}"),
                comment(&format!("/qms override {g} incident INC-9"), "qms-lead", PR),
            )
        })
        .collect();
    let answers = futures::future::join_all(
        bodies
            .iter()
            .map(|(d, b)| env.deliver("issue_comment", d, b)),
    )
    .await;
    assert!(
        answers
            .iter()
            .all(|(s, v)| *s == StatusCode::OK && v["status"] == "applied"),
        "{answers:?}"
    );
    let wf = env.wf(&name).await.unwrap();
    let mut got: Vec<&str> = wf.spec.overrides.iter().map(|o| o.gate.as_str()).collect();
    got.sort();
    let mut want = gates.to_vec();
    want.sort();
    assert_eq!(
        got, want,
        "every concurrent change kept (resourceVersion-guarded patches)"
    );
    assert_eq!(
        naming::recorded_deliveries(wf.metadata.annotations.as_ref()).len(),
        7
    );
}

/// The merge queue: `checks_requested` reviews the group's head SHA under the same check names as
/// a pull request; a redelivery changes nothing; `destroyed` cancels it and closes its checks.
#[tokio::test]
async fn a_merge_group_is_reviewed_on_its_head_sha_and_cancelled_when_destroyed() {
    let env = Env::start().await;
    let requested = fixture("merge_group.checks_requested.json");
    let head = requested["merge_group"]["head_sha"]
        .as_str()
        .unwrap()
        .to_owned();
    let name = naming::merge_group_workflow_name(REPO, PR, &head);
    let (s, v) = env.deliver("merge_group", "mg-1", &requested).await;
    assert_eq!(
        (s, v["status"].as_str()),
        (StatusCode::OK, Some("applied")),
        "{v}"
    );
    // Redelivered (same id) and delivered again (GitHub re-sends checks_requested for one group):
    // still one workflow, unchanged.
    let (s, v) = env.deliver("merge_group", "mg-1", &requested).await;
    assert_eq!(
        (s, v["status"].as_str()),
        (StatusCode::OK, Some("duplicate"))
    );
    let (s, v) = env.deliver("merge_group", "mg-2", &requested).await;
    assert_eq!(
        (s, v["status"].as_str()),
        (StatusCode::ACCEPTED, Some("ignored")),
        "{v}"
    );
    let all = env.workflows().list(&Default::default()).await.unwrap();
    assert_eq!(all.items.len(), 1);
    let wf = env.wf(&name).await.expect("merge group workflow");
    assert_eq!(wf.spec.head_sha, head);
    assert_eq!(wf.spec.pull_request, PR);
    assert_eq!(wf.spec.base_ref, "main");
    let mg = wf
        .spec
        .merge_group
        .as_ref()
        .expect("marked as a merge group");
    assert!(
        mg.head_ref
            .starts_with("refs/heads/gh-readonly-queue/main/pr-12345-")
    );
    assert_eq!(mg.base_sha, requested["merge_group"]["base_sha"]);

    env.operator_status(&name, progress(1, &head, 1)).await;
    env.reconcile_checks(&name).await;
    assert_eq!(env.gh.check("QMS", &head).unwrap().status, "in_progress");
    assert_eq!(
        env.gh
            .check("QMS / dor-validation", &head)
            .unwrap()
            .conclusion
            .as_deref(),
        Some("success")
    );
    assert!(
        env.gh.lock().comments.is_empty(),
        "nothing is posted for a merge group"
    );

    let (s, v) = env
        .deliver(
            "merge_group",
            "mg-3",
            &fixture("merge_group.destroyed.json"),
        )
        .await;
    assert_eq!(
        (s, v["status"].as_str()),
        (StatusCode::OK, Some("applied")),
        "{v}"
    );
    assert!(
        env.wf(&name)
            .await
            .unwrap()
            .metadata
            .deletion_timestamp
            .is_some()
    );
    env.reconcile_checks(&name).await;
    assert!(
        env.wf(&name).await.is_none(),
        "released once its checks are closed"
    );
    for c in env.gh.lock().checks.values() {
        assert_eq!(c.status, "completed", "{} left open", c.name);
    }
    assert_eq!(
        env.gh.check("QMS", &head).unwrap().conclusion.as_deref(),
        Some("cancelled")
    );
    assert_eq!(
        env.gh
            .check("QMS / progress-reviews", &head)
            .unwrap()
            .conclusion
            .as_deref(),
        Some("cancelled")
    );
    env.gh.assert_no_violations();
}
