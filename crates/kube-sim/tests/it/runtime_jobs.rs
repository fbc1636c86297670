//! Job controller and kubelet semantics (crate kube-sim-kubelet) observed through kube::Client.

use crate::tools;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ContainerStateTerminated, Pod, Secret};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use kube_sim_kubelet::{ContainerOutcome, ContainerSpec, PodLogs, closure_runner};
use serde_json::json;
use tools::{AbortOnDrop, eventually, start_sim, start_sim_without_kubelet};

/// A Job running `sh -c script` with restartPolicy Never; `extra` is merged into `spec`.
fn job(name: &str, script: &str, extra: serde_json::Value) -> Job {
    let mut spec = json!({
        "template": {
            "metadata": {"labels": {"app": "runtime-test"}},
            "spec": {
                "restartPolicy": "Never",
                "containers": [{
                    "name": "main",
                    "image": "busybox:1.36",
                    "command": ["sh", "-c", script]
                }]
            }
        }
    });
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            spec.insert(k.clone(), v.clone());
        }
    }
    serde_json::from_value(json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": "default"},
        "spec": spec
    }))
    .expect("valid Job")
}

fn condition<'a>(
    job: &'a Job,
    type_: &str,
) -> Option<&'a k8s_openapi::api::batch::v1::JobCondition> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_ && c.status == "True")
}

async fn wait_for_condition(api: &Api<Job>, name: &str, type_: &str) -> Job {
    eventually(&format!("Job {name} condition {type_}"), || async {
        let job = api.get(name).await.ok()?;
        condition(&job, type_).is_some().then_some(job)
    })
    .await
}

async fn pods_of(client: &Client, job: &str) -> Vec<Pod> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.list(&ListParams::default().labels(&format!("batch.kubernetes.io/job-name={job}")))
        .await
        .expect("list pods")
        .items
}

fn terminated(pod: &Pod) -> ContainerStateTerminated {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|c| c.first())
        .and_then(|c| c.state.as_ref())
        .and_then(|s| s.terminated.clone())
        .unwrap_or_else(|| {
            panic!(
                "pod {} has no terminated state: {:?}",
                pod.name_any(),
                pod.status
            )
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn termination_message_json_reaches_the_pod_status() {
    let sim = start_sim().await;
    let client = sim.client();
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    let message = r#"{"verdict":"pass","score":97,"notes":["a b","c"]}"#;
    let script = format!("echo working; printf '%s' '{message}' > /dev/termination-log");
    jobs.create(&PostParams::default(), &job("verdict", &script, json!({})))
        .await
        .expect("create Job");

    let done = wait_for_condition(&jobs, "verdict", "Complete").await;
    let status = done.status.clone().expect("status");
    assert_eq!(status.succeeded, Some(1));
    assert!(status.active.unwrap_or(0) == 0);
    assert!(status.start_time.is_some() && status.completion_time.is_some());
    let met = condition(&done, "SuccessCriteriaMet").expect("SuccessCriteriaMet condition");
    assert_eq!(met.reason.as_deref(), Some("CompletionsReached"));
    let complete = condition(&done, "Complete").unwrap();
    assert_eq!(complete.reason.as_deref(), Some("CompletionsReached"));
    assert_eq!(
        complete.message.as_deref(),
        Some("Reached expected number of succeeded pods")
    );

    let pods = pods_of(&client, "verdict").await;
    assert_eq!(pods.len(), 1, "one pod for one completion");
    let pod = &pods[0];
    let labels = pod.labels();
    let uid = done.uid().unwrap();
    assert_eq!(labels["job-name"], "verdict");
    assert_eq!(labels["controller-uid"], uid);
    assert_eq!(labels["batch.kubernetes.io/controller-uid"], uid);
    assert_eq!(labels["app"], "runtime-test");
    let owner = &pod.owner_references()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str()),
        ("Job", uid.as_str())
    );
    assert_eq!(owner.controller, Some(true));
    assert_eq!(owner.block_owner_deletion, Some(true));

    let pod_status = pod.status.as_ref().unwrap();
    assert_eq!(pod_status.phase.as_deref(), Some("Succeeded"));
    assert!(pod_status.start_time.is_some());
    let t = terminated(pod);
    assert_eq!(t.exit_code, 0);
    assert_eq!(t.reason.as_deref(), Some("Completed"));
    assert_eq!(t.message.as_deref(), Some(message));
    assert!(t.started_at.is_some() && t.finished_at.is_some());
    assert!(t.container_id.is_some());
    let parsed: serde_json::Value = serde_json::from_str(t.message.as_deref().unwrap()).unwrap();
    assert_eq!(parsed["score"], 97);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_script_exhausts_the_backoff_limit() {
    let sim = start_sim().await;
    let client = sim.client();
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    jobs.create(
        &PostParams::default(),
        &job(
            "flaky",
            "echo about to fail >&2; exit 3",
            json!({"backoffLimit": 1}),
        ),
    )
    .await
    .expect("create Job");

    let failed = wait_for_condition(&jobs, "flaky", "Failed").await;
    let cond = condition(&failed, "Failed").unwrap();
    assert_eq!(cond.reason.as_deref(), Some("BackoffLimitExceeded"));
    assert_eq!(
        cond.message.as_deref(),
        Some("Job has reached the specified backoff limit")
    );
    let target = condition(&failed, "FailureTarget").expect("FailureTarget condition");
    assert_eq!(target.reason.as_deref(), Some("BackoffLimitExceeded"));
    assert_eq!(failed.status.as_ref().unwrap().failed, Some(2));
    assert!(failed.status.as_ref().unwrap().completion_time.is_none());

    let pods = pods_of(&client, "flaky").await;
    assert_eq!(pods.len(), 2, "backoffLimit 1 = two attempts");
    for pod in &pods {
        assert_eq!(
            pod.status.as_ref().unwrap().phase.as_deref(),
            Some("Failed")
        );
        let t = terminated(pod);
        assert_eq!(t.exit_code, 3);
        assert_eq!(t.reason.as_deref(), Some("Error"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_deadline_fails_the_job() {
    let sim = start_sim().await;
    let client = sim.client();
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    jobs.create(
        &PostParams::default(),
        &job("slow", "sleep 60", json!({"activeDeadlineSeconds": 1})),
    )
    .await
    .expect("create Job");
    let failed = wait_for_condition(&jobs, "slow", "Failed").await;
    let cond = condition(&failed, "Failed").unwrap();
    assert_eq!(cond.reason.as_deref(), Some("DeadlineExceeded"));
    assert_eq!(
        cond.message.as_deref(),
        Some("Job was active longer than specified deadline")
    );
    // No pod keeps running past the deadline.
    eventually("no active pod of Job slow", || async {
        let pods = pods_of(&client, "slow").await;
        pods.iter()
            .all(|p| {
                matches!(
                    p.status.as_ref().and_then(|s| s.phase.as_deref()),
                    Some("Succeeded" | "Failed")
                )
            })
            .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closure_runner_replaces_the_process_runner() {
    let sim = start_sim_without_kubelet().await;
    let client = sim.client();
    let seen: Arc<Mutex<Vec<ContainerSpec>>> = Arc::default();
    let record = seen.clone();
    let runner = closure_runner(move |spec: ContainerSpec| {
        record.lock().unwrap().push(spec.clone());
        async move {
            spec.logs.write(b"closure ran\n");
            // Write through the mapped termination message path, like a script would.
            std::fs::write(&spec.termination_message_path, "from-the-file").unwrap();
            ContainerOutcome::exited(0)
        }
    });
    let logs = PodLogs::default();
    let _kubelet = AbortOnDrop(kube_sim_kubelet::spawn(
        client.clone(),
        logs.clone(),
        runner,
    ));

    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
    secrets
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": "creds", "namespace": "default"},
                "data": {"token": "czNjcjN0"}
            }))
            .unwrap(),
        )
        .await
        .expect("create Secret");
    let mut j = job("closure", "ignored", json!({}));
    let tpl = j.spec.as_mut().unwrap().template.spec.as_mut().unwrap();
    let c = &mut tpl.containers[0];
    c.command = Some(vec!["/no/such/binary".into(), "$(GREETING)".into()]);
    c.args = Some(vec!["--out=/dev/termination-log".into()]);
    c.env = Some(
        serde_json::from_value(json!([
            {"name": "GREETING", "value": "hi"},
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "JOB", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['job-name']"}}},
            {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}},
            {"name": "COMBINED", "value": "$(GREETING)-$(JOB)"}
        ]))
        .unwrap(),
    );
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    jobs.create(&PostParams::default(), &j)
        .await
        .expect("create Job");
    wait_for_condition(&jobs, "closure", "Complete").await;

    let pods = pods_of(&client, "closure").await;
    assert_eq!(pods.len(), 1);
    let pod = &pods[0];
    let t = terminated(pod);
    assert_eq!(
        (t.exit_code, t.message.as_deref()),
        (0, Some("from-the-file"))
    );

    let specs = seen.lock().unwrap().clone();
    assert_eq!(specs.len(), 1, "the closure ran once");
    let spec = &specs[0];
    assert_eq!(spec.pod_name, pod.name_any());
    let mapped = spec.termination_message_path.to_string_lossy().into_owned();
    assert_eq!(spec.command, ["/no/such/binary", "hi"]);
    assert_eq!(spec.args, [format!("--out={mapped}")]);
    let env: std::collections::HashMap<_, _> = spec.env.iter().cloned().collect();
    assert_eq!(env["POD_NAME"], pod.name_any());
    assert_eq!(env["JOB"], "closure");
    assert_eq!(env["TOKEN"], "s3cr3t");
    assert_eq!(env["COMBINED"], "hi-closure");
    assert_eq!(
        logs.get("default", &pod.name_any()).as_deref(),
        Some(&b"closure ran\n"[..])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_job_garbage_collects_its_pods() {
    let sim = start_sim().await;
    let client = sim.client();
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    jobs.create(
        &PostParams::default(),
        &job("doomed", "sleep 60", json!({})),
    )
    .await
    .expect("create Job");
    let original = eventually("a Running pod of Job doomed", || async {
        let pods = pods_of(&client, "doomed").await;
        pods.into_iter()
            .find(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
    })
    .await;
    jobs.delete("doomed", &DeleteParams::background())
        .await
        .expect("delete Job");
    let gone =
        tools::poll(|| async { pods_of(&client, "doomed").await.is_empty().then_some(()) }).await;
    if gone.is_none() {
        let left: Vec<(String, Option<String>)> = pods_of(&client, "doomed")
            .await
            .iter()
            .map(|p| {
                (
                    p.uid().unwrap_or_default(),
                    p.status.clone().and_then(|s| s.phase),
                )
            })
            .collect();
        panic!(
            "pods left after deleting their Job (uid, phase): {left:?}; the original pod was {}",
            original.uid().unwrap_or_default()
        );
    }
    assert!(jobs.get_opt("doomed").await.unwrap().is_none());
}

/// Records the uid of every pod ever seen, from the start of the test.
fn track_pods(client: Client) -> (Arc<Mutex<HashSet<String>>>, AbortOnDrop) {
    let seen: Arc<Mutex<HashSet<String>>> = Arc::default();
    let sink = seen.clone();
    let api: Api<Pod> = Api::namespaced(client, "default");
    let task = tokio::spawn(async move {
        let stream = watcher(
            api,
            watcher::Config::default().labels("batch.kubernetes.io/job-name=once"),
        );
        futures::pin_mut!(stream);
        while let Some(ev) = stream.next().await {
            if let Ok(watcher::Event::Apply(p) | watcher::Event::InitApply(p)) = ev {
                sink.lock().unwrap().insert(p.uid().unwrap_or_default());
            }
        }
    });
    (seen, AbortOnDrop(task))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarting_the_controllers_creates_no_duplicate_pod() {
    let sim = start_sim_without_kubelet().await;
    let client = sim.client();
    let (uids, _tracker) = track_pods(client.clone());
    let (gate_tx, gate_rx) = tokio::sync::watch::channel(false);
    let runner = closure_runner(move |spec: ContainerSpec| {
        let mut gate = gate_rx.clone();
        async move {
            if spec.pod_name.starts_with("once-") {
                let _ = gate.wait_for(|open| *open).await;
            }
            ContainerOutcome::exited(0)
        }
    });
    let logs = PodLogs::default();
    let kubelet = AbortOnDrop(kube_sim_kubelet::spawn_kubelet(
        client.clone(),
        logs.clone(),
        runner.clone(),
    ));
    let controller = AbortOnDrop(kube_sim_kubelet::spawn_job_controller(client.clone()));

    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    jobs.create(&PostParams::default(), &job("once", "ignored", json!({})))
        .await
        .expect("create Job");
    eventually("the pod of Job once to run", || async {
        let pods = pods_of(&client, "once").await;
        pods.iter()
            .any(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
            .then_some(())
    })
    .await;

    // Restart the Job controller while the attempt runs: it must adopt the existing pod.
    controller.stop().await;
    let controller = AbortOnDrop(kube_sim_kubelet::spawn_job_controller(client.clone()));
    // Let the new controller see everything: a second Job completing proves it is working.
    jobs.create(
        &PostParams::default(),
        &job("probe-1", "ignored", json!({})),
    )
    .await
    .expect("create probe Job");
    wait_for_condition(&jobs, "probe-1", "Complete").await;
    gate_tx.send(true).expect("open the gate");
    let done = wait_for_condition(&jobs, "once", "Complete").await;
    assert_eq!(done.status.as_ref().unwrap().succeeded, Some(1));
    let pods = pods_of(&client, "once").await;
    assert_eq!(pods.len(), 1, "{pods:?}");
    let container_id = terminated(&pods[0]).container_id;

    // Restart both after completion: the finished pod is neither re-run nor replaced.
    controller.stop().await;
    kubelet.stop().await;
    let _both = AbortOnDrop(kube_sim_kubelet::spawn(client.clone(), logs, runner));
    jobs.create(
        &PostParams::default(),
        &job("probe-2", "ignored", json!({})),
    )
    .await
    .expect("create probe Job");
    wait_for_condition(&jobs, "probe-2", "Complete").await;
    let pods = pods_of(&client, "once").await;
    assert_eq!(pods.len(), 1, "{pods:?}");
    assert_eq!(
        terminated(&pods[0]).container_id,
        container_id,
        "the pod was not re-run"
    );
    assert_eq!(
        uids.lock().unwrap().len(),
        1,
        "only one pod was ever created for Job once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_of_a_lost_kubelet_is_reported_like_a_vanished_container() {
    let sim = start_sim_without_kubelet().await;
    let client = sim.client();
    let runner = closure_runner(|_spec: ContainerSpec| async move {
        std::future::pending::<()>().await;
        ContainerOutcome::exited(0)
    });
    let logs = PodLogs::default();
    let kubelet = AbortOnDrop(kube_sim_kubelet::spawn(
        client.clone(),
        logs.clone(),
        runner.clone(),
    ));
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    jobs.create(
        &PostParams::default(),
        &job("lost", "ignored", json!({"backoffLimit": 0})),
    )
    .await
    .expect("create Job");
    eventually("the pod of Job lost to run", || async {
        let pods = pods_of(&client, "lost").await;
        pods.iter()
            .any(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
            .then_some(())
    })
    .await;
    kubelet.stop().await;
    let _again = AbortOnDrop(kube_sim_kubelet::spawn(client.clone(), logs, runner));
    let failed = wait_for_condition(&jobs, "lost", "Failed").await;
    assert_eq!(
        condition(&failed, "Failed").unwrap().reason.as_deref(),
        Some("BackoffLimitExceeded")
    );
    let pods = pods_of(&client, "lost").await;
    assert_eq!(pods.len(), 1);
    let t = terminated(&pods[0]);
    assert_eq!(t.exit_code, 137);
    assert_eq!(t.reason.as_deref(), Some("ContainerStatusUnknown"));
}
