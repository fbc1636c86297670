//! The harness itself: a real control plane starts, runs a Job through the real Job controller on
//! the stand-in node, garbage-collects its pods, and stops every process when dropped.

use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{DeleteParams, ListParams, PostParams};

/// Hang protection only.
const DEADLINE: Duration = Duration::from_secs(90);

/// qms-testkit's poll with this harness's deadline (a real control plane on a loaded machine).
async fn poll<T, Fut>(what: &str, probe: impl FnMut() -> Fut) -> T
where
    Fut: std::future::Future<Output = Option<T>>,
{
    qms_testkit::poll_for(DEADLINE, Duration::from_millis(200), probe)
        .await
        .unwrap_or_else(|| panic!("gave up waiting for {what}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_runs_on_the_real_control_plane_and_everything_stops_on_drop() {
    let plane = kube_real::KubeReal::start()
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    let version = plane.client().apiserver_version().await.expect("version");
    assert_eq!(
        (version.major.as_str(), version.minor.as_str()),
        ("1", "20")
    );

    let ns = plane.namespace("harness").await.expect("namespace");
    let jobs: Api<Job> = Api::namespaced(ns.client(), ns.name());
    let job: Job = serde_json::from_value(serde_json::json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": "hello"},
        "spec": {"backoffLimit": 0, "template": {"spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "c", "image": "busybox:1.37",
                "command": ["sh", "-c", "printf done > /dev/termination-log"]}]
        }}}
    }))
    .unwrap();
    jobs.create(&PostParams::default(), &job)
        .await
        .expect("create job");
    // The real Job controller sees the pod succeed and marks the Job Complete.
    let done = poll("the Job to complete", || async {
        let j = jobs.get("hello").await.ok()?;
        let s = j.status?;
        (s.succeeded == Some(1)).then_some(s)
    })
    .await;
    assert!(
        done.conditions
            .unwrap_or_default()
            .iter()
            .any(|c| c.type_ == "Complete" && c.status == "True")
    );
    let pods: Api<Pod> = Api::namespaced(ns.client(), ns.name());
    let lp = ListParams::default().labels("job-name=hello");
    let pod = &pods.list(&lp).await.expect("pods").items[0];
    let term = pod
        .status
        .as_ref()
        .unwrap()
        .container_statuses
        .as_ref()
        .unwrap()[0]
        .state
        .as_ref()
        .unwrap()
        .terminated
        .clone()
        .unwrap();
    assert_eq!((term.exit_code, term.message.as_deref()), (0, Some("done")));

    // The real garbage collector deletes the pods of a Job deleted in the background.
    jobs.delete("hello", &DeleteParams::background())
        .await
        .expect("delete job");
    poll("the pods to be garbage-collected", || async {
        pods.list(&lp).await.ok()?.items.is_empty().then_some(())
    })
    .await;

    let addr = plane.addr();
    let logs = plane.log_dir().to_path_buf();
    drop(ns);
    drop(plane);
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "the apiserver still listens on {addr}"
    );
    assert!(!logs.exists(), "{} was not removed", logs.display());
}

#[test]
fn missing_binaries_name_the_installer() {
    // QMS_KUBE_BIN is set only in a child process (this test re-run), so the other test of this
    // binary keeps the real binaries.
    let exe = std::env::current_exe().unwrap();
    if std::env::var_os("KUBE_REAL_CHILD").is_some() {
        let err = kube_real::bin_dir().unwrap_err().to_string();
        assert!(err.contains("scripts/install-kube.sh"), "{err}");
        return;
    }
    // The test's name in the `it` binary: `control_plane::missing_binaries_name_the_installer`.
    let (_, module) = module_path!()
        .split_once("::")
        .expect("a module of the it binary");
    let name = format!("{module}::missing_binaries_name_the_installer");
    let out = std::process::Command::new(exe)
        .args(["--exact", &name, "--nocapture"])
        .env("KUBE_REAL_CHILD", "1")
        .env("QMS_KUBE_BIN", "/nonexistent/kube-bin")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 passed"));
}
