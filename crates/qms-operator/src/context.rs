//! Shared state of the controllers: the caches (one reflector per kind and namespace scope), the
//! trigger channels into the controllers, and the bookkeeping that closes the gap between a
//! write and the moment the cache shows it.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::channel::mpsc::UnboundedSender;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, ResourceExt};
use qms_api::{Agent, QmsWorkflow, QualityGate, WorkflowTemplate};

use crate::config::{LiveSettings, Settings};
use crate::metrics::Metrics;
use crate::observe;

pub use crate::locks::lock;

pub struct Stores {
    pub workflows: Store<QmsWorkflow>,
    pub templates: Store<WorkflowTemplate>,
    pub gates: Store<QualityGate>,
    pub agents: Store<Agent>,
    pub jobs: Store<Job>,
    pub pods: Store<Pod>,
}

pub struct Triggers {
    pub workflows: UnboundedSender<ObjectRef<QmsWorkflow>>,
    pub templates: UnboundedSender<ObjectRef<WorkflowTemplate>>,
    pub gates: UnboundedSender<ObjectRef<QualityGate>>,
    pub agents: UnboundedSender<ObjectRef<Agent>>,
    /// The GitHub check-run sync (its receiver is dropped when GitHub is off, so sends are no-ops).
    pub github: UnboundedSender<ObjectRef<QmsWorkflow>>,
}

/// The kinds cached per scope (for readiness).
pub const KINDS: usize = 6;

/// One namespace (or all namespaces): its caches and the triggers of its controllers.
pub struct Scope {
    pub namespace: Option<String>,
    pub stores: Stores,
    pub triggers: Triggers,
    /// Set when the initial list of each kind is in the cache.
    pub synced: [AtomicBool; KINDS],
}

impl Scope {
    pub fn is_synced(&self) -> bool {
        self.synced.iter().all(|s| s.load(Ordering::Acquire))
    }

    pub fn covers(&self, namespace: &str) -> bool {
        self.namespace.as_deref().is_none_or(|n| n == namespace)
    }

    pub fn trigger_workflow(&self, wf: &QmsWorkflow) {
        let _ = self
            .triggers
            .workflows
            .unbounded_send(ObjectRef::from_obj(wf));
    }
}

/// A workflow given a slot by a decision whose status write the cache may not show yet.
#[derive(Clone, Debug)]
pub struct Admission {
    /// The resourceVersion the decision was based on: while the cache still shows it, the cache
    /// lacks the write (any later version contains it, the write being conditional on this one).
    pub decided_on: Option<String>,
    pub at: Instant,
}

/// A Job created by the operator that the cache may not show yet.
#[derive(Clone, Debug)]
pub struct ExpectedJob {
    pub namespace: String,
    pub workflow_uid: String,
    pub agent: String,
    pub labels: std::collections::BTreeMap<String, String>,
    pub at: Instant,
}

/// How long an expectation is kept at most (the cache shows a created Job long before).
pub const EXPECTATION_TTL: Duration = Duration::from_secs(30);

/// How long a Job we created is taken on trust while the cache does not show it. Older than
/// this, the cache is lagging (a watch in backoff) and the Job is read from the API server.
pub const EXPECTATION_TRUSTED: Duration = Duration::from_secs(5);

pub struct Shared {
    pub client: Client,
    /// The settings as started. The live ones (changed by a reload of the config file) are read
    /// through [`Shared::live`] instead.
    pub settings: Settings,
    /// The live settings in force (swapped whole by `reload`).
    pub live: std::sync::RwLock<Arc<LiveSettings>>,
    pub metrics: Arc<Metrics>,
    /// Publishes Kubernetes Events (kube's `Recorder` semantics, compact memory).
    pub recorder: crate::events::EventRecorder,
    pub scopes: Vec<Arc<Scope>>,
    /// Held while one workflow is observed, decided on and its places reserved (no API call
    /// inside, see `decide::decide_and_reserve`), so that two workflows never both take the last
    /// free slot or the last free place of an agent.
    pub decide_lock: tokio::sync::Mutex<()>,
    /// Workflows given a slot whose status write is not in the cache yet (by uid).
    pub admitted: Mutex<HashMap<String, Admission>>,
    /// Jobs created but not yet in the cache, by (namespace, name).
    pub expected_jobs: Mutex<HashMap<(String, String), ExpectedJob>>,
    /// Workflow uid → the resourceVersion we based our last status write on: seeing it again in the
    /// cache means the cache is behind our own write.
    pub stale_versions: Mutex<HashMap<String, String>>,
    /// Consecutive failures per object key (for the error backoff).
    pub failures: Mutex<HashMap<String, u32>>,
    /// Signals cache readiness changes (see [`Shared::wait_ready`]).
    pub ready_tx: tokio::sync::watch::Sender<bool>,
    /// The GitHub integration, when enabled.
    pub github: Option<Arc<crate::github::Github>>,
    /// Whether this process acts (runs the controllers): always without leader election, while
    /// it holds the Lease with it. Exported as `qms_leader`.
    pub leading: tokio::sync::watch::Sender<bool>,
    /// The task result endpoint's URL and cache (`results`).
    pub results: crate::results::ResultsState,
}

impl Shared {
    /// The live settings in force now (cheap: one read lock and an `Arc` clone).
    pub fn live(&self) -> Arc<LiveSettings> {
        self.live.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Puts `live` in force for every reconcile that starts from now on.
    pub fn set_live(&self, live: LiveSettings) {
        *self.live.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(live);
    }

    /// Re-triggers every cached workflow (the live settings changed: slots, deadlines and
    /// backoffs are decided again).
    pub fn trigger_all_workflows(&self) {
        for scope in &self.scopes {
            for wf in scope.stores.workflows.state() {
                scope.trigger_workflow(&wf);
            }
        }
    }

    /// Whether this process currently runs the controllers (see [`Shared::leading`]).
    pub fn is_leader(&self) -> bool {
        *self.leading.borrow()
    }

    /// A standby (leader election on, Lease held by another replica).
    pub fn is_standby(&self) -> bool {
        self.settings.leader_election.is_some() && !self.is_leader()
    }

    pub fn ready(&self) -> bool {
        self.scopes.iter().all(|s| s.is_synced())
    }

    /// Waits until every cache holds its initial list (a reconcile before that could mistake a
    /// not-yet-listed Job for a lost one).
    ///
    /// Not `Store::wait_until_ready`: in kube-runtime 5 that future keeps only the waker of the
    /// last task that polled it (a oneshot receiver behind a mutex), so with several waiters — the
    /// controller's applier and our reconciles — some are never woken.
    pub async fn wait_ready(&self) {
        let mut rx = self.ready_tx.subscribe();
        let _ = rx.wait_for(|_| self.ready()).await;
    }

    /// Called by a reflector when its kind listed for the first time.
    pub fn mark_synced(&self, scope: &Scope, index: usize) {
        scope.synced[index].store(true, Ordering::Release);
        self.ready_tx.send_replace(self.ready());
    }

    pub fn scope_for(&self, namespace: &str) -> Option<&Arc<Scope>> {
        self.scopes.iter().find(|s| s.covers(namespace))
    }

    pub fn all_workflows(&self) -> Vec<Arc<QmsWorkflow>> {
        self.scopes
            .iter()
            .flat_map(|s| s.stores.workflows.state())
            .collect()
    }

    /// Re-triggers the waiting workflows the free slots go to (a slot was freed): the queue is one
    /// over every scope, oldest first (see [`observe::first_in_line`]).
    pub fn trigger_waiting(&self) {
        let all = self.all_workflows();
        let admitted = self.admitted_uids(&all);
        let max = self.settings.max_concurrent_workflows;
        for wf in observe::first_in_line(&all, &admitted, max) {
            if let Some(scope) = wf.namespace().and_then(|ns| self.scope_for(&ns)) {
                scope.trigger_workflow(&wf);
            }
        }
    }

    /// Re-triggers the workflows of `namespace` that may be waiting for a free place of an agent.
    pub fn trigger_capacity_waiters(&self, namespace: &str) {
        let Some(scope) = self.scope_for(namespace) else {
            return;
        };
        for wf in scope.stores.workflows.state() {
            if wf.namespace().as_deref() == Some(namespace) && may_wait_for_agent(&wf) {
                scope.trigger_workflow(&wf);
            }
        }
    }

    /// Admitted workflows, pruning those whose status write `all` (a snapshot of the cache) shows
    /// (or that are too old): from then on the cached status itself says whether a slot is held.
    pub fn admitted_uids(&self, all: &[Arc<QmsWorkflow>]) -> HashSet<String> {
        let mut admitted = lock(&self.admitted);
        admitted.retain(|uid, a| {
            a.at.elapsed() < EXPECTATION_TTL
                && all.iter().any(|w| {
                    w.uid().as_deref() == Some(uid)
                        && w.metadata.deletion_timestamp.is_none()
                        && w.resource_version() == a.decided_on
                })
        });
        admitted.keys().cloned().collect()
    }

    /// Jobs created by us for `agent`s of `namespace` that `jobs` does not show yet; prunes
    /// expectations it has caught up with. `jobs` must be the very snapshot the agents' load is
    /// counted from: checking a later state of the cache could prune a Job that arrived after the
    /// snapshot, and it would be counted nowhere (one Job over `loadCapacity`).
    pub fn in_flight(&self, namespace: &str, jobs: &[Arc<Job>]) -> HashMap<String, u32> {
        in_flight_by_agent(&mut lock(&self.expected_jobs), namespace, jobs)
    }

    /// Drops the error-backoff counts of `namespace/name` under each of `controllers` (the object
    /// was deleted: a later object of that name starts afresh, and the map stays sized by what
    /// is live).
    pub fn forget_failures(&self, controllers: &[String], namespace: &str, name: &str) {
        let mut failures = lock(&self.failures);
        for c in controllers {
            failures.remove(&crate::controller::failure_key(c, namespace, name));
        }
    }

    /// Keeps, of the error-backoff counts under `controllers`, those of objects in `live`
    /// (namespace, name): after a re-list, a Delete missed while the watch was down.
    pub fn retain_failures(&self, controllers: &[String], live: &HashSet<(String, String)>) {
        retain_live_failures(&mut lock(&self.failures), controllers, live);
    }

    /// The expected (created, not yet cached) Jobs of one workflow.
    pub fn expected_for(&self, workflow_uid: &str) -> Vec<(String, ExpectedJob)> {
        lock(&self.expected_jobs)
            .iter()
            .filter(|(_, e)| e.workflow_uid == workflow_uid)
            .map(|((_, name), e)| (name.clone(), e.clone()))
            .collect()
    }
}

/// Could this workflow be waiting for an agent's free capacity? Started, not finished, and not
/// merely waiting for a person.
pub fn may_wait_for_agent(wf: &QmsWorkflow) -> bool {
    if !observe::occupies_slot(wf) {
        return false;
    }
    let Some(status) = &wf.status else {
        return false;
    };
    let current = status.current_step.as_deref();
    status
        .steps
        .iter()
        .filter(|s| current.is_none_or(|c| c == s.name))
        .any(|s| {
            use qms_api::{StepPhase, TaskPhase};
            matches!(s.phase, StepPhase::Pending | StepPhase::Running)
                && (s.tasks.iter().any(|t| t.phase == TaskPhase::Pending)
                    || s.phase == StepPhase::Pending
                    || s.tasks.is_empty())
        })
}

/// [`Shared::retain_failures`] on the counts themselves (keys `controller/namespace/name`).
fn retain_live_failures(
    failures: &mut HashMap<String, u32>,
    controllers: &[String],
    live: &HashSet<(String, String)>,
) {
    failures.retain(|key, _| {
        let Some((controller, object)) = key.split_once('/') else {
            return true;
        };
        if !controllers.iter().any(|c| c == controller) {
            return true;
        }
        object
            .split_once('/')
            .is_some_and(|(ns, name)| live.contains(&(ns.to_owned(), name.to_owned())))
    });
}

/// [`Shared::in_flight`] on the expectations themselves.
fn in_flight_by_agent(
    expected: &mut HashMap<(String, String), ExpectedJob>,
    namespace: &str,
    jobs: &[Arc<Job>],
) -> HashMap<String, u32> {
    let seen: HashSet<(Option<String>, String)> =
        jobs.iter().map(|j| (j.namespace(), j.name_any())).collect();
    expected.retain(|(ns, name), e| {
        e.at.elapsed() < EXPECTATION_TTL && !seen.contains(&(Some(ns.clone()), name.clone()))
    });
    let mut out = HashMap::new();
    for e in expected.values().filter(|e| e.namespace == namespace) {
        *out.entry(e.agent.clone()).or_insert(0) += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expectation(agent: &str) -> ExpectedJob {
        ExpectedJob {
            namespace: "ns".into(),
            workflow_uid: "uid".into(),
            agent: agent.into(),
            labels: Default::default(),
            at: Instant::now(),
        }
    }

    fn job(name: &str) -> Arc<Job> {
        let mut j = Job::default();
        j.metadata.name = Some(name.into());
        j.metadata.namespace = Some("ns".into());
        Arc::new(j)
    }

    #[test]
    fn after_a_relist_only_the_failure_counts_of_listed_objects_stay() {
        use crate::controller::failure_key;
        let key = |c: &str, name: &str| failure_key(c, "ns", name);
        let mut failures = HashMap::from([
            (key("QmsWorkflow", "gone"), 3),
            (key("GithubChecks", "gone"), 1),
            (key("QmsWorkflow", "live"), 2),
            (key("agent", "gone"), 5),
        ]);
        let controllers = ["QmsWorkflow".to_owned(), "GithubChecks".to_owned()];
        let live = HashSet::from([("ns".to_owned(), "live".to_owned())]);
        retain_live_failures(&mut failures, &controllers, &live);
        let mut left: Vec<_> = failures.keys().cloned().collect();
        left.sort();
        // The agent's count is another kind's (pruned by the Agents' re-list, not this one).
        assert_eq!(left, [key("QmsWorkflow", "live"), key("agent", "gone")]);
    }

    #[test]
    fn a_created_job_counts_once_either_as_expected_or_from_the_snapshot() {
        let mut expected = HashMap::from([
            (("ns".to_owned(), "a".to_owned()), expectation("solo")),
            (("ns".to_owned(), "b".to_owned()), expectation("solo")),
            (
                ("other".to_owned(), "c".to_owned()),
                ExpectedJob {
                    namespace: "other".into(),
                    ..expectation("solo")
                },
            ),
        ]);
        // The snapshot holds `a` (counted from it), not `b`: `b` is still in flight, whatever a
        // later state of the cache holds.
        let counts = in_flight_by_agent(&mut expected, "ns", &[job("a")]);
        assert_eq!(counts.get("solo"), Some(&1));
        assert!(
            !expected.contains_key(&("ns".to_owned(), "a".to_owned())),
            "pruned"
        );
        assert!(expected.contains_key(&("ns".to_owned(), "b".to_owned())));
        let counts = in_flight_by_agent(&mut expected, "ns", &[job("a"), job("b")]);
        assert_eq!(counts.get("solo"), None);
    }
}
