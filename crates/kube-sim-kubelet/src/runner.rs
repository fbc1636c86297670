//! How a container is run: the [`ContainerRunner`] trait, the default [`LocalProcessRunner`] and
//! the closure adapter [`FnRunner`] for tests.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::process::Stdio;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt};

use crate::logs::LogSink;

/// Everything a runner needs to run one container of a pod, already resolved by the kubelet.
#[derive(Clone, Debug)]
pub struct ContainerSpec {
    pub namespace: String,
    pub pod_name: String,
    pub pod_uid: String,
    pub container_name: String,
    /// Informational only: no image is pulled.
    pub image: String,
    /// `command` of the container, with `$(VAR)` references expanded and the termination message
    /// path rewritten (see the crate README).
    pub command: Vec<String>,
    /// `args` of the container, expanded and rewritten like `command`.
    pub args: Vec<String>,
    /// Resolved environment (`env` and `envFrom`, in Kubernetes order; later entries win).
    pub env: Vec<(String, String)>,
    pub working_dir: Option<PathBuf>,
    /// The per-pod file standing for the container's `terminationMessagePath`; the kubelet reads
    /// it after the container ends.
    pub termination_message_path: PathBuf,
    /// The path the pod spec asked for (default `/dev/termination-log`).
    pub declared_termination_message_path: String,
    /// 0 for the first run, then one more for each in-place restart.
    pub restart_count: i32,
    /// stdout/stderr destination (`kubectl logs`).
    pub logs: LogSink,
}

impl ContainerSpec {
    /// The argv to execute: `command` followed by `args`; when `command` is empty there is no image
    /// entrypoint to fall back on, so `args` is the whole argv.
    pub fn argv(&self) -> Vec<String> {
        self.command
            .iter()
            .chain(self.args.iter())
            .cloned()
            .collect()
    }
}

/// How a container run ended.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContainerOutcome {
    pub exit_code: i32,
    /// When `Some`, used as the termination message instead of the termination message file.
    pub termination_message: Option<String>,
    /// Signal that killed the process, if any (then `exit_code` is 128 + signal).
    pub signal: Option<i32>,
    /// Overrides the kubelet's reason (`Completed` for 0, `Error` otherwise), e.g. `StartError`.
    pub reason: Option<String>,
}

impl ContainerOutcome {
    pub fn exited(exit_code: i32) -> Self {
        Self {
            exit_code,
            ..Self::default()
        }
    }

    pub fn with_message(mut self, message: impl Into<String>) -> Self {
        self.termination_message = Some(message.into());
        self
    }
}

pub type RunFuture = Pin<Box<dyn Future<Output = ContainerOutcome> + Send + 'static>>;

/// Runs one container. The future is dropped when the pod is deleted or its deadline passes:
/// implementations must stop the work when dropped (the kubelet then reports exit code 137).
pub trait ContainerRunner: Send + Sync {
    fn run(&self, spec: ContainerSpec) -> RunFuture;
}

/// A runner made of a closure: `FnRunner::new(|spec| async move { ContainerOutcome::exited(0) })`.
pub struct FnRunner<F>(F);

impl<F, Fut> FnRunner<F>
where
    F: Fn(ContainerSpec) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ContainerOutcome> + Send + 'static,
{
    pub fn new(f: F) -> Self {
        Self(f)
    }
}

impl<F, Fut> ContainerRunner for FnRunner<F>
where
    F: Fn(ContainerSpec) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ContainerOutcome> + Send + 'static,
{
    fn run(&self, spec: ContainerSpec) -> RunFuture {
        Box::pin((self.0)(spec))
    }
}

/// `Arc<dyn ContainerRunner>` from a closure, ready for [`crate::spawn`].
pub fn closure_runner<F, Fut>(f: F) -> Arc<dyn ContainerRunner>
where
    F: Fn(ContainerSpec) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ContainerOutcome> + Send + 'static,
{
    Arc::new(FnRunner::new(f))
}

/// Runs the container as a local child process (the default runner).
///
/// The process inherits the kubelet's environment (standing for the image's environment) plus
/// `HOSTNAME` = pod name and the container's env. It runs in its own process group; when the main
/// process ends, or the run is cancelled, the whole group is killed with SIGKILL, as a container
/// runtime kills everything left in the container.
#[derive(Clone, Debug, Default)]
pub struct LocalProcessRunner;

impl ContainerRunner for LocalProcessRunner {
    fn run(&self, spec: ContainerSpec) -> RunFuture {
        Box::pin(run_local(spec))
    }
}

/// Kills the process group when dropped (normal end or cancellation).
struct GroupKiller(Option<u32>);

impl Drop for GroupKiller {
    fn drop(&mut self) {
        if let Some(pgid) = self.0.take() {
            let _ = std::process::Command::new("kill")
                .args(["-s", "KILL", "--", &format!("-{pgid}")])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

fn start_error(spec: &ContainerSpec, message: String) -> ContainerOutcome {
    spec.logs.write(b"");
    ContainerOutcome {
        exit_code: 128,
        termination_message: Some(message),
        signal: None,
        reason: Some("StartError".to_owned()),
    }
}

async fn run_local(spec: ContainerSpec) -> ContainerOutcome {
    let argv = spec.argv();
    let Some((program, rest)) = argv.split_first() else {
        return start_error(
            &spec,
            "no command specified (kube-sim runs no image: give the container a command or args)"
                .to_owned(),
        );
    };
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(rest)
        .env("HOSTNAME", &spec.pod_name)
        .envs(spec.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .process_group(0);
    if let Some(dir) = &spec.working_dir {
        if let Err(e) = std::fs::create_dir_all(dir) {
            return start_error(
                &spec,
                format!("cannot create working directory {}: {e}", dir.display()),
            );
        }
        cmd.current_dir(dir);
    }
    let mut child = match cmd.spawn() {
        Ok(child) => child,
        Err(e) => {
            return start_error(
                &spec,
                format!("failed to start container process: exec: {program:?}: {e}"),
            );
        }
    };
    let killer = GroupKiller(child.id());
    let out = child.stdout.take().map(|s| pump(s, spec.logs.clone()));
    let err = child.stderr.take().map(|s| pump(s, spec.logs.clone()));
    let status = child.wait().await;
    // The container ends with its main process: kill what is left of it, so that no leftover
    // holds the pipes open; then drain what was written (bounded, in case something escaped the
    // process group).
    drop(killer);
    for reader in [out, err].into_iter().flatten() {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), reader).await;
    }
    match status {
        Ok(status) => {
            use std::os::unix::process::ExitStatusExt;
            match (status.code(), status.signal()) {
                (Some(code), _) => ContainerOutcome::exited(code),
                (None, Some(sig)) => ContainerOutcome {
                    exit_code: 128 + sig,
                    signal: Some(sig),
                    ..ContainerOutcome::default()
                },
                (None, None) => ContainerOutcome::exited(1),
            }
        }
        Err(e) => start_error(
            &spec,
            format!("waiting for the container process failed: {e}"),
        ),
    }
}

fn pump(
    mut reader: impl AsyncRead + Unpin + Send + 'static,
    sink: LogSink,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut buf = vec![0u8; 8192];
        loop {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => sink.write(&buf[..n]),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::PodLogs;

    fn spec(command: &[&str], args: &[&str], logs: &PodLogs) -> ContainerSpec {
        ContainerSpec {
            namespace: "ns".into(),
            pod_name: "pod".into(),
            pod_uid: "uid".into(),
            container_name: "c".into(),
            image: "busybox".into(),
            command: command.iter().map(|s| s.to_string()).collect(),
            args: args.iter().map(|s| s.to_string()).collect(),
            env: vec![("GREETING".into(), "hi".into())],
            working_dir: None,
            termination_message_path: "/nonexistent".into(),
            declared_termination_message_path: "/dev/termination-log".into(),
            restart_count: 0,
            logs: LogSink::new(logs.clone(), "ns", "pod"),
        }
    }

    #[tokio::test]
    async fn runs_a_process_and_captures_output() {
        let logs = PodLogs::default();
        let out = LocalProcessRunner
            .run(spec(
                &["sh", "-c"],
                &["echo $GREETING $HOSTNAME; echo oops >&2; exit 3"],
                &logs,
            ))
            .await;
        assert_eq!(out.exit_code, 3);
        let log = String::from_utf8(logs.get("ns", "pod").unwrap()).unwrap();
        assert!(log.contains("hi pod\n"), "{log}");
        assert!(log.contains("oops\n"), "{log}");
    }

    #[tokio::test]
    async fn args_alone_are_the_argv() {
        let logs = PodLogs::default();
        let out = LocalProcessRunner
            .run(spec(&[], &["sh", "-c", "echo from-args"], &logs))
            .await;
        assert_eq!(out.exit_code, 0);
        assert_eq!(logs.get("ns", "pod").unwrap(), b"from-args\n");
    }

    #[tokio::test]
    async fn missing_program_is_a_start_error() {
        let logs = PodLogs::default();
        let out = LocalProcessRunner
            .run(spec(&["/definitely/not/here"], &[], &logs))
            .await;
        assert_eq!(out.exit_code, 128);
        assert_eq!(out.reason.as_deref(), Some("StartError"));
        let empty = LocalProcessRunner.run(spec(&[], &[], &logs)).await;
        assert_eq!(empty.reason.as_deref(), Some("StartError"));
    }

    #[tokio::test]
    async fn signal_exit_code() {
        let logs = PodLogs::default();
        let out = LocalProcessRunner
            .run(spec(&["sh", "-c", "kill -9 $$"], &[], &logs))
            .await;
        assert_eq!(out.exit_code, 137);
        assert_eq!(out.signal, Some(9));
    }

    #[tokio::test]
    async fn leftovers_die_with_the_main_process() {
        let logs = PodLogs::default();
        let out = LocalProcessRunner
            .run(spec(&["sh", "-c", "sleep 300 & echo $!"], &[], &logs))
            .await;
        assert_eq!(out.exit_code, 0);
        let log = String::from_utf8(logs.get("ns", "pod").unwrap()).unwrap();
        let pid: u32 = log.trim().parse().expect("pid of the leftover");
        // Killed (gone, or a zombie waiting for its reaper); SIGKILL delivery is asynchronous,
        // so poll (30 s is hang protection only).
        let alive = || {
            let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            state
                .rsplit(')')
                .next()
                .and_then(|rest| rest.split_whitespace().next())
                .is_some_and(|s| s != "Z" && s != "X")
        };
        for _ in 0..300 {
            if !alive() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("leftover {pid} still running");
    }

    #[tokio::test]
    async fn closure_runner_runs() {
        let logs = PodLogs::default();
        let r = closure_runner(|spec: ContainerSpec| async move {
            spec.logs.write(b"closure\n");
            ContainerOutcome::exited(0).with_message("m")
        });
        let out = r.run(spec(&["x"], &[], &logs)).await;
        assert_eq!(out.termination_message.as_deref(), Some("m"));
        assert_eq!(logs.get("ns", "pod").unwrap(), b"closure\n");
    }
}
