//! End-to-end scenarios shared by the kube-sim tier (`e2e.rs`) and the real control plane
//! (`e2e_real.rs`): one test, two servers. Each takes a started [`Env`].

use std::collections::BTreeMap;

use kube::ResourceExt;
use qms_api::{GateVerdict, StepPhase, TaskPhase, WorkflowState};

use super::*;

/// 1. The standard template of examples/ walks to FINAL_PENDING; an approval completes it. Each
///    step's Jobs got the right payload; gate results carry value and threshold.
pub async fn standard_review_completes_after_approval(env: &Env) {
    env.apply_examples(false).await;
    let op = env.operator(env.settings()).await;
    op.wait_ready().await;
    env.apply_examples(true).await;
    let name = "creo-roo-commander-pr-12345";
    let sha = "3f7c2a9d41e8b6c05d9a7e1f2b3c4d5e6f708192";

    let wf = env
        .wait_for(name, "FINAL_PENDING waiting for approval", |wf| {
            state_of(wf) == WorkflowState::FinalPending
                && qms_operator::dev::waiting_step(wf).as_deref() == Some("final-review")
        })
        .await;
    let status = wf.status.clone().unwrap();
    assert_eq!(status.current_step.as_deref(), Some("final-review"));
    let final_step = status.step("final-review").unwrap();
    assert_eq!(final_step.phase, StepPhase::WaitingForApproval);

    // Every automated step ran its agents with the task payload of spec §3.2.
    let jobs = env.list_jobs().await;
    let mut steps_seen = BTreeMap::new();
    for job in &jobs {
        let task = task_of(job);
        let step = label(job, "qms.creo.dev/step").to_owned();
        assert_eq!(task["task_type"], step.as_str(), "{}", job.name_any());
        assert_eq!(task["agent_id"], label(job, "qms.creo.dev/agent"));
        assert_eq!(task["task_id"], job.name_any().as_str());
        assert_eq!(task["workflow_id"], format!("{}/{name}", env.ns).as_str());
        assert_eq!(task["payload"]["pr_number"], 12345);
        assert_eq!(task["payload"]["repository"], "creo/creo-roo-commander");
        assert_eq!(task["payload"]["head_sha"], sha);
        assert_eq!(job_env(job)["QMS_HEAD_SHA"], sha);
        assert_eq!(job_env(job)["QMS_STEP"], step.as_str());
        let spec = job.spec.as_ref().unwrap();
        assert_eq!(spec.backoff_limit, Some(0));
        assert!(spec.active_deadline_seconds.is_some());
        let owner = &job.owner_references()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.controller),
            ("QmsWorkflow", Some(true))
        );
        *steps_seen.entry(step).or_insert(0) += 1;
    }
    assert_eq!(
        steps_seen,
        BTreeMap::from([
            ("dor-validation".to_owned(), 1),
            ("progress-reviews".to_owned(), 2),
            ("dod-validation".to_owned(), 1),
            ("final-review".to_owned(), 1),
        ])
    );
    // The coverage gate's requirements reached the testing agent.
    let testing = jobs
        .iter()
        .find(|j| label(j, "qms.creo.dev/agent") == "qms-testing-specialist")
        .unwrap();
    let gates = &task_of(testing)["payload"]["requirements"]["gates"];
    assert!(
        gates
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["name"] == "code-coverage" && g["threshold"] == 80.0),
        "{gates}"
    );

    // Gate results in status carry value and threshold.
    let progress = status.step("progress-reviews").unwrap();
    let coverage = progress
        .gates
        .iter()
        .find(|g| g.name == "code-coverage")
        .unwrap();
    assert_eq!(coverage.verdict, GateVerdict::Passed);
    assert_eq!(coverage.value, Some(85.2));
    assert_eq!(coverage.threshold, Some(80.0));
    assert!(coverage.blocking);

    env.decide(name, "final-review", sha, "approve").await;
    let wf = env.wait_state(name, WorkflowState::Completed).await;
    let status = wf.status.unwrap();
    assert_eq!(status.gates.as_deref(), Some("6/6"));
    assert!(status.completed_at.is_some());
    assert_eq!(env.list_jobs().await.len(), 5, "no Job was created twice");

    // Events were recorded with the spec's event types.
    env.wait_event(name, "WorkflowCompleted").await;
    let events = env.events(name).await;
    let actions: Vec<&str> = events.iter().filter_map(|e| e.action.as_deref()).collect();
    for t in [
        "workflow.started",
        "gate.passed",
        "step.completed",
        "workflow.completed",
    ] {
        assert!(
            actions.iter().any(|a| a.split(' ').next() == Some(t)),
            "missing {t} in {actions:?}"
        );
    }
    // Each gate keeps its own event (not one series carrying the first gate's note).
    let gate_events = actions
        .iter()
        .filter(|a| a.starts_with("gate.passed "))
        .count();
    assert_eq!(gate_events, 6, "{actions:?}");
    assert!(
        events
            .iter()
            .filter_map(|e| e.note.as_deref())
            .any(|n| n.contains("correlation_id=corr-"))
    );

    // Metrics.
    let text = qms_operator::http::render_metrics(&op.shared);
    assert!(text.contains(r#"qms_workflow_duration_seconds_count{workflow_type="standard-qms-review",status="COMPLETED"} 1"#), "{text}");
    assert!(
        text.contains(
            r#"qms_quality_gate_results_total{gate_name="code-coverage",result="passed"} 1"#
        ),
        "{text}"
    );
    assert!(
        text.contains(r#"qms_workflows{state="COMPLETED"} 1"#),
        "{text}"
    );
    op.stop().await;
}

/// 2. A DoR agent failure → DOR_FAILED; a fix pushed (new SHA) runs again and passes.
pub async fn dor_failure_then_fix_pushed_passes(env: &Env) {
    let script = format!(
        "if [ \"$QMS_HEAD_SHA\" = \"bbbbbbb\" ]; then {}; else {}; fi",
        result("success", r#""basic_checks_failed":0"#, 0),
        result("failure", r#""basic_checks_failed":2"#, 1)
    );
    env.apply(&agent("dor", 5, &script)).await;
    env.apply(&gate("basic", "basic_checks_failed", "eq", 0.0, true))
        .await;
    env.apply(&template_one_step("t", "dor", &["basic"], ""))
        .await;
    let op = env.operator(env.settings()).await;
    env.apply(&workflow("pr-2", "t", "aaaaaaa")).await;

    let wf = env.wait_state("pr-2", WorkflowState::DorFailed).await;
    let s = wf.status.unwrap();
    assert_eq!(s.run, 1);
    assert_eq!(s.head_sha.as_deref(), Some("aaaaaaa"));

    env.set_head_sha("pr-2", "bbbbbbb").await;
    let wf = env
        .wait_for("pr-2", "COMPLETED for the new SHA", |wf| {
            state_of(wf) == WorkflowState::Completed
                && wf.status.as_ref().and_then(|s| s.head_sha.as_deref()) == Some("bbbbbbb")
        })
        .await;
    let s = wf.status.unwrap();
    assert_eq!(s.run, 2, "the new SHA started a new run");
    let gate = &s.step("check").unwrap().gates[0];
    assert_eq!((gate.verdict, gate.value), (GateVerdict::Passed, Some(0.0)));
    let history: Vec<_> = s.history.iter().map(|t| t.to).collect();
    assert!(history.contains(&WorkflowState::DorFailed), "{history:?}");
    op.stop().await;
}

/// 10. The real `kubectl get qmsworkflows` shows the state columns.
pub async fn kubectl_get_shows_state_columns(env: &Env) {
    let kubectl = tools_bin().join("kubectl");
    assert!(
        kubectl.exists(),
        "kubectl not found at {} (set QMS_TOOLS_BIN or run scripts/install-tools.sh)",
        kubectl.display()
    );
    env.apply(&agent("ok", 5, &result("success", "", 0))).await;
    env.apply(&template_with_manual("t", "ok")).await;
    let op = env.operator(env.settings()).await;
    env.apply(&workflow("pr-10", "t", "abcdef0")).await;
    env.wait_state("pr-10", WorkflowState::FinalPending).await;
    let out = std::process::Command::new(&kubectl)
        .arg("--kubeconfig")
        .arg(env.sim.kubeconfig_path())
        .args(["-n", &env.ns, "get", "qmsworkflows"])
        .output()
        .expect("kubectl runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut lines = stdout.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "REPOSITORY", "PR", "STATE", "STEP", "GATES", "AGE"]
    );
    let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        &row[..5],
        ["pr-10", "creo/app", "7", "FINAL_PENDING", "final-review"],
        "{stdout}"
    );
    op.stop().await;
}

/// The real `kubectl wait` follows a review (a state by JSONPath, then the `Ready` condition once
/// approved) and `kubectl describe` shows its state, steps, gate-less tasks and the operator's
/// Events.
pub async fn kubectl_wait_and_describe_follow_a_review(env: &Env) {
    env.apply(&agent("ok", 5, &result("success", "", 0))).await;
    env.apply(&template_with_manual("t", "ok")).await;
    let op = env.operator(env.settings()).await;
    env.apply(&workflow("pr-11", "t", "abcdef1")).await;
    let pending = kubectl_wait(env, "--for=jsonpath={.status.state}=FINAL_PENDING", "pr-11");
    assert_eq!(
        pending.await.expect("kubectl wait"),
        "qmsworkflow.qms.creo.dev/pr-11 condition met"
    );
    assert_eq!(
        state_of(&env.get("pr-11").await),
        WorkflowState::FinalPending
    );
    env.wait_event("pr-11", "WorkflowStarted").await;

    let described = kubectl(env, &["describe", "qmsworkflow", "pr-11"]).await;
    let has = |key: &str, value: &str| {
        described.lines().any(|l| {
            let l = l.trim();
            l.starts_with(key) && l.ends_with(value)
        })
    };
    for (key, value) in [
        ("Name:", "pr-11"),
        ("Namespace:", env.ns.as_str()),
        ("Kind:", "QmsWorkflow"),
        ("Head Sha:", "abcdef1"),
        ("State:", "FINAL_PENDING"),
        ("Current Step:", "final-review"),
        ("Phase:", "WaitingForApproval"),
    ] {
        assert!(
            has(key, value),
            "describe lacks `{key} {value}`:\n{described}"
        );
    }
    let events = described
        .split("\nEvents:")
        .nth(1)
        .unwrap_or_else(|| panic!("no Events section:\n{described}"));
    assert!(events.contains("WorkflowStarted"), "{described}");

    let ready = kubectl_wait(env, "--for=condition=Ready", "pr-11");
    env.decide("pr-11", "final-review", "abcdef1", "approve")
        .await;
    assert_eq!(
        ready.await.expect("kubectl wait"),
        "qmsworkflow.qms.creo.dev/pr-11 condition met"
    );
    assert_eq!(state_of(&env.get("pr-11").await), WorkflowState::Completed);
    op.stop().await;
}

/// Runs the real kubectl (`$QMS_TOOLS_BIN`) on `env`'s server and namespace; its stdout, trimmed.
pub async fn kubectl(env: &Env, args: &[&str]) -> String {
    let args = args.iter().map(|a| (*a).to_owned()).collect();
    run_kubectl(env.sim.kubeconfig_path().to_owned(), env.ns.clone(), args).await
}

/// `kubectl wait CONDITION qmsworkflow/NAME` started now (it watches while the test goes on),
/// with [`DEADLINE`] as its timeout; the handle yields its stdout.
pub fn kubectl_wait(env: &Env, condition: &str, name: &str) -> tokio::task::JoinHandle<String> {
    let args = vec![
        "wait".to_owned(),
        condition.to_owned(),
        format!("--timeout={}s", DEADLINE.as_secs()),
        format!("qmsworkflow/{name}"),
    ];
    tokio::spawn(run_kubectl(
        env.sim.kubeconfig_path().to_owned(),
        env.ns.clone(),
        args,
    ))
}

async fn run_kubectl(kubeconfig: PathBuf, ns: String, args: Vec<String>) -> String {
    let kubectl = tools_bin().join("kubectl");
    assert!(
        kubectl.exists(),
        "kubectl not found at {} (set QMS_TOOLS_BIN or run scripts/install-tools.sh)",
        kubectl.display()
    );
    let out = tokio::process::Command::new(&kubectl)
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args(["-n", &ns])
        .args(&args)
        .output()
        .await
        .expect("kubectl runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "kubectl {args:?}: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout.trim().to_owned()
}

/// 7. The operator is stopped and started again at every observed change of the workflow (state,
///    step, tasks): no duplicate Job, the same final result.
pub async fn restart_in_every_state_creates_no_duplicates(env: &Env) {
    env.apply_examples(false).await;
    let mut op = Some(env.operator(env.settings()).await);
    env.apply_examples(true).await;
    let name = "creo-roo-commander-pr-12345";
    let mut seen: Vec<String> = Vec::new();
    let mut restarts = 0;
    let start = tokio::time::Instant::now();
    let final_wf = loop {
        assert!(start.elapsed() < DEADLINE, "gave up; seen {seen:?}");
        let wf = env.get(name).await;
        let s = wf.status.clone().unwrap_or_default();
        let fingerprint = format!(
            "{} {:?} {:?}",
            s.state,
            s.current_step,
            s.steps
                .iter()
                .map(|st| (
                    st.phase,
                    st.tasks.iter().map(|t| t.phase).collect::<Vec<_>>()
                ))
                .collect::<Vec<_>>()
        );
        if seen.last() != Some(&fingerprint) {
            seen.push(fingerprint);
            // kill at this point and start a fresh operator
            if let Some(old) = op.take() {
                old.stop().await;
            }
            op = Some(env.operator(env.settings()).await);
            restarts += 1;
        }
        if let Some(step) = needs_approval(&wf) {
            approve_retrying(env, name, &step, &wf.spec.head_sha.clone()).await;
        }
        if s.state == WorkflowState::Completed {
            break wf;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert!(
        restarts >= 5,
        "restarted at {restarts} observed changes: {seen:#?}"
    );
    let s = final_wf.status.unwrap();
    assert_eq!(s.gates.as_deref(), Some("6/6"));
    assert_eq!(s.run, 1);
    assert_eq!(assert_no_duplicate_jobs(env).await, 5);
    if let Some(op) = op {
        op.stop().await;
    }
}

/// An explicit retry (`spec.retry`) re-runs a failed workflow once per retry id.
pub async fn explicit_retry_runs_the_failed_step_again(env: &Env) {
    let script = format!(
        "if [ \"$QMS_RUN\" = \"1\" ]; then {}; else {}; fi",
        result("failure", "", 1),
        result("success", "", 0)
    );
    env.apply(&agent("flaky", 5, &script)).await;
    env.apply(&template_one_step("t", "flaky", &[], "")).await;
    let op = env.operator(env.settings()).await;
    env.apply(&workflow("pr-r", "t", "7777777")).await;
    env.wait_state("pr-r", WorkflowState::DorFailed).await;

    let patch =
        serde_json::json!({"spec": {"retry": {"id": "retry-1", "step": "check", "by": "alice"}}});
    env.workflows()
        .patch(
            "pr-r",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&patch),
        )
        .await
        .unwrap();
    let wf = env.wait_state("pr-r", WorkflowState::Completed).await;
    let s = wf.status.unwrap();
    assert_eq!(s.last_retry_id.as_deref(), Some("retry-1"));
    assert!(s.run >= 2, "the retry started a new run");
    op.stop().await;
}

/// Deleting a workflow deletes its Jobs (finalizer `qms.creo.dev/cleanup`), then the workflow goes.
pub async fn deleting_a_workflow_cleans_up_its_jobs(env: &Env) {
    env.apply(&agent("slow", 5, "sleep 60")).await;
    env.apply(&template_one_step("t", "slow", &[], "")).await;
    let op = env.operator(env.settings()).await;
    env.apply(&workflow("pr-d", "t", "8888888")).await;
    let wf = env
        .wait_for("pr-d", "a running task", |wf| {
            wf.status
                .as_ref()
                .and_then(|s| s.step("check"))
                .is_some_and(|s| s.tasks.iter().any(|t| t.phase == TaskPhase::Running))
        })
        .await;
    assert!(wf.finalizers().iter().any(|f| f == "qms.creo.dev/cleanup"));
    until("the Job to be created", || async {
        !env.list_jobs().await.is_empty()
    })
    .await;
    env.workflows()
        .delete("pr-d", &Default::default())
        .await
        .unwrap();
    let last = std::cell::Cell::new((false, 0));
    let cleaned_up = poll(|| async {
        let gone = env.workflows().get_opt("pr-d").await.unwrap().is_none();
        let jobs_left = env
            .list_jobs()
            .await
            .into_iter()
            .filter(|j| j.metadata.deletion_timestamp.is_none())
            .count();
        last.set((gone, jobs_left));
        (gone && jobs_left == 0).then_some(())
    })
    .await;
    let (gone, jobs_left) = last.get();
    assert!(cleaned_up.is_some(), "gone={gone} jobs_left={jobs_left}");
    op.stop().await;
}

pub fn template_one_step(name: &str, agent: &str, gates: &[&str], extra: &str) -> String {
    format!(
        r#"apiVersion: qms.creo.dev/v1
kind: WorkflowTemplate
metadata:
  name: {name}
spec:
  steps:
    - name: check
      type: parallel
      agents: [{{name: {agent}}}]
      qualityGates: [{gates}]
      timeout: 20s
{extra}
      states: {{pending: DOR_PENDING, failed: DOR_FAILED}}
"#,
        gates = gates.join(", ")
    )
}

pub fn template_with_manual(name: &str, agent: &str) -> String {
    format!(
        r#"apiVersion: qms.creo.dev/v1
kind: WorkflowTemplate
metadata:
  name: {name}
spec:
  steps:
    - name: check
      type: parallel
      agents: [{{name: {agent}}}]
      timeout: 20s
      states: {{pending: DOR_PENDING, failed: DOR_FAILED}}
    - name: final-review
      type: manual
      condition: check.success
      states: {{pending: FINAL_PENDING, failed: FINAL_REJECTED}}
"#
    )
}

/// Approves with retries (the API may be injecting faults).
pub async fn approve_retrying(env: &Env, name: &str, step: &str, sha: &str) {
    for _ in 0..100 {
        if qms_operator::dev::approve(&env.client, &env.ns, name, step, sha, "alice", "approve")
            .await
            .is_ok()
        {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("could not approve {name}");
}

/// Drives the example workflow `name` to COMPLETED, approving the final review when it waits.
pub fn needs_approval(wf: &qms_api::QmsWorkflow) -> Option<String> {
    let step = qms_operator::dev::waiting_step(wf)?;
    let sha = &wf.spec.head_sha;
    (!wf.spec
        .approvals
        .iter()
        .any(|a| a.step == step && &a.sha == sha))
    .then_some(step)
}

/// Jobs per (workflow, run, step, attempt, agent): every tuple exactly once.
pub async fn assert_no_duplicate_jobs(env: &Env) -> usize {
    let jobs = env.list_jobs().await;
    let mut tuples: BTreeMap<(String, String, String, String, String), u32> = BTreeMap::new();
    for j in &jobs {
        let key = (
            label(j, "qms.creo.dev/workflow").to_owned(),
            label(j, "qms.creo.dev/run").to_owned(),
            label(j, "qms.creo.dev/step").to_owned(),
            label(j, "qms.creo.dev/attempt").to_owned(),
            label(j, "qms.creo.dev/agent").to_owned(),
        );
        *tuples.entry(key).or_insert(0) += 1;
    }
    let dups: Vec<_> = tuples.iter().filter(|(_, n)| **n != 1).collect();
    assert!(dups.is_empty(), "duplicate Jobs: {dups:?}");
    jobs.len()
}
