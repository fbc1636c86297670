//! qms-operator as a library: [`start`] runs the controllers (and optionally the HTTP server) as
//! tasks and returns a handle that stops them, so tests and `qms-dev` (crates/qms-dev) run the
//! real operator in-process.
//!
//! Layout (see README.md): `config` (file + env + flags), `context` (shared caches and
//! bookkeeping), `informers` (one watch per kind, routing events to controllers), the reconcile's
//! stages `observe` (caches and lagging-watch reads → an observation), `decide` (the engine, with
//! capacity reserved), `act` (Jobs; `jobs` builds them), `status` (the one status writer),
//! `record` (events, metrics, baselines), `controller::{workflow,catalog,github}`, `github` (the
//! GitHub integration: webhooks and check runs, when `settings.github` is set), `leader`
//! (Lease-based leader election: the watches and controllers run only on the leader), `reload`
//! (live configuration), `telemetry` (optional OTLP trace export), `metrics`, `http`, `dev`
//! (seeding helpers for `qms-dev` and tests; no simulator), `cli`, `locks`.
#![forbid(unsafe_code)]

pub mod act;
pub mod baselines;
pub mod cli;
pub mod config;
pub mod context;
pub mod controller;
pub mod decide;
pub mod dev;
pub mod error;
pub mod events;
pub mod github;
pub mod http;
pub mod informers;
pub mod jobs;
pub mod leader;
pub mod locks;
pub mod metrics;
pub mod observe;
pub mod record;
pub mod reload;
pub mod results;
pub mod status;
pub mod telemetry;

use std::net::SocketAddr;
use std::sync::Arc;

use k8s_openapi::api::batch::v1::Job;
use kube::api::ListParams;
use kube::runtime::events::Reporter;
use kube::{Api, Client, Resource};
use qms_api::{Agent, QmsWorkflow, QualityGate, WorkflowTemplate};
use tokio::task::JoinSet;

pub use config::Settings;
pub use context::Shared;

/// Name the operator reports Events as.
pub const REPORTER: &str = "qms-operator";

/// The `User-Agent` of the operator's Kubernetes client.
pub const USER_AGENT: &str = concat!("qms-operator/", env!("CARGO_PKG_VERSION"));

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(
        "the CustomResourceDefinition {crd} is not installed in the cluster: install the CRDs with `kubectl apply -f crds/` (or `qms-operator crds | kubectl apply -f -`)"
    )]
    MissingCrd { crd: String },
    #[error("cannot reach the Kubernetes API server: {0}")]
    Api(#[from] kube::Error),
    #[error(transparent)]
    Github(#[from] github::GithubStartError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Whether [`start`] serves HTTP.
pub enum Http {
    /// No server (tests that do not need it).
    Off,
    /// Serve the operator's routes, merged with `extra`, on `settings.http_addr`. With GitHub on,
    /// `POST /webhooks/github` is served too (so `extra` must not route that path).
    On { extra: Option<axum::Router> },
}

/// A running operator.
pub struct OperatorHandle {
    pub shared: Arc<Shared>,
    /// The address the HTTP server listens on (port 0 in the settings picks a free port).
    pub http_addr: Option<SocketAddr>,
    tasks: JoinSet<()>,
    leader: Option<LeaderTask>,
}

/// The leader-election task (campaign, then the controllers while leading).
struct LeaderTask {
    shutdown: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<leader::Outcome>,
}

/// Why [`OperatorHandle::wait`] returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    /// A task ended by itself (they run forever otherwise).
    TaskEnded,
    /// The Lease was lost; the controllers are stopped already.
    LostLeadership(String),
}

impl OperatorHandle {
    pub fn ready(&self) -> bool {
        self.shared.ready()
    }

    pub async fn wait_ready(&self) {
        self.shared.wait_ready().await;
    }

    pub fn metrics(&self) -> &metrics::Metrics {
        &self.shared.metrics
    }

    /// Whether this process runs the controllers (always true without leader election).
    pub fn is_leader(&self) -> bool {
        self.shared.is_leader()
    }

    /// Waits until this process runs the controllers. Hang protection is the caller's.
    pub async fn wait_leader(&self) {
        let mut rx = self.shared.leading.subscribe();
        let _ = rx.wait_for(|l| *l).await;
    }

    /// Stops every task at once, wherever it is (like killing the process): nothing is flushed,
    /// a held Lease is not released (standbys take over once it expires).
    pub async fn stop(mut self) {
        if let Some(l) = self.leader.take() {
            l.task.abort();
            let _ = l.task.await;
        }
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
    }

    /// Graceful stop (SIGTERM): the controllers stop first, then a held Lease is released so a
    /// standby takes over at once; then everything else stops.
    pub async fn shutdown(mut self) {
        if let Some(l) = self.leader.take() {
            l.shutdown.send_replace(true);
            let abort = l.task.abort_handle();
            // Releasing is one read and one write; do not hang on an unreachable API server.
            if tokio::time::timeout(std::time::Duration::from_secs(10), l.task)
                .await
                .is_err()
            {
                abort.abort();
                tracing::warn!("the lease was not released in time");
            }
        }
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
    }

    /// Waits until a task ends or the leadership is lost (only on failure: the tasks run forever
    /// and a standby campaigns forever).
    pub async fn wait(&mut self) -> Exit {
        let tasks = &mut self.tasks;
        let ended = async move {
            if tasks.is_empty() {
                std::future::pending::<()>().await;
            }
            let _ = tasks.join_next().await;
        };
        match self.leader.as_mut() {
            None => {
                ended.await;
                Exit::TaskEnded
            }
            Some(l) => {
                tokio::select! {
                    _ = ended => Exit::TaskEnded,
                    outcome = &mut l.task => {
                        self.leader = None;
                        match outcome {
                            Ok(leader::Outcome::Lost(reason)) => Exit::LostLeadership(reason),
                            _ => Exit::TaskEnded,
                        }
                    }
                }
            }
        }
    }
}

/// Fails with a message naming the CRD when one of the four is not installed.
pub async fn check_crds(client: &Client, namespaces: &[String]) -> Result<(), StartError> {
    async fn probe<K>(client: &Client, ns: Option<&str>) -> Result<(), StartError>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        let api: Api<K> = informers::api(client, ns);
        // Transient errors (5xx, 429, connection) are retried for a while; 404 = not installed.
        let mut delay = std::time::Duration::from_millis(100);
        let mut attempts = 0;
        loop {
            match api.list_metadata(&ListParams::default().limit(1)).await {
                Ok(_) => return Ok(()),
                Err(kube::Error::Api(s)) if s.code == 404 => {
                    return Err(StartError::MissingCrd {
                        crd: format!("{}.{}", K::plural(&()), K::group(&())),
                    });
                }
                Err(e) if attempts < 12 => {
                    attempts += 1;
                    tracing::warn!(error = %e, "API server not usable yet; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(std::time::Duration::from_secs(5));
                }
                Err(e) => return Err(StartError::Api(e)),
            }
        }
    }
    let ns = namespaces.first().map(String::as_str);
    probe::<WorkflowTemplate>(client, ns).await?;
    probe::<QualityGate>(client, ns).await?;
    probe::<Agent>(client, ns).await?;
    probe::<QmsWorkflow>(client, ns).await?;
    Ok(())
}

/// Starts the operator: checks the CRDs, starts the watches, the controllers and (optionally) the
/// HTTP server. With `settings.github` set, also the GitHub check-run controller, the webhook
/// route (when HTTP is on) and the webhook counters on `/metrics`. Returns once everything is
/// started (not once the caches are synced: see [`OperatorHandle::wait_ready`]).
pub async fn start(
    client: Client,
    settings: Settings,
    http: Http,
) -> Result<OperatorHandle, StartError> {
    check_crds(&client, &settings.namespaces).await?;
    // Jobs are a built-in kind; probing them surfaces RBAC problems early.
    let _ = Api::<Job>::all(client.clone());

    let namespaces: Vec<Option<String>> = if settings.namespaces.is_empty() {
        vec![None]
    } else {
        settings.namespaces.iter().cloned().map(Some).collect()
    };
    let parts: Vec<informers::ScopeParts> =
        namespaces.into_iter().map(informers::new_scope).collect();
    let github = match &settings.github {
        Some(cfg) => Some(Arc::new(github::Github::new(cfg.clone(), client.clone())?)),
        None => None,
    };
    let shared = new_shared(client.clone(), &settings, &parts, github.clone());

    let mut tasks = JoinSet::new();
    shared
        .metrics
        .config_loaded(settings.config_source.as_ref().map_or(0, |s| s.hash));
    if let Some(source) = &settings.config_source {
        tasks.spawn(reload::run(shared.clone(), source.clone()));
    }
    let http_addr = match http {
        Http::On { extra } => serve_http(&shared, github.as_ref(), extra, &mut tasks).await?,
        Http::Off => None,
    };
    // The watches and controllers: at once without leader election, else once the Lease is held.
    let (s, gh) = (shared.clone(), github.clone());
    let start_controllers = move |tasks: &mut JoinSet<()>| spawn_controllers(&s, &gh, parts, tasks);
    let leader = match &settings.leader_election {
        None => {
            start_controllers(&mut tasks);
            None
        }
        Some(cfg) => Some(campaign(&shared, client, cfg.clone(), start_controllers)),
    };
    tracing::info!(
        name = %settings.name,
        namespaces = ?settings.namespaces,
        max_concurrent_workflows = settings.max_concurrent_workflows,
        github = github.is_some(),
        leader_election = ?settings.leader_election.as_ref().map(|l| (&l.namespace, &l.lease_name, &l.identity)),
        "qms-operator started"
    );
    Ok(OperatorHandle {
        shared,
        http_addr,
        tasks,
        leader,
    })
}

/// The state every controller shares (caches of `parts`, bookkeeping, metrics).
fn new_shared(
    client: Client,
    settings: &Settings,
    parts: &[informers::ScopeParts],
    github: Option<Arc<github::Github>>,
) -> Arc<Shared> {
    let reporter = Reporter {
        controller: REPORTER.to_owned(),
        instance: std::env::var("POD_NAME").ok(),
    };
    let shared = Arc::new(Shared {
        client: client.clone(),
        settings: settings.clone(),
        live: std::sync::RwLock::new(Arc::new(settings.live())),
        metrics: Arc::new(metrics::Metrics::new()),
        recorder: events::EventRecorder::new(client, reporter),
        scopes: parts.iter().map(|p| p.scope.clone()).collect(),
        decide_lock: tokio::sync::Mutex::new(()),
        admitted: Default::default(),
        expected_jobs: Default::default(),
        stale_versions: Default::default(),
        failures: Default::default(),
        ready_tx: tokio::sync::watch::channel(false).0,
        github: github.clone(),
        leading: tokio::sync::watch::channel(settings.leader_election.is_none()).0,
        results: Default::default(),
    });
    if let Some(gh) = &github {
        shared
            .metrics
            .register_collector(Box::new(github::WebhookCollector(gh.webhooks.clone())));
    }
    shared
}

/// Binds `settings.http_addr` and serves the operator's routes (plus the webhook route with
/// GitHub on, plus `extra`). Returns the address bound.
async fn serve_http(
    shared: &Arc<Shared>,
    github: Option<&Arc<github::Github>>,
    extra: Option<axum::Router>,
    tasks: &mut JoinSet<()>,
) -> Result<Option<SocketAddr>, StartError> {
    let addr = shared.settings.http_addr;
    let listener = http::bind(addr)
        .await
        .map_err(|source| StartError::Listen { addr, source })?;
    let http_addr = listener.local_addr().ok();
    // The task result endpoint; Jobs get its URL from now on.
    let results = &shared.settings.results;
    if let Some(url) = results.url.clone().or(http_addr.map(results::local_url)) {
        shared.results.set_url(url);
    }
    let mut router = http::router(shared.clone()).merge(results::endpoint::router(
        shared.client.clone(),
        results.clone(),
    ));
    if let Some(gh) = github {
        router = router.merge(http::timed_webhooks(
            qms_github::router(gh.webhooks.clone()),
            shared.clone(),
        ));
    }
    if let Some(extra) = extra {
        router = router.merge(extra);
    }
    tasks.spawn(async move {
        if let Err(e) = http::serve(listener, router).await {
            tracing::error!(error = %e, "HTTP server stopped");
        }
    });
    Ok(http_addr)
}

/// The watches and the controllers of every scope.
fn spawn_controllers(
    shared: &Arc<Shared>,
    github: &Option<Arc<github::Github>>,
    parts: Vec<informers::ScopeParts>,
    tasks: &mut JoinSet<()>,
) {
    for part in parts {
        let scope = part.scope.clone();
        informers::spawn(shared, &scope, part.writers, tasks);
        let r = part.receivers;
        // Without GitHub the receiver is dropped here, so the informers' sends go nowhere.
        if let Some(gh) = github {
            tasks.spawn(controller::github::run(
                shared.clone(),
                scope.clone(),
                gh.clone(),
                r.github,
            ));
        }
        tasks.spawn(controller::workflow::run(
            shared.clone(),
            scope.clone(),
            r.workflows,
        ));
        tasks.spawn(controller::catalog::run(
            shared.clone(),
            scope,
            r.templates,
            r.gates,
            r.agents,
        ));
    }
}

/// Leader election: campaigns for the Lease and runs `start_controllers` while it is held.
fn campaign(
    shared: &Arc<Shared>,
    client: Client,
    cfg: leader::LeaderElectionConfig,
    start_controllers: impl FnOnce(&mut JoinSet<()>) + Send + 'static,
) -> LeaderTask {
    let elector = leader::Elector::new(client, cfg);
    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
    let s = shared.clone();
    let task = tokio::spawn(async move {
        leader::run(elector, &s.leading, shutdown_rx, start_controllers).await
    });
    LeaderTask {
        shutdown: shutdown_tx,
        task,
    }
}
