//! Kubelet semantics for bare Pods (crate kube-sim-kubelet) observed through kube::Client.

use crate::tools;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::json;
use tools::{eventually, poll, start_sim};

fn pod(name: &str, script: &str, extra: serde_json::Value) -> Pod {
    let mut spec = json!({
        "restartPolicy": "Never",
        "containers": [{"name": "main", "image": "busybox", "command": ["sh", "-c", script]}]
    });
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            spec.insert(k.clone(), v.clone());
        }
    }
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": spec
    }))
    .expect("valid Pod")
}

async fn phase(api: &Api<Pod>, name: &str, want: &str) -> Pod {
    eventually(&format!("pod {name} phase {want}"), || async {
        let p = api.get(name).await.ok()?;
        (p.status.as_ref()?.phase.as_deref()? == want).then_some(p)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_pod_is_ready_then_deleted_pod_is_killed_and_removed() {
    let sim = start_sim().await;
    let pods: Api<Pod> = Api::namespaced(sim.client(), "default");
    pods.create(
        &PostParams::default(),
        &pod("sleeper", "echo up; exec sleep 300", json!({})),
    )
    .await
    .expect("create Pod");
    let running = phase(&pods, "sleeper", "Running").await;
    let status = running.status.unwrap();
    let ready = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Ready")
        .expect("Ready condition");
    assert_eq!(ready.status, "True");
    let cs = &status.container_statuses.unwrap()[0];
    assert!(cs.ready && cs.state.as_ref().unwrap().running.is_some());

    pods.delete("sleeper", &DeleteParams::default())
        .await
        .expect("delete Pod");
    let gone = poll(|| async { pods.get_opt("sleeper").await.ok()?.is_none().then_some(()) }).await;
    assert!(
        gone.is_some(),
        "pod still present after delete: {:#?}",
        pods.get_opt("sleeper").await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_active_deadline_kills_the_container() {
    let sim = start_sim().await;
    let pods: Api<Pod> = Api::namespaced(sim.client(), "default");
    pods.create(
        &PostParams::default(),
        &pod(
            "bounded",
            "exec sleep 300",
            json!({"activeDeadlineSeconds": 1}),
        ),
    )
    .await
    .expect("create Pod");
    let failed = phase(&pods, "bounded", "Failed").await;
    let status = failed.status.unwrap();
    assert_eq!(status.reason.as_deref(), Some("DeadlineExceeded"));
    let t = status.container_statuses.unwrap()[0]
        .state
        .clone()
        .unwrap()
        .terminated
        .expect("terminated");
    assert_eq!(t.exit_code, 137);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_failure_restarts_in_place_and_falls_back_to_logs() {
    let sim = start_sim().await;
    let pods: Api<Pod> = Api::namespaced(sim.client(), "default");
    let marker = tempfile::tempdir().expect("tempdir");
    let marker = marker.path().join("ran-once");
    let script = format!(
        "if [ -f {m} ]; then echo second run; exit 0; fi; touch {m}; echo first run failed; exit 2",
        m = marker.display()
    );
    let mut p = pod("retry", &script, json!({"restartPolicy": "OnFailure"}));
    p.spec.as_mut().unwrap().containers[0].termination_message_policy =
        Some("FallbackToLogsOnError".into());
    pods.create(&PostParams::default(), &p)
        .await
        .expect("create Pod");
    let done = phase(&pods, "retry", "Succeeded").await;
    let cs = done.status.unwrap().container_statuses.unwrap()[0].clone();
    assert_eq!(cs.restart_count, 1);
    let last = cs
        .last_state
        .unwrap()
        .terminated
        .expect("lastState.terminated");
    assert_eq!(last.exit_code, 2);
    assert_eq!(last.reason.as_deref(), Some("Error"));
    // Empty termination file + failure + FallbackToLogsOnError: the log tail is the message.
    assert_eq!(last.message.as_deref(), Some("first run failed\n"));
    let now = cs.state.unwrap().terminated.expect("terminated");
    assert_eq!(
        (now.exit_code, now.reason.as_deref()),
        (0, Some("Completed"))
    );
    let logs = sim.pod_logs().get("default", "retry").unwrap_or_default();
    assert_eq!(
        String::from_utf8_lossy(&logs),
        "first run failed\nsecond run\n"
    );
}
