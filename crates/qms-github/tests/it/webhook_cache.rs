//! The webhook's caches and its write count: templates come from a watch (a changed template is
//! used once the watch delivers it, and no delivery lists templates meanwhile), trust verdicts are
//! reused per (login, repository) until their TTL (a revoked permission takes effect after it),
//! the cache is bounded, and a new pull request is one create on the API server.

use std::sync::Arc;
use std::time::Duration;

use crate::common::github::FakeGithub;
use crate::common::*;
use axum::Router;
use axum::body::Body;
use http::Request;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams, PostParams};
use qms_api::{QmsWorkflow, WorkflowTemplate};
use qms_github::signature::sign;
use qms_github::{
    Credentials, GithubClient, GithubConfig, ManualClock, Secret, WebhookState, naming, router,
};
use serde_json::{Value, json};
use tower::ServiceExt;

const SECRET: &str = "whsec-cache-test-91ab";

struct Env {
    sim: kube_sim::KubeSim,
    kube: kube::Client,
    gh: FakeGithub,
    cfg: GithubConfig,
    github: Arc<GithubClient>,
    clock: ManualClock,
    state: WebhookState,
    app: Router,
}

impl Env {
    async fn start(tune: impl FnOnce(&mut GithubConfig)) -> Self {
        let sim = kube_sim::KubeSim::builder()
            .without_kubelet()
            .start()
            .await
            .expect("kube-sim starts");
        let kube = sim.client();
        let crds: Api<CustomResourceDefinition> = Api::all(kube.clone());
        for (_, crd) in qms_api::crds::all() {
            crds.create(&PostParams::default(), &crd).await.unwrap();
        }
        let mut n = Namespace::default();
        n.metadata.name = Some(NS.into());
        Api::<Namespace>::all(kube.clone())
            .create(&PostParams::default(), &n)
            .await
            .unwrap();
        Api::<WorkflowTemplate>::namespaced(kube.clone(), NS)
            .create(&PostParams::default(), &template())
            .await
            .unwrap();
        let gh = FakeGithub::start().await;
        gh.lock()
            .permissions
            .insert("qms-lead".into(), "maintain".into());
        let mut cfg = GithubConfig {
            api_base_url: gh.uri(),
            webhook_secrets: vec![Secret::new(SECRET)],
            credentials: Credentials::Token(Secret::new("ghp_cachetest")),
            namespace: NS.into(),
            writes_per_minute: 600,
            ..GithubConfig::default()
        };
        tune(&mut cfg);
        let clock = ManualClock::new(t0());
        let github = Arc::new(GithubClient::new(&cfg, Arc::new(clock.clone())).unwrap());
        let state = WebhookState::new(cfg.clone(), github.clone(), kube.clone());
        let app = router(state.clone());
        Self {
            sim,
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

    async fn deliver_to(app: &Router, event: &str, delivery: &str, body: &Value) -> Value {
        let bytes = body.to_string().into_bytes();
        let sig = sign(&Secret::new(SECRET), &bytes);
        let req = Request::builder()
            .method("POST")
            .uri("/webhooks/github")
            .header("content-type", "application/json")
            .header("x-github-event", event)
            .header("x-github-delivery", delivery)
            .header("x-github-hook-id", "501234")
            .header("x-hub-signature-256", sig)
            .body(Body::from(bytes))
            .unwrap();
        let resp = app.clone().oneshot(req).await.unwrap();
        let code = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        let mut v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        v["code"] = code.as_u16().into();
        v
    }

    async fn deliver(&self, event: &str, delivery: &str, body: &Value) -> Value {
        Self::deliver_to(&self.app, event, delivery, body).await
    }

    /// Waits (hang protection 10 s) until the webhook serves templates from its watch.
    async fn until_watched(&self) {
        // The watch starts with the first delivery; a ping-like ignored event does not start it,
        // so deliver a pull request that changes nothing (a draft is ignored before any write).
        let mut draft = opened(99_999);
        draft["pull_request"]["draft"] = true.into();
        self.deliver("pull_request", "warm-up", &draft).await;
        let start = std::time::Instant::now();
        while !self.state.templates_watched() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "watch never synced"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn count(&self, verb: &str, resource: &str) -> u64 {
        self.sim.counters().get(verb, resource)
    }

    fn permission_lookups(&self, login: &str) -> usize {
        let path = format!("/collaborators/{login}/permission");
        self.gh
            .lock()
            .calls
            .iter()
            .filter(|c| c.path.ends_with(&path))
            .count()
    }
}

fn opened(pr: u64) -> Value {
    let mut v = fixture("pull_request.opened.json");
    v["number"] = pr.into();
    v["pull_request"]["number"] = pr.into();
    v
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
async fn a_new_pull_request_is_one_create_and_lists_no_templates() {
    let env = Env::start(|_| {}).await;
    env.until_watched().await;
    env.sim.counters().reset();
    for pr in 1..=20u64 {
        let v = env
            .deliver("pull_request", &format!("new-{pr}"), &opened(pr))
            .await;
        assert_eq!(v["status"], "applied", "{v}");
    }
    assert_eq!(env.count("create", "qmsworkflows"), 20);
    assert_eq!(env.count("get", "qmsworkflows"), 0, "no read before create");
    assert_eq!(env.count("list", "workflowtemplates"), 0);
    assert_eq!(env.count("get", "workflowtemplates"), 0);
    assert_eq!(env.count("patch", "qmsworkflows"), 0);

    // A redelivery after a restart (empty memory): AlreadyExists, then the read finds the key.
    let restarted = router(WebhookState::new(
        env.cfg.clone(),
        env.github.clone(),
        env.kube.clone(),
    ));
    let name = naming::workflow_name(REPO, 3);
    let rv = env
        .workflows()
        .get(&name)
        .await
        .unwrap()
        .metadata
        .resource_version;
    let v = Env::deliver_to(&restarted, "pull_request", "new-3", &opened(3)).await;
    assert_eq!(v["status"], "duplicate", "{v}");
    assert_eq!(
        env.workflows()
            .get(&name)
            .await
            .unwrap()
            .metadata
            .resource_version,
        rv
    );

    // Reopened with a new head SHA: the create fails, the read-and-patch moves the head.
    let mut reopened = opened(3);
    reopened["action"] = "reopened".into();
    reopened["pull_request"]["head"]["sha"] = SHA2.into();
    let v = env.deliver("pull_request", "reopen-3", &reopened).await;
    assert_eq!(v["status"], "applied", "{v}");
    assert_eq!(
        env.workflows().get(&name).await.unwrap().spec.head_sha,
        SHA2
    );

    // Concurrent opened + synchronize for one new PR: one workflow, at the synchronize's SHA or
    // the opened one's, and both deliveries recorded on it.
    let mut sync = opened(77);
    sync["action"] = "synchronize".into();
    sync["pull_request"]["head"]["sha"] = SHA2.into();
    let open77 = opened(77);
    let (a, b) = tokio::join!(
        env.deliver("pull_request", "race-open", &open77),
        env.deliver("pull_request", "race-sync", &sync)
    );
    assert_eq!(a["code"], 200, "{a}");
    assert_eq!(b["code"], 200, "{b}");
    let wf = env
        .workflows()
        .get(&naming::workflow_name(REPO, 77))
        .await
        .unwrap();
    let recorded = naming::recorded_deliveries(wf.metadata.annotations.as_ref());
    assert!(
        recorded.iter().any(|k| k.ends_with(":race-open")),
        "{recorded:?}"
    );
    // The synchronize either moved the head (recorded) or found it already there (ignored).
    assert!(
        recorded.iter().any(|k| k.ends_with(":race-sync")) || b["status"] == "ignored",
        "{b} {recorded:?}"
    );
}

#[tokio::test]
async fn a_changed_template_is_picked_up_through_the_watch() {
    let env = Env::start(|_| {}).await;
    env.until_watched().await;
    let v = env.deliver("pull_request", "t-1", &opened(1)).await;
    assert_eq!(v["status"], "applied", "{v}");
    let first = env
        .workflows()
        .get(&naming::workflow_name(REPO, 1))
        .await
        .unwrap();
    assert_eq!(first.spec.template_ref.name, "standard-qms-review");

    // A template for exactly this repository wins over the default from now on.
    let mut special = template();
    special.metadata.name = Some("special-review".into());
    special.metadata.resource_version = None;
    special.spec.default = false;
    special.spec.repositories = vec![REPO.into()];
    let templates: Api<WorkflowTemplate> = Api::namespaced(env.kube.clone(), NS);
    templates
        .create(&PostParams::default(), &special)
        .await
        .unwrap();
    env.sim.counters().reset();
    let start = std::time::Instant::now();
    let mut pr = 1;
    let used = loop {
        pr += 1;
        let v = env
            .deliver("pull_request", &format!("t-{pr}"), &opened(pr))
            .await;
        assert_eq!(v["status"], "applied", "{v}");
        let wf = env
            .workflows()
            .get(&naming::workflow_name(REPO, pr))
            .await
            .unwrap();
        if wf.spec.template_ref.name == "special-review" {
            break pr;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the new template was never used"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(used >= 2);
    assert_eq!(
        env.count("list", "workflowtemplates"),
        0,
        "served from the watch, not listed"
    );

    // Deleted again: new pull requests fall back to the default once the watch says so.
    templates
        .delete("special-review", &Default::default())
        .await
        .unwrap();
    let start = std::time::Instant::now();
    loop {
        pr += 1;
        env.deliver("pull_request", &format!("t-{pr}"), &opened(pr))
            .await;
        let wf = env
            .workflows()
            .get(&naming::workflow_name(REPO, pr))
            .await
            .unwrap();
        if wf.spec.template_ref.name == "standard-qms-review" {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "deletion never seen"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_revoked_permission_takes_effect_after_the_ttl() {
    let env = Env::start(|c| c.permission_cache_ttl = Duration::from_secs(30)).await;
    let v = env.deliver("pull_request", "p-1", &opened(PR)).await;
    assert_eq!(v["status"], "applied", "{v}");
    let name = wf_name();
    let body = json!({
        "apiVersion": "qms.creo.dev/v1", "kind": "QmsWorkflow",
        "metadata": { "name": name },
        "status": progress(1, SHA1, 4),
    });
    env.workflows()
        .patch_status(
            &name,
            &PatchParams::apply("qms-operator").force(),
            &Patch::Apply(&body),
        )
        .await
        .unwrap();

    let v = env
        .deliver(
            "issue_comment",
            "c-1",
            &comment("/qms approve ok", "qms-lead", PR),
        )
        .await;
    assert_eq!(v["status"], "applied", "{v}");
    assert_eq!(env.permission_lookups("qms-lead"), 1);

    // Revoked on GitHub: within the TTL the cached verdict still holds, without a lookup.
    env.gh
        .lock()
        .permissions
        .insert("qms-lead".into(), "read".into());
    env.clock.advance(Duration::from_secs(10));
    let v = env
        .deliver(
            "issue_comment",
            "c-2",
            &comment("/qms reject wait", "qms-lead", PR),
        )
        .await;
    assert_eq!(v["status"], "applied", "{v}");
    assert_eq!(
        env.permission_lookups("qms-lead"),
        1,
        "served from the cache"
    );

    // After the TTL the lookup is made again and the command refused.
    env.clock.advance(Duration::from_secs(21));
    let before = env.workflows().get(&name).await.unwrap();
    let v = env
        .deliver(
            "issue_comment",
            "c-3",
            &comment("/qms approve now", "qms-lead", PR),
        )
        .await;
    assert_eq!(v["status"], "replied", "{v}");
    assert_eq!(env.permission_lookups("qms-lead"), 2);
    let after = env.workflows().get(&name).await.unwrap();
    assert_eq!(after.spec, before.spec);
}

#[tokio::test]
async fn the_trust_cache_is_bounded_and_can_be_off() {
    let env = Env::start(|c| c.permission_cache_size = 2).await;
    env.deliver("pull_request", "b-0", &opened(PR)).await;
    for (i, login) in ["qms-lead", "bob", "carol", "dave"].iter().enumerate() {
        env.gh
            .lock()
            .permissions
            .insert((*login).into(), "write".into());
        let v = env
            .deliver(
                "issue_comment",
                &format!("b-{}", i + 1),
                &comment("/qms retry", login, PR),
            )
            .await;
        assert_eq!(v["code"], 200, "{v}");
        assert!(env.state.trust_cache_len() <= 2);
    }
    assert_eq!(env.state.trust_cache_len(), 2);

    let off = Env::start(|c| c.permission_cache_ttl = Duration::ZERO).await;
    off.deliver("pull_request", "o-0", &opened(PR)).await;
    for i in 1..=3 {
        off.deliver(
            "issue_comment",
            &format!("o-{i}"),
            &comment("/qms retry", "qms-lead", PR),
        )
        .await;
    }
    assert_eq!(off.permission_lookups("qms-lead"), 3);
    assert_eq!(off.state.trust_cache_len(), 0);
}
