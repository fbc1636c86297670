//! The real kubectl 1.35 against kube-sim's Job controller and kubelet: logs and wait.

use crate::tools;

use tools::{Cluster, fixture};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_completes_and_its_pod_logs_are_served() {
    let cluster = Cluster::start().await;
    let job = fixture("job-hello.yaml");
    let out = cluster
        .kubectl(&["apply", "-f", job.to_str().unwrap()])
        .await;
    assert!(
        out.ok().contains("job.batch/hello created"),
        "{}",
        out.stdout
    );

    let wait = cluster
        .kubectl(&[
            "wait",
            "--for=condition=complete",
            "--timeout=30s",
            "job/hello",
        ])
        .await;
    assert!(
        wait.ok().contains("job.batch/hello condition met"),
        "{}",
        wait.stdout
    );

    // The pod, found the way a user finds it.
    let pods = cluster
        .kubectl(&[
            "get",
            "pods",
            "-l",
            "batch.kubernetes.io/job-name=hello",
            "-o",
            "name",
        ])
        .await;
    let names: Vec<&str> = pods.ok().lines().collect();
    assert_eq!(names.len(), 1, "{names:?}");
    let pod = names[0];
    let suffix = pod.trim_start_matches("pod/hello-");
    assert!(
        suffix.len() == 5
            && suffix
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()),
        "pod name {pod} is not <job>-<5 random chars>"
    );

    let logs = cluster.kubectl(&["logs", pod]).await;
    assert_eq!(logs.ok(), "hello-from-job\n");

    let phase = cluster
        .kubectl(&["get", pod, "-o", "jsonpath={.status.phase}"])
        .await;
    assert_eq!(phase.ok(), "Succeeded");

    // kubectl get jobs shows the completion.
    let jobs = cluster.kubectl(&["get", "jobs"]).await;
    let stdout = jobs.ok();
    let row = stdout
        .lines()
        .find(|l| l.starts_with("hello "))
        .unwrap_or_else(|| panic!("no hello row:\n{stdout}"));
    assert!(row.contains("Complete") && row.contains("1/1"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_of_job_resolve_through_the_job_selector() {
    let cluster = Cluster::start().await;
    let job = fixture("job-hello.yaml");
    cluster
        .kubectl(&["apply", "-f", job.to_str().unwrap()])
        .await
        .ok();
    cluster
        .kubectl(&[
            "wait",
            "--for=condition=complete",
            "--timeout=30s",
            "job/hello",
        ])
        .await
        .ok();
    // kubectl resolves job/NAME to a pod through the Job's spec.selector, which the API server
    // defaults (controller-uid label) when the Job is created.
    let logs = cluster.kubectl(&["logs", "job/hello"]).await;
    assert_eq!(logs.ok(), "hello-from-job\n");
}
