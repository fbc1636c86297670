//! Shared helpers of the `kubectl_*`, `helm_*` and `runtime_*` tests: a kube-sim per test, the real
//! kubectl/helm binaries, fixtures and polling.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use kube_sim::KubeSim;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::mpsc;

/// The one poll helper (qms-testkit); [`PATIENCE`] is also the hang protection of the tool runs.
pub use qms_testkit::{PATIENCE, eventually, poll};

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("crates/kube-sim sits two levels below the workspace root")
        .to_path_buf()
}

/// Directory holding the real `kubectl` and `helm`: `$QMS_TOOLS_BIN`, else `<root>/.tools/bin`.
pub fn tools_bin() -> PathBuf {
    let dir = std::env::var_os("QMS_TOOLS_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".tools/bin"));
    for tool in ["kubectl", "helm"] {
        let path = dir.join(tool);
        assert!(
            path.is_file(),
            "{} not found: these tests drive the real kubectl and helm. Run scripts/install-tools.sh \
             (it installs them into <workspace>/.tools/bin), or point QMS_TOOLS_BIN at a directory \
             holding both.",
            path.display()
        );
    }
    dir
}

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Output of a finished tool run.
#[derive(Debug)]
pub struct Out {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    pub cmdline: String,
}

impl Out {
    /// Asserts success and returns stdout.
    #[track_caller]
    pub fn ok(&self) -> &str {
        assert!(
            self.status.success(),
            "`{}` failed ({}):\nstdout:\n{}\nstderr:\n{}",
            self.cmdline,
            self.status,
            self.stdout,
            self.stderr
        );
        &self.stdout
    }

    /// Asserts failure and returns stderr.
    #[track_caller]
    pub fn err(&self) -> &str {
        assert!(
            !self.status.success(),
            "`{}` was expected to fail but succeeded:\nstdout:\n{}\nstderr:\n{}",
            self.cmdline,
            self.stdout,
            self.stderr
        );
        &self.stderr
    }
}

/// A kube-sim for one test plus a private HOME/cache for the tools.
pub struct Cluster {
    pub sim: KubeSim,
    pub home: tempfile::TempDir,
    pub bin: PathBuf,
}

impl Cluster {
    pub async fn start() -> Self {
        let bin = tools_bin();
        let sim = KubeSim::builder().start().await.expect("kube-sim starts");
        let home = tempfile::tempdir().expect("temp HOME");
        Self { sim, home, bin }
    }

    pub fn client(&self) -> kube::Client {
        self.sim.client()
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.sim.kubeconfig_path().to_path_buf()
    }

    fn command(&self, tool: &str, args: &[&str]) -> (tokio::process::Command, String) {
        let mut cmd = tokio::process::Command::new(self.bin.join(tool));
        let home = self.home.path();
        cmd.env("KUBECONFIG", self.kubeconfig())
            .env("HOME", home)
            .env("XDG_CACHE_HOME", home.join(".cache"))
            .env("XDG_CONFIG_HOME", home.join(".config"))
            .env("XDG_DATA_HOME", home.join(".local/share"))
            .env("HELM_CACHE_HOME", home.join(".cache/helm"))
            .env("HELM_CONFIG_HOME", home.join(".config/helm"))
            .env("HELM_DATA_HOME", home.join(".local/share/helm"))
            .env_remove("KUBERNETES_SERVICE_HOST")
            .stdin(Stdio::null())
            .kill_on_drop(true);
        if tool == "kubectl" {
            cmd.arg("--cache-dir").arg(home.join(".kube/cache"));
        }
        cmd.args(args);
        (cmd, format!("{tool} {}", args.join(" ")))
    }

    async fn run(&self, tool: &str, args: &[&str]) -> Out {
        let (mut cmd, cmdline) = self.command(tool, args);
        let output = tokio::time::timeout(PATIENCE * 2, cmd.output())
            .await
            .unwrap_or_else(|_| panic!("`{cmdline}` hung"))
            .unwrap_or_else(|e| panic!("cannot run `{cmdline}`: {e}"));
        Out {
            status: output.status,
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            cmdline,
        }
    }

    pub async fn kubectl(&self, args: &[&str]) -> Out {
        self.run("kubectl", args).await
    }

    pub async fn helm(&self, args: &[&str]) -> Out {
        self.run("helm", args).await
    }

    /// Starts a long-running tool (e.g. `kubectl get -w`); its stdout lines arrive on the stream.
    pub fn spawn(&self, tool: &str, args: &[&str]) -> Streaming {
        let (mut cmd, cmdline) = self.command(tool, args);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run `{cmdline}`: {e}"));
        let (tx, rx) = mpsc::unbounded_channel();
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        let tx_err = tx.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if tx_err.send(format!("[stderr] {line}")).is_err() {
                    break;
                }
            }
        });
        Streaming {
            child,
            lines: rx,
            seen: Vec::new(),
            cmdline,
        }
    }
}

/// A running tool whose output is read line by line.
pub struct Streaming {
    pub child: tokio::process::Child,
    lines: mpsc::UnboundedReceiver<String>,
    pub seen: Vec<String>,
    cmdline: String,
}

impl Streaming {
    /// Waits for a stdout line satisfying `pred` (hang protection: [`PATIENCE`]).
    pub async fn expect_line(&mut self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            match tokio::time::timeout_at(deadline, self.lines.recv()).await {
                Ok(Some(line)) => {
                    self.seen.push(line.clone());
                    if !line.starts_with("[stderr] ") && pred(&line) {
                        return line;
                    }
                }
                Ok(None) => panic!(
                    "`{}` ended before printing {what}; output:\n{}",
                    self.cmdline,
                    self.seen.join("\n")
                ),
                Err(_) => panic!(
                    "`{}` did not print {what}; output so far:\n{}",
                    self.cmdline,
                    self.seen.join("\n")
                ),
            }
        }
    }

    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

impl Streaming {
    /// Waits for the tool to exit (hang protection: [`PATIENCE`]); returns its status and all
    /// output lines (stderr lines prefixed with `[stderr] `).
    pub async fn finish(mut self) -> (ExitStatus, Vec<String>) {
        let status = tokio::time::timeout(PATIENCE, self.child.wait())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "`{}` did not exit; output so far:\n{}",
                    self.cmdline,
                    self.seen.join("\n")
                )
            })
            .expect("wait for tool");
        // Both pipes close at exit; collect what is left.
        while let Ok(Some(line)) =
            tokio::time::timeout(Duration::from_secs(5), self.lines.recv()).await
        {
            self.seen.push(line);
        }
        (status, self.seen)
    }

    /// Whether the tool is still running (does not wait).
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

/// Applies the test CRDs with kubectl and waits until they are Established.
pub async fn install_test_crds(cluster: &Cluster) {
    let crds = fixture("crds.yaml");
    let out = cluster
        .kubectl(&["apply", "-f", crds.to_str().unwrap()])
        .await;
    let stdout = out.ok();
    assert!(
        stdout.contains(
            "customresourcedefinition.apiextensions.k8s.io/widgets.test.kube-sim.dev created"
        ),
        "{stdout}"
    );
    cluster
        .kubectl(&[
            "wait",
            "--for=condition=Established",
            "--timeout=30s",
            "crd/widgets.test.kube-sim.dev",
            "crd/gadgets.test.kube-sim.dev",
        ])
        .await
        .ok();
}

/// `Api<DynamicObject>` for the test CRD `widgets.test.kube-sim.dev/v1` in `default`.
pub fn widgets(client: kube::Client) -> kube::Api<kube::api::DynamicObject> {
    let gvk = kube::api::GroupVersionKind::gvk("test.kube-sim.dev", "v1", "Widget");
    let ar = kube::api::ApiResource::from_gvk_with_plural(&gvk, "widgets");
    kube::Api::namespaced_with(client, "default", &ar)
}

/// A kube-sim with its built-in Job controller and kubelet (local processes).
pub async fn start_sim() -> KubeSim {
    KubeSim::builder().start().await.expect("kube-sim starts")
}

/// A kube-sim without the built-in Job controller and kubelet: the test spawns its own with
/// `kube_sim_kubelet::spawn*`.
pub async fn start_sim_without_kubelet() -> KubeSim {
    KubeSim::builder()
        .without_kubelet()
        .start()
        .await
        .expect("kube-sim starts")
}

/// Aborts the wrapped task when dropped (a kubelet/controller instance in a test).
pub struct AbortOnDrop(pub tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl AbortOnDrop {
    /// Stops the task and waits until it is gone (its processes killed).
    pub async fn stop(mut self) {
        let handle = std::mem::replace(&mut self.0, tokio::spawn(async {}));
        handle.abort();
        let _ = handle.await;
    }
}
