//! `kubectl qms …` through the real kubectl's plugin mechanism (the binary `kubectl-qms` found on
//! PATH) against kube-sim with the real CRDs and the examples applied by the real kubectl. The
//! workflow's status is written here as the operator would write it; every write of the plugin is
//! checked in the stored spec.

use std::path::PathBuf;
use std::process::Output;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use kube_sim::KubeSim;
use qms_api::{Decision, QmsWorkflow};
use serde_json::json;

const NAME: &str = "creo-roo-commander-pr-12345";
const SHA: &str = "3f7c2a9d41e8b6c05d9a7e1f2b3c4d5e6f708192";
const NEW_SHA: &str = "9a8b7c6d5e4f30211223344556677889900aabbc";
const DOR_JOB: &str = "qms-pr-12345-r1-dor-validation-a1-dor";
const DEADLINE: Duration = Duration::from_secs(60);

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn tools_bin() -> PathBuf {
    let dir = std::env::var_os("QMS_TOOLS_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".tools/bin"));
    assert!(
        dir.join("kubectl").is_file(),
        "kubectl not found in {}: run scripts/install-tools.sh",
        dir.display()
    );
    dir
}

struct Rig {
    sim: KubeSim,
    client: Client,
    /// Holds `kubectl-qms` only (a symlink to the built binary): kubectl must find it on PATH.
    plugins: tempfile::TempDir,
    home: tempfile::TempDir,
}

impl Rig {
    async fn start() -> Rig {
        let sim = KubeSim::builder().start().await.expect("kube-sim starts");
        let client = sim.client();
        let plugins = tempfile::tempdir().expect("tempdir");
        std::os::unix::fs::symlink(
            env!("CARGO_BIN_EXE_kubectl-qms"),
            plugins.path().join("kubectl-qms"),
        )
        .expect("symlink plugin");
        let rig = Rig {
            sim,
            client,
            plugins,
            home: tempfile::tempdir().expect("tempdir"),
        };
        rig.ok(&["apply", "-f", "crds/"]).await;
        rig.wait_for_crds().await;
        rig.ok(&["apply", "-f", "examples/"]).await;
        rig
    }

    async fn wait_for_crds(&self) {
        let served = || async {
            let out = self.kubectl(&["get", "qmsworkflows"]).await;
            (out.status.code() == Some(0)).then_some(())
        };
        qms_testkit::poll_for(DEADLINE, Duration::from_millis(100), served)
            .await
            .expect("CRDs never served");
    }

    async fn kubectl(&self, args: &[&str]) -> Output {
        let path = format!(
            "{}:{}:/usr/bin:/bin",
            self.plugins.path().display(),
            tools_bin().display()
        );
        let cmd = tokio::process::Command::new(tools_bin().join("kubectl"))
            .args(args)
            .env("PATH", path)
            .env("KUBECONFIG", self.sim.kubeconfig_path())
            .env("HOME", self.home.path())
            .current_dir(repo_root())
            .kill_on_drop(true)
            .output();
        tokio::time::timeout(DEADLINE, cmd)
            .await
            .unwrap_or_else(|_| panic!("kubectl {args:?} hung"))
            .expect("kubectl runs")
    }

    async fn ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args).await;
        assert!(
            out.status.success(),
            "kubectl {args:?} failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Fails, with the message on stderr; returns it.
    async fn refused(&self, args: &[&str]) -> String {
        let out = self.kubectl(args).await;
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            !out.status.success(),
            "kubectl {args:?} succeeded:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert!(err.starts_with("error: "), "{err}");
        err
    }

    fn workflows(&self) -> Api<QmsWorkflow> {
        Api::namespaced(self.client.clone(), "default")
    }

    async fn workflow(&self) -> QmsWorkflow {
        self.workflows().get(NAME).await.expect("workflow")
    }

    /// The status the operator writes while the final review waits for a person.
    async fn set_waiting_status(&self) {
        let status = json!({"status": {
        "state": "FINAL_PENDING", "currentStep": "final-review", "headSha": SHA, "run": 1,
        "gates": "5/6", "correlationId": "corr-12345-1",
        "steps": [
            {"name": "dor-validation", "phase": "Succeeded", "attempt": 1,
             "tasks": [{"jobName": DOR_JOB, "agent": "qms-dor-validator",
                        "selector": "qms-dor-validator", "attempt": 1, "phase": "Succeeded",
                        "result": {"status": "success", "summary": "ready for review",
                                   "metrics": {"basic_checks_failed": 0.0}}}],
             "gates": [{"name": "basic-checks", "metric": "basic_checks_failed", "value": 0.0,
                        "operator": "eq", "threshold": 0.0, "verdict": "Passed",
                        "blocking": true}]},
            {"name": "progress-reviews", "phase": "Succeeded", "attempt": 2,
             "gates": [{"name": "code-coverage", "metric": "test_coverage", "value": 72.5,
                        "operator": "gte", "threshold": 80.0, "unit": "percentage",
                        "verdict": "Overridden", "blocking": true,
                        "message": "72.5 < 80 (overridden)"}]},
            {"name": "dod-validation", "phase": "Succeeded", "attempt": 1},
            {"name": "final-review", "phase": "WaitingForApproval", "attempt": 1}
        ]}});
        self.workflows()
            .patch_status(NAME, &PatchParams::default(), &Patch::Merge(&status))
            .await
            .expect("status written");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_qms_shows_a_review_and_records_decisions_in_its_spec() {
    let rig = Rig::start().await;
    let plugins = rig.ok(&["plugin", "list"]).await;
    assert!(plugins.contains("kubectl-qms"), "{plugins}");
    rig.set_waiting_status().await;

    // status, by name and by PR number; the list without one.
    let status = rig.ok(&["qms", "status", NAME]).await;
    for expected in [
        "Pull request: creo/creo-roo-commander#12345",
        "State:        FINAL_PENDING",
        "basic-checks: basic_checks_failed 0 == 0 → Passed",
        "code-coverage: test_coverage 72.5 >= 80 percentage → Overridden",
        "task qms-dor-validator (attempt 1): Succeeded",
        "Waiting for:  a decision on final-review for 3f7c2a9: kubectl qms approve",
    ] {
        assert!(
            status.contains(expected),
            "missing {expected:?} in\n{status}"
        );
    }
    assert_eq!(rig.ok(&["qms", "status", "12345"]).await, status);
    let list = rig.ok(&["qms", "status"]).await;
    assert!(
        list.contains(NAME)
            && list.contains("FINAL_PENDING")
            && list.contains("a decision on final-review"),
        "{list}"
    );

    // approve: the step waiting for approval, the current head, the kubeconfig's user.
    let out = rig
        .ok(&["qms", "approve", "12345", "--reason", "reviewed"])
        .await;
    assert!(
        out.contains(
            "final-review of creo-roo-commander-pr-12345 approved by kube-sim for 3f7c2a9"
        ),
        "{out}"
    );
    let wf = rig.workflow().await;
    assert_eq!(wf.spec.approvals.len(), 1, "{:?}", wf.spec.approvals);
    let a = &wf.spec.approvals[0];
    assert_eq!(
        (
            a.step.as_str(),
            a.decision,
            a.by.as_str(),
            a.reason.as_str(),
            a.sha.as_str()
        ),
        (
            "final-review",
            Decision::Approve,
            "kube-sim",
            "reviewed",
            SHA
        )
    );
    assert!(
        a.at.as_deref()
            .is_some_and(|t| chrono::DateTime::parse_from_rfc3339(t).is_ok())
    );
    // The same decision again changes nothing.
    let again = rig
        .ok(&["qms", "approve", NAME, "--reason", "reviewed"])
        .await;
    assert!(again.contains("already approved"), "{again}");
    assert_eq!(rig.workflow().await.spec.approvals.len(), 1);

    // A stale SHA, a wrong name, a wrong step, a reject without reason: refused, nothing written.
    let err = rig
        .refused(&["qms", "approve", NAME, "--sha", "9a8b7c6d", "--as", "bob"])
        .await;
    assert!(
        err.contains("stale SHA") && err.contains(SHA) && err.contains("9a8b7c6d"),
        "{err}"
    );
    let err = rig.refused(&["qms", "status", "no-such-review"]).await;
    assert!(
        err.contains("no QmsWorkflow \"no-such-review\" in namespace \"default\""),
        "{err}"
    );
    let err = rig.refused(&["qms", "approve", "999"]).await;
    assert!(
        err.contains("no QmsWorkflow for pull request #999"),
        "{err}"
    );
    let err = rig
        .refused(&["qms", "approve", NAME, "--step", "final-reveiw"])
        .await;
    assert!(
        err.contains("no step \"final-reveiw\"") && err.contains("dod-validation, final-review"),
        "{err}"
    );
    let err = rig.refused(&["qms", "reject", NAME, "--as", "bob"]).await;
    assert!(err.contains("--reason"), "{err}");
    assert_eq!(rig.workflow().await.spec.approvals.len(), 1);

    // reject, as someone else, with the SHA given (a prefix of the head).
    rig.ok(&[
        "qms",
        "reject",
        NAME,
        "--reason",
        "needs docs",
        "--sha",
        "3f7c2a9d",
        "--as",
        "bob",
    ])
    .await;
    let wf = rig.workflow().await;
    let r = &wf.spec.approvals[1];
    assert_eq!(
        (r.decision, r.by.as_str(), r.reason.as_str(), r.sha.as_str()),
        (Decision::Reject, "bob", "needs docs", SHA)
    );

    // retry: a fresh id each time, the step checked against the template.
    rig.ok(&["qms", "retry", NAME, "dor-validation", "--as", "carol"])
        .await;
    let first = rig.workflow().await.spec.retry.expect("retry written");
    assert_eq!(first.step.as_deref(), Some("dor-validation"));
    assert_eq!(first.by.as_deref(), Some("carol"));
    assert!(first.id.starts_with("kubectl-"), "{}", first.id);
    rig.ok(&["qms", "retry", NAME]).await;
    let second = rig.workflow().await.spec.retry.expect("retry written");
    assert_ne!(second.id, first.id);
    assert_eq!(second.step, None);
    let err = rig.refused(&["qms", "retry", NAME, "nope"]).await;
    assert!(err.contains("no step \"nope\""), "{err}");

    // override: for the head SHA, until now + 24h; unknown gates and past expiries refused.
    let before = chrono::Utc::now();
    rig.ok(&[
        "qms",
        "override",
        NAME,
        "code-coverage",
        "--reason",
        "hotfix",
        "--expires",
        "24h",
    ])
    .await;
    let wf = rig.workflow().await;
    assert_eq!(wf.spec.overrides.len(), 1);
    let o = &wf.spec.overrides[0];
    assert_eq!(
        (
            o.gate.as_str(),
            o.by.as_str(),
            o.reason.as_str(),
            o.sha.as_str()
        ),
        ("code-coverage", "kube-sim", "hotfix", SHA)
    );
    let expires = chrono::DateTime::parse_from_rfc3339(&o.expires).expect("rfc3339");
    let ahead = expires.to_utc() - before;
    assert!(
        ahead > chrono::Duration::hours(23) && ahead <= chrono::Duration::hours(25),
        "{ahead}"
    );
    let err = rig
        .refused(&[
            "qms",
            "override",
            NAME,
            "coverage",
            "--reason",
            "x",
            "--expires",
            "1h",
        ])
        .await;
    assert!(
        err.contains("no gate \"coverage\"") && err.contains("code-coverage"),
        "{err}"
    );
    let err = rig
        .refused(&[
            "qms",
            "override",
            NAME,
            "code-coverage",
            "--reason",
            "x",
            "--expires",
            "2020-01-01T00:00:00Z",
        ])
        .await;
    assert!(
        err.contains("--expires") && err.contains("not in the future"),
        "{err}"
    );
    assert_eq!(rig.workflow().await.spec.overrides.len(), 1);

    // explain: the rule, the result in this review, the override in force.
    let text = rig.ok(&["qms", "explain", "code-coverage", NAME]).await;
    for expected in [
        "Gate code-coverage: blocking",
        "Passes when test_coverage >= 80 percentage.",
        "Missing metric (onMissing: fail): an Error, counts as failed.",
        "step progress-reviews: code-coverage: test_coverage 72.5 >= 80 percentage → Overridden",
        "override by kube-sim until",
        "(in force)",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in\n{text}");
    }
    let err = rig.refused(&["qms", "explain", "no-gate"]).await;
    assert!(err.contains("no QualityGate \"no-gate\""), "{err}");

    // The approvals the plugin wrote are what the README's raw patch writes: same fields.
    let raw = rig
        .ok(&[
            "get",
            "qmsworkflow",
            NAME,
            "-o",
            "jsonpath={.spec.approvals[0]}",
        ])
        .await;
    let raw: serde_json::Value = serde_json::from_str(&raw).expect("json");
    let mut keys: Vec<&str> = raw
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(keys, ["at", "by", "decision", "reason", "sha", "step"]);
    rig.sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_qms_logs_prints_the_agent_jobs_pod_logs() {
    let rig = Rig::start().await;
    rig.set_waiting_status().await;
    // The Job the status names, run by kube-sim's kubelet as a local process.
    let job: Job = serde_json::from_value(json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": DOR_JOB, "namespace": "default"},
        "spec": {"backoffLimit": 0, "template": {"spec": {"restartPolicy": "Never",
            "containers": [{"name": "agent", "image": "busybox",
                            "command": ["sh", "-c", "echo dor: all 12 checks passed"]}]}}}
    }))
    .expect("job");
    Api::<Job>::namespaced(rig.client.clone(), "default")
        .create(&PostParams::default(), &job)
        .await
        .expect("job created");
    let pods: Api<Pod> = Api::namespaced(rig.client.clone(), "default");
    let finished = || async {
        pods.list(&ListParams::default().labels(&format!("batch.kubernetes.io/job-name={DOR_JOB}")))
            .await
            .expect("pods")
            .items
            .iter()
            .any(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Succeeded"))
            .then_some(())
    };
    qms_testkit::poll_for(DEADLINE, Duration::from_millis(100), finished)
        .await
        .expect("the Job's pod never finished");
    let logs = rig.ok(&["qms", "logs", NAME, "dor-validation"]).await;
    assert!(
        logs.contains(&format!(
            "==> qms-dor-validator (Job {DOR_JOB}, pod {DOR_JOB}-"
        )),
        "{logs}"
    );
    assert!(logs.contains("dor: all 12 checks passed"), "{logs}");

    // A step without tasks in this run, an unknown step, an agent with no task: named errors.
    let err = rig.refused(&["qms", "logs", NAME, "final-review"]).await;
    assert!(
        err.contains("step \"final-review\"") && err.contains("no task"),
        "{err}"
    );
    let err = rig.refused(&["qms", "logs", NAME, "lint"]).await;
    assert!(err.contains("no step \"lint\""), "{err}");
    let err = rig
        .refused(&[
            "qms",
            "logs",
            NAME,
            "dor-validation",
            "--agent",
            "qms-code-reviewer",
        ])
        .await;
    assert!(err.contains("agent qms-code-reviewer"), "{err}");
    rig.sim.stop().await;
}

/// A push between reading the workflow and writing the decision: the patch's test of the head
/// SHA refuses it, and the decision is not attached to the new commit nobody looked at.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decision_is_not_recorded_when_the_head_moved_meanwhile() {
    let rig = Rig::start().await;
    let cluster = kubectl_qms::cluster::Cluster {
        client: rig.client.clone(),
        namespace: "default".into(),
        user: Some("kube-sim".into()),
    };
    let (wf, _) = cluster.workflow(NAME, None).await.expect("read");
    assert_eq!(wf.spec.head_sha, SHA);
    // The push lands after the read.
    rig.workflows()
        .patch(
            NAME,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"headSha": NEW_SHA}})),
        )
        .await
        .expect("push");
    let entry = kubectl_qms::decide::approval(
        "final-review".into(),
        Decision::Approve,
        "kube-sim",
        "ok",
        SHA,
        chrono::Utc::now(),
    );
    let err = cluster
        .append_guarded(
            NAME,
            "approvals",
            SHA,
            serde_json::to_value(&entry).unwrap(),
        )
        .await
        .expect_err("refused");
    let msg = err.to_string();
    assert!(
        msg.contains(SHA) && msg.contains(NEW_SHA) && msg.contains("nothing was changed"),
        "{msg}"
    );
    assert!(rig.workflow().await.spec.approvals.is_empty());

    // The guard itself, without the re-read: the API server refuses the patch (test op).
    let patch = kubectl_qms::decide::append_patch(
        "/spec/approvals",
        false,
        SHA,
        serde_json::to_value(&entry).unwrap(),
    );
    let patch: json_patch::Patch = serde_json::from_value(patch).unwrap();
    let refused = rig
        .workflows()
        .patch(NAME, &PatchParams::default(), &Patch::<()>::Json(patch))
        .await;
    assert!(
        matches!(refused, Err(kube::Error::Api(ref s)) if s.code == 422),
        "{refused:?}"
    );
    assert!(rig.workflow().await.spec.approvals.is_empty());
    rig.sim.stop().await;
}
