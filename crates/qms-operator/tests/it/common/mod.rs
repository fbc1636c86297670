//! Test harness: a kube-sim per test, the CRDs installed, the real operator started in-process.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use qms_api::{QmsWorkflow, WorkflowState};
use qms_operator::{Http, OperatorHandle, Settings};

// One fake GitHub for the workspace: qms-github's tests own it.
pub mod github_scenarios;
pub mod leader_scenarios;
pub mod scenarios;
pub mod webhook;

/// Hang protection only: every wait polls for a condition and gives up after this long (longer
/// than qms-testkit's default: a test here runs a server and the operator on 2 shared cores).
pub const DEADLINE: Duration = Duration::from_secs(90);

/// How often the waits probe.
pub const INTERVAL: Duration = Duration::from_millis(100);

/// qms-testkit's poll with this harness's [`DEADLINE`]: the first `Some` of `probe`, `None` once
/// the deadline passed (for waits that report the last state they saw).
pub async fn poll<T, Fut>(probe: impl FnMut() -> Fut) -> Option<T>
where
    Fut: std::future::Future<Output = Option<T>>,
{
    qms_testkit::poll_for(DEADLINE, INTERVAL, probe).await
}

/// Polls `probe` until it yields `Some`; panics naming `what` after [`DEADLINE`].
pub async fn eventually<T, Fut>(what: &str, probe: impl FnMut() -> Fut) -> T
where
    Fut: std::future::Future<Output = Option<T>>,
{
    poll(probe)
        .await
        .unwrap_or_else(|| panic!("gave up waiting for {what}"))
}

/// Polls `cond` until it holds; panics naming `what` after [`DEADLINE`].
pub async fn until<Fut>(what: &str, mut cond: impl FnMut() -> Fut)
where
    Fut: std::future::Future<Output = bool>,
{
    eventually(what, || {
        let c = cond();
        async move { c.await.then_some(()) }
    })
    .await
}

pub struct Env {
    /// The API server: kube-sim, or a namespace on the real control plane (`Env::start_real`).
    pub sim: Server,
    pub client: Client,
    pub ns: String,
}

/// One test, two servers: what the scenarios need from either.
pub enum Server {
    Sim(kube_sim::KubeSim),
    Real(kube_real::TestNamespace),
}

impl Server {
    pub fn client(&self) -> Client {
        match self {
            Server::Sim(s) => s.client(),
            Server::Real(r) => r.client(),
        }
    }

    pub fn client_with_user_agent(&self, user_agent: &str) -> anyhow::Result<Client> {
        match self {
            Server::Sim(s) => s.client_with_user_agent(user_agent),
            Server::Real(r) => r.client_with_user_agent(user_agent),
        }
    }

    pub fn kubeconfig_path(&self) -> &std::path::Path {
        match self {
            Server::Sim(s) => s.kubeconfig_path(),
            Server::Real(r) => r.kubeconfig_path(),
        }
    }

    /// kube-sim's fault injection (a test that needs it runs on kube-sim only).
    pub fn faults(&self) -> &kube_sim::Faults {
        match self {
            Server::Sim(s) => s.faults(),
            Server::Real(_) => panic!("fault injection needs kube-sim, not the real control plane"),
        }
    }
}

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
}

impl Env {
    pub async fn start() -> Env {
        Self::start_with(kube_sim::KubeSim::builder()).await
    }

    pub async fn start_with(builder: kube_sim::KubeSimBuilder) -> Env {
        init_tracing();
        let sim = builder.start().await.expect("kube-sim starts");
        let client = sim.client();
        qms_operator::dev::install_crds(&client)
            .await
            .expect("CRDs install");
        Env {
            sim: Server::Sim(sim),
            client,
            ns: "default".to_owned(),
        }
    }

    /// A fresh namespace on this test binary's real control plane (kube-real), the CRDs installed.
    /// Fails, naming scripts/install-kube.sh, when the control plane is not installed.
    pub async fn start_real() -> Env {
        init_tracing();
        let plane = kube_real::KubeReal::shared()
            .await
            .unwrap_or_else(|e| panic!("real control plane: {e:#}"));
        let ns = plane.namespace("e2e").await.expect("test namespace");
        let client = ns.client();
        install_crds_on_1_20(&client).await;
        Env {
            ns: ns.name().to_owned(),
            sim: Server::Real(ns),
            client,
        }
    }

    /// On the real control plane tests share one cluster: each operator reconciles only its
    /// test's namespace.
    pub fn settings(&self) -> Settings {
        match &self.sim {
            Server::Sim(_) => Settings::default(),
            Server::Real(_) => Settings {
                namespaces: vec![self.ns.clone()],
                ..Settings::default()
            },
        }
    }

    pub async fn operator(&self, settings: Settings) -> OperatorHandle {
        // Its own client, as in `run`: fault rules can single out the operator's requests.
        let client = self
            .sim
            .client_with_user_agent(qms_operator::USER_AGENT)
            .expect("operator client");
        qms_operator::start(client, settings, Http::Off)
            .await
            .expect("operator starts")
    }

    pub async fn apply(&self, yaml: &str) {
        qms_operator::dev::apply_yaml(&self.client, &self.ns, yaml)
            .await
            .unwrap_or_else(|e| panic!("apply failed: {e:#}\n{yaml}"));
    }

    pub async fn apply_examples(&self, with_workflow: bool) {
        for (name, text) in qms_operator::dev::EXAMPLES {
            if name.starts_with("qmsworkflow") && !with_workflow {
                continue;
            }
            self.apply(text).await;
        }
    }

    pub fn workflows(&self) -> Api<QmsWorkflow> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    pub fn jobs(&self) -> Api<Job> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    pub async fn get(&self, name: &str) -> QmsWorkflow {
        self.workflows().get(name).await.expect("workflow exists")
    }

    /// Polls until `pred` holds for the workflow; panics with its status after [`DEADLINE`].
    pub async fn wait_for(
        &self,
        name: &str,
        what: &str,
        pred: impl Fn(&QmsWorkflow) -> bool,
    ) -> QmsWorkflow {
        let last = std::cell::RefCell::new(None);
        let found = poll(|| async {
            let wf = self.workflows().get(name).await.ok()?;
            let done = pred(&wf);
            *last.borrow_mut() = Some(wf.status.clone());
            done.then_some(wf)
        })
        .await;
        found.unwrap_or_else(|| match last.into_inner() {
            Some(status) => panic!(
                "{name}: gave up waiting for {what}; status: {}",
                serde_json::to_string_pretty(&status).unwrap_or_default()
            ),
            None => panic!("{name}: gave up waiting for {what}; workflow not readable"),
        })
    }

    pub async fn wait_state(&self, name: &str, state: WorkflowState) -> QmsWorkflow {
        self.wait_for(name, state.as_str(), |wf| state_of(wf) == state)
            .await
    }

    /// Appends an approval with the same JSON patch the README documents.
    pub async fn decide(&self, name: &str, step: &str, sha: &str, decision: &str) {
        qms_operator::dev::approve(&self.client, &self.ns, name, step, sha, "alice", decision)
            .await
            .expect("approval patch");
    }

    pub async fn set_head_sha(&self, name: &str, sha: &str) {
        let patch = serde_json::json!({"spec": {"headSha": sha}});
        self.workflows()
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .expect("patch headSha");
    }

    pub async fn list_jobs(&self) -> Vec<Job> {
        self.jobs()
            .list(&ListParams::default().labels("app.kubernetes.io/managed-by=qms-operator"))
            .await
            .expect("list jobs")
            .items
    }

    /// Events (events.k8s.io/v1) about `name`.
    pub async fn events(&self, name: &str) -> Vec<k8s_openapi::api::events::v1::Event> {
        let api: Api<k8s_openapi::api::events::v1::Event> =
            Api::namespaced(self.client.clone(), &self.ns);
        api.list(&ListParams::default())
            .await
            .expect("list events")
            .items
            .into_iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
            .collect()
    }
}

/// Creates the generated CRDs unless present. Not server-side apply as `dev::install_crds`:
/// 1.20's apply refuses `x-kubernetes-validations` (the CEL rules, unknown before 1.23) with a 500,
/// where create drops that field (so 1.20 serves the CRDs without their CEL rules).
pub async fn install_crds_on_1_20(client: &Client) {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for (_, crd) in qms_api::crds::all() {
        let name = crd.name_any();
        match api.create(&Default::default(), &crd).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => panic!("create CRD {name}: {e}"),
        }
    }
    for (_, crd) in qms_api::crds::all() {
        let name = crd.name_any();
        let established = || async {
            let c = api.get(&name).await.expect("read CRD");
            c.status
                .and_then(|s| s.conditions)
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True")
                .then_some(())
        };
        poll(established)
            .await
            .unwrap_or_else(|| panic!("CRD {name} never Established"));
    }
}

impl Env {
    /// Polls until an event with `reason` about `name` exists (events are recorded right after the
    /// status write, so a reader may see the state first).
    pub async fn wait_event(
        &self,
        name: &str,
        reason: &str,
    ) -> k8s_openapi::api::events::v1::Event {
        let reasons = std::cell::RefCell::new(Vec::new());
        let found = poll(|| async {
            let events = self.events(name).await;
            *reasons.borrow_mut() = events.iter().filter_map(|e| e.reason.clone()).collect();
            events
                .into_iter()
                .find(|e| e.reason.as_deref() == Some(reason))
        })
        .await;
        found.unwrap_or_else(|| panic!("{name}: no {reason} event; have {:?}", reasons.take()))
    }
}

pub fn state_of(wf: &QmsWorkflow) -> WorkflowState {
    wf.status.as_ref().map(|s| s.state).unwrap_or_default()
}

/// The env of a Job's agent container, by name.
pub fn job_env(job: &Job) -> BTreeMap<String, String> {
    job.spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .map(|p| &p.containers[0])
        .and_then(|c| c.env.as_ref())
        .map(|env| {
            env.iter()
                .map(|e| (e.name.clone(), e.value.clone().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default()
}

pub fn task_of(job: &Job) -> serde_json::Value {
    serde_json::from_str(&job_env(job)["QMS_TASK"]).expect("QMS_TASK is JSON")
}

pub fn label<'a>(job: &'a Job, key: &str) -> &'a str {
    job.labels().get(key).map(String::as_str).unwrap_or("")
}

/// A QmsWorkflow manifest.
pub fn workflow(name: &str, template: &str, sha: &str) -> String {
    format!(
        r#"apiVersion: qms.creo.dev/v1
kind: QmsWorkflow
metadata:
  name: {name}
spec:
  repository: creo/app
  pullRequest: 7
  headSha: "{sha}"
  baseRef: main
  headRef: feature
  templateRef:
    name: {template}
"#
    )
}

/// An Agent running `script` with `sh -c`.
pub fn agent(name: &str, capacity: u32, script: &str) -> String {
    let script = script.replace('\n', "\n        ");
    format!(
        r#"apiVersion: qms.creo.dev/v1
kind: Agent
metadata:
  name: {name}
spec:
  capabilities: [{name}]
  loadCapacity: {capacity}
  defaultTimeout: 30s
  health:
    failureThreshold: 100
    window: 10m
  job:
    image: busybox:1.37
    command: ["sh", "-c"]
    args:
      - |
        {script}
"#
    )
}

/// A result JSON written to the termination log, then exit `code`.
pub fn result(status: &str, metrics: &str, code: i32) -> String {
    format!(
        r#"printf '%s' '{{"status":"{status}","summary":"test","metrics":{{{metrics}}}}}' > /dev/termination-log; exit {code}"#
    )
}

/// A gate manifest.
pub fn gate(name: &str, metric: &str, op: &str, threshold: f64, blocking: bool) -> String {
    format!(
        r#"apiVersion: qms.creo.dev/v1
kind: QualityGate
metadata:
  name: {name}
spec:
  type: threshold
  metric: {metric}
  operator: {op}
  threshold: {threshold}
  unit: count
  blocking: {blocking}
"#
    )
}

/// The workspace's `.tools/bin` (or `$QMS_TOOLS_BIN`).
pub fn tools_bin() -> PathBuf {
    std::env::var_os("QMS_TOOLS_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.tools/bin"))
}

/// Starts the operator on `env` with its HTTP server (webhooks, results, metrics) on the port
/// `settings` names, and waits until it is ready: the shared start of the GitHub-side harnesses.
pub async fn start_with_http(
    env: &Env,
    settings: Settings,
) -> (OperatorHandle, std::net::SocketAddr) {
    let op = qms_operator::start(env.client.clone(), settings, Http::On { extra: None })
        .await
        .expect("operator starts");
    let addr = op.http_addr.expect("HTTP server");
    op.wait_ready().await;
    (op, addr)
}
