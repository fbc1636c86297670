//! The lagging-watch reads of the observe stage: what the caches lack for a sound decision, read
//! from the API server.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::Utc;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube::{Api, ResourceExt};
use qms_api::{BaselineValue, QmsWorkflow, TaskResultSummary};
use qms_engine::{JobObservation, JobPhase};

use crate::context::{EXPECTATION_TRUSTED, Shared, Stores};
use crate::error::Error;
use crate::jobs::JOB_NAME_LABEL;
use crate::metrics::CacheGapKind;
use crate::observe;

/// What the reads outside the caches found: Jobs and Pods the caches do not hold yet, and the
/// base branch's baselines (QualityBaseline objects are read, not watched: one GET, and only when
/// a gate of the namespace uses them).
#[derive(Clone, Default)]
pub struct CacheGaps {
    pub jobs: Vec<Arc<Job>>,
    pub pods: Vec<Arc<Pod>>,
    pub baselines: BTreeMap<String, BaselineValue>,
    /// Results stored through the result endpoint by tasks whose Job has finished, by Job name.
    pub stored: BTreeMap<String, TaskResultSummary>,
}

/// [`read_cache_gaps`] for `wf` against the caches in `stores`. A Job we created only moments ago
/// is taken on trust ([`EXPECTATION_TRUSTED`]) instead of being read.
pub async fn read(shared: &Shared, stores: &Stores, wf: &QmsWorkflow) -> Result<CacheGaps, Error> {
    let uid = wf.uid().unwrap_or_default();
    let trusted: Vec<String> = shared
        .expected_for(&uid)
        .into_iter()
        .filter(|(_, e)| e.at.elapsed() < EXPECTATION_TRUSTED)
        .map(|(name, _)| name)
        .collect();
    let (jobs, pods) = read_cache_gaps(
        shared,
        wf,
        &stores.jobs.state(),
        &stores.pods.state(),
        &trusted,
    )
    .await?;
    let baselines = crate::baselines::for_workflow(shared, wf, &stores.gates.state()).await?;
    let stored = {
        let mut known = stores.jobs.state();
        known.extend(jobs.iter().cloned());
        crate::results::stored_results(shared, wf, &known).await?
    };
    Ok(CacheGaps {
        jobs,
        pods,
        baselines,
        stored,
    })
}

/// Reads from the API server what the caches lack for a sound decision: the Jobs of running
/// tasks that the Job cache does not hold ([`observe::uncached_task_jobs`]), and the Pods of
/// finished Jobs whose result the Pod cache does not hold ([`observe::jobs_awaiting_pod_result`]).
/// A watch in backoff after API errors can lag for many seconds; deciding on it would declare a
/// Job lost or a result missing for a task that succeeded. An error fails the reconcile (retried
/// with backoff) instead.
pub async fn read_cache_gaps(
    shared: &Shared,
    wf: &QmsWorkflow,
    jobs: &[Arc<Job>],
    pods: &[Arc<Pod>],
    trusted: &[String],
) -> Result<(Vec<Arc<Job>>, Vec<Arc<Pod>>), Error> {
    let ns = wf.namespace().unwrap_or_default();
    let mut read_jobs = Vec::new();
    let uncached = observe::uncached_task_jobs(wf, jobs, trusted);
    if !uncached.is_empty() {
        let api: Api<Job> = Api::namespaced(shared.client.clone(), &ns);
        for name in &uncached {
            let job = api.get_opt(name).await?;
            shared.metrics.cache_gap_read(CacheGapKind::job);
            tracing::debug!(job = %name, found = job.is_some(), "read a Job the cache lacks");
            read_jobs.extend(job.map(Arc::new));
        }
    }
    let all_jobs: Vec<Arc<Job>> = jobs.iter().chain(&read_jobs).cloned().collect();
    let mut read_pods = Vec::new();
    let awaiting = observe::jobs_awaiting_pod_result(wf, &all_jobs, pods);
    for job in &awaiting {
        let pods = read_job_pods(shared, &ns, job).await?;
        shared.metrics.cache_gap_read(CacheGapKind::pods);
        tracing::debug!(%job, pods = pods.len(), "read the Pods of a finished Job the cache lacks");
        read_pods.extend(pods.into_iter().map(Arc::new));
    }
    Ok((read_jobs, read_pods))
}

/// The Pods of Job `job`, by the label the Job controller sets (ownership is checked by the caller).
pub async fn read_job_pods(shared: &Shared, ns: &str, job: &str) -> Result<Vec<Pod>, Error> {
    let api: Api<Pod> = Api::namespaced(shared.client.clone(), ns);
    let lp = ListParams::default().labels(&format!("{JOB_NAME_LABEL}={job}"));
    Ok(api.list(&lp).await?.items)
}

/// Reads the Jobs named in `names` (and, when finished, their Pods) from the API server and
/// replaces their observation in `jobs` when they are not running any more. True when one was.
pub async fn confirm_running(
    shared: &Shared,
    ns: &str,
    names: &[String],
    jobs: &mut BTreeMap<String, JobObservation>,
    now: chrono::DateTime<Utc>,
) -> Result<bool, Error> {
    let job_api: Api<Job> = Api::namespaced(shared.client.clone(), ns);
    let mut changed = false;
    for name in names {
        shared
            .metrics
            .cache_gap_read(CacheGapKind::job_before_timeout);
        let Some(job) = job_api.get_opt(name).await? else {
            continue;
        };
        if observe::job_phase(&job) == JobPhase::Active {
            continue;
        }
        let pods = read_job_pods(shared, ns, name).await?;
        let pods: Vec<&Pod> = pods
            .iter()
            .filter(|p| observe::pod_of_job(p, &job))
            .collect();
        let (obs, _) = observe::observe_job(&job, &pods, now);
        if obs.phase != JobPhase::Active {
            tracing::info!(job = %name, phase = ?obs.phase, "a Job due for a timeout had finished; the cache had not caught up");
            jobs.insert(name.clone(), obs);
            changed = true;
        }
    }
    Ok(changed)
}
