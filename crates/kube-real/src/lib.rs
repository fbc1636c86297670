//! kube-real: a real Kubernetes control plane for the project's real-tier tests.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! let plane = kube_real::KubeReal::shared().await?;   // one per test binary, started once
//! let ns = plane.namespace("e2e").await?;              // a fresh namespace for one test
//! let client = ns.client();                            // a kube::Client, default namespace = ns
//! let kubeconfig = ns.kubeconfig_path();               // for kubectl / helm
//! # let _ = (client, kubeconfig); Ok(()) }
//! ```
//!
//! The control plane is etcd (Debian's etcd-server), kube-apiserver and kube-controller-manager
//! v1.20.2 (built by `scripts/install-kube.sh` into `.tools/kube-1.20.2/bin`, or `$QMS_KUBE_BIN`),
//! on free loopback ports, with a self-signed serving certificate, a static admin token, RBAC and
//! the Job, garbage-collector, namespace and service-account controllers. No real kubelet can run
//! here: kube-sim-kubelet's kubelet half is the node (pods run as local processes). There is no
//! scheduler; the stand-in kubelet runs every pod whatever its `nodeName`.
//!
//! Every process runs under a small `sh` supervisor that holds a pipe from this process: when the
//! owner is dropped, or the test process ends in any way, the pipe closes and the supervisor stops
//! its process. So a shared control plane (a `static`, never dropped) still ends with its test binary.
#![forbid(unsafe_code)]

use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::Api;
use kube::api::{DeleteParams, PostParams};

pub use kube_sim_kubelet::PodLogs;

/// The Kubernetes version the installer builds.
pub const KUBE_VERSION: &str = "1.20.2";
/// Start-up protection only: how long each component may take to become ready.
const READY_DEADLINE: Duration = Duration::from_secs(120);
/// The `User-Agent` of the stand-in kubelet's client.
pub const KUBELET_USER_AGENT: &str = "kube-sim-kubelet";

/// Where the control-plane binaries are: `$QMS_KUBE_BIN`, else the workspace's
/// `.tools/kube-1.20.2/bin`. An error naming the installer when any binary is missing.
pub fn bin_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::var_os("QMS_KUBE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../../.tools")
                .join(format!("kube-{KUBE_VERSION}"))
                .join("bin")
        });
    for b in ["etcd", "kube-apiserver", "kube-controller-manager"] {
        if !dir.join(b).is_file() {
            bail!(
                "the real control plane is not installed: {} is missing. Run scripts/install-kube.sh \
                 (builds Kubernetes {KUBE_VERSION} from Debian's packages into .tools/, 8-15 minutes \
                 cold) or set QMS_KUBE_BIN to a directory holding etcd, kube-apiserver and \
                 kube-controller-manager",
                dir.join(b).display()
            );
        }
    }
    Ok(dir)
}

fn free_port() -> anyhow::Result<u16> {
    let l = TcpListener::bind(("127.0.0.1", 0)).context("bind a free loopback port")?;
    Ok(l.local_addr()?.port())
}

/// A child process under an `sh` supervisor: closing its stdin (drop, or this process ending)
/// makes the supervisor SIGTERM the process, wait for it, and exit.
struct Supervised {
    name: &'static str,
    log: PathBuf,
    stdin: Option<ChildStdin>,
    child: Child,
}

// The process's stdin is /dev/null; the supervisor's stdin (fd 3 of the reader) is the pipe. The
// supervisor exits with the process, so a crash during start-up is seen.
const SUPERVISOR: &str = r#"log="$1"; shift; exec 3<&0
"$@" >>"$log" 2>&1 </dev/null 3<&- & p=$!
(read -r _ <&3; kill -TERM "$p" 2>/dev/null) &
exec 3<&-
wait "$p""#;

impl Supervised {
    fn spawn(
        name: &'static str,
        dir: &Path,
        program: &Path,
        args: &[String],
    ) -> anyhow::Result<Self> {
        let log = dir.join(format!("{name}.log"));
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(SUPERVISOR)
            .arg("sh")
            .arg(&log)
            .arg(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("start {name} ({})", program.display()))?;
        let stdin = child.stdin.take();
        Ok(Supervised {
            name,
            log,
            stdin,
            child,
        })
    }

    /// The last lines of its log, for error messages.
    fn log_tail(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut s);
        }
        let lines: Vec<&str> = s.lines().collect();
        let from = lines.len().saturating_sub(25);
        format!(
            "--- last lines of {} ---\n{}",
            self.log.display(),
            lines[from..].join("\n")
        )
    }

    /// Fails when the supervisor (and so the process) has exited.
    fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Ok(Some(_)) = self.child.try_wait() {
            bail!("{} exited during start-up\n{}", self.name, self.log_tail());
        }
        Ok(())
    }

    fn stop(&mut self) {
        drop(self.stdin.take());
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(15) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The background thread owning the stand-in kubelet's tokio runtime.
struct Node {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A running control plane. Dropping it stops the node, the controller-manager, the apiserver
/// and etcd (in that order) and removes their data.
pub struct KubeReal {
    base_url: String,
    token: String,
    kubeconfig: PathBuf,
    logs: PodLogs,
    // Field order is drop order: the node first, etcd last, the directory after all of them.
    node: Option<Node>,
    procs: Vec<Supervised>,
    dir: tempfile::TempDir,
}

impl std::fmt::Debug for KubeReal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeReal")
            .field("base_url", &self.base_url)
            .field("dir", &self.dir.path())
            .finish()
    }
}

impl Drop for KubeReal {
    fn drop(&mut self) {
        drop(self.node.take());
        while let Some(mut p) = self.procs.pop() {
            p.stop();
        }
    }
}

static SHARED: OnceLock<Result<KubeReal, String>> = OnceLock::new();
static NAMESPACES: AtomicU32 = AtomicU32::new(0);

impl KubeReal {
    /// Starts a control plane owned by the caller (stopped on drop). Blocks for its start-up
    /// (about 10-30 s), so it runs on a blocking thread.
    pub async fn start() -> anyhow::Result<KubeReal> {
        tokio::task::spawn_blocking(|| std::thread::spawn(Self::start_blocking).join())
            .await
            .context("start-up thread")?
            .map_err(|_| anyhow!("control-plane start-up panicked"))?
    }

    /// The control plane shared by every test of this test binary, started on first use and
    /// stopped when the test process exits.
    pub async fn shared() -> anyhow::Result<&'static KubeReal> {
        let r = tokio::task::spawn_blocking(|| {
            SHARED.get_or_init(|| {
                std::thread::spawn(Self::start_blocking)
                    .join()
                    .map_err(|_| "control-plane start-up panicked".to_owned())
                    .and_then(|r| r.map_err(|e| format!("{e:#}")))
            })
        })
        .await
        .context("start-up thread")?;
        r.as_ref().map_err(|e| anyhow!("{e}"))
    }

    fn start_blocking() -> anyhow::Result<KubeReal> {
        let bin = bin_dir()?;
        let dir = tempfile::Builder::new()
            .prefix("kube-real-")
            .tempdir()
            .context("create the control plane's directory")?;
        let d = dir.path();
        // Certificates, keys, tokens.
        let token = random_token();
        std::fs::write(
            d.join("tokens.csv"),
            format!("{token},admin,admin-uid,\"system:masters\"\n"),
        )?;
        let sa_key = d.join("sa.key");
        let out = Command::new("openssl")
            .args(["genrsa", "-out"])
            .arg(&sa_key)
            .arg("2048")
            .output()
            .context("run openssl to make the service-account key (apt-get install openssl)")?;
        if !out.status.success() {
            bail!(
                "openssl genrsa failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let mut procs = Vec::new();

        // etcd
        let (client_port, peer_port) = (free_port()?, free_port()?);
        let etcd_url = format!("http://127.0.0.1:{client_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let mut etcd = Supervised::spawn(
            "etcd",
            d,
            &bin.join("etcd"),
            &[
                "--name=default".into(),
                format!("--data-dir={}", d.join("etcd").display()),
                format!("--listen-client-urls={etcd_url}"),
                format!("--advertise-client-urls={etcd_url}"),
                format!("--listen-peer-urls={peer_url}"),
                format!("--initial-advertise-peer-urls={peer_url}"),
                format!("--initial-cluster=default={peer_url}"),
                "--log-level=warn".into(),
            ],
        )?;
        wait_tcp(&mut etcd, client_port)?;
        procs.push(etcd);

        // kube-apiserver
        let api_port = free_port()?;
        let certs = d.join("certs");
        let mut apiserver = Supervised::spawn(
            "kube-apiserver",
            d,
            &bin.join("kube-apiserver"),
            &[
                format!("--etcd-servers={etcd_url}"),
                "--bind-address=127.0.0.1".into(),
                "--advertise-address=127.0.0.1".into(),
                format!("--secure-port={api_port}"),
                "--insecure-port=0".into(),
                format!("--cert-dir={}", certs.display()),
                format!("--token-auth-file={}", d.join("tokens.csv").display()),
                "--authorization-mode=RBAC".into(),
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
                format!("--service-account-key-file={}", sa_key.display()),
                format!("--service-account-signing-key-file={}", sa_key.display()),
                "--api-audiences=https://kubernetes.default.svc.cluster.local".into(),
                "--service-cluster-ip-range=10.0.0.0/24".into(),
                "--enable-priority-and-fairness=false".into(),
                "--v=1".into(),
            ],
        )?;
        let base_url = format!("https://127.0.0.1:{api_port}");
        let kubeconfig = d.join("kubeconfig");
        write_kubeconfig(&kubeconfig, &base_url, &token, "default")?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let guard = rt.enter();
        let client = client_for(&base_url, &token, "default", None)?;
        rt.block_on(wait_ready(&client, &mut apiserver))?;
        procs.push(apiserver);

        // kube-controller-manager
        let mut kcm = Supervised::spawn(
            "kube-controller-manager",
            d,
            &bin.join("kube-controller-manager"),
            &[
                format!("--kubeconfig={}", kubeconfig.display()),
                "--controllers=job,garbagecollector,namespace,serviceaccount,serviceaccount-token"
                    .into(),
                "--port=0".into(),
                "--secure-port=0".into(),
                "--leader-elect=false".into(),
                format!("--service-account-private-key-file={}", sa_key.display()),
                format!("--root-ca-file={}", certs.join("apiserver.crt").display()),
                "--concurrent-gc-syncs=5".into(),
                "--v=1".into(),
            ],
        )?;
        rt.block_on(wait_service_account(&client, "default", Some(&mut kcm)))?;
        procs.push(kcm);
        drop(client);
        drop(guard);
        drop(rt);

        // The node: kube-sim-kubelet's kubelet on its own runtime thread.
        let logs = PodLogs::default();
        let (node_url, node_token) = (base_url.clone(), token.clone());
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let node_logs = logs.clone();
        let thread = std::thread::Builder::new()
            .name("kube-real-node".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(_) => return,
                };
                rt.block_on(async move {
                    let Ok(node_client) =
                        client_for(&node_url, &node_token, "default", Some(KUBELET_USER_AGENT))
                    else {
                        return;
                    };
                    let runner = std::sync::Arc::new(kube_sim_kubelet::LocalProcessRunner);
                    let kubelet = kube_sim_kubelet::spawn_kubelet(node_client, node_logs, runner);
                    let _ = stop_rx.await;
                    kubelet.abort();
                    let _ = kubelet.await;
                });
            })
            .context("start the node thread")?;
        Ok(KubeReal {
            base_url,
            token,
            kubeconfig,
            logs,
            node: Some(Node {
                stop: Some(stop_tx),
                thread: Some(thread),
            }),
            procs,
            dir,
        })
    }

    /// `https://127.0.0.1:PORT` (self-signed; clients skip verification).
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    pub fn addr(&self) -> SocketAddr {
        self.base_url
            .trim_start_matches("https://")
            .parse()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// An admin client (group system:masters), default namespace `default`.
    pub fn client(&self) -> kube::Client {
        client_for(&self.base_url, &self.token, "default", None)
            .unwrap_or_else(|e| panic!("client for the real control plane: {e:#}"))
    }

    /// An admin client sending `User-Agent: user_agent`.
    pub fn client_with_user_agent(&self, user_agent: &str) -> anyhow::Result<kube::Client> {
        client_for(&self.base_url, &self.token, "default", Some(user_agent))
    }

    /// An admin kubeconfig (context namespace `default`), for kubectl and helm.
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    /// Container output of the pods the node ran (the apiserver's `pods/log` needs a real kubelet).
    pub fn pod_logs(&self) -> &PodLogs {
        &self.logs
    }

    /// Where the components' logs are (`etcd.log`, `kube-apiserver.log`, ...).
    pub fn log_dir(&self) -> &Path {
        self.dir.path()
    }

    /// A fresh namespace `{prefix}-{n}` (its default ServiceAccount ready, so pods can be created),
    /// with its own kubeconfig; deleted when dropped.
    pub async fn namespace(&self, prefix: &str) -> anyhow::Result<TestNamespace> {
        let n = NAMESPACES.fetch_add(1, Ordering::Relaxed);
        let name = format!("{prefix}-{}-{n}", std::process::id());
        let client = self.client();
        let api: Api<Namespace> = Api::all(client.clone());
        let ns: Namespace = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}
        }))?;
        api.create(&PostParams::default(), &ns)
            .await
            .with_context(|| format!("create namespace {name}"))?;
        wait_service_account(&client, &name, None).await?;
        let kubeconfig = self.dir.path().join(format!("kubeconfig-{name}"));
        write_kubeconfig(&kubeconfig, &self.base_url, &self.token, &name)?;
        Ok(TestNamespace {
            base_url: self.base_url.clone(),
            token: self.token.clone(),
            name,
            kubeconfig,
            logs: self.logs.clone(),
        })
    }
}

/// One test's namespace on a [`KubeReal`], with kube-sim's interface: `client()`,
/// `client_with_user_agent()`, `kubeconfig_path()`, `base_url()`.
pub struct TestNamespace {
    base_url: String,
    token: String,
    name: String,
    kubeconfig: PathBuf,
    logs: PodLogs,
}

impl std::fmt::Debug for TestNamespace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestNamespace")
            .field("name", &self.name)
            .field("base_url", &self.base_url)
            .finish()
    }
}

impl TestNamespace {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// An admin client whose default namespace is this one.
    pub fn client(&self) -> kube::Client {
        client_for(&self.base_url, &self.token, &self.name, None)
            .unwrap_or_else(|e| panic!("client for the real control plane: {e:#}"))
    }

    pub fn client_with_user_agent(&self, user_agent: &str) -> anyhow::Result<kube::Client> {
        client_for(&self.base_url, &self.token, &self.name, Some(user_agent))
    }

    /// A kubeconfig whose context namespace is this one.
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    pub fn pod_logs(&self) -> &PodLogs {
        &self.logs
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        // Best effort, off the test's runtime: the namespace controller then deletes its content.
        let (url, token, name) = (self.base_url.clone(), self.token.clone(), self.name.clone());
        let _ = std::thread::Builder::new()
            .name("kube-real-ns-delete".into())
            .spawn(move || {
                let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                else {
                    return;
                };
                rt.block_on(async move {
                    if let Ok(client) = client_for(&url, &token, "default", None) {
                        let api: Api<Namespace> = Api::all(client);
                        let _ = api.delete(&name, &DeleteParams::background()).await;
                    }
                });
            });
    }
}

fn random_token() -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..32)
        .map(|_| char::from(b"abcdefghijklmnopqrstuvwxyz0123456789"[rng.random_range(0..36)]))
        .collect()
}

/// A client for the control plane: bearer token, self-signed certificate accepted, no read
/// timeout (watches stay open).
pub fn client_for(
    base_url: &str,
    token: &str,
    namespace: &str,
    user_agent: Option<&str>,
) -> anyhow::Result<kube::Client> {
    let mut config = kube::Config::new(base_url.parse()?);
    config.default_namespace = namespace.into();
    config.read_timeout = None;
    config.accept_invalid_certs = true;
    config.headers.push((
        http::header::AUTHORIZATION,
        http::HeaderValue::from_str(&format!("Bearer {token}"))?,
    ));
    if let Some(ua) = user_agent {
        config
            .headers
            .push((http::header::USER_AGENT, http::HeaderValue::from_str(ua)?));
    }
    Ok(kube::Client::try_from(config)?)
}

fn write_kubeconfig(
    path: &Path,
    server: &str,
    token: &str,
    namespace: &str,
) -> std::io::Result<()> {
    let doc = format!(
        "apiVersion: v1
kind: Config
clusters:
- name: kube-real
  cluster:
    server: {server}
    insecure-skip-tls-verify: true
contexts:
- name: kube-real
  context:
    cluster: kube-real
    user: admin
    namespace: {namespace}
current-context: kube-real
users:
- name: admin
  user:
    token: {token}
"
    );
    std::fs::write(path, doc)
}

fn wait_tcp(p: &mut Supervised, port: u16) -> anyhow::Result<()> {
    let start = Instant::now();
    loop {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        p.check_alive()?;
        if start.elapsed() > READY_DEADLINE {
            bail!("{} did not listen on port {port}\n{}", p.name, p.log_tail());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

async fn wait_ready(client: &kube::Client, p: &mut Supervised) -> anyhow::Result<()> {
    let start = Instant::now();
    loop {
        let req = http::Request::get("/readyz").body(Vec::new())?;
        if let Ok(text) = client.request_text(req).await
            && text.trim() == "ok"
        {
            return Ok(());
        }
        p.check_alive()?;
        if start.elapsed() > READY_DEADLINE {
            bail!("{} did not become ready\n{}", p.name, p.log_tail());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits for the namespace's `default` ServiceAccount and its token Secret (pods are refused
/// before both exist).
async fn wait_service_account(
    client: &kube::Client,
    namespace: &str,
    mut kcm: Option<&mut Supervised>,
) -> anyhow::Result<()> {
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
    let start = Instant::now();
    loop {
        if let Ok(Some(sa)) = api.get_opt("default").await
            && sa.secrets.as_ref().is_some_and(|s| !s.is_empty())
        {
            return Ok(());
        }
        if let Some(p) = kcm.as_deref_mut() {
            p.check_alive()?;
        }
        if start.elapsed() > READY_DEADLINE {
            let tail = kcm.map(|p| p.log_tail()).unwrap_or_default();
            bail!("no default ServiceAccount with a token in namespace {namespace}\n{tail}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
