//! The Job controller stand-in (kube-controller-manager's `job-controller`): Jobs become Pods and
//! the Job status follows the Pods, as Kubernetes 1.35 writes it.
//!
//! Everything is derived from the live Job and its live Pods on every reconcile, so a restarted
//! controller picks up where the previous one stopped and never creates a second pod for an
//! attempt whose pod exists.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::batch::v1::{Job, JobCondition, JobSpec, JobStatus, UncountedTerminatedPods};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use tracing::{debug, info, warn};

use crate::pod_status::now;

pub const LABEL_JOB_NAME: &str = "batch.kubernetes.io/job-name";
pub const LABEL_CONTROLLER_UID: &str = "batch.kubernetes.io/controller-uid";
pub const LEGACY_LABEL_JOB_NAME: &str = "job-name";
pub const LEGACY_LABEL_CONTROLLER_UID: &str = "controller-uid";

pub(crate) const REASON_BACKOFF: &str = "BackoffLimitExceeded";
pub(crate) const MESSAGE_BACKOFF: &str = "Job has reached the specified backoff limit";
pub(crate) const REASON_DEADLINE: &str = "DeadlineExceeded";
pub(crate) const MESSAGE_DEADLINE: &str = "Job was active longer than specified deadline";
pub(crate) const REASON_COMPLETIONS: &str = "CompletionsReached";
pub(crate) const MESSAGE_COMPLETIONS: &str = "Reached expected number of succeeded pods";

#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    #[error(transparent)]
    Kube(#[from] kube::Error),
}

struct Ctx {
    client: Client,
}

pub(crate) async fn run(client: Client) {
    let jobs: Api<Job> = Api::all(client.clone());
    let pods: Api<Pod> = Api::all(client.clone());
    Controller::new(jobs, watcher::Config::default())
        .owns(pods, watcher::Config::default())
        .run(reconcile, error_policy, Arc::new(Ctx { client }))
        .for_each(|res| async move {
            if let Err(e) = res {
                debug!(error = %e, "job-controller: reconcile error");
            }
        })
        .await;
}

fn error_policy(job: Arc<Job>, err: &Error, _ctx: Arc<Ctx>) -> Action {
    debug!(job = %job.name_any(), error = %err, "job-controller: will retry");
    Action::requeue(Duration::from_millis(300))
}

/// What the live pods of a Job say.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct PodCounts {
    pub active: i32,
    pub ready: i32,
    pub terminating: i32,
    pub succeeded: i32,
    pub failed: i32,
    /// Sum of container restarts of active pods (restartPolicy OnFailure counts these).
    pub restarts: i32,
}

pub(crate) fn count_pods(pods: &[Pod]) -> PodCounts {
    let mut c = PodCounts::default();
    for p in pods {
        let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
        match phase {
            Some("Succeeded") => c.succeeded += 1,
            Some("Failed") => c.failed += 1,
            _ if p.metadata.deletion_timestamp.is_some() => c.terminating += 1,
            _ => {
                c.active += 1;
                let status = p.status.as_ref();
                let ready = status
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
                if ready {
                    c.ready += 1;
                }
                c.restarts += status
                    .and_then(|s| s.container_statuses.as_ref())
                    .map(|cs| cs.iter().map(|c| c.restart_count).sum::<i32>())
                    .unwrap_or(0);
            }
        }
    }
    c
}

fn has_condition(status: &JobStatus, type_: &str) -> bool {
    status
        .conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == type_ && c.status == "True")
}

fn condition_of<'a>(status: &'a JobStatus, type_: &str) -> Option<&'a JobCondition> {
    status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == type_ && c.status == "True")
}

/// Sets (or replaces) a condition; the transition time only moves when the status changes.
fn set_condition(status: &mut JobStatus, type_: &str, value: &str, reason: &str, message: &str) {
    let now = now();
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    if let Some(c) = conditions.iter_mut().find(|c| c.type_ == type_) {
        if c.status == value
            && c.reason.as_deref() == Some(reason)
            && c.message.as_deref() == Some(message)
        {
            return;
        }
        if c.status != value {
            c.last_transition_time = Some(now.clone());
        }
        c.status = value.to_owned();
        c.reason = Some(reason.to_owned());
        c.message = Some(message.to_owned());
        c.last_probe_time = Some(now);
    } else {
        conditions.push(JobCondition {
            type_: type_.to_owned(),
            status: value.to_owned(),
            reason: Some(reason.to_owned()),
            message: Some(message.to_owned()),
            last_probe_time: Some(now.clone()),
            last_transition_time: Some(now),
        });
    }
}

fn nonzero(n: i32) -> Option<i32> {
    (n != 0).then_some(n)
}

fn millis_until(t: &Time, after_seconds: i64) -> i64 {
    t.0.as_millisecond() + after_seconds.saturating_mul(1000)
        - k8s_openapi::jiff::Timestamp::now().as_millisecond()
}

/// The pod the Job controller creates for one attempt.
pub(crate) fn pod_for(job: &Job) -> Option<Pod> {
    let name = job.metadata.name.clone()?;
    let uid = job.metadata.uid.clone()?;
    let template = job.spec.as_ref()?.template.clone();
    let spec = template.spec?;
    let tmeta = template.metadata.unwrap_or_default();
    let mut labels: BTreeMap<String, String> = tmeta.labels.unwrap_or_default();
    labels.insert(LABEL_CONTROLLER_UID.into(), uid.clone());
    labels.insert(LABEL_JOB_NAME.into(), name.clone());
    labels.insert(LEGACY_LABEL_CONTROLLER_UID.into(), uid.clone());
    labels.insert(LEGACY_LABEL_JOB_NAME.into(), name.clone());
    Some(Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{name}-")),
            namespace: job.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: tmeta.annotations,
            owner_references: Some(vec![OwnerReference {
                api_version: "batch/v1".into(),
                kind: "Job".into(),
                name,
                uid,
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]),
            ..ObjectMeta::default()
        },
        spec: Some(spec),
        status: None,
    })
}

fn owned_by(pod: &Pod, uid: &str) -> bool {
    pod.metadata
        .owner_references
        .iter()
        .flatten()
        .any(|o| o.uid == uid && o.controller == Some(true))
}

/// One reconcile's handles on a live Job.
struct Live<'a> {
    jobs: Api<Job>,
    pods: Api<Pod>,
    name: &'a str,
    uid: &'a str,
    job: &'a Job,
}

/// What a reconcile decided beyond the new status: delete the active pods, look again later.
#[derive(Default)]
struct Plan {
    delete_active: bool,
    requeue: Option<Duration>,
}

async fn reconcile(job: Arc<Job>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let ns = job.namespace().unwrap_or_else(|| "default".into());
    let name = job.name_any();
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
    // Work from the live object, not the (possibly older) cached one.
    let Some(job) = jobs.get_opt(&name).await? else {
        return Ok(Action::await_change());
    };
    if job.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let Some(uid) = job.uid() else {
        return Ok(Action::await_change());
    };
    let Some(spec) = job.spec.clone() else {
        warn!(job = %name, "job-controller: Job without spec skipped");
        return Ok(Action::await_change());
    };
    let live = Live {
        jobs,
        pods: Api::namespaced(ctx.client.clone(), &ns),
        name: &name,
        uid: &uid,
        job: &job,
    };
    let old_status = job.status.clone().unwrap_or_default();
    let mut status = old_status.clone();

    let pods = live.owned_pods().await?;
    let counts = count_pods(&pods);
    let succeeded = counts.succeeded.max(old_status.succeeded.unwrap_or(0));
    let failed = counts.failed.max(old_status.failed.unwrap_or(0));
    let active_pods = active(&pods);

    let plan = if has_condition(&status, "Complete") || has_condition(&status, "Failed") {
        match live.expire(&spec, &status).await? {
            Some(requeue) => Plan {
                delete_active: true,
                requeue,
            },
            None => return Ok(Action::await_change()),
        }
    } else if spec.suspend == Some(true) {
        set_condition(
            &mut status,
            "Suspended",
            "True",
            "JobSuspended",
            "Job suspended",
        );
        Plan {
            delete_active: true,
            requeue: None,
        }
    } else {
        live.progress(&spec, &mut status, &counts, succeeded, failed)
            .await?
    };

    if plan.delete_active {
        live.delete_pods(&active_pods).await?;
    }
    set_counts(
        &mut status,
        &counts,
        (succeeded, failed),
        plan.delete_active.then_some(active_pods.len()),
    );
    if status != old_status {
        let mut updated = job.clone();
        updated.status = Some(status);
        live.jobs
            .replace_status(&name, &PostParams::default(), &updated)
            .await?;
    }
    Ok(plan
        .requeue
        .map_or_else(Action::await_change, Action::requeue))
}

/// The pods not terminating and not finished.
fn active(pods: &[Pod]) -> Vec<&Pod> {
    pods.iter()
        .filter(|p| {
            p.metadata.deletion_timestamp.is_none()
                && !matches!(
                    p.status.as_ref().and_then(|s| s.phase.as_deref()),
                    Some("Succeeded" | "Failed")
                )
        })
        .collect()
}

/// The counters of the status. Re-counting after our own deletions would need another list; the
/// pod events bring us back. `deleted`: how many active pods this reconcile deleted, if it did.
fn set_counts(
    status: &mut JobStatus,
    counts: &PodCounts,
    (succeeded, failed): (i32, i32),
    deleted: Option<usize>,
) {
    let delete_active = deleted.is_some();
    status.active = nonzero(if delete_active { 0 } else { counts.active });
    status.ready = Some(if delete_active { 0 } else { counts.ready });
    status.terminating = Some(counts.terminating + deleted.map_or(0, |n| n as i32));
    status.succeeded = nonzero(succeeded);
    status.failed = nonzero(failed);
    status.uncounted_terminated_pods = Some(UncountedTerminatedPods::default());
}

/// The limits of a running Job's spec.
struct Limits {
    parallelism: i32,
    /// `None` for a work-queue Job (parallelism without completions).
    completions: Option<i32>,
    backoff_limit: i32,
    on_failure: bool,
}

impl Limits {
    fn of(spec: &JobSpec) -> Self {
        Self {
            parallelism: spec.parallelism.unwrap_or(1).max(0),
            completions: match (spec.completions, spec.parallelism) {
                (Some(c), _) => Some(c.max(0)),
                (None, Some(_)) => None, // work-queue Job
                (None, None) => Some(1),
            },
            backoff_limit: spec.backoff_limit.unwrap_or(6).max(0),
            on_failure: spec
                .template
                .spec
                .as_ref()
                .and_then(|s| s.restart_policy.as_deref())
                == Some("OnFailure"),
        }
    }
}

/// Why a running Job fails, if it does: a failure target set earlier, the backoff limit, or the
/// active deadline (`requeue` is set to when the deadline passes while it has not).
fn failure(
    spec: &JobSpec,
    status: &JobStatus,
    counts: &PodCounts,
    failed: i32,
    limits: &Limits,
    requeue: &mut Option<Duration>,
) -> Option<(String, String)> {
    let failure_target = condition_of(status, "FailureTarget").map(|c| {
        (
            c.reason.clone().unwrap_or_default(),
            c.message.clone().unwrap_or_default(),
        )
    });
    failure_target.or_else(|| {
        if has_condition(status, "SuccessCriteriaMet") {
            return None;
        }
        let restarts_exceeded = limits.on_failure
            && counts.restarts > 0
            && counts.restarts >= limits.backoff_limit.max(1);
        if failed > limits.backoff_limit || restarts_exceeded {
            return Some((REASON_BACKOFF.to_owned(), MESSAGE_BACKOFF.to_owned()));
        }
        if let (Some(ads), Some(start)) = (spec.active_deadline_seconds, &status.start_time) {
            let left = millis_until(start, ads);
            if left <= 0 {
                return Some((REASON_DEADLINE.to_owned(), MESSAGE_DEADLINE.to_owned()));
            }
            *requeue = Some(Duration::from_millis(u64::try_from(left).unwrap_or(0)));
        }
        None
    })
}

impl Live<'_> {
    /// The Job's pods (by controller-uid label, and controlled by this Job).
    async fn owned_pods(&self) -> Result<Vec<Pod>, Error> {
        Ok(self
            .pods
            .list(&ListParams::default().labels(&format!("{LABEL_CONTROLLER_UID}={}", self.uid)))
            .await?
            .items
            .into_iter()
            .filter(|p| owned_by(p, self.uid))
            .collect())
    }

    /// A finished Job under `ttlSecondsAfterFinished`: deleted once the TTL passed (`None`),
    /// else when to look again.
    async fn expire(
        &self,
        spec: &JobSpec,
        status: &JobStatus,
    ) -> Result<Option<Option<Duration>>, Error> {
        let Some(ttl) = spec.ttl_seconds_after_finished else {
            return Ok(Some(None));
        };
        let finished_at = status.completion_time.clone().or_else(|| {
            condition_of(status, "Failed").and_then(|c| c.last_transition_time.clone())
        });
        let Some(at) = finished_at else {
            return Ok(Some(None));
        };
        let left = millis_until(&at, i64::from(ttl));
        if left > 0 {
            return Ok(Some(Some(Duration::from_millis(
                u64::try_from(left).unwrap_or(0),
            ))));
        }
        info!(job = %self.name, "job-controller: ttlSecondsAfterFinished reached; deleting");
        match self
            .jobs
            .delete(self.name, &DeleteParams::background())
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
        Ok(None)
    }

    /// A running (not suspended) Job: start/resume time, then failed, complete, or the missing
    /// pods created.
    async fn progress(
        &self,
        spec: &JobSpec,
        status: &mut JobStatus,
        counts: &PodCounts,
        succeeded: i32,
        failed: i32,
    ) -> Result<Plan, Error> {
        if has_condition(status, "Suspended") {
            set_condition(status, "Suspended", "False", "JobResumed", "Job resumed");
            status.start_time = Some(now());
        }
        if status.start_time.is_none() {
            status.start_time = Some(now());
        }
        let limits = Limits::of(spec);
        let mut requeue = None;
        let failure = failure(spec, status, counts, failed, &limits, &mut requeue);
        let complete = failure.is_none()
            && (has_condition(status, "SuccessCriteriaMet")
                || match limits.completions {
                    Some(c) => succeeded >= c,
                    None => succeeded > 0 && counts.active == 0,
                });
        let settled = counts.active == 0 && counts.terminating == 0;
        if let Some((reason, message)) = failure {
            set_condition(status, "FailureTarget", "True", &reason, &message);
            if settled {
                set_condition(status, "Failed", "True", &reason, &message);
                info!(job = %self.name, %reason, "job-controller: Job failed");
            }
            return Ok(Plan {
                delete_active: true,
                requeue: None,
            });
        }
        if complete {
            set_condition(
                status,
                "SuccessCriteriaMet",
                "True",
                REASON_COMPLETIONS,
                MESSAGE_COMPLETIONS,
            );
            if settled {
                set_condition(
                    status,
                    "Complete",
                    "True",
                    REASON_COMPLETIONS,
                    MESSAGE_COMPLETIONS,
                );
                status.completion_time = Some(now());
                info!(job = %self.name, "job-controller: Job complete");
            }
            return Ok(Plan {
                delete_active: true,
                requeue: None,
            });
        }
        let wanted = match limits.completions {
            Some(c) => limits.parallelism.min((c - succeeded).max(0)),
            None => {
                if succeeded > 0 {
                    0
                } else {
                    limits.parallelism
                }
            }
        };
        self.create_pods(wanted - counts.active).await?;
        Ok(Plan {
            delete_active: false,
            requeue,
        })
    }

    /// Creates `missing` pods (none when `missing <= 0`).
    async fn create_pods(&self, missing: i32) -> Result<(), Error> {
        // The Job may have been deleted since it was read (its pods garbage-collected):
        // a pod created now would be an orphan, so look again right before creating.
        let still_there = missing > 0
            && self.jobs.get_opt(self.name).await?.is_some_and(|j| {
                j.uid().as_deref() == Some(self.uid) && j.metadata.deletion_timestamp.is_none()
            });
        if !still_there {
            return Ok(());
        }
        let Some(pod) = pod_for(self.job) else {
            warn!(job = %self.name, "job-controller: Job has no pod template spec; skipped");
            return Ok(());
        };
        for _ in 0..missing {
            let created = self.pods.create(&PostParams::default(), &pod).await?;
            info!(job = %self.name, pod = %created.name_any(), "job-controller: created pod");
        }
        Ok(())
    }

    async fn delete_pods(&self, pods: &[&Pod]) -> Result<(), Error> {
        for p in pods {
            match self
                .pods
                .delete(&p.name_any(), &DeleteParams::default())
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::batch::v1::JobSpec;
    use k8s_openapi::api::core::v1::{Container, PodSpec, PodStatus, PodTemplateSpec};

    fn job() -> Job {
        Job {
            metadata: ObjectMeta {
                name: Some("build".into()),
                namespace: Some("ci".into()),
                uid: Some("uid-1".into()),
                ..ObjectMeta::default()
            },
            spec: Some(JobSpec {
                template: PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(BTreeMap::from([("app".into(), "x".into())])),
                        ..ObjectMeta::default()
                    }),
                    spec: Some(PodSpec {
                        restart_policy: Some("Never".into()),
                        containers: vec![Container {
                            name: "main".into(),
                            ..Container::default()
                        }],
                        ..PodSpec::default()
                    }),
                },
                ..JobSpec::default()
            }),
            status: None,
        }
    }

    #[test]
    fn pod_has_job_labels_and_controller_owner() {
        let pod = pod_for(&job()).unwrap();
        let labels = pod.metadata.labels.unwrap();
        assert_eq!(labels["batch.kubernetes.io/job-name"], "build");
        assert_eq!(labels["job-name"], "build");
        assert_eq!(labels["controller-uid"], "uid-1");
        assert_eq!(labels["batch.kubernetes.io/controller-uid"], "uid-1");
        assert_eq!(labels["app"], "x");
        assert_eq!(pod.metadata.generate_name.as_deref(), Some("build-"));
        let owner = &pod.metadata.owner_references.unwrap()[0];
        assert_eq!(owner.kind, "Job");
        assert_eq!(owner.api_version, "batch/v1");
        assert_eq!(owner.controller, Some(true));
        assert_eq!(owner.block_owner_deletion, Some(true));
    }

    fn pod_in(phase: &str) -> Pod {
        Pod {
            status: Some(PodStatus {
                phase: Some(phase.into()),
                ..PodStatus::default()
            }),
            ..Pod::default()
        }
    }

    #[test]
    fn counts() {
        let c = count_pods(&[
            pod_in("Succeeded"),
            pod_in("Failed"),
            pod_in("Failed"),
            pod_in("Running"),
        ]);
        assert_eq!((c.active, c.succeeded, c.failed), (1, 1, 2));
    }

    #[test]
    fn condition_transition_time_is_stable() {
        let mut s = JobStatus::default();
        set_condition(&mut s, "Suspended", "True", "JobSuspended", "Job suspended");
        let first = s.conditions.as_ref().unwrap()[0]
            .last_transition_time
            .clone();
        set_condition(&mut s, "Suspended", "True", "JobSuspended", "Job suspended");
        assert_eq!(
            s.conditions.as_ref().unwrap()[0].last_transition_time,
            first
        );
        assert_eq!(s.conditions.as_ref().unwrap().len(), 1);
    }
}
