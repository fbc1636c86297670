//! The kubelet stand-in: runs the first container of every pod through a [`ContainerRunner`] and
//! reports the pod status a kubelet would.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Container, ContainerState, ContainerStatus, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, PostParams, Preconditions};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Client, ResourceExt};
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::env;
use crate::logs::{LogSink, PodLogs, log_tail};
use crate::pod_status::{
    self, MAX_TERMINATION_MESSAGE, Observed, Phase, build, now, running, terminated,
    truncate_bytes, waiting,
};
use crate::runner::{ContainerOutcome, ContainerRunner, ContainerSpec};

pub(crate) const DEFAULT_TERMINATION_MESSAGE_PATH: &str = "/dev/termination-log";
/// Environment variable carrying the per-pod termination message file to the process.
pub const TERMINATION_MESSAGE_PATH_ENV: &str = "KUBE_SIM_TERMINATION_MESSAGE_PATH";

struct Ctx {
    client: Client,
    logs: PodLogs,
    runner: Arc<dyn ContainerRunner>,
}

/// A running pod worker; dropping it aborts the worker (and so kills its process).
struct PodTask {
    cancel: watch::Sender<bool>,
    handle: tokio::task::JoinHandle<()>,
}

impl Drop for PodTask {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

pub(crate) async fn run(client: Client, logs: PodLogs, runner: Arc<dyn ContainerRunner>) {
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        logs,
        runner,
    });
    let pods: Api<Pod> = Api::all(client);
    let mut tasks: HashMap<String, PodTask> = HashMap::new();
    // Pods whose worker finished in this incarnation: never run again.
    let mut done: HashSet<String> = HashSet::new();
    // Pods for which the final grace-0 delete was issued.
    let mut finalized: HashSet<String> = HashSet::new();
    let mut listing: Option<HashSet<String>> = None;
    let stream = watcher::watcher(pods, watcher::Config::default()).default_backoff();
    futures::pin_mut!(stream);
    while let Some(event) = stream.next().await {
        let finished: Vec<String> = tasks
            .iter()
            .filter(|(_, t)| t.handle.is_finished())
            .map(|(uid, _)| uid.clone())
            .collect();
        for uid in finished {
            tasks.remove(&uid);
            done.insert(uid);
        }
        match event {
            Err(e) => warn!(error = %e, "kubelet: pod watch failed; retrying"),
            Ok(Event::Init) => listing = Some(HashSet::new()),
            Ok(Event::InitApply(pod)) => {
                if let Some(seen) = listing.as_mut() {
                    seen.insert(pod.uid().unwrap_or_default());
                }
                on_pod(&ctx, &mut tasks, &done, &mut finalized, pod);
            }
            Ok(Event::InitDone) => {
                if let Some(seen) = listing.take() {
                    let gone: Vec<String> = tasks
                        .keys()
                        .filter(|uid| !seen.contains(*uid))
                        .cloned()
                        .collect();
                    for uid in gone {
                        if let Some(task) = tasks.get(&uid) {
                            let _ = task.cancel.send(true);
                        }
                    }
                }
            }
            Ok(Event::Apply(pod)) => on_pod(&ctx, &mut tasks, &done, &mut finalized, pod),
            Ok(Event::Delete(pod)) => {
                let uid = pod.uid().unwrap_or_default();
                match tasks.get(&uid) {
                    // The worker stops its process and drops the logs itself.
                    Some(task) => {
                        let _ = task.cancel.send(true);
                    }
                    None => ctx
                        .logs
                        .remove(&pod.namespace().unwrap_or_default(), &pod.name_any()),
                }
                done.remove(&uid);
                finalized.remove(&uid);
            }
        }
    }
}

fn on_pod(
    ctx: &Arc<Ctx>,
    tasks: &mut HashMap<String, PodTask>,
    done: &HashSet<String>,
    finalized: &mut HashSet<String>,
    pod: Pod,
) {
    let Some(uid) = pod.uid() else {
        warn!(pod = %pod.name_any(), "kubelet: pod without uid skipped");
        return;
    };
    if pod.metadata.deletion_timestamp.is_some() {
        if let Some(task) = tasks.get(&uid) {
            let _ = task.cancel.send(true);
        } else if finalized.insert(uid.clone()) {
            // Nothing runs for it (any more): finish the graceful deletion like a kubelet does.
            let api: Api<Pod> =
                Api::namespaced(ctx.client.clone(), &pod.namespace().unwrap_or_default());
            let name = pod.name_any();
            tokio::spawn(async move { delete_now(&api, &name, &uid).await });
        }
        return;
    }
    if pod_status::is_terminal(&pod) || tasks.contains_key(&uid) || done.contains(&uid) {
        return;
    }
    let (tx, rx) = watch::channel(false);
    let handle = tokio::spawn(run_pod(ctx.clone(), pod, rx));
    tasks.insert(uid, PodTask { cancel: tx, handle });
}

async fn delete_now(api: &Api<Pod>, name: &str, uid: &str) {
    let dp = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions {
            uid: Some(uid.to_owned()),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match api.delete(name, &dp).await {
        Ok(_) => debug!(pod = name, "kubelet: pod deleted with grace period 0"),
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
        Err(e) => warn!(pod = name, error = %e, "kubelet: final pod delete failed"),
    }
}

/// Writes the status built from `obs`; returns false when the pod is gone (or replaced).
async fn write_status(api: &Api<Pod>, name: &str, uid: &str, obs: &Observed) -> bool {
    for attempt in 0..40u32 {
        let pod = match api.get_opt(name).await {
            Ok(Some(pod)) => pod,
            Ok(None) => return false,
            Err(e) => {
                debug!(pod = name, error = %e, "kubelet: reading pod failed");
                tokio::time::sleep(Duration::from_millis(250)).await;
                continue;
            }
        };
        if pod.uid().as_deref() != Some(uid) {
            return false;
        }
        let status = build(&pod, obs);
        if pod.status.as_ref() == Some(&status) {
            return true;
        }
        let mut updated = pod;
        updated.status = Some(status);
        match api
            .replace_status(name, &PostParams::default(), &updated)
            .await
        {
            Ok(_) => return true,
            Err(kube::Error::Api(s)) if s.code == 404 => return false,
            Err(kube::Error::Api(s)) if s.code == 409 => continue,
            Err(e) => {
                warn!(pod = name, attempt, error = %e, "kubelet: status update failed");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    }
    warn!(pod = name, "kubelet: giving up on a status update");
    false
}

fn container_id() -> String {
    format!(
        "kube-sim://{:016x}{:016x}{:016x}{:016x}",
        rand::random::<u64>(),
        rand::random::<u64>(),
        rand::random::<u64>(),
        rand::random::<u64>()
    )
}

async fn cancelled(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|c| *c).await;
}

async fn deadline_passed(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

fn deadline_instant(start: &Time, seconds: i64) -> Instant {
    let elapsed_ms =
        (k8s_openapi::jiff::Timestamp::now().as_millisecond() - start.0.as_millisecond()).max(0);
    let total_ms = seconds.saturating_mul(1000);
    let remaining = u64::try_from(total_ms.saturating_sub(elapsed_ms)).unwrap_or(0);
    Instant::now() + Duration::from_millis(remaining)
}

/// Reads the termination message file like a kubelet: at most 4096 bytes.
fn read_termination_file(path: &std::path::Path) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let cut = &bytes[..bytes.len().min(MAX_TERMINATION_MESSAGE)];
            String::from_utf8_lossy(cut).into_owned()
        }
        Err(_) => String::new(),
    }
}

/// The termination message reported for a run (file contents, or the log tail with
/// `FallbackToLogsOnError` when the file is empty and the container failed).
pub(crate) fn termination_message(
    from_runner: Option<String>,
    file_contents: String,
    exit_code: i32,
    policy: Option<&str>,
    log: &[u8],
) -> String {
    let msg = from_runner.unwrap_or(file_contents);
    let msg = if msg.is_empty() && exit_code != 0 && policy == Some("FallbackToLogsOnError") {
        log_tail(log)
    } else {
        msg
    };
    truncate_bytes(&msg, MAX_TERMINATION_MESSAGE)
}

struct PodRef {
    api: Api<Pod>,
    ns: String,
    name: String,
    uid: String,
}

impl PodRef {
    async fn write(&self, obs: &Observed) -> bool {
        write_status(&self.api, &self.name, &self.uid, obs).await
    }
    async fn finish_deletion(&self, ctx: &Ctx) {
        delete_now(&self.api, &self.name, &self.uid).await;
        ctx.logs.remove(&self.ns, &self.name);
    }
}

async fn run_pod(ctx: Arc<Ctx>, pod: Pod, cancel: watch::Receiver<bool>) {
    let Some((mut run, mut obs)) = PodRun::start(ctx, pod, cancel).await else {
        return;
    };
    let mut backoff = Duration::from_secs(1);
    loop {
        let Some(env) = run.resolve_env(&mut obs).await else {
            return;
        };
        let Some((term, exit_code)) = run.run_container(&mut obs, env).await else {
            return;
        };
        if !run.back_off(&mut obs, term, exit_code, backoff).await {
            return;
        }
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

/// One pod's worker: what it runs, under which restart policy and deadline, and the signal that
/// the pod is being deleted.
struct PodRun {
    ctx: Arc<Ctx>,
    me: PodRef,
    pod: Pod,
    container: Container,
    policy: String,
    deadline: Option<Instant>,
    cancel: watch::Receiver<bool>,
}

/// How a container run ended.
enum End {
    Exited(ContainerOutcome),
    Deleted,
    Deadline,
}

impl PodRun {
    /// Reads the pod: its container, restart policy and deadline, and the status to start from
    /// (restart count and last state of an earlier run; a container lost by a previous kubelet
    /// run). `None` when the pod is done already (invalid, or lost under `restartPolicy: Never`).
    async fn start(
        ctx: Arc<Ctx>,
        pod: Pod,
        cancel: watch::Receiver<bool>,
    ) -> Option<(Self, Observed)> {
        let ns = pod.namespace().unwrap_or_else(|| "default".into());
        let name = pod.name_any();
        let me = PodRef {
            api: Api::namespaced(ctx.client.clone(), &ns),
            ns,
            name: name.clone(),
            uid: pod.uid().unwrap_or_default(),
        };
        let start_time = pod
            .status
            .as_ref()
            .and_then(|s| s.start_time.clone())
            .unwrap_or_else(now);
        let base = Observed {
            phase: Phase::Pending,
            start_time: start_time.clone(),
            container_id: None,
            restart_count: 0,
            state: waiting("ContainerCreating", None),
            last_state: None,
            reason: None,
            message: None,
        };
        let Some(spec) = pod.spec.clone() else {
            warn!(pod = %name, "kubelet: pod has no spec; marking it Failed");
            me.write(&invalid(base, "pod has no spec")).await;
            return None;
        };
        let Some(container) = spec.containers.first().cloned() else {
            warn!(pod = %name, "kubelet: pod has no containers; marking it Failed");
            me.write(&invalid(base, "pod has no containers")).await;
            return None;
        };
        if spec.init_containers.as_ref().is_some_and(|c| !c.is_empty()) {
            warn!(pod = %name, "kubelet: init containers are not run by kube-sim");
        }
        let policy = spec
            .restart_policy
            .clone()
            .unwrap_or_else(|| "Always".into());
        let deadline = spec
            .active_deadline_seconds
            .map(|s| deadline_instant(&start_time, s));
        let old_cs = pod
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .and_then(|c| c.iter().find(|c| c.name == container.name))
            .cloned();
        let mut obs = Observed {
            restart_count: old_cs.as_ref().map(|c| c.restart_count).unwrap_or(0),
            last_state: old_cs.as_ref().and_then(|c| c.last_state.clone()),
            container_id: old_cs.as_ref().and_then(|c| c.container_id.clone()),
            ..base
        };
        let run = Self {
            ctx,
            me,
            pod,
            container,
            policy,
            deadline,
            cancel,
        };
        if !run.report_lost(old_cs.as_ref(), &mut obs).await {
            return None;
        }
        Some((run, obs))
    }

    /// A container recorded as running that this kubelet does not run was lost (a previous
    /// kubelet incarnation ran it): reports it the way a kubelet reports a vanished container,
    /// as the last state before a restart, or as the end under `restartPolicy: Never` (then
    /// returns false: the worker is done).
    async fn report_lost(&self, old: Option<&ContainerStatus>, obs: &mut Observed) -> bool {
        let Some(lost) = old
            .and_then(|c| c.state.as_ref())
            .and_then(|s| s.running.clone())
        else {
            return true;
        };
        let term = terminated(
            137,
            "ContainerStatusUnknown",
            Some("The container could not be located when the pod was terminated".into()),
            None,
            lost.started_at,
            now(),
            obs.container_id.clone(),
        );
        info!(pod = %self.me.name, "kubelet: container of a previous kubelet run was lost");
        if self.policy == "Never" {
            obs.phase = Phase::Failed;
            obs.state = term;
            self.me.write(obs).await;
            return false;
        }
        obs.last_state = Some(term);
        obs.restart_count += 1;
        true
    }

    /// The container's environment, retried every second while a referenced Secret/ConfigMap is
    /// missing (`CreateContainerConfigError`). `None` when the worker is done (pod deleted,
    /// deadline passed, or the pod is gone).
    async fn resolve_env(&mut self, obs: &mut Observed) -> Option<Vec<(String, String)>> {
        loop {
            match env::resolve_env(&self.ctx.client, &self.pod, &self.container).await {
                Ok(env) => return Some(env),
                Err(message) => {
                    obs.state = waiting("CreateContainerConfigError", Some(message));
                    if !self.me.write(obs).await {
                        return None;
                    }
                    tokio::select! {
                        _ = cancelled(&mut self.cancel) => { self.me.finish_deletion(&self.ctx).await; return None; }
                        _ = deadline_passed(self.deadline) => { fail_deadline(&self.me, obs.clone()).await; return None; }
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            }
        }
    }

    /// Runs the container once and reports it Running, then terminated. Returns the terminated
    /// state and exit code when it exited by itself; `None` when the worker is done (it could not
    /// start, the pod was deleted, the deadline passed, or the pod is gone).
    async fn run_container(
        &mut self,
        obs: &mut Observed,
        env: Vec<(String, String)>,
    ) -> Option<(ContainerState, i32)> {
        let (ns, name) = (self.me.ns.clone(), self.me.name.clone());
        let (run_spec, _dir) = match prepare(
            &self.ctx,
            &self.pod,
            &self.container,
            env,
            obs.restart_count,
        ) {
            Ok(x) => x,
            Err(message) => {
                obs.phase = Phase::Failed;
                obs.state = terminated(128, "StartError", Some(message), None, None, now(), None);
                self.me.write(obs).await;
                return None;
            }
        };
        let term_file = run_spec.termination_message_path.clone();
        let id = container_id();
        let started_at = now();
        self.ctx.logs.touch(&ns, &name);
        // This run's output starts here (the log keeps earlier runs of the container too).
        let log_start = self.ctx.logs.get(&ns, &name).map_or(0, |l| l.len());
        obs.phase = Phase::Running;
        obs.container_id = Some(id.clone());
        obs.state = running(started_at.clone());
        if !self.me.write(obs).await {
            self.ctx.logs.remove(&ns, &name);
            return None;
        }

        let end = tokio::select! {
            outcome = self.ctx.runner.run(run_spec) => End::Exited(outcome),
            _ = cancelled(&mut self.cancel) => End::Deleted,
            _ = deadline_passed(self.deadline) => End::Deadline,
        };
        let outcome = match &end {
            End::Exited(o) => o.clone(),
            // The run was dropped: its process group got SIGKILL.
            _ => ContainerOutcome {
                exit_code: 137,
                signal: Some(9),
                ..ContainerOutcome::default()
            },
        };
        let log = LogSink::new(self.ctx.logs.clone(), &ns, &name).contents();
        let term =
            self.terminated_state(&outcome, &term_file, log.get(log_start..), started_at, id);
        match end {
            End::Deadline => {
                obs.state = term;
                fail_deadline(&self.me, obs.clone()).await;
                None
            }
            End::Deleted => {
                obs.state = term;
                obs.phase = exit_phase(outcome.exit_code);
                self.me.write(obs).await;
                self.me.finish_deletion(&self.ctx).await;
                None
            }
            End::Exited(_) => Some((term, outcome.exit_code)),
        }
    }

    /// The terminated state of a run: exit code, reason, termination message (file, or the log
    /// tail of this run under `FallbackToLogsOnError`).
    fn terminated_state(
        &self,
        outcome: &ContainerOutcome,
        term_file: &std::path::Path,
        log: Option<&[u8]>,
        started_at: Time,
        id: String,
    ) -> ContainerState {
        let message = termination_message(
            outcome.termination_message.clone(),
            read_termination_file(term_file),
            outcome.exit_code,
            self.container.termination_message_policy.as_deref(),
            log.unwrap_or_default(),
        );
        let reason = outcome.reason.clone().unwrap_or_else(|| {
            if outcome.exit_code == 0 {
                "Completed"
            } else {
                "Error"
            }
            .to_owned()
        });
        terminated(
            outcome.exit_code,
            &reason,
            Some(message),
            outcome.signal,
            Some(started_at),
            now(),
            Some(id),
        )
    }

    /// After a run that exited by itself: the final status when the restart policy does not
    /// restart it, else `CrashLoopBackOff` for `backoff`. Returns whether to run it again.
    async fn back_off(
        &mut self,
        obs: &mut Observed,
        term: ContainerState,
        exit_code: i32,
        backoff: Duration,
    ) -> bool {
        let restart = match self.policy.as_str() {
            "Never" => false,
            "OnFailure" => exit_code != 0,
            _ => true,
        };
        if !restart {
            obs.state = term;
            obs.phase = exit_phase(exit_code);
            self.me.write(obs).await;
            return false;
        }
        obs.last_state = Some(term);
        obs.restart_count += 1;
        obs.state = waiting(
            "CrashLoopBackOff",
            Some(format!(
                "back-off {}s restarting failed container={} pod={}_{}({})",
                backoff.as_secs(),
                self.container.name,
                self.me.name,
                self.me.ns,
                self.me.uid
            )),
        );
        if !self.me.write(obs).await {
            return false;
        }
        tokio::select! {
            _ = cancelled(&mut self.cancel) => { self.me.finish_deletion(&self.ctx).await; false }
            _ = deadline_passed(self.deadline) => { fail_deadline(&self.me, obs.clone()).await; false }
            _ = tokio::time::sleep(backoff) => true,
        }
    }
}

/// The status of a pod kube-sim cannot run (no spec, no containers).
fn invalid(base: Observed, message: &str) -> Observed {
    Observed {
        phase: Phase::Failed,
        reason: Some("KubeSimInvalidPod".into()),
        message: Some(message.into()),
        ..base
    }
}

fn exit_phase(exit_code: i32) -> Phase {
    if exit_code == 0 {
        Phase::Succeeded
    } else {
        Phase::Failed
    }
}

async fn fail_deadline(me: &PodRef, mut obs: Observed) {
    obs.phase = Phase::Failed;
    obs.reason = Some("DeadlineExceeded".into());
    obs.message = Some("Pod was active on the node longer than the specified deadline".into());
    if obs.state.terminated.is_none() {
        obs.state = terminated(
            137,
            "Error",
            None,
            Some(9),
            None,
            now(),
            obs.container_id.clone(),
        );
    }
    me.write(&obs).await;
}

/// Builds the runner's spec: expansion, termination path mapping, working dir.
fn prepare(
    ctx: &Ctx,
    pod: &Pod,
    container: &Container,
    mut env: Vec<(String, String)>,
    restart_count: i32,
) -> Result<(ContainerSpec, tempfile::TempDir), String> {
    let ns = pod.namespace().unwrap_or_else(|| "default".into());
    let name = pod.name_any();
    let dir = tempfile::Builder::new()
        .prefix(&format!("kube-sim-{ns}-{name}-"))
        .tempdir()
        .map_err(|e| format!("cannot create the termination message directory: {e}"))?;
    let file = dir.path().join("termination-log");
    std::fs::write(&file, b"")
        .map_err(|e| format!("cannot create the termination message file: {e}"))?;
    let declared = container
        .termination_message_path
        .clone()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| DEFAULT_TERMINATION_MESSAGE_PATH.to_owned());
    let actual = file.to_string_lossy().into_owned();
    let vars: HashMap<String, String> = env.iter().cloned().collect();
    let lookup = move |n: &str| vars.get(n).cloned();
    let map = |v: &Vec<String>| -> Vec<String> {
        v.iter()
            .map(|s| env::rewrite_path(&env::expand(s, &lookup), &declared, &actual))
            .collect()
    };
    let command = map(&container.command.clone().unwrap_or_default());
    let args = map(&container.args.clone().unwrap_or_default());
    for (_, v) in env.iter_mut() {
        *v = env::rewrite_path(v, &declared, &actual);
    }
    env.push((TERMINATION_MESSAGE_PATH_ENV.to_owned(), actual.clone()));
    let spec = ContainerSpec {
        namespace: ns.clone(),
        pod_name: name.clone(),
        pod_uid: pod.uid().unwrap_or_default(),
        container_name: container.name.clone(),
        image: container.image.clone().unwrap_or_default(),
        command,
        args,
        env,
        working_dir: container
            .working_dir
            .clone()
            .filter(|d| !d.is_empty())
            .map(Into::into),
        termination_message_path: file,
        declared_termination_message_path: declared,
        restart_count,
        logs: LogSink::new(ctx.logs.clone(), &ns, &name),
    };
    Ok((spec, dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_from_file_is_kept_verbatim() {
        let json = r#"{"verdict":"pass","score":0.97}"#;
        assert_eq!(
            termination_message(None, json.to_owned(), 0, None, b"log"),
            json
        );
    }

    #[test]
    fn runner_message_wins() {
        assert_eq!(
            termination_message(Some("r".into()), "file".into(), 0, None, b""),
            "r"
        );
    }

    #[test]
    fn fallback_to_logs_only_on_error_with_empty_file() {
        let p = Some("FallbackToLogsOnError");
        assert_eq!(
            termination_message(None, String::new(), 1, p, b"boom\n"),
            "boom\n"
        );
        assert_eq!(
            termination_message(None, String::new(), 0, p, b"fine\n"),
            ""
        );
        assert_eq!(
            termination_message(None, String::new(), 1, None, b"boom\n"),
            ""
        );
        assert_eq!(termination_message(None, "f".into(), 1, p, b"boom\n"), "f");
    }

    #[test]
    fn message_is_limited_to_4096_bytes() {
        let long = "y".repeat(10_000);
        assert_eq!(termination_message(None, long, 0, None, b"").len(), 4096);
    }

    #[test]
    fn file_read_is_limited() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("t");
        std::fs::write(&f, "z".repeat(5000)).unwrap();
        assert_eq!(read_termination_file(&f).len(), 4096);
        assert_eq!(read_termination_file(&dir.path().join("missing")), "");
    }

    #[test]
    fn deadline_in_the_past_is_now() {
        let start = Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH);
        assert!(deadline_instant(&start, 10) <= Instant::now());
    }
}
