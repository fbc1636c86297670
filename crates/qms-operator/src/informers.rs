//! One reflector per kind and scope, shared by all controllers, and the routing of their events to
//! the controllers that care ("X changed → reconcile these objects").
//!
//! Why not `Controller::new(..).owns(..).watches(..)`: that opens one more watch per relation
//! and keeps no cache of the related kinds, but observing a workflow needs caches of Jobs, Pods,
//! Agents, Gates and Templates anyway. So every kind is watched exactly once per scope, cached
//! (with `managedFields` and unneeded specs stripped — Tekton #3561), and each event is mapped to
//! the workflows/templates/agents it concerns and sent into the controllers' `reconcile_on`
//! channels. The mappings are:
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
use futures::channel::mpsc::{UnboundedReceiver, unbounded};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
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

fn strip<K: ResourceExt>(obj: &mut K) {
    obj.managed_fields_mut().clear();
    obj.annotations_mut()
        .remove("kubectl.kubernetes.io/last-applied-configuration");
}

/// Runs one reflector: watch (with the default backoff, so watch drops re-list) → strip → cache →
/// `route` each event.
#[allow(clippy::too_many_arguments)]
fn spawn_reflector<K>(
    tasks: &mut JoinSet<()>,
    api: Api<K>,
    config: watcher::Config,
    writer: Writer<K>,
    shared: Arc<Shared>,
    synced: Arc<Scope>,
    index: usize,
    modify: impl FnMut(&mut K) + Send + 'static,
    mut route: impl FnMut(&watcher::Event<K>) + Send + 'static,
) where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone + Send + Sync,
{
    let kind = K::kind(&Default::default()).into_owned();
    tasks.spawn(async move {
        let stream = watcher(api, config)
            .default_backoff()
            .modify(modify)
            .reflect(writer);
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            match event {
                Ok(ev) => {
                    if matches!(ev, watcher::Event::InitDone)
                        && !synced.synced[index].load(Ordering::Acquire)
                    {
                        shared.mark_synced(&synced, index);
                    }
                    route(&ev);
                }
                Err(e) => {
                    tracing::warn!(kind = %kind, error = %e, "watch failed; retrying with backoff")
                }
            }
        }
    });
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
    let client = &shared.client;
    let ns = scope.namespace.as_deref();
    let managed = watcher::Config::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY}"));

    // QmsWorkflow
    {
        let shared = shared.clone();
        let scope2 = scope.clone();
        let mut holds_slot: HashMap<String, bool> = HashMap::new();
        // What makes a reconcile worthwhile: spec (generation), deletion, finalizers. A status-only
        // change is our own write, and a decision is a fixed point: deciding again on it changes
        // nothing — unless a reconcile is waiting for exactly that write to reach the cache.
        let mut seen: HashMap<String, (Option<i64>, bool, usize)> = HashMap::new();
        let mut github = shared.github.clone().map(GithubRouting::new);
        spawn_reflector(
            tasks,
            api::<QmsWorkflow>(client, ns),
            watcher::Config::default(),
            writers.workflows,
            shared.clone(),
            scope.clone(),
            0,
            strip,
            move |ev| {
                if let Some(gh) = &mut github {
                    gh.route(ev, &scope2);
                }
                let Some((wf, deleted)) = applied(ev) else {
                    return;
                };
                let uid = wf.uid().unwrap_or_default();
                let holds = !deleted && observe::occupies_slot(wf);
                let before = if deleted {
                    holds_slot.remove(&uid)
                } else {
                    holds_slot.insert(uid, holds)
                };
                if deleted {
                    seen.remove(&wf.uid().unwrap_or_default());
                } else {
                    let uid = wf.uid().unwrap_or_default();
                    let key = (
                        wf.meta().generation,
                        wf.metadata.deletion_timestamp.is_some(),
                        wf.finalizers().len(),
                    );
                    let changed = seen.insert(uid.clone(), key) != Some(key);
                    let awaited = crate::context::lock(&shared.stale_versions).contains_key(&uid);
                    if changed || awaited || matches!(ev, watcher::Event::InitApply(_)) {
                        scope2.trigger_workflow(wf);
                    }
                }
                if before == Some(true) && !holds {
                    shared.trigger_waiting();
                }
            },
        );
    }

    // WorkflowTemplate
    {
        let scope2 = scope.clone();
        let mut generations: HashMap<String, Option<i64>> = HashMap::new();
        spawn_reflector(
            tasks,
            api::<WorkflowTemplate>(client, ns),
            watcher::Config::default(),
            writers.templates,
            shared.clone(),
            scope.clone(),
            1,
            strip,
            move |ev| {
                let Some((t, deleted)) = applied(ev) else {
                    return;
                };
                let changed = spec_changed(&mut generations, t, deleted);
                if !deleted && (changed || matches!(ev, watcher::Event::InitApply(_))) {
                    let _ = scope2
                        .triggers
                        .templates
                        .unbounded_send(ObjectRef::from_obj(t));
                }
                if changed && !matches!(ev, watcher::Event::InitApply(_)) {
                    let name = t.name_any();
                    let tns = t.namespace();
                    for wf in scope2.stores.workflows.state() {
                        if wf.namespace() == tns
                            && wf.spec.template_ref.name == name
                            && !observe::state_of(&wf).is_terminal()
                        {
                            scope2.trigger_workflow(&wf);
                        }
                    }
                }
            },
        );
    }

    // QualityGate
    {
        let scope2 = scope.clone();
        let mut generations: HashMap<String, Option<i64>> = HashMap::new();
        spawn_reflector(
            tasks,
            api::<QualityGate>(client, ns),
            watcher::Config::default(),
            writers.gates,
            shared.clone(),
            scope.clone(),
            2,
            strip,
            move |ev| {
                let Some((g, deleted)) = applied(ev) else {
                    return;
                };
                let changed = spec_changed(&mut generations, g, deleted);
                if !deleted && (changed || matches!(ev, watcher::Event::InitApply(_))) {
                    let _ = scope2.triggers.gates.unbounded_send(ObjectRef::from_obj(g));
                }
                if changed && !matches!(ev, watcher::Event::InitApply(_)) {
                    catalog_changed(&scope2, g.namespace().as_deref());
                }
            },
        );
    }

    // Agent
    {
        let scope2 = scope.clone();
        let mut generations: HashMap<String, Option<i64>> = HashMap::new();
        spawn_reflector(
            tasks,
            api::<Agent>(client, ns),
            watcher::Config::default(),
            writers.agents,
            shared.clone(),
            scope.clone(),
            3,
            strip,
            move |ev| {
                let Some((a, deleted)) = applied(ev) else {
                    return;
                };
                let changed = spec_changed(&mut generations, a, deleted);
                if !deleted && (changed || matches!(ev, watcher::Event::InitApply(_))) {
                    let _ = scope2
                        .triggers
                        .agents
                        .unbounded_send(ObjectRef::from_obj(a));
                }
                if changed && !matches!(ev, watcher::Event::InitApply(_)) {
                    catalog_changed(&scope2, a.namespace().as_deref());
                }
            },
        );
    }

    // Job
    {
        let shared = shared.clone();
        let scope2 = scope.clone();
        let mut phases: HashMap<String, JobPhase> = HashMap::new();
        spawn_reflector(
            tasks,
            api::<Job>(client, ns),
            managed.clone(),
            writers.jobs,
            shared.clone(),
            scope.clone(),
            4,
            |job: &mut Job| {
                strip(job);
                // Observing needs metadata and status only; the pod template (with the task
                // payload) would be most of the cached bytes.
                job.spec = None;
            },
            move |ev| {
                let Some((job, deleted)) = applied(ev) else {
                    return;
                };
                let uid = job.uid().unwrap_or_default();
                let phase = observe::job_phase(job);
                let before = if deleted {
                    phases.remove(&uid)
                } else {
                    phases.insert(uid, phase)
                };
                // The engine looks at a Job's existence and phase only: other status updates
                // (active/ready counters, start time) need no reconcile.
                if (before != Some(phase) || deleted)
                    && let Some(owner) = owner_workflow(job)
                {
                    let _ = scope2.triggers.workflows.unbounded_send(owner);
                }
                let jns = job.namespace().unwrap_or_default();
                let freed = match (before, deleted) {
                    (Some(JobPhase::Active), true) => true,
                    (Some(JobPhase::Active), false) => phase != JobPhase::Active,
                    _ => false,
                };
                let phase_changed = deleted || before != Some(phase);
                if phase_changed && let Some(agent) = job.labels().get(AGENT_LABEL) {
                    let _ = scope2
                        .triggers
                        .agents
                        .unbounded_send(ObjectRef::new(agent).within(&jns));
                }
                if freed {
                    shared.trigger_capacity_waiters(&jns);
                }
            },
        );
    }

    // Pod
    {
        let scope2 = scope.clone();
        let mut terminated: HashMap<String, bool> = HashMap::new();
        spawn_reflector(
            tasks,
            api::<Pod>(client, ns),
            managed,
            writers.pods,
            shared.clone(),
            scope.clone(),
            5,
            |pod: &mut Pod| {
                strip(pod);
                pod.spec = None;
            },
            move |ev| {
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
                    terminated.remove(&uid)
                } else {
                    terminated.insert(uid, done)
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
                if let Some(job) = scope2
                    .stores
                    .jobs
                    .get(&ObjectRef::new(job_name).within(&pns))
                    && let Some(owner) = owner_workflow(&job)
                {
                    let _ = scope2.triggers.workflows.unbounded_send(owner);
                }
            },
        );
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
