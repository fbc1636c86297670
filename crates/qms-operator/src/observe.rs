//! Building the engine's [`Observed`](qms_engine::Observed) inputs from cached objects. Pure: every
//! function takes objects (as the reflector stores hold them) and the time, and is unit-tested from
//! fixtures.
//!
//! Counts (agent load, running workflows) are derived from live objects only — never from
//! counters that a restart could leak (Pipelines-as-Code #2949).

pub mod gaps;
pub mod snapshot;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use qms_api::{Agent, QmsWorkflow, QualityGate, QualityGateSpec, TaskPhase, WorkflowState};
use qms_engine::slots::{QueuePlace, SlotUse};
use qms_engine::{AgentView, JobObservation, JobPhase};

use crate::jobs::{
    AGENT_LABEL, CONTAINER_NAME, JOB_NAME_LABEL, LEGACY_JOB_NAME_LABEL, WORKFLOW_LABEL, owned_by,
};

/// How long a finished Job whose Pod result has not reached the cache yet is reported as still
/// active (the Job and Pod watches are separate streams; the Job may arrive first).
pub const POD_RESULT_GRACE: Duration = Duration::from_secs(5);

pub fn to_chrono(t: &Time) -> DateTime<Utc> {
    let ts = t.0;
    DateTime::from_timestamp(ts.as_second(), ts.subsec_nanosecond().max(0) as u32)
        .unwrap_or_default()
}

/// The Job-level phase: Succeeded/Failed once a terminal condition is set (or the counters say so).
pub fn job_phase(job: &Job) -> JobPhase {
    let Some(status) = &job.status else {
        return JobPhase::Active;
    };
    let cond = |types: &[&str]| {
        status
            .conditions
            .iter()
            .flatten()
            .find(|c| c.status == "True" && types.iter().any(|t| c.type_ == *t))
    };
    if cond(&["Failed", "FailureTarget"]).is_some() {
        return JobPhase::Failed;
    }
    if cond(&["Complete", "SuccessCriteriaMet"]).is_some() {
        return JobPhase::Succeeded;
    }
    if status.succeeded.unwrap_or(0) > 0 && status.completion_time.is_some() {
        return JobPhase::Succeeded;
    }
    JobPhase::Active
}

fn job_finished_at(job: &Job) -> Option<DateTime<Utc>> {
    let status = job.status.as_ref()?;
    if let Some(t) = &status.completion_time {
        return Some(to_chrono(t));
    }
    status
        .conditions
        .iter()
        .flatten()
        .filter(|c| {
            c.status == "True"
                && matches!(
                    c.type_.as_str(),
                    "Failed" | "FailureTarget" | "Complete" | "SuccessCriteriaMet"
                )
        })
        .filter_map(|c| c.last_transition_time.as_ref().map(to_chrono))
        .min()
}

fn job_failure_reason(job: &Job) -> Option<String> {
    job.status
        .as_ref()?
        .conditions
        .iter()
        .flatten()
        .find(|c| c.status == "True" && (c.type_ == "Failed" || c.type_ == "FailureTarget"))
        .and_then(|c| c.reason.clone())
}

/// Is `pod` one of `job`'s Pods?
pub fn pod_of_job(pod: &Pod, job: &Job) -> bool {
    let name = job.name_any();
    let labels = pod.labels();
    let labelled = labels
        .get(JOB_NAME_LABEL)
        .or_else(|| labels.get(LEGACY_JOB_NAME_LABEL))
        == Some(&name);
    if !labelled {
        return false;
    }
    // When the pod names its owner, it must be this Job (not an older Job of the same name).
    match (
        job.uid(),
        pod.owner_references()
            .iter()
            .find(|o| o.controller == Some(true)),
    ) {
        (Some(uid), Some(owner)) => owner.uid == uid,
        _ => true,
    }
}

struct Terminated {
    exit_code: i32,
    reason: Option<String>,
    message: Option<String>,
    finished_at: Option<DateTime<Utc>>,
}

fn terminated_state(pod: &Pod) -> Option<Terminated> {
    let statuses = pod.status.as_ref()?.container_statuses.as_ref()?;
    let cs = statuses
        .iter()
        .find(|c| c.name == CONTAINER_NAME)
        .or_else(|| statuses.first())?;
    let t = cs.state.as_ref()?.terminated.as_ref()?;
    Some(Terminated {
        exit_code: t.exit_code,
        reason: t.reason.clone(),
        message: t.message.clone().filter(|m| !m.is_empty()),
        finished_at: t.finished_at.as_ref().map(to_chrono),
    })
}

/// Observes one Job with its Pods. The second value asks for a re-check after that long (a
/// finished Job whose Pod result is not cached yet is reported Active until it is, or until
/// [`POD_RESULT_GRACE`] has passed).
pub fn observe_job(
    job: &Job,
    pods: &[&Pod],
    now: DateTime<Utc>,
) -> (JobObservation, Option<Duration>) {
    let mut phase = job_phase(job);
    let finished_at = job_finished_at(job);
    // The latest terminated pod (backoffLimit 0 means one, but be robust).
    let term = pods
        .iter()
        .filter_map(|p| terminated_state(p))
        .max_by_key(|t| t.finished_at);
    let mut recheck = None;
    if phase != JobPhase::Active && term.is_none() {
        let deadline = job_failure_reason(job).as_deref() == Some("DeadlineExceeded");
        let age = finished_at
            .map(|f| (now - f).to_std().unwrap_or(Duration::ZERO))
            .unwrap_or(Duration::MAX);
        if !deadline && age < POD_RESULT_GRACE {
            phase = JobPhase::Active;
            recheck = Some(POD_RESULT_GRACE - age + Duration::from_millis(100));
        }
    }
    let reason = if phase == JobPhase::Failed {
        job_failure_reason(job).or_else(|| term.as_ref().and_then(|t| t.reason.clone()))
    } else {
        term.as_ref().and_then(|t| t.reason.clone())
    };
    let obs = JobObservation {
        name: job.name_any(),
        phase,
        labels: job.labels().clone(),
        created_at: job.metadata.creation_timestamp.as_ref().map(to_chrono),
        finished_at: if phase == JobPhase::Active {
            None
        } else {
            finished_at.or_else(|| term.as_ref().and_then(|t| t.finished_at))
        },
        termination_message: term.as_ref().and_then(|t| t.message.clone()),
        exit_code: term.as_ref().map(|t| t.exit_code),
        reason,
        deleting: job.metadata.deletion_timestamp.is_some(),
        stored_result: None,
    };
    (obs, recheck)
}

/// The Jobs of `workflow` (by label and controller owner), observed with their Pods.
pub fn workflow_jobs(
    workflow: &QmsWorkflow,
    jobs: &[Arc<Job>],
    pods: &[Arc<Pod>],
    now: DateTime<Utc>,
) -> (BTreeMap<String, JobObservation>, Option<Duration>) {
    let mut out = BTreeMap::new();
    let mut recheck: Option<Duration> = None;
    for job in jobs.iter().filter(|j| is_workflow_job(workflow, j)) {
        let job_pods = pods_of_job(job, pods);
        let (obs, again) = observe_job(job, &job_pods, now);
        recheck = min_opt(recheck, again);
        out.insert(obs.name.clone(), obs);
    }
    (out, recheck)
}

/// Is `job` one of `workflow`'s Jobs (by label and, once the workflow has a uid, by controller
/// owner)?
fn is_workflow_job(workflow: &QmsWorkflow, job: &Job) -> bool {
    job.namespace() == workflow.namespace()
        && job.labels().get(WORKFLOW_LABEL) == Some(&workflow.name_any())
        && workflow.uid().is_none_or(|uid| owned_by(job, &uid))
}

fn pods_of_job<'a>(job: &Job, pods: &'a [Arc<Pod>]) -> Vec<&'a Pod> {
    pods.iter()
        .filter(|p| p.namespace() == job.namespace() && pod_of_job(p, job))
        .map(|p| p.as_ref())
        .collect()
}

/// Is the task of Job `job_name` still waiting for its Job's outcome (or not in status yet)?
fn task_unfinished(workflow: &QmsWorkflow, job_name: &str) -> bool {
    workflow
        .status
        .iter()
        .flat_map(|s| &s.steps)
        .flat_map(|st| &st.tasks)
        .find(|t| t.job_name == job_name)
        .is_none_or(|t| matches!(t.phase, TaskPhase::Pending | TaskPhase::Running))
}

/// The Jobs of `workflow`'s running tasks that neither the Job cache holds nor we have just
/// created (`trusted`). A Job watch in backoff can lag; these are read from the API server before
/// the engine would declare them lost, timed out or still running.
pub fn uncached_task_jobs(
    workflow: &QmsWorkflow,
    jobs: &[Arc<Job>],
    trusted: &[String],
) -> Vec<String> {
    let Some(status) = &workflow.status else {
        return Vec::new();
    };
    status
        .steps
        .iter()
        .flat_map(|st| &st.tasks)
        // Pending tasks wait for agent capacity: they have no Job yet.
        .filter(|t| t.phase == TaskPhase::Running)
        .map(|t| &t.job_name)
        .filter(|name| !trusted.contains(name))
        .filter(|name| {
            !jobs
                .iter()
                .any(|j| j.metadata.name.as_ref() == Some(name) && is_workflow_job(workflow, j))
        })
        .cloned()
        .collect()
}

/// The finished Jobs of `workflow` whose result the engine still needs (their task is not
/// finished in status) but whose Pod the cache does not show terminated. The Job and Pod watches
/// are separate streams, and a Pod watch in backoff after API errors can lag for many seconds:
/// these Pods are read from the API server, so a stale cache never turns into a missing result.
pub fn jobs_awaiting_pod_result(
    workflow: &QmsWorkflow,
    jobs: &[Arc<Job>],
    pods: &[Arc<Pod>],
) -> Vec<String> {
    jobs.iter()
        .filter(|j| is_workflow_job(workflow, j))
        .filter(|j| job_phase(j) != JobPhase::Active && j.metadata.deletion_timestamp.is_none())
        .filter(|j| {
            pods_of_job(j, pods)
                .into_iter()
                .all(|p| terminated_state(p).is_none())
        })
        .map(|j| j.name_any())
        .filter(|name| task_unfinished(workflow, name))
        .collect()
}

/// Why the engine deletes a Job when a deadline passes.
const TIMEOUT_REASONS: [&str; 3] = ["TaskTimedOut", "StepTimeout", "RunTimeout"];

/// The Jobs the engine is about to delete for a timeout while `jobs` shows them running: worth
/// one read from the API server first, since a lagging watch may hide that they finished.
pub fn timeouts_to_confirm(
    actions: &[qms_engine::Action],
    jobs: &BTreeMap<String, JobObservation>,
) -> Vec<String> {
    actions
        .iter()
        .filter_map(|a| match a {
            qms_engine::Action::DeleteJob { job_name, reason }
                if TIMEOUT_REASONS.contains(&reason.as_str()) =>
            {
                Some(job_name)
            }
            _ => None,
        })
        .filter(|name| jobs.get(*name).is_some_and(|o| o.phase == JobPhase::Active))
        .cloned()
        .collect()
}

pub fn min_opt(a: Option<Duration>, b: Option<Duration>) -> Option<Duration> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

/// What the Jobs of one agent say about it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AgentStats {
    /// Unfinished Jobs (live load).
    pub running: u32,
    /// Failed Jobs (errors and timeouts) that finished within the health window.
    pub recent_failures: u32,
    pub recent_successes: u32,
}

impl AgentStats {
    pub fn success_rate(&self) -> Option<f64> {
        let total = self.recent_failures + self.recent_successes;
        (total > 0).then(|| f64::from(self.recent_successes) / f64::from(total))
    }
}

/// Counts `agent`'s Jobs in its namespace. `window` is the agent's health window.
pub fn agent_stats(
    namespace: &str,
    agent_name: &str,
    window: Duration,
    jobs: &[Arc<Job>],
    now: DateTime<Utc>,
) -> AgentStats {
    let mut stats = AgentStats::default();
    let since = now - chrono::Duration::from_std(window).unwrap_or(chrono::Duration::MAX);
    for job in jobs {
        if job.namespace().as_deref() != Some(namespace)
            || job.labels().get(AGENT_LABEL).map(String::as_str) != Some(agent_name)
        {
            continue;
        }
        match job_phase(job) {
            JobPhase::Active => {
                if job.metadata.deletion_timestamp.is_none() {
                    stats.running += 1;
                }
            }
            phase => {
                let recent = job_finished_at(job).is_none_or(|t| t >= since);
                if recent {
                    if phase == JobPhase::Failed {
                        stats.recent_failures += 1;
                    } else {
                        stats.recent_successes += 1;
                    }
                }
            }
        }
    }
    stats
}

/// The agents of `namespace` as the engine sees them. `in_flight` adds Jobs created but not yet in
/// the cache (by agent name), so two reconciles in a row cannot both take the last free place.
pub fn agent_views(
    namespace: &str,
    agents: &[Arc<Agent>],
    jobs: &[Arc<Job>],
    in_flight: &HashMap<String, u32>,
    now: DateTime<Utc>,
) -> BTreeMap<String, AgentView> {
    agents
        .iter()
        .filter(|a| a.namespace().as_deref() == Some(namespace))
        .map(|a| {
            let name = a.name_any();
            let window = a.spec.health.window_or_default();
            let stats = agent_stats(namespace, &name, window, jobs, now);
            let running = stats.running + in_flight.get(&name).copied().unwrap_or(0);
            let healthy = a.spec.health.is_healthy(stats.recent_failures);
            (
                name,
                AgentView {
                    spec: a.spec.clone(),
                    running,
                    healthy,
                },
            )
        })
        .collect()
}

pub fn gates_in(namespace: &str, gates: &[Arc<QualityGate>]) -> BTreeMap<String, QualityGateSpec> {
    gates
        .iter()
        .filter(|g| g.namespace().as_deref() == Some(namespace))
        .map(|g| (g.name_any(), g.spec.clone()))
        .collect()
}

pub fn state_of(workflow: &QmsWorkflow) -> WorkflowState {
    workflow
        .status
        .as_ref()
        .map(|s| s.state)
        .unwrap_or(WorkflowState::Initialized)
}

/// What `workflow` needs of the `maxConcurrentWorkflows` slots: the engine's rule
/// ([`qms_engine::slots`]: automated work holds one, waiting for a person or finished holds none)
/// on the cached status. A workflow being deleted needs none.
pub fn slot_use(workflow: &QmsWorkflow) -> SlotUse {
    if workflow.metadata.deletion_timestamp.is_some() {
        return SlotUse::None;
    }
    qms_engine::slots::slot_use(workflow.status.as_ref())
}

/// Does this workflow hold one of the `maxConcurrentWorkflows` slots?
pub fn occupies_slot(workflow: &QmsWorkflow) -> bool {
    slot_use(workflow) == SlotUse::Holds
}

/// Is this workflow waiting for a slot (queued before its run starts, or to resume after an
/// approval)?
pub fn waits_for_slot(workflow: &QmsWorkflow) -> bool {
    slot_use(workflow) == SlotUse::Waits
}

/// Does `decided` (the engine's new status for `workflow`) take a slot the cached `workflow` does
/// not hold? Such an admission counts as a held slot until the cache shows the status write.
pub fn takes_slot(workflow: &QmsWorkflow, decided: &qms_api::QmsWorkflowStatus) -> bool {
    workflow.metadata.deletion_timestamp.is_none()
        && !occupies_slot(workflow)
        && qms_engine::slots::holds_slot(decided)
}

/// What the slot queue offers one workflow: whether it may take a slot now, and its place in the
/// queue (for the `Queued` condition) when it may not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotOffer {
    pub available: bool,
    pub place: Option<QueuePlace>,
}

/// Slot availability for `workflow`: a workflow holding a slot keeps it; one that needs a slot
/// gets one when fewer than `max` are held and it is among the oldest waiting ones that fit (first
/// come, first served, by creation time then namespace/name). `admitted` are workflows given a
/// slot whose status write has not reached the cache yet (they count as held). Everything comes
/// from `all`, one snapshot of the workflow cache: nothing is counted, so a restart loses nothing.
pub fn slot_offer(
    workflow: &QmsWorkflow,
    all: &[Arc<QmsWorkflow>],
    admitted: &std::collections::HashSet<String>,
    max: u32,
) -> SlotOffer {
    let uid_of = |w: &QmsWorkflow| w.uid().unwrap_or_default();
    let my_uid = uid_of(workflow);
    if occupies_slot(workflow) || admitted.contains(&my_uid) {
        return SlotOffer {
            available: true,
            place: None,
        };
    }
    let held = all
        .iter()
        .filter(|w| {
            occupies_slot(w)
                || (admitted.contains(&uid_of(w)) && w.metadata.deletion_timestamp.is_none())
        })
        .count() as u64;
    let free = u64::from(max).saturating_sub(held);
    let mine = queue_key(workflow);
    let (mut ahead, mut others) = (0u64, 0u64);
    for w in all
        .iter()
        .filter(|w| waits_for_slot(w) && !admitted.contains(&uid_of(w)) && uid_of(w) != my_uid)
    {
        others += 1;
        if queue_key(w) < mine {
            ahead += 1;
        }
    }
    let available = ahead < free;
    SlotOffer {
        available,
        place: (!available).then_some(QueuePlace {
            position: ahead + 1,
            waiting: others + 1,
            limit: max,
        }),
    }
}

/// The waiting workflows that the free slots go to next (oldest first, as in [`slot_offer`]): the
/// ones worth a reconcile when a slot frees. The others keep their place and see it move on their
/// periodic requeue (`WAIT_POLL`), not on every freed slot (1,000 waiting would otherwise mean
/// 1,000 reconciles per freed slot).
pub fn first_in_line(
    all: &[Arc<QmsWorkflow>],
    admitted: &std::collections::HashSet<String>,
    max: u32,
) -> Vec<Arc<QmsWorkflow>> {
    let uid_of = |w: &QmsWorkflow| w.uid().unwrap_or_default();
    let held = all
        .iter()
        .filter(|w| {
            occupies_slot(w)
                || (admitted.contains(&uid_of(w)) && w.metadata.deletion_timestamp.is_none())
        })
        .count();
    let free = (max as usize).saturating_sub(held);
    let mut waiting: Vec<&Arc<QmsWorkflow>> = all
        .iter()
        .filter(|w| waits_for_slot(w) && !admitted.contains(&uid_of(w)))
        .collect();
    waiting.sort_by_cached_key(|w| queue_key(w));
    waiting.into_iter().take(free).cloned().collect()
}

/// The queue order: creation time, then namespace/name.
fn queue_key(w: &QmsWorkflow) -> (Option<DateTime<Utc>>, String, String) {
    (
        w.metadata.creation_timestamp.as_ref().map(to_chrono),
        w.namespace().unwrap_or_default(),
        w.name_any(),
    )
}

/// [`slot_offer`]`.available`.
pub fn slot_available(
    workflow: &QmsWorkflow,
    all: &[Arc<QmsWorkflow>],
    admitted: &std::collections::HashSet<String>,
    max: u32,
) -> bool {
    slot_offer(workflow, all, admitted, max).available
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::batch::v1::{JobCondition, JobStatus};
    use k8s_openapi::api::core::v1::{
        ContainerState, ContainerStateTerminated, ContainerStatus, PodStatus,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
    use qms_api::{QmsWorkflowSpec, QmsWorkflowStatus, TemplateRef};

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2025-08-17T06:10:00Z")
            .unwrap()
            .to_utc()
    }

    fn time(s: &str) -> Time {
        Time(s.parse().unwrap())
    }

    fn job(name: &str, wf: &str, agent: &str, cond: Option<(&str, &str, &str)>) -> Arc<Job> {
        Arc::new(Job {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                uid: Some(format!("{name}-uid")),
                labels: Some(BTreeMap::from([
                    (WORKFLOW_LABEL.to_owned(), wf.to_owned()),
                    (AGENT_LABEL.to_owned(), agent.to_owned()),
                ])),
                owner_references: Some(vec![OwnerReference {
                    api_version: "qms.creo.dev/v1".into(),
                    kind: "QmsWorkflow".into(),
                    name: wf.into(),
                    uid: format!("{wf}-uid"),
                    controller: Some(true),
                    block_owner_deletion: Some(true),
                }]),
                creation_timestamp: Some(time("2025-08-17T06:00:00Z")),
                ..ObjectMeta::default()
            },
            spec: None,
            status: cond.map(|(t, reason, at)| JobStatus {
                conditions: Some(vec![JobCondition {
                    type_: t.into(),
                    status: "True".into(),
                    reason: Some(reason.into()),
                    last_transition_time: Some(time(at)),
                    ..JobCondition::default()
                }]),
                ..JobStatus::default()
            }),
        })
    }

    fn pod(job: &Job, exit: i32, message: Option<&str>) -> Arc<Pod> {
        Arc::new(Pod {
            metadata: ObjectMeta {
                name: Some(format!("{}-abcde", job.name_any())),
                namespace: Some("ns".into()),
                labels: Some(BTreeMap::from([(
                    JOB_NAME_LABEL.to_owned(),
                    job.name_any(),
                )])),
                owner_references: Some(vec![OwnerReference {
                    api_version: "batch/v1".into(),
                    kind: "Job".into(),
                    name: job.name_any(),
                    uid: job.uid().unwrap(),
                    controller: Some(true),
                    block_owner_deletion: Some(true),
                }]),
                ..ObjectMeta::default()
            },
            spec: None,
            status: Some(PodStatus {
                container_statuses: Some(vec![ContainerStatus {
                    name: CONTAINER_NAME.into(),
                    state: Some(ContainerState {
                        terminated: Some(ContainerStateTerminated {
                            exit_code: exit,
                            reason: Some(if exit == 0 { "Completed" } else { "Error" }.into()),
                            message: message.map(str::to_owned),
                            finished_at: Some(time("2025-08-17T06:05:00Z")),
                            ..ContainerStateTerminated::default()
                        }),
                        ..ContainerState::default()
                    }),
                    ..ContainerStatus::default()
                }]),
                ..PodStatus::default()
            }),
        })
    }

    fn workflow(name: &str, state: Option<WorkflowState>, created: &str) -> Arc<QmsWorkflow> {
        let mut wf = QmsWorkflow::new(
            name,
            QmsWorkflowSpec {
                repository: "creo/app".into(),
                pull_request: 1,
                head_sha: "abcdef1".into(),
                base_ref: "main".into(),
                head_ref: String::new(),
                template_ref: TemplateRef { name: "t".into() },
                approvals: vec![],
                overrides: vec![],
                retry: None,
                merge_group: None,
                push: None,
            },
        );
        wf.metadata.namespace = Some("ns".into());
        wf.metadata.uid = Some(format!("{name}-uid"));
        wf.metadata.creation_timestamp = Some(time(created));
        wf.status = state.map(|state| QmsWorkflowStatus {
            state,
            ..QmsWorkflowStatus::default()
        });
        Arc::new(wf)
    }

    #[test]
    fn succeeded_job_carries_the_pod_result() {
        let j = job(
            "j1",
            "wf",
            "a",
            Some(("Complete", "CompletionsReached", "2025-08-17T06:05:01Z")),
        );
        let p = pod(&j, 0, Some(r#"{"status":"success"}"#));
        let (obs, recheck) = observe_job(&j, &[&p], now());
        assert_eq!(obs.phase, JobPhase::Succeeded);
        assert_eq!(
            obs.termination_message.as_deref(),
            Some(r#"{"status":"success"}"#)
        );
        assert_eq!(obs.exit_code, Some(0));
        assert_eq!(obs.labels[AGENT_LABEL], "a");
        assert!(obs.finished_at.is_some());
        assert!(recheck.is_none());
    }

    #[test]
    fn deadline_exceeded_is_a_failure_with_that_reason() {
        let j = job(
            "j1",
            "wf",
            "a",
            Some(("Failed", "DeadlineExceeded", "2025-08-17T06:09:59Z")),
        );
        let (obs, recheck) = observe_job(&j, &[], now());
        assert_eq!(obs.phase, JobPhase::Failed);
        assert_eq!(obs.reason.as_deref(), Some("DeadlineExceeded"));
        assert!(
            recheck.is_none(),
            "a timed-out Job has no result to wait for"
        );
    }

    #[test]
    fn finished_job_without_cached_pod_waits_briefly_for_the_result() {
        let j = job(
            "j1",
            "wf",
            "a",
            Some(("Complete", "CompletionsReached", "2025-08-17T06:09:58Z")),
        );
        let (obs, recheck) = observe_job(&j, &[], now());
        assert_eq!(obs.phase, JobPhase::Active, "result not cached yet");
        assert!(recheck.is_some_and(|d| d <= POD_RESULT_GRACE));
        // long after, the Job is reported finished without a result (the engine fails closed)
        let later = now() + chrono::Duration::seconds(30);
        let (obs, recheck) = observe_job(&j, &[], later);
        assert_eq!(obs.phase, JobPhase::Succeeded);
        assert!(obs.termination_message.is_none() && recheck.is_none());
    }

    fn task(job: &str, phase: TaskPhase) -> qms_api::TaskStatus {
        qms_api::TaskStatus {
            job_name: job.into(),
            agent: "a".into(),
            selector: "a".into(),
            attempt: 1,
            phase,
            started_at: None,
            finished_at: None,
            result: None,
            message: String::new(),
        }
    }

    #[test]
    fn finished_jobs_without_a_cached_result_are_read_from_the_api() {
        let wf = workflow(
            "wf",
            Some(WorkflowState::DorPending),
            "2025-08-17T06:00:00Z",
        );
        let done = |name| {
            job(
                name,
                "wf",
                "a",
                Some(("Complete", "CompletionsReached", "2025-08-17T06:05:01Z")),
            )
        };
        let (cached, uncached, running) = (
            done("j-cached"),
            done("j-uncached"),
            job("j-running", "wf", "a", None),
        );
        let other = job(
            "j-other",
            "other-wf",
            "a",
            Some(("Complete", "CompletionsReached", "2025-08-17T06:05:01Z")),
        );
        let jobs = [cached.clone(), uncached.clone(), running, other];
        let pods = [pod(&cached, 0, Some("{}"))];
        assert_eq!(jobs_awaiting_pod_result(&wf, &jobs, &pods), ["j-uncached"]);

        // Once status holds the task's outcome, its Pod is not needed any more.
        let mut wf = (*wf).clone();
        let status = wf.status.get_or_insert_with(Default::default);
        status.steps.push(qms_api::StepStatus {
            name: "check".into(),
            tasks: vec![task("j-uncached", TaskPhase::Succeeded)],
            ..Default::default()
        });
        assert!(jobs_awaiting_pod_result(&wf, &jobs, &pods).is_empty());
    }

    #[test]
    fn running_tasks_whose_job_is_not_cached_are_read_from_the_api() {
        let mut wf = (*workflow(
            "wf",
            Some(WorkflowState::DorPending),
            "2025-08-17T06:00:00Z",
        ))
        .clone();
        wf.status.as_mut().unwrap().steps.push(qms_api::StepStatus {
            name: "check".into(),
            tasks: vec![
                task("j-cached", TaskPhase::Running),
                task("j-uncached", TaskPhase::Running),
                task("j-just-created", TaskPhase::Running),
                task("j-waiting-for-capacity", TaskPhase::Pending),
                task("j-done", TaskPhase::Succeeded),
            ],
            ..Default::default()
        });
        // A Job of the same name owned by another workflow does not count as cached.
        let jobs = [
            job("j-cached", "wf", "a", None),
            job("j-uncached", "other", "a", None),
        ];
        let expected = ["j-just-created".to_owned()];
        assert_eq!(uncached_task_jobs(&wf, &jobs, &expected), ["j-uncached"]);
        wf.status = None;
        assert!(uncached_task_jobs(&wf, &jobs, &expected).is_empty());
    }

    #[test]
    fn only_running_jobs_deleted_for_a_timeout_are_confirmed() {
        let obs = |name: &str, phase| JobObservation {
            name: name.into(),
            phase,
            labels: BTreeMap::new(),
            created_at: None,
            finished_at: None,
            termination_message: None,
            exit_code: None,
            reason: None,
            deleting: false,
            stored_result: None,
        };
        let jobs = BTreeMap::from([
            ("a".to_owned(), obs("a", JobPhase::Active)),
            ("b".to_owned(), obs("b", JobPhase::Active)),
            ("c".to_owned(), obs("c", JobPhase::Succeeded)),
            ("d".to_owned(), obs("d", JobPhase::Active)),
        ]);
        let delete = |job: &str, reason: &str| qms_engine::Action::DeleteJob {
            job_name: job.into(),
            reason: reason.into(),
        };
        let actions = [
            delete("a", "TaskTimedOut"),
            delete("b", "Superseded"),
            delete("c", "StepTimeout"),
            delete("d", "RunTimeout"),
        ];
        assert_eq!(timeouts_to_confirm(&actions, &jobs), ["a", "d"]);
    }

    #[test]
    fn failed_job_reports_exit_code_and_logs_fallback_message() {
        let j = job(
            "j1",
            "wf",
            "a",
            Some(("Failed", "BackoffLimitExceeded", "2025-08-17T06:05:01Z")),
        );
        let p = pod(&j, 3, Some("boom"));
        let (obs, _) = observe_job(&j, &[&p], now());
        assert_eq!(obs.phase, JobPhase::Failed);
        assert_eq!(obs.exit_code, Some(3));
        assert_eq!(obs.reason.as_deref(), Some("BackoffLimitExceeded"));
        assert_eq!(obs.termination_message.as_deref(), Some("boom"));
    }

    #[test]
    fn workflow_jobs_are_selected_by_label_and_owner() {
        let wf = workflow(
            "wf",
            Some(WorkflowState::DorPending),
            "2025-08-17T06:00:00Z",
        );
        let mine = job("j1", "wf", "a", None);
        let other = job("j2", "other", "a", None);
        let mut stale = (*job("j3", "wf", "a", None)).clone();
        stale.metadata.owner_references.as_mut().unwrap()[0].uid = "old-uid".into();
        let (jobs, _) = workflow_jobs(&wf, &[mine, other, Arc::new(stale)], &[], now());
        assert_eq!(jobs.keys().collect::<Vec<_>>(), ["j1"]);
    }

    #[test]
    fn agent_load_counts_live_jobs_across_workflows_and_in_flight_creations() {
        let agent: Arc<Agent> = Arc::new({
            let mut a = Agent::new(
                "a",
                serde_json::from_value(serde_json::json!({
                    "capabilities": ["x"], "loadCapacity": 2,
                    "health": {"failureThreshold": 2, "window": "10m"},
                    "job": {"image": "busybox"}
                }))
                .unwrap(),
            );
            a.metadata.namespace = Some("ns".into());
            a
        });
        let jobs = vec![
            job("j1", "wf1", "a", None),
            job("j2", "wf2", "a", None),
            job("j3", "wf2", "b", None),
            job(
                "j4",
                "wf3",
                "a",
                Some(("Complete", "CompletionsReached", "2025-08-17T06:05:00Z")),
            ),
            job(
                "j5",
                "wf3",
                "a",
                Some(("Failed", "DeadlineExceeded", "2025-08-17T06:05:00Z")),
            ),
            // outside the 10m window: does not count against health
            job(
                "j6",
                "wf3",
                "a",
                Some(("Failed", "DeadlineExceeded", "2025-08-17T05:00:00Z")),
            ),
        ];
        let views = agent_views(
            "ns",
            std::slice::from_ref(&agent),
            &jobs,
            &HashMap::new(),
            now(),
        );
        assert_eq!(views["a"].running, 2);
        assert!(views["a"].healthy, "one recent failure < threshold 2");
        let in_flight = HashMap::from([("a".to_owned(), 1)]);
        let views = agent_views("ns", &[agent], &jobs, &in_flight, now());
        assert_eq!(views["a"].running, 3);
        let stats = agent_stats("ns", "a", Duration::from_secs(600), &jobs, now());
        assert_eq!((stats.recent_failures, stats.recent_successes), (1, 1));
        assert_eq!(stats.success_rate(), Some(0.5));
    }

    /// A workflow in `state` whose current step is in `phase` (an earlier step succeeded).
    fn at_step(name: &str, state: WorkflowState, phase: qms_api::StepPhase) -> Arc<QmsWorkflow> {
        let mut wf = (*workflow(name, Some(state), "2025-08-17T05:00:00Z")).clone();
        let status = wf.status.as_mut().unwrap();
        status.run = 1;
        status.steps = vec![
            qms_api::StepStatus {
                name: "check".into(),
                phase: qms_api::StepPhase::Succeeded,
                ..Default::default()
            },
            qms_api::StepStatus {
                name: "final".into(),
                phase,
                ..Default::default()
            },
        ];
        Arc::new(wf)
    }

    #[test]
    fn workflows_waiting_for_a_person_leave_their_slot_to_the_queue() {
        use qms_api::StepPhase::{Backoff, Pending, Running, WaitingForApproval};
        let approval = at_step("a", WorkflowState::FinalPending, WaitingForApproval);
        let running = at_step("r", WorkflowState::FinalPending, Running);
        let backoff = at_step("b", WorkflowState::FinalPending, Backoff);
        // Approved, its next step (with agents) not begun: waits like a new one.
        let resumed = at_step("p", WorkflowState::ProgressPending, Pending);
        assert!(!occupies_slot(&approval) && !waits_for_slot(&approval));
        assert!(occupies_slot(&running) && occupies_slot(&backoff));
        assert!(waits_for_slot(&resumed) && !occupies_slot(&resumed));
        let mut deleting = (*running).clone();
        deleting.metadata.deletion_timestamp = Some(time("2025-08-17T06:00:00Z"));
        assert_eq!(slot_use(&deleting), SlotUse::None);

        let w: Vec<Arc<QmsWorkflow>> = (1..=4)
            .map(|i| workflow(&format!("w{i}"), None, &format!("2025-08-17T06:00:0{i}Z")))
            .collect();
        let mut all = vec![approval.clone(), approval.clone(), running.clone()];
        all.extend(w.iter().cloned());
        let none = Default::default();
        // Two slots: one held by `running`; the approval waiters hold none: w1 gets the other.
        let offer = slot_offer(&w[0], &all, &none, 2);
        assert_eq!((offer.available, offer.place), (true, None));
        let offer = slot_offer(&w[2], &all, &none, 2);
        assert!(!offer.available);
        assert_eq!(
            offer.place,
            Some(QueuePlace {
                position: 3,
                waiting: 4,
                limit: 2
            })
        );
        // The approval waiter that needs a slot again (a new SHA) queues behind older waiters
        // only: it was created first, so it is first in line.
        let offer = slot_offer(&approval, &all, &none, 2);
        assert!(offer.available);
        let offer = slot_offer(&approval, &all, &none, 1);
        assert_eq!(
            offer.place,
            Some(QueuePlace {
                position: 1,
                waiting: 5,
                limit: 1
            })
        );
        // A freed slot wakes only who gets it: the oldest waiting ones that fit.
        let names = |v: Vec<Arc<QmsWorkflow>>| v.iter().map(|w| w.name_any()).collect::<Vec<_>>();
        assert_eq!(names(first_in_line(&all, &none, 2)), ["w1"]);
        assert_eq!(names(first_in_line(&all, &none, 4)), ["w1", "w2", "w3"]);
        assert!(first_in_line(&all, &none, 1).is_empty());
        // w1 admitted (status write not cached yet): it holds its slot; w2 is next.
        let admitted = std::collections::HashSet::from(["w1-uid".to_owned()]);
        assert_eq!(names(first_in_line(&all, &admitted, 3)), ["w2"]);
        let offer = slot_offer(&w[1], &all, &admitted, 2);
        assert_eq!(offer.place.map(|p| (p.position, p.waiting)), Some((1, 3)));
        // What a decision takes.
        assert!(takes_slot(&approval, running.status.as_ref().unwrap()));
        assert!(!takes_slot(&running, running.status.as_ref().unwrap()));
        assert!(!takes_slot(&w[0], approval.status.as_ref().unwrap()));
    }

    #[test]
    fn slots_go_to_the_oldest_waiting_workflows() {
        let running = workflow("r", Some(WorkflowState::DorPending), "2025-08-17T05:00:00Z");
        let done = workflow("d", Some(WorkflowState::Completed), "2025-08-17T05:00:00Z");
        let w1 = workflow("w1", None, "2025-08-17T06:00:01Z");
        let w2 = workflow(
            "w2",
            Some(WorkflowState::Initialized),
            "2025-08-17T06:00:02Z",
        );
        let all = vec![running.clone(), done, w1.clone(), w2.clone()];
        let none = Default::default();
        assert!(
            slot_available(&running, &all, &none, 1),
            "a running workflow keeps its slot"
        );
        assert!(!slot_available(&w1, &all, &none, 1));
        assert!(slot_available(&w1, &all, &none, 2));
        assert!(!slot_available(&w2, &all, &none, 2), "w1 is ahead");
        assert!(slot_available(&w2, &all, &none, 3));
        // w1 admitted but its status not cached yet: it counts as running
        let admitted = std::collections::HashSet::from(["w1-uid".to_owned()]);
        assert!(!slot_available(&w2, &all, &admitted, 2));
        assert!(slot_available(&w1, &all, &admitted, 2));
    }
}
