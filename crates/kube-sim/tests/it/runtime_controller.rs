//! kube-runtime's watcher, reflector and Controller (with `.owns(Api<Job>)`) run unmodified
//! against kube-sim, including recovery from injected watch faults.

use crate::tools;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Client, CustomResource, CustomResourceExt, Resource, ResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tools::{eventually, start_sim, start_sim_without_kubelet};

/// A tiny owner: each Builder runs one Job and records when it is done.
#[derive(CustomResource, Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[kube(
    group = "test.kube-sim.dev",
    version = "v1",
    kind = "Builder",
    namespaced,
    status = "BuilderStatus",
    shortname = "bld"
)]
pub struct BuilderSpec {
    pub script: String,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
pub struct BuilderStatus {
    pub phase: Option<String>,
    pub message: Option<String>,
}

async fn install_crd(client: &Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(&PostParams::default(), &Builder::crd())
        .await
        .expect("create the Builder CRD");
    let builders: Api<Builder> = Api::namespaced(client.clone(), "default");
    eventually("the Builder CRD to be served", || {
        let builders = builders.clone();
        async move { builders.list(&Default::default()).await.ok().map(|_| ()) }
    })
    .await;
}

fn builder(name: &str, script: &str) -> Builder {
    Builder::new(
        name,
        BuilderSpec {
            script: script.into(),
        },
    )
}

struct Ctx {
    client: Client,
    reconciles: AtomicUsize,
}

#[derive(Debug, thiserror::Error)]
#[error(transparent)]
struct Error(#[from] kube::Error);

fn job_for(b: &Builder) -> Job {
    serde_json::from_value(json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": format!("{}-build", b.name_any()),
            "namespace": b.namespace(),
            "ownerReferences": [b.controller_owner_ref(&()).expect("owner ref")]
        },
        "spec": {
            "backoffLimit": 0,
            "template": {"spec": {
                "restartPolicy": "Never",
                "containers": [{"name": "build", "image": "busybox", "command": ["sh", "-c", b.spec.script]}]
            }}
        }
    }))
    .expect("valid Job")
}

async fn reconcile(b: Arc<Builder>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    ctx.reconciles.fetch_add(1, Ordering::SeqCst);
    let ns = b.namespace().unwrap_or_default();
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
    let builders: Api<Builder> = Api::namespaced(ctx.client.clone(), &ns);
    let name = format!("{}-build", b.name_any());
    let Some(job) = jobs.get_opt(&name).await? else {
        jobs.create(&PostParams::default(), &job_for(&b)).await?;
        return Ok(Action::await_change());
    };
    let done = job
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| {
            cs.iter()
                .find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
        })
        .map(|c| c.type_.clone());
    let phase = match done.as_deref() {
        Some("Complete") => "Built",
        Some(_) => "Broken",
        None => "Building",
    };
    if b.status.as_ref().and_then(|s| s.phase.as_deref()) != Some(phase) {
        builders
            .patch_status(
                &b.name_any(),
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {"phase": phase}})),
            )
            .await?;
    }
    // No requeue: only a change of the Builder or of its Job brings us back.
    Ok(Action::await_change())
}

fn error_policy(_b: Arc<Builder>, _e: &Error, _ctx: Arc<Ctx>) -> Action {
    Action::requeue(Duration::from_millis(200))
}

async fn phase_of(api: &Api<Builder>, name: &str, want: &str) {
    eventually(&format!("Builder {name} phase {want}"), || async {
        let b = api.get(name).await.ok()?;
        (b.status.as_ref()?.phase.as_deref()? == want).then_some(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_owning_jobs_is_retriggered_by_job_completion() {
    let sim = start_sim().await;
    let client = sim.client();
    install_crd(&client).await;
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        reconciles: AtomicUsize::new(0),
    });
    let controller = Controller::new(
        Api::<Builder>::all(client.clone()),
        watcher::Config::default(),
    )
    .owns(Api::<Job>::all(client.clone()), watcher::Config::default())
    .run(reconcile, error_policy, ctx.clone())
    .for_each(|_| async {});
    let controller = tokio::spawn(controller);

    let builders: Api<Builder> = Api::namespaced(client.clone(), "default");
    builders
        .create(&PostParams::default(), &builder("ok", "echo built"))
        .await
        .expect("create Builder");
    builders
        .create(&PostParams::default(), &builder("bad", "exit 1"))
        .await
        .expect("create Builder");
    phase_of(&builders, "ok", "Built").await;
    phase_of(&builders, "bad", "Broken").await;

    // The owned Job carries the controller reference that routed its events to the owner.
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    let job = jobs.get("ok-build").await.expect("Job");
    let owner = &job.owner_references()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.controller),
        ("Builder", Some(true))
    );
    assert!(ctx.reconciles.load(Ordering::SeqCst) >= 2);

    // The controller survives a dropped watch and a 410 Gone on its watches.
    sim.faults().drop_watches();
    builders
        .create(&PostParams::default(), &builder("after-drop", "echo again"))
        .await
        .expect("create Builder");
    phase_of(&builders, "after-drop", "Built").await;
    sim.faults().expire_next_watch();
    sim.faults().drop_watches();
    builders
        .create(&PostParams::default(), &builder("after-gone", "echo again"))
        .await
        .expect("create Builder");
    phase_of(&builders, "after-gone", "Built").await;
    controller.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watcher_and_reflector_follow_changes() {
    let sim = start_sim().await;
    let client = sim.client();
    install_crd(&client).await;
    let builders: Api<Builder> = Api::namespaced(client.clone(), "default");
    builders
        .create(&PostParams::default(), &builder("one", "true"))
        .await
        .expect("create");

    let (reader, writer) = reflector::store::<Builder>();
    let stream = reflector(
        writer,
        watcher(builders.clone(), watcher::Config::default()),
    )
    .default_backoff()
    .applied_objects();
    let events = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let sink = events.clone();
    let task = tokio::spawn(async move {
        futures::pin_mut!(stream);
        while let Some(ev) = stream.next().await {
            if let Ok(b) = ev {
                sink.lock()
                    .unwrap()
                    .push(format!("{}={}", b.name_any(), b.spec.script));
            }
        }
    });
    reader.wait_until_ready().await.expect("store ready");
    assert_eq!(reader.state().len(), 1);

    builders
        .create(&PostParams::default(), &builder("two", "true"))
        .await
        .expect("create");
    builders
        .patch(
            "one",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"script": "echo changed"}})),
        )
        .await
        .expect("patch");
    builders
        .delete("two", &Default::default())
        .await
        .expect("delete");
    eventually("the store to follow create, patch and delete", || async {
        let state = reader.state();
        (state.len() == 1 && state[0].spec.script == "echo changed").then_some(())
    })
    .await;
    let seen = events.lock().unwrap().clone();
    assert!(seen.contains(&"two=true".to_owned()), "{seen:?}");
    assert!(seen.contains(&"one=echo changed".to_owned()), "{seen:?}");
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watcher_recovers_from_a_dropped_watch_and_410_gone() {
    // No kubelet: its watches would compete for the one injected 410.
    let sim = start_sim_without_kubelet().await;
    let client = sim.client();
    install_crd(&client).await;
    let builders: Api<Builder> = Api::namespaced(client.clone(), "default");
    builders
        .create(&PostParams::default(), &builder("before", "true"))
        .await
        .expect("create");

    let (reader, writer) = reflector::store::<Builder>();
    let inits = Arc::new(AtomicUsize::new(0));
    let counted = inits.clone();
    let stream = reflector(
        writer,
        watcher(builders.clone(), watcher::Config::default()),
    )
    .default_backoff();
    let task = tokio::spawn(async move {
        futures::pin_mut!(stream);
        while let Some(ev) = stream.next().await {
            if let Ok(watcher::Event::Init) = ev {
                counted.fetch_add(1, Ordering::SeqCst);
            }
        }
    });
    reader.wait_until_ready().await.expect("store ready");
    assert_eq!(inits.load(Ordering::SeqCst), 1);
    let has = |name: &'static str| {
        let reader = reader.clone();
        move || {
            let reader = reader.clone();
            async move {
                reader
                    .state()
                    .iter()
                    .any(|b| b.name_any() == name)
                    .then_some(())
            }
        }
    };

    // A dropped watch: the watcher re-watches from its last resourceVersion.
    sim.faults().drop_watches();
    builders
        .create(&PostParams::default(), &builder("after-drop", "true"))
        .await
        .expect("create");
    eventually(
        "the store to see an object created after the watch drop",
        has("after-drop"),
    )
    .await;

    // 410 Gone on the next watch: the watcher must relist (a second Init) and carry on.
    sim.faults().expire_next_watch();
    sim.faults().drop_watches();
    eventually("a relist after 410 Gone", || {
        let inits = inits.clone();
        async move { (inits.load(Ordering::SeqCst) >= 2).then_some(()) }
    })
    .await;
    builders
        .create(&PostParams::default(), &builder("after-gone", "true"))
        .await
        .expect("create");
    eventually(
        "the store to see an object created after 410 Gone",
        has("after-gone"),
    )
    .await;
    let mut names: Vec<String> = reader.state().iter().map(|b| b.name_any()).collect();
    names.sort();
    assert_eq!(names, ["after-drop", "after-gone", "before"]);
    task.abort();
}
