//! kube-sim: an in-process Kubernetes API server for tests and local runs (not for production).
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! let sim = kube_sim::KubeSim::builder().start().await?;
//! let client = sim.client();           // a kube::Client pointed at the server
//! let kubeconfig = sim.kubeconfig_path(); // for kubectl / helm
//! # let _ = (client, kubeconfig); Ok(()) }
//! ```
//!
//! The server speaks plain HTTP on loopback and accepts any credentials. It serves discovery,
//! OpenAPI v3, built-in kinds and any installed CRDs with the apiserver's semantics (see the
//! crate README for exactly what is and is not supported). By default it also runs the
//! `kube-sim-kubelet` Job controller and kubelet, so Jobs create Pods that run as local processes.
#![forbid(unsafe_code)]

mod builtin;
mod discovery;
mod engine;
mod error;
mod events;
mod faults;
mod gc;
mod http;
mod meta;
mod openapi;
mod patch;
mod proto;
mod registry;
mod schema;
mod selectors;
mod store;
mod table;
mod wal;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use error::{ApiError, FieldError};
pub use faults::{Counters, FaultAction, FaultRule, Faults};
pub use kube_sim_kubelet::{ContainerRunner, PodLogs};

use engine::Engine;
use store::Store;
use wal::Wal;

/// How the built-in Job controller + kubelet run.
enum KubeletMode {
    Default,
    Disabled,
    Runner(Arc<dyn ContainerRunner>),
}

/// Configures and starts a [`KubeSim`].
pub struct KubeSimBuilder {
    addr: SocketAddr,
    kubeconfig_path: Option<PathBuf>,
    state_file: Option<PathBuf>,
    seed: u64,
    history: usize,
    bookmark_interval: Duration,
    kubelet: KubeletMode,
    faults: Vec<FaultRule>,
}

impl Default for KubeSimBuilder {
    fn default() -> Self {
        KubeSimBuilder {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            kubeconfig_path: None,
            state_file: None,
            seed: 0,
            history: 1000,
            bookmark_interval: Duration::from_secs(10),
            kubelet: KubeletMode::Default,
            faults: Vec::new(),
        }
    }
}

impl KubeSimBuilder {
    /// Listen address (default `127.0.0.1:0`, an ephemeral port).
    pub fn addr(mut self, addr: SocketAddr) -> Self {
        self.addr = addr;
        self
    }

    /// Where to write the kubeconfig (default: a file in a temporary directory owned by the sim).
    pub fn kubeconfig_path(mut self, path: impl Into<PathBuf>) -> Self {
        self.kubeconfig_path = Some(path.into());
        self
    }

    /// Persist every write to this write-ahead log and replay it on start.
    pub fn state_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.state_file = Some(path.into());
        self
    }

    /// Seed of the fault-injection RNG.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Watch history kept per resource; watching from an older resourceVersion gets 410 Gone.
    pub fn watch_history(mut self, events: usize) -> Self {
        self.history = events.max(1);
        self
    }

    /// Interval of periodic BOOKMARK events on watches that allow them.
    pub fn bookmark_interval(mut self, every: Duration) -> Self {
        self.bookmark_interval = every.max(Duration::from_millis(10));
        self
    }

    /// Do not start the built-in Job controller and kubelet.
    pub fn without_kubelet(mut self) -> Self {
        self.kubelet = KubeletMode::Disabled;
        self
    }

    /// Run pod containers with this runner instead of local processes.
    pub fn runner(mut self, runner: Arc<dyn ContainerRunner>) -> Self {
        self.kubelet = KubeletMode::Runner(runner);
        self
    }

    /// A fault active from the start (more can be added at run time through [`KubeSim::faults`]).
    pub fn fault(mut self, rule: FaultRule) -> Self {
        self.faults.push(rule);
        self
    }

    pub async fn start(self) -> anyhow::Result<KubeSim> {
        let store = load_store(self.history, self.state_file.as_deref())?;

        let listener = tokio::net::TcpListener::bind(self.addr).await?;
        let local = listener.local_addr()?;
        let base_url = format!("http://{local}");
        let faults = Faults::new(self.seed);
        for f in self.faults {
            faults.add(f);
        }
        let counters = Counters::default();
        let logs = PodLogs::default();
        let engine = Arc::new(Engine::new(
            store,
            faults.clone(),
            counters.clone(),
            logs.clone(),
            self.bookmark_interval,
            local.to_string(),
        ));
        engine.ensure_default_namespaces()?;

        let (shutdown_tx, shutdown_rx) = tokio::sync::oneshot::channel::<()>();
        let app = http::router(engine.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = shutdown_rx.await;
                })
                .await;
        });

        let (tempdir, kubeconfig) = match self.kubeconfig_path {
            Some(p) => (None, p),
            None => {
                let dir = tempfile::tempdir()?;
                let p = dir.path().join("kubeconfig");
                (Some(dir), p)
            }
        };
        write_kubeconfig(&kubeconfig, &base_url)?;

        let client = client_for(&base_url, None)?;

        let kubelet = spawn_kubelet(self.kubelet, &base_url, &logs)?;

        Ok(KubeSim {
            client,
            base_url,
            addr: local,
            kubeconfig,
            _tempdir: tempdir,
            faults,
            counters,
            logs,
            shutdown: Some(shutdown_tx),
            server,
            kubelet,
        })
    }
}

/// The store, loaded from the state file's write-ahead log when there is one (which is then
/// compacted to a snapshot and kept for appends).
fn load_store(history: usize, state_file: Option<&std::path::Path>) -> anyhow::Result<Store> {
    let mut store = Store::new(history);
    let wal = match state_file {
        Some(path) => {
            let records = Wal::read(path)?;
            for r in records {
                let (key, object) = events::migrate_record(&r.key, r.object);
                match (r.op.as_str(), object) {
                    ("put", Some(obj)) => store.load(&key, obj, r.rv),
                    ("del", _) => store.unload(&key, &r.ns, &r.name, r.rv),
                    _ => {}
                }
            }
            Some(Wal::create_with_snapshot(path, &store.snapshot())?)
        }
        None => None,
    };
    store.finish_load(wal);
    Ok(store)
}

/// The kubelet and Job controller, as configured (their clients identify as the kubelet).
fn spawn_kubelet(
    mode: KubeletMode,
    base_url: &str,
    logs: &PodLogs,
) -> anyhow::Result<Option<tokio::task::JoinHandle<()>>> {
    Ok(match mode {
        KubeletMode::Disabled => None,
        KubeletMode::Default => Some(kube_sim_kubelet::spawn(
            client_for(base_url, Some(KUBELET_USER_AGENT))?,
            logs.clone(),
            Arc::new(kube_sim_kubelet::LocalProcessRunner),
        )),
        KubeletMode::Runner(r) => Some(kube_sim_kubelet::spawn(
            client_for(base_url, Some(KUBELET_USER_AGENT))?,
            logs.clone(),
            r,
        )),
    })
}

/// A running server. Dropping it stops the server, the kubelet and every open watch.
pub struct KubeSim {
    client: kube::Client,
    base_url: String,
    addr: SocketAddr,
    kubeconfig: PathBuf,
    _tempdir: Option<tempfile::TempDir>,
    faults: Faults,
    counters: Counters,
    logs: PodLogs,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    server: tokio::task::JoinHandle<()>,
    kubelet: Option<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for KubeSim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeSim")
            .field("base_url", &self.base_url)
            .field("kubeconfig", &self.kubeconfig)
            .finish()
    }
}

impl KubeSim {
    pub fn builder() -> KubeSimBuilder {
        KubeSimBuilder::default()
    }

    /// A client for this server (default namespace `default`).
    pub fn client(&self) -> kube::Client {
        self.client.clone()
    }

    /// A client for this server that sends `User-Agent: user_agent`, so fault rules
    /// ([`FaultRule::user_agent`]) can single it out.
    pub fn client_with_user_agent(&self, user_agent: &str) -> anyhow::Result<kube::Client> {
        client_for(&self.base_url, Some(user_agent))
    }

    /// A kubeconfig usable by kubectl, helm and kube-rs.
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Run-time fault injection.
    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// Requests served per (verb, resource).
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Container output served by the pod `log` subresource.
    pub fn pod_logs(&self) -> &PodLogs {
        &self.logs
    }

    /// Stops the kubelet and the server, ending open watches, and waits for the server to stop.
    pub async fn stop(mut self) {
        self.signal_stop();
        let server = std::mem::replace(&mut self.server, tokio::spawn(async {}));
        let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
    }

    fn signal_stop(&mut self) {
        if let Some(k) = self.kubelet.take() {
            k.abort();
        }
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.faults.drop_watches();
    }
}

impl Drop for KubeSim {
    fn drop(&mut self) {
        self.signal_stop();
        self.server.abort();
    }
}

/// Writes a kubeconfig for `server` (plain HTTP; any token is accepted).
/// The `User-Agent` of the built-in Job controller and kubelet.
pub const KUBELET_USER_AGENT: &str = "kube-sim-kubelet";

/// A client for `base_url` (default namespace `default`, no read timeout: watches stay open).
fn client_for(base_url: &str, user_agent: Option<&str>) -> anyhow::Result<kube::Client> {
    let mut config = kube::Config::new(base_url.parse()?);
    config.default_namespace = "default".into();
    config.read_timeout = None;
    if let Some(ua) = user_agent {
        config.headers.push((
            ::http::header::USER_AGENT,
            ::http::HeaderValue::from_str(ua)?,
        ));
    }
    Ok(kube::Client::try_from(config)?)
}

pub fn write_kubeconfig(path: &Path, server: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let doc = format!(
        "apiVersion: v1
kind: Config
clusters:
- name: kube-sim
  cluster:
    server: {server}
contexts:
- name: kube-sim
  context:
    cluster: kube-sim
    user: kube-sim
    namespace: default
current-context: kube-sim
users:
- name: kube-sim
  user:
    token: kube-sim
"
    );
    std::fs::write(path, doc)
}
