//! One reflector per kind and scope, shared by all controllers, and the routing of their events to
//! the controllers that care ("X changed → reconcile these objects").
//!
//! Why not `Controller::new(..).owns(..).watches(..)`: that opens one more watch per relation
//! and keeps no cache of the related kinds, but observing a workflow needs caches of Jobs, Pods,
//! Agents, Gates and Templates anyway. So every kind is watched exactly once per scope, cached
//! (with `managedFields` and unneeded specs stripped — Tekton #3561), and each event is mapped to
//! the workflows/templates/agents it concerns and sent into the controllers' `reconcile_on`
//! channels. Each kind is one [`Watches::watch`] call with its own [`Route`]. Not kube-runtime's
//! shared streams (`reflect_shared` + `Controller::for_shared_stream`): they fan one watch out to
//! controllers of the same kind, while here each event maps to objects of other kinds, decided
//! with the routing state below; the controllers run on `reconcile_on` channels instead.
//! Jobs and Pods: only the operator's own ([`owned_selector`]), stripped to what is read.
//! The mappings are:
//! - QmsWorkflow → itself; a workflow leaving the running set (finished, deleted) → every workflow
//!   waiting for a slot (first come, first served; see `observe::slot_available`). With GitHub on,
//!   also → the check-run sync of that workflow, on any change but the sync's own writes.
//! - Job → its owner workflow; a Job that finished or vanished while active → the workflows of its
//!   namespace that may wait for agent capacity (the engine also polls such waits, this only makes
//!   them prompt); any phase change → its Agent (status).
//! - Pod → the workflow owning its Job, when the container's result (terminated state) appears.
//! - WorkflowTemplate → itself; on spec change or deletion → the unfinished workflows using it.
//! - QualityGate / Agent → itself; on spec change or deletion → the templates and unfinished
//!   workflows of its namespace. Status-only changes (our own writes) trigger nothing else.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures::StreamExt;
use futures::channel::mpsc::{UnboundedReceiver, UnboundedSender, unbounded};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ContainerStatus, Pod, PodStatus};
use kube::runtime::reflector::{self, ObjectRef, store::Writer};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use qms_api::{Agent, QmsWorkflow, QualityGate, WorkflowTemplate};
use qms_engine::JobPhase;
use serde::de::DeserializeOwned;
use tokio::task::JoinSet;

use crate::context::{Scope, Shared, Stores, Triggers};
use crate::jobs::{
    AGENT_LABEL, JOB_NAME_LABEL, LEGACY_JOB_NAME_LABEL, MANAGED_BY, MANAGED_BY_LABEL,
    WORKFLOW_LABEL,
};
use crate::observe;

pub struct Writers {
    workflows: Writer<QmsWorkflow>,
    templates: Writer<WorkflowTemplate>,
    gates: Writer<QualityGate>,
    agents: Writer<Agent>,
    jobs: Writer<Job>,
    pods: Writer<Pod>,
}

pub struct Receivers {
    pub workflows: UnboundedReceiver<ObjectRef<QmsWorkflow>>,
    pub templates: UnboundedReceiver<ObjectRef<WorkflowTemplate>>,
    pub gates: UnboundedReceiver<ObjectRef<QualityGate>>,
    pub agents: UnboundedReceiver<ObjectRef<Agent>>,
    pub github: UnboundedReceiver<ObjectRef<QmsWorkflow>>,
}

pub struct ScopeParts {
    pub scope: Arc<Scope>,
    pub writers: Writers,
    pub receivers: Receivers,
}

pub fn new_scope(namespace: Option<String>) -> ScopeParts {
    let (workflows_r, workflows) = reflector::store();
    let (templates_r, templates) = reflector::store();
    let (gates_r, gates) = reflector::store();
    let (agents_r, agents) = reflector::store();
    let (jobs_r, jobs) = reflector::store();
    let (pods_r, pods) = reflector::store();
    let (wf_tx, wf_rx) = unbounded();
    let (t_tx, t_rx) = unbounded();
    let (g_tx, g_rx) = unbounded();
    let (a_tx, a_rx) = unbounded();
    let (gh_tx, gh_rx) = unbounded();
    ScopeParts {
        scope: Arc::new(Scope {
            namespace,
            stores: Stores {
                workflows: workflows_r,
                templates: templates_r,
                gates: gates_r,
                agents: agents_r,
                jobs: jobs_r,
                pods: pods_r,
            },
            triggers: Triggers {
                workflows: wf_tx,
                templates: t_tx,
                gates: g_tx,
                agents: a_tx,
                github: gh_tx,
            },
            synced: Default::default(),
        }),
        writers: Writers {
            workflows,
            templates,
            gates,
            agents,
            jobs,
            pods,
        },
        receivers: Receivers {
            workflows: wf_rx,
            templates: t_rx,
            gates: g_rx,
            agents: a_rx,
            github: gh_rx,
        },
    }
}

pub fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// The kinds cached per scope, in the order of [`Scope::synced`].
#[derive(Clone, Copy, Debug)]
pub enum Cached {
    Workflows,
    Templates,
    Gates,
    Agents,
    Jobs,
    Pods,
}

/// The selector of the Jobs and Pods the operator watches: only its own (every Job it creates,
/// and so its Pods, carries both labels), so a busy cluster's other Jobs and Pods are never cached.
pub fn owned_selector() -> String {
    format!("{MANAGED_BY_LABEL}={MANAGED_BY},{WORKFLOW_LABEL}")
}

fn strip<K: ResourceExt>(obj: &mut K) {
    obj.managed_fields_mut().clear();
    obj.annotations_mut()
        .remove("kubectl.kubernetes.io/last-applied-configuration");
}

/// Observing needs a Job's metadata and status only; the pod template (with the task payload)
/// would be most of the cached bytes.
fn strip_job(job: &mut Job) {
    strip(job);
    job.spec = None;
}

/// Of a Pod only the labels, the owner and each container's name and state are read (the result
/// is the terminated state's message): spec, annotations and the rest of the status go.
fn strip_pod(pod: &mut Pod) {
    strip(pod);
    pod.spec = None;
    pod.metadata.annotations = None;
    pod.status = pod.status.take().map(|s| PodStatus {
        container_statuses: s.container_statuses.map(|cs| {
            cs.into_iter()
                .map(|c| ContainerStatus {
                    name: c.name,
                    state: c.state,
                    ..ContainerStatus::default()
                })
                .collect()
        }),
        ..PodStatus::default()
    });
}

/// What one kind's events trigger ("X changed → reconcile these objects").
trait Route<K>: Send + 'static {
    fn route(&mut self, ev: &watcher::Event<K>);
    /// After a re-list: `live` are the uids listed. Per-object routing state of any other object
    /// is dropped (its Delete was missed while the watch was down), so it stays sized by what is
    /// live.
    fn relisted(&mut self, live: &HashSet<String>);
}

/// Keeps the entries of `map` whose uid is `live`.
fn retain_live<V>(map: &mut HashMap<String, V>, live: &HashSet<String>) {
    map.retain(|uid, _| live.contains(uid));
}

/// Starts the reflectors of one scope; [`Watches::watch`] is the one way a kind is watched.
struct Watches<'a> {
    shared: &'a Arc<Shared>,
    scope: &'a Arc<Scope>,
    tasks: &'a mut JoinSet<()>,
}

impl Watches<'_> {
    /// Runs one reflector: watch (with the default backoff, so watch drops re-list) → `modify`
    /// (strip what is never read) → cache → `route` each event; marks `cached` synced on its
    /// first complete list. The error-backoff counts of `failure_controllers` go with the objects
    /// (on Delete, and on a re-list for those not listed again).
    fn watch<K>(
        &mut self,
        cached: Cached,
        config: watcher::Config,
        writer: Writer<K>,
        modify: fn(&mut K),
        mut route: impl Route<K>,
    ) where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + std::fmt::Debug
            + Send
            + Sync
            + 'static,
        K::DynamicType: Default + Eq + std::hash::Hash + Clone + Send + Sync,
    {
        let api = api::<K>(&self.shared.client, self.scope.namespace.as_deref());
        let kind = K::kind(&Default::default()).into_owned();
        let (shared, scope) = (self.shared.clone(), self.scope.clone());
        let index = cached as usize;
        self.tasks.spawn(async move {
            let stream = watcher(api, config)
                .default_backoff()
                .modify(modify)
                .reflect(writer);
            let mut stream = std::pin::pin!(stream);
            let failure_controllers = failure_controllers(cached);
            let mut listed: Option<Listed> = None;
            while let Some(event) = stream.next().await {
                match event {
                    Ok(ev) => {
                        match &ev {
                            watcher::Event::Init => listed = Some(Default::default()),
                            watcher::Event::InitApply(o) => {
                                if let Some((uids, names)) = &mut listed {
                                    uids.insert(o.uid().unwrap_or_default());
                                    names.insert((o.namespace().unwrap_or_default(), o.name_any()));
                                }
                            }
                            watcher::Event::InitDone => {
                                if let Some((uids, names)) = listed.take() {
                                    route.relisted(&uids);
                                    shared.retain_failures(&failure_controllers, &names);
                                }
                            }
                            watcher::Event::Delete(o) => shared.forget_failures(
                                &failure_controllers,
                                &o.namespace().unwrap_or_default(),
                                &o.name_any(),
                            ),
                            _ => {}
                        }
                        if matches!(ev, watcher::Event::InitDone)
                            && !scope.synced[index].load(Ordering::Acquire)
                        {
                            shared.mark_synced(&scope, index);
                        }
                        route.route(&ev);
                    }
                    Err(e) => {
                        tracing::warn!(kind = %kind, error = %e, "watch failed; retrying with backoff")
                    }
                }
            }
        });
    }
}

/// What a re-list listed: uids, and (namespace, name) pairs.
type Listed = (HashSet<String>, HashSet<(String, String)>);

/// The controllers that keep error-backoff counts (`Shared::failures`) of objects of `cached`.
fn failure_controllers(cached: Cached) -> Vec<String> {
    use crate::controller::{GITHUB_FAILURES, WORKFLOW_FAILURES};
    use crate::metrics::ControllerKind;
    match cached {
        Cached::Workflows => vec![WORKFLOW_FAILURES.to_owned(), GITHUB_FAILURES.to_owned()],
        Cached::Templates => vec![format!("{:?}", ControllerKind::workflowtemplate)],
        Cached::Gates => vec![format!("{:?}", ControllerKind::qualitygate)],
        Cached::Agents => vec![format!("{:?}", ControllerKind::agent)],
        Cached::Jobs | Cached::Pods => Vec::new(),
    }
}

fn applied<K>(ev: &watcher::Event<K>) -> Option<(&K, bool)> {
    match ev {
        watcher::Event::Apply(o) | watcher::Event::InitApply(o) => Some((o, false)),
        watcher::Event::Delete(o) => Some((o, true)),
        _ => None,
    }
}

/// The workflow that controls `job` (its controller ownerReference).
fn owner_workflow(job: &Job) -> Option<ObjectRef<QmsWorkflow>> {
    let ns = job.namespace()?;
    job.owner_references()
        .iter()
        .find(|o| o.controller == Some(true) && o.kind == "QmsWorkflow")
        .map(|o| ObjectRef::new(&o.name).within(&ns))
}

/// Starts the reflectors of `scope`, routing events to the controllers.
pub fn spawn(shared: &Arc<Shared>, scope: &Arc<Scope>, writers: Writers, tasks: &mut JoinSet<()>) {
    let all = watcher::Config::default;
    let owned = || watcher::Config::default().labels(&owned_selector());
    let mut w = Watches {
        shared,
        scope,
        tasks,
    };
    let workflows = WorkflowRoutes::new(shared, scope);
    w.watch(
        Cached::Workflows,
        all(),
        writers.workflows,
        strip,
        workflows,
    );
    let templates = TemplateRoutes::new(scope);
    w.watch(
        Cached::Templates,
        all(),
        writers.templates,
        strip,
        templates,
    );
    let gates = CatalogRoutes::new(scope, |t| &t.gates);
    w.watch(Cached::Gates, all(), writers.gates, strip, gates);
    let agents = CatalogRoutes::new(scope, |t| &t.agents);
    w.watch(Cached::Agents, all(), writers.agents, strip, agents);
    let jobs = JobRoutes::new(shared, scope);
    w.watch(Cached::Jobs, owned(), writers.jobs, strip_job, jobs);
    let pods = PodRoutes::new(scope);
    w.watch(Cached::Pods, owned(), writers.pods, strip_pod, pods);
}

/// QmsWorkflow → itself; leaving the running set → the workflows next in line for a slot; with
/// GitHub on → the check-run sync.
struct WorkflowRoutes {
    shared: Arc<Shared>,
    scope: Arc<Scope>,
    holds_slot: HashMap<String, bool>,
    /// What makes a reconcile worthwhile: spec (generation), deletion, finalizers. A status-only
    /// change is our own write, and a decision is a fixed point: deciding again on it changes
    /// nothing — unless a reconcile is waiting for exactly that write to reach the cache.
    seen: HashMap<String, (Option<i64>, bool, usize)>,
    github: Option<GithubRouting>,
}

impl WorkflowRoutes {
    fn new(shared: &Arc<Shared>, scope: &Arc<Scope>) -> Self {
        Self {
            shared: shared.clone(),
            scope: scope.clone(),
            holds_slot: HashMap::new(),
            seen: HashMap::new(),
            github: shared.github.clone().map(GithubRouting::new),
        }
    }
}

impl Route<QmsWorkflow> for WorkflowRoutes {
    fn route(&mut self, ev: &watcher::Event<QmsWorkflow>) {
        if let Some(gh) = &mut self.github {
            gh.route(ev, &self.scope);
        }
        let Some((wf, deleted)) = applied(ev) else {
            return;
        };
        let uid = wf.uid().unwrap_or_default();
        let holds = !deleted && observe::occupies_slot(wf);
        let before = if deleted {
            self.holds_slot.remove(&uid)
        } else {
            self.holds_slot.insert(uid, holds)
        };
        if deleted {
            self.seen.remove(&wf.uid().unwrap_or_default());
        } else {
            let uid = wf.uid().unwrap_or_default();
            let key = (
                wf.meta().generation,
                wf.metadata.deletion_timestamp.is_some(),
                wf.finalizers().len(),
            );
            let changed = self.seen.insert(uid.clone(), key) != Some(key);
            let awaited = crate::context::lock(&self.shared.stale_versions).contains_key(&uid);
            if changed || awaited || matches!(ev, watcher::Event::InitApply(_)) {
                self.scope.trigger_workflow(wf);
            }
        }
        if before == Some(true) && !holds {
            self.shared.trigger_waiting();
        }
    }

    fn relisted(&mut self, live: &HashSet<String>) {
        retain_live(&mut self.holds_slot, live);
        retain_live(&mut self.seen, live);
    }
}

/// WorkflowTemplate → itself; on spec change or deletion → the unfinished workflows using it.
struct TemplateRoutes {
    scope: Arc<Scope>,
    generations: HashMap<String, Option<i64>>,
}

impl TemplateRoutes {
    fn new(scope: &Arc<Scope>) -> Self {
        Self {
            scope: scope.clone(),
            generations: HashMap::new(),
        }
    }
}

impl Route<WorkflowTemplate> for TemplateRoutes {
    fn route(&mut self, ev: &watcher::Event<WorkflowTemplate>) {
        let Some((t, deleted)) = applied(ev) else {
            return;
        };
        let scope = &self.scope;
        let changed = spec_changed(&mut self.generations, t, deleted);
        if !deleted && (changed || matches!(ev, watcher::Event::InitApply(_))) {
            let _ = scope
                .triggers
                .templates
                .unbounded_send(ObjectRef::from_obj(t));
        }
        if changed && !matches!(ev, watcher::Event::InitApply(_)) {
            let name = t.name_any();
            let tns = t.namespace();
            for wf in scope.stores.workflows.state() {
                if wf.namespace() == tns
                    && wf.spec.template_ref.name == name
                    && !observe::state_of(&wf).is_terminal()
                {
                    scope.trigger_workflow(&wf);
                }
            }
        }
    }

    fn relisted(&mut self, live: &HashSet<String>) {
        retain_live(&mut self.generations, live);
    }
}

/// QualityGate / Agent → itself; on spec change or deletion → the templates and unfinished
/// workflows of its namespace ([`catalog_changed`]).
struct CatalogRoutes<K: Resource> {
    scope: Arc<Scope>,
    generations: HashMap<String, Option<i64>>,
    trigger: fn(&Triggers) -> &UnboundedSender<ObjectRef<K>>,
}

impl<K: Resource> CatalogRoutes<K> {
    fn new(scope: &Arc<Scope>, trigger: fn(&Triggers) -> &UnboundedSender<ObjectRef<K>>) -> Self {
        Self {
            scope: scope.clone(),
            generations: HashMap::new(),
            trigger,
        }
    }
}

impl<K> Route<K> for CatalogRoutes<K>
where
    K: Resource<DynamicType = ()> + Send + Sync + 'static,
{
    fn route(&mut self, ev: &watcher::Event<K>) {
        let Some((obj, deleted)) = applied(ev) else {
            return;
        };
        let changed = spec_changed(&mut self.generations, obj, deleted);
        if !deleted && (changed || matches!(ev, watcher::Event::InitApply(_))) {
            let _ = (self.trigger)(&self.scope.triggers).unbounded_send(ObjectRef::from_obj(obj));
        }
        if changed && !matches!(ev, watcher::Event::InitApply(_)) {
            catalog_changed(&self.scope, obj.namespace().as_deref());
        }
    }

    fn relisted(&mut self, live: &HashSet<String>) {
        retain_live(&mut self.generations, live);
    }
}

/// Job → its owner workflow (on a phase change or deletion); a Job that finished or vanished
/// while active → the workflows of its namespace that may wait for agent capacity; any phase
/// change → its Agent (status).
struct JobRoutes {
    shared: Arc<Shared>,
    scope: Arc<Scope>,
    phases: HashMap<String, JobPhase>,
}

impl JobRoutes {
    fn new(shared: &Arc<Shared>, scope: &Arc<Scope>) -> Self {
        Self {
            shared: shared.clone(),
            scope: scope.clone(),
            phases: HashMap::new(),
        }
    }
}

impl Route<Job> for JobRoutes {
    fn route(&mut self, ev: &watcher::Event<Job>) {
        let Some((job, deleted)) = applied(ev) else {
            return;
        };
        let uid = job.uid().unwrap_or_default();
        let phase = observe::job_phase(job);
        let before = if deleted {
            self.phases.remove(&uid)
        } else {
            self.phases.insert(uid, phase)
        };
        // The engine looks at a Job's existence and phase only: other status updates
        // (active/ready counters, start time) need no reconcile.
        if (before != Some(phase) || deleted)
            && let Some(owner) = owner_workflow(job)
        {
            let _ = self.scope.triggers.workflows.unbounded_send(owner);
        }
        let jns = job.namespace().unwrap_or_default();
        let freed = match (before, deleted) {
            (Some(JobPhase::Active), true) => true,
            (Some(JobPhase::Active), false) => phase != JobPhase::Active,
            _ => false,
        };
        let phase_changed = deleted || before != Some(phase);
        if phase_changed && let Some(agent) = job.labels().get(AGENT_LABEL) {
            let _ = self
                .scope
                .triggers
                .agents
                .unbounded_send(ObjectRef::new(agent).within(&jns));
        }
        if freed {
            self.shared.trigger_capacity_waiters(&jns);
        }
    }

    fn relisted(&mut self, live: &HashSet<String>) {
        retain_live(&mut self.phases, live);
    }
}

/// Pod → the workflow owning its Job, when the container's result (terminated state) appears.
struct PodRoutes {
    scope: Arc<Scope>,
    terminated: HashMap<String, bool>,
}

impl PodRoutes {
    fn new(scope: &Arc<Scope>) -> Self {
        Self {
            scope: scope.clone(),
            terminated: HashMap::new(),
        }
    }
}

impl Route<Pod> for PodRoutes {
    fn route(&mut self, ev: &watcher::Event<Pod>) {
        let Some((pod, deleted)) = applied(ev) else {
            return;
        };
        let uid = pod.uid().unwrap_or_default();
        let done = !deleted
            && pod
                .status
                .as_ref()
                .and_then(|s| s.container_statuses.as_ref())
                .is_some_and(|cs| {
                    cs.iter()
                        .any(|c| c.state.as_ref().is_some_and(|s| s.terminated.is_some()))
                });
        let before = if deleted {
            self.terminated.remove(&uid)
        } else {
            self.terminated.insert(uid, done)
        };
        if !done || before == Some(true) {
            return;
        }
        let labels = pod.labels();
        let Some(job_name) = labels
            .get(JOB_NAME_LABEL)
            .or_else(|| labels.get(LEGACY_JOB_NAME_LABEL))
        else {
            return;
        };
        let pns = pod.namespace().unwrap_or_default();
        if let Some(job) = self
            .scope
            .stores
            .jobs
            .get(&ObjectRef::new(job_name).within(&pns))
            && let Some(owner) = owner_workflow(&job)
        {
            let _ = self.scope.triggers.workflows.unbounded_send(owner);
        }
    }

    fn relisted(&mut self, live: &HashSet<String>) {
        retain_live(&mut self.terminated, live);
    }
}

/// Which workflow events the GitHub check-run sync must see. Unlike the engine it cares about
/// status changes (the operator's own writes are what check runs mirror), but not about the
/// `checkRuns`/`dispatches` it writes itself: [`crate::github::sync_fingerprint`] leaves those
/// out, so a sync's own write does not trigger another sync.
struct GithubRouting {
    github: Arc<crate::github::Github>,
    fingerprints: HashMap<String, u64>,
    /// Uids listed since the last `Init` (a re-list): what was not listed again is gone, and its
    /// Delete event was missed while the watch was down.
    listed: Option<HashSet<String>>,
}

impl GithubRouting {
    fn new(github: Arc<crate::github::Github>) -> Self {
        Self {
            github,
            fingerprints: HashMap::new(),
            listed: None,
        }
    }

    fn route(&mut self, ev: &watcher::Event<QmsWorkflow>, scope: &Scope) {
        match ev {
            watcher::Event::Init => self.listed = Some(HashSet::new()),
            watcher::Event::InitDone => {
                if let Some(listed) = self.listed.take() {
                    let github = &self.github;
                    self.fingerprints.retain(|uid, _| {
                        let keep = listed.contains(uid);
                        if !keep {
                            github.forget(uid);
                        }
                        keep
                    });
                }
            }
            watcher::Event::Delete(wf) => {
                let uid = wf.uid().unwrap_or_default();
                self.fingerprints.remove(&uid);
                self.github.forget(&uid);
            }
            watcher::Event::Apply(wf) | watcher::Event::InitApply(wf) => {
                let uid = wf.uid().unwrap_or_default();
                if let Some(listed) = &mut self.listed {
                    listed.insert(uid.clone());
                }
                let fp = crate::github::sync_fingerprint(wf);
                if self.fingerprints.insert(uid, fp) != Some(fp) {
                    let _ = scope
                        .triggers
                        .github
                        .unbounded_send(ObjectRef::from_obj(wf));
                }
            }
        }
    }
}

/// Remembers each object's generation; true when it is new, its spec changed, or it was deleted.
fn spec_changed<K: ResourceExt>(
    generations: &mut HashMap<String, Option<i64>>,
    obj: &K,
    deleted: bool,
) -> bool {
    let uid = obj.uid().unwrap_or_default();
    if deleted {
        generations.remove(&uid);
        return true;
    }
    let generation = obj.meta().generation;
    generations.insert(uid, generation) != Some(generation)
}

/// An Agent or QualityGate of `namespace` was created, changed or deleted: templates may become
/// (un)ready and unfinished workflows may now proceed (or fail).
fn catalog_changed(scope: &Scope, namespace: Option<&str>) {
    for t in scope.stores.templates.state() {
        if t.namespace().as_deref() == namespace {
            let _ = scope
                .triggers
                .templates
                .unbounded_send(ObjectRef::from_obj(&*t));
        }
    }
    for wf in scope.stores.workflows.state() {
        if wf.namespace().as_deref() == namespace && !observe::state_of(&wf).is_terminal() {
            scope.trigger_workflow(&wf);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod() -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {
                "name": "j-abcde", "namespace": "ns", "uid": "p1",
                "labels": {"batch.kubernetes.io/job-name": "j", WORKFLOW_LABEL: "wf"},
                "annotations": {"a": "b".repeat(2000)},
                "managedFields": [{"manager": "kubelet", "operation": "Update"}],
                "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": "j",
                    "uid": "j-uid", "controller": true}]
            },
            "spec": {"containers": [{"name": "agent", "image": "busybox",
                "env": [{"name": "QMS_TASK", "value": "x".repeat(4000)}]}]},
            "status": {
                "phase": "Failed",
                "conditions": [{"type": "Ready", "status": "False"}],
                "containerStatuses": [{
                    "name": "agent", "image": "busybox", "imageID": "sha256:1", "ready": false,
                    "restartCount": 0,
                    "state": {"terminated": {"exitCode": 3, "reason": "Error",
                        "message": "{\"status\":\"failure\"}",
                        "finishedAt": "2026-01-01T00:05:00Z"}}
                }]
            }
        }))
        .unwrap()
    }

    fn job() -> Job {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "j", "namespace": "ns", "uid": "j-uid",
                "labels": {WORKFLOW_LABEL: "wf"}},
            "status": {"failed": 1, "conditions": [{"type": "Failed", "status": "True",
                "reason": "BackoffLimitExceeded", "lastTransitionTime": "2026-01-01T00:05:01Z"}]}
        }))
        .unwrap()
    }

    #[test]
    fn a_stripped_pod_is_observed_as_the_full_one() {
        let (full, job) = (pod(), job());
        let mut stripped = full.clone();
        strip_pod(&mut stripped);
        let now = chrono::Utc::now();
        let before = observe::observe_job(&job, &[&full], now);
        let after = observe::observe_job(&job, &[&stripped], now);
        assert_eq!(format!("{before:?}"), format!("{after:?}"));
        assert_eq!(after.0.exit_code, Some(3), "the result survives");
        assert!(observe::pod_of_job(&stripped, &job));
        assert!(stripped.spec.is_none() && stripped.metadata.annotations.is_none());
        assert!(stripped.managed_fields().is_empty());
        let size = |p: &Pod| serde_json::to_vec(p).unwrap().len();
        assert!(
            size(&stripped) * 10 < size(&full),
            "{} vs {}",
            size(&stripped),
            size(&full)
        );
    }
}
