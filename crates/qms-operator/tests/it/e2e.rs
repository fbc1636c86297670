//! End-to-end: kube-sim (Jobs run as local `sh` processes) + the real controllers in-process.
//! Every wait polls for a condition with a hang-protection deadline; nothing asserts on timing.

use std::collections::BTreeMap;

use crate::common::scenarios::{self, *};
use crate::common::*;
use kube::ResourceExt;
use qms_api::{ConditionStatus, GateVerdict, StepPhase, TaskPhase, WorkflowState};

/// 1. The standard template of examples/ walks to FINAL_PENDING; an approval completes it. Each
/// step's Jobs got the right payload; gate results carry value and threshold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standard_review_completes_after_approval() {
    scenarios::standard_review_completes_after_approval(&Env::start().await).await;
}

/// The real `kubectl wait` (JSONPath, then condition) and `kubectl describe` on a review.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_wait_and_describe_follow_a_review() {
    scenarios::kubectl_wait_and_describe_follow_a_review(&Env::start().await).await;
}

/// 2. A DoR agent failure → DOR_FAILED; a fix pushed (new SHA) runs again and passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dor_failure_then_fix_pushed_passes() {
    scenarios::dor_failure_then_fix_pushed_passes(&Env::start().await).await;
}

/// 3. Coverage 70 against a blocking ≥80 gate → PROGRESS_BLOCKED; as advisory → passes with a
/// warning verdict.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coverage_below_threshold_blocks_unless_advisory() {
    let env = Env::start().await;
    env.apply(&agent(
        "tester",
        5,
        &result("success", r#""test_coverage":70"#, 0),
    ))
    .await;
    env.apply(&gate("cov-blocking", "test_coverage", "gte", 80.0, true))
        .await;
    env.apply(&gate("cov-advisory", "test_coverage", "gte", 80.0, false))
        .await;
    for (t, g) in [("t-block", "cov-blocking"), ("t-adv", "cov-advisory")] {
        env.apply(&format!(
            r#"apiVersion: qms.creo.dev/v1
kind: WorkflowTemplate
metadata:
  name: {t}
spec:
  steps:
    - name: progress
      type: parallel
      agents: [{{name: tester}}]
      qualityGates: [{g}]
      timeout: 20s
      states: {{pending: PROGRESS_PENDING, failed: PROGRESS_BLOCKED}}
"#
        ))
        .await;
    }
    let op = env.operator(env.settings()).await;
    env.apply(&workflow("blocked", "t-block", "ccccccc")).await;
    env.apply(&workflow("advisory", "t-adv", "ccccccc")).await;

    let wf = env
        .wait_state("blocked", WorkflowState::ProgressBlocked)
        .await;
    let g = wf.status.unwrap().step("progress").unwrap().gates[0].clone();
    assert_eq!(
        (g.verdict, g.value, g.threshold, g.blocking),
        (GateVerdict::Failed, Some(70.0), Some(80.0), true)
    );

    let wf = env.wait_state("advisory", WorkflowState::Completed).await;
    let g = wf.status.unwrap().step("progress").unwrap().gates[0].clone();
    assert_eq!(
        (g.verdict, g.value, g.blocking),
        (GateVerdict::Warning, Some(70.0), false)
    );
    op.stop().await;
}

/// 4. An agent that never writes the metric → the gate fails closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_metric_fails_the_gate_closed() {
    let env = Env::start().await;
    env.apply(&agent("silent", 5, &result("success", "", 0)))
        .await;
    env.apply(&gate("cov", "test_coverage", "gte", 80.0, true))
        .await;
    env.apply(&template_one_step("t", "silent", &["cov"], ""))
        .await;
    let op = env.operator(env.settings()).await;
    env.apply(&workflow("pr-4", "t", "ddddddd")).await;
    let wf = env.wait_state("pr-4", WorkflowState::DorFailed).await;
    let s = wf.status.unwrap();
    let g = &s.step("check").unwrap().gates[0];
    assert_eq!(g.verdict, GateVerdict::Error);
    assert!(!g.verdict.passes());
    assert!(g.value.is_none());
    assert!(!g.message.is_empty(), "the reason is given");
    op.stop().await;
}

/// 5. A task that times out is retried with backoff and succeeds on a later attempt; when retries
/// are exhausted the step escalates (event + condition) and fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_are_retried_then_escalated() {
    let env = Env::start().await;
    let flaky = format!(
        "if [ \"$QMS_ATTEMPT\" = \"1\" ]; then sleep 60; fi; {}",
        result("success", "", 0)
    );
    env.apply(&agent("flaky", 5, &flaky)).await;
    env.apply(&agent("stuck", 5, "sleep 60")).await;
    let retry =
        "      retryPolicy: {base: 2, initialDelay: 1s, maxDelay: 2s, maxAttempts: 3, jitter: 0}\n";
    let t = |name: &str, agent: &str, attempts: u32| {
        template_one_step(
            name,
            agent,
            &[],
            &retry.replace("maxAttempts: 3", &format!("maxAttempts: {attempts}")),
        )
        .replace("timeout: 20s", "timeout: 2s")
        .replace("states:", "escalation: {enabled: true}\n      states:")
    };
    env.apply(&t("t-flaky", "flaky", 3)).await;
    env.apply(&t("t-stuck", "stuck", 2)).await;
    let op = env.operator(env.settings()).await;
    env.apply(&workflow("flaky", "t-flaky", "eeeeeee")).await;
    env.apply(&workflow("stuck", "t-stuck", "eeeeeee")).await;

    let wf = env.wait_state("flaky", WorkflowState::Completed).await;
    let s = wf.status.unwrap();
    let step = s.step("check").unwrap();
    assert_eq!(step.attempt, 2, "succeeded on the second attempt");
    let first = step.tasks.iter().find(|t| t.attempt == 1);
    if let Some(first) = first {
        assert_eq!(first.phase, TaskPhase::TimedOut);
    }

    let wf = env.wait_state("stuck", WorkflowState::DorFailed).await;
    let s = wf.status.unwrap();
    let step = s.step("check").unwrap();
    assert_eq!(step.attempt, 2);
    assert!(step.escalated);
    let c = qms_api::Condition::find(&s.conditions, "Escalated").unwrap();
    assert_eq!(c.status, ConditionStatus::True);
    let escalated = env.wait_event("stuck", "StepEscalated").await;
    assert_eq!(escalated.type_.as_deref(), Some("Warning"));
    // Never two Jobs for one attempt. (A timed-out Job is either deleted by the operator or kept
    // as Failed by its own activeDeadlineSeconds, whichever fires first, so not every attempt's
    // Job is necessarily still listed.)
    let mut attempts: Vec<String> = env
        .list_jobs()
        .await
        .iter()
        .filter(|j| label(j, "qms.creo.dev/agent") == "stuck")
        .map(|j| label(j, "qms.creo.dev/attempt").to_owned())
        .collect();
    attempts.sort();
    let listed = attempts.len();
    attempts.dedup();
    assert_eq!(attempts.len(), listed, "two Jobs for one attempt");
    assert!(
        attempts.iter().all(|a| a == "1" || a == "2"),
        "{attempts:?}"
    );
    op.stop().await;
}

/// 6. An approval for an old SHA does not count; a rejection → FINAL_REJECTED.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejection_and_old_sha_approval() {
    let env = Env::start().await;
    env.apply(&agent("ok", 5, &result("success", "", 0))).await;
    env.apply(&template_with_manual("t", "ok")).await;
    let op = env.operator(env.settings()).await;
    env.apply(&workflow("pr-6", "t", "fffffff")).await;
    env.wait_state("pr-6", WorkflowState::FinalPending).await;

    env.decide("pr-6", "final-review", "0123456", "approve")
        .await;
    let generation = env.get("pr-6").await.metadata.generation;
    let wf = env
        .wait_for("pr-6", "the old-SHA approval to be observed", |wf| {
            wf.status.as_ref().and_then(|s| s.observed_generation) == generation
        })
        .await;
    assert_eq!(
        state_of(&wf),
        WorkflowState::FinalPending,
        "an approval for another SHA does not count"
    );

    env.decide("pr-6", "final-review", "fffffff", "reject")
        .await;
    let wf = env.wait_state("pr-6", WorkflowState::FinalRejected).await;
    let step = wf.status.unwrap().step("final-review").unwrap().clone();
    assert_eq!(step.phase, StepPhase::Failed);
    op.stop().await;
}

/// 10. The real `kubectl get qmsworkflows` shows the state columns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_get_shows_state_columns() {
    scenarios::kubectl_get_shows_state_columns(&Env::start().await).await;
}

/// 7. The operator is stopped and started again at every observed change of the workflow (state,
/// step, tasks): no duplicate Job, the same final result.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_in_every_state_creates_no_duplicates() {
    scenarios::restart_in_every_state_creates_no_duplicates(&Env::start().await).await;
}

/// 8. With injected API faults (500, 429, 409, dropped watches) every workflow still ends
/// correctly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_faults_do_not_change_the_outcome() {
    use kube_sim::FaultRule;
    let env = Env::start_with(kube_sim::KubeSim::builder().seed(7)).await;
    env.apply_examples(false).await;
    let names: Vec<String> = (1..=3).map(|i| format!("pr-{i}")).collect();
    for n in &names {
        env.apply(&workflow(n, "standard-qms-review", "1234567"))
            .await;
    }
    let faults = env.sim.faults();
    faults.add(FaultRule::error(500).probability(0.08));
    faults.add(FaultRule::error(503).verb("create").probability(0.1));
    faults.add(FaultRule::too_many_requests(1).probability(0.03));
    faults.add(FaultRule::conflict().verb("patch").probability(0.1));
    let op = env.operator(env.settings()).await;
    let dropper = {
        let faults = faults.clone();
        tokio::spawn(async move {
            for _ in 0..10 {
                tokio::time::sleep(std::time::Duration::from_millis(400)).await;
                faults.drop_watches();
            }
        })
    };
    let start = tokio::time::Instant::now();
    loop {
        assert!(start.elapsed() < DEADLINE, "gave up");
        let mut done = 0;
        for n in &names {
            let Ok(wf) = env.workflows().get(n).await else {
                continue;
            };
            if let Some(step) = needs_approval(&wf) {
                approve_retrying(&env, n, &step, "1234567").await;
            }
            let st = state_of(&wf);
            assert!(
                !st.is_failure(),
                "{n} ended in {st}: {}",
                serde_json::to_string_pretty(&wf.status).unwrap()
            );
            if st == WorkflowState::Completed {
                done += 1;
            }
        }
        if done == names.len() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    dropper.abort();
    faults.clear();
    for n in &names {
        let s = env.get(n).await.status.unwrap();
        assert_eq!(s.gates.as_deref(), Some("6/6"), "{n}");
    }
    assert_no_duplicate_jobs(&env).await;
    let errors = qms_operator::http::render_metrics(&op.shared);
    assert!(
        errors.contains("qms_reconcile_errors_total"),
        "faults were hit and counted"
    );
    op.stop().await;
}

/// Template `t`: one step, one agent running `script`, one blocking coverage gate ≥ 80, step
/// timeout `timeout`; and a running operator.
async fn coverage_review(env: &Env, script: &str, timeout: &str) -> qms_operator::OperatorHandle {
    env.apply(&agent("scanner", 5, script)).await;
    env.apply(&gate("cov", "test_coverage", "gte", 80.0, true))
        .await;
    env.apply(
        &template_one_step("t", "scanner", &["cov"], "")
            .replace("timeout: 20s", &format!("timeout: {timeout}")),
    )
    .await;
    env.operator(env.settings()).await
}

/// `name` ends COMPLETED on its first attempt with one task, and coverage 91 passed.
async fn completed_at_first_attempt(env: &Env, name: &str) {
    let wf = env
        .wait_for(name, "a terminal state", |wf| state_of(wf).is_terminal())
        .await;
    let s = wf.status.unwrap();
    assert_eq!(
        s.state,
        WorkflowState::Completed,
        "{}",
        serde_json::to_string_pretty(&s).unwrap()
    );
    let step = s.step("check").unwrap();
    assert_eq!(
        (step.attempt, step.tasks.len()),
        (1, 1),
        "not timed out, lost or retried"
    );
    let g = &step.gates[0];
    assert_eq!((g.verdict, g.value), (GateVerdict::Passed, Some(91.0)));
}

/// The operator counted reads of these kinds made because a watch lagged.
fn assert_cache_gap_reads(op: &qms_operator::OperatorHandle, kinds: &[&str]) {
    let metrics = qms_operator::http::render_metrics(&op.shared);
    for kind in kinds {
        let series = format!("qms_cache_gap_reads_total{{kind=\"{kind}\"}}");
        assert!(
            metrics.lines().any(|l| l.starts_with(&series)),
            "{series} missing:\n{metrics}"
        );
    }
}

/// The operator's watch of `resources` fails from now on (reads still work, and the kubelet's
/// own watches are unaffected).
fn stall_operator_watches(env: &Env, resources: &[&str]) {
    let faults = env.sim.faults();
    for resource in resources {
        faults.add(
            kube_sim::FaultRule::error(500)
                .verb("watch")
                .resource(resource)
                .user_agent("qms-operator"),
        );
    }
    faults.drop_watches();
}

/// Job and Pod watches that are down (backoff after API errors, dropped streams) leave the
/// caches without the finished Job and its Pod: both are read from the API server instead of the
/// task being declared timed out, lost or without a result — an outage of a watch never fails a
/// task that succeeded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_watches_do_not_lose_results() {
    let env = Env::start().await;
    let script = result("success", r#""test_coverage":91"#, 0);
    let op = coverage_review(&env, &script, "8s").await;
    stall_operator_watches(&env, &["jobs", "pods"]);
    env.apply(&workflow("pr-w", "t", "eeeeeee")).await;
    completed_at_first_attempt(&env, "pr-w").await;
    assert_cache_gap_reads(&op, &["job", "pods"]);
    op.stop().await;
}

/// The Job watch stops after the operator cached the Job as running, so the Job's completion
/// never arrives through it. At the step's deadline the Job is read before it is timed out: it
/// finished, and the task succeeds on its first attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_finished_behind_a_stalled_watch_is_not_timed_out() {
    let env = Env::start().await;
    let script = format!("sleep 2; {}", result("success", r#""test_coverage":91"#, 0));
    let op = coverage_review(&env, &script, "6s").await;
    env.apply(&workflow("pr-t", "t", "fffffff")).await;
    // The Agent's running count comes from the operator's Job cache: once it is 1, the cache
    // holds the Job as running. Then the operator's Job watch goes down for good.
    let agents: kube::Api<qms_api::Agent> = kube::Api::namespaced(env.client.clone(), &env.ns);
    let start = tokio::time::Instant::now();
    loop {
        assert!(
            start.elapsed() < DEADLINE,
            "the Job never showed as running"
        );
        let running = agents
            .get("scanner")
            .await
            .ok()
            .and_then(|a| a.status)
            .is_some_and(|s| s.running_tasks == 1);
        if running {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    stall_operator_watches(&env, &["jobs"]);
    completed_at_first_attempt(&env, "pr-t").await;
    assert_cache_gap_reads(&op, &["job_before_timeout"]);
    op.stop().await;
}

/// 9. loadCapacity 1 with three workflows: never more than one Job of that agent at a time, and
/// the queue drains. Also: with maxConcurrentWorkflows 2 the third workflow waits (Queued).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_capacity_and_workflow_slots_are_respected() {
    use futures::StreamExt;
    use kube::runtime::{WatchStreamExt, watcher};
    let env = Env::start().await;
    env.apply(&agent(
        "solo",
        1,
        &format!("sleep 1; {}", result("success", "", 0)),
    ))
    .await;
    env.apply(&template_one_step("t", "solo", &[], "")).await;

    // Track the Jobs of the agent that are active at the same time, from a watch.
    let max_active = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let tracker = {
        let api = env.jobs();
        let max_active = max_active.clone();
        tokio::spawn(async move {
            let mut active = std::collections::BTreeSet::new();
            let stream = watcher(
                api,
                watcher::Config::default().labels("qms.creo.dev/agent=solo"),
            )
            .default_backoff()
            .applied_objects();
            let mut stream = std::pin::pin!(stream);
            while let Some(Ok(job)) = stream.next().await {
                let finished = job
                    .status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|cs| {
                        cs.iter().any(|c| {
                            c.status == "True" && (c.type_ == "Complete" || c.type_ == "Failed")
                        })
                    });
                if finished {
                    active.remove(&job.name_any());
                } else {
                    active.insert(job.name_any());
                }
                max_active.fetch_max(active.len(), std::sync::atomic::Ordering::SeqCst);
            }
        })
    };

    let settings = qms_operator::Settings {
        max_concurrent_workflows: 2,
        ..env.settings()
    };
    let op = env.operator(settings).await;
    for i in 1..=3 {
        env.apply(&workflow(&format!("cap-{i}"), "t", "9999999"))
            .await;
    }
    // With two slots, one of the three must wait in INITIALIZED with the Queued condition.
    env.wait_for("cap-3", "queued or started", |wf| wf.status.is_some())
        .await;
    let queued = env
        .wait_for("cap-3", "cap-3 queued (two slots taken)", |wf| {
            state_of(wf) == WorkflowState::Initialized || state_of(wf) == WorkflowState::Completed
        })
        .await;
    if state_of(&queued) == WorkflowState::Initialized {
        let c = qms_api::Condition::find(&queued.status.as_ref().unwrap().conditions, "Queued");
        assert_eq!(c.map(|c| c.status), Some(ConditionStatus::True));
    }
    for i in 1..=3 {
        env.wait_state(&format!("cap-{i}"), WorkflowState::Completed)
            .await;
    }
    tracker.abort();
    assert_eq!(
        max_active.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "loadCapacity 1 was exceeded"
    );
    assert_eq!(assert_no_duplicate_jobs(&env).await, 3);
    op.stop().await;
}

/// Start-up stops with a message naming the CRD and how to install it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_crd_stops_start_up_with_a_hint() {
    init_tracing();
    let sim = kube_sim::KubeSim::builder()
        .without_kubelet()
        .start()
        .await
        .unwrap();
    let err = match qms_operator::start(
        sim.client(),
        qms_operator::Settings::default(),
        qms_operator::Http::Off,
    )
    .await
    {
        Ok(_) => panic!("started without CRDs"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("workflowtemplates.qms.creo.dev"), "{err}");
    assert!(err.contains("kubectl apply -f crds/"), "{err}");
}

async fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).await.unwrap();
    let code = buf
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = buf
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (code, body)
}

/// /healthz, /readyz (after the caches synced) and /metrics; the router takes more routes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_endpoints_serve_health_readiness_and_metrics() {
    let env = Env::start().await;
    env.apply_examples(false).await;
    let settings = qms_operator::Settings {
        http_addr: "127.0.0.1:0".parse().unwrap(),
        ..env.settings()
    };
    let extra = axum::Router::new().route(
        "/webhooks/github",
        axum::routing::post(|| async { "accepted" }),
    );
    let op = qms_operator::start(
        env.client.clone(),
        settings,
        qms_operator::Http::On { extra: Some(extra) },
    )
    .await
    .unwrap();
    let addr = op.http_addr.unwrap();
    op.wait_ready().await;
    assert_eq!(http_get(addr, "/healthz").await.0, 200);
    assert_eq!(http_get(addr, "/readyz").await.0, 200);
    let (code, body) = http_get(addr, "/metrics").await;
    assert_eq!(code, 200);
    assert!(
        body.contains("qms_workflows{state=\"INITIALIZED\"} 0"),
        "{body}"
    );
    assert!(
        body.contains("qms_agent_capacity{agent=\"qms-dor-validator\"} 10"),
        "{body}"
    );
    assert_eq!(
        http_get(addr, "/webhooks/github").await.0,
        405,
        "merged route exists (POST only)"
    );
    op.stop().await;
}

/// `qms-operator run` refuses a config file with an unknown key, naming it, before connecting.
#[test]
fn run_refuses_unknown_config_keys() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("qms.yaml");
    std::fs::write(
        &path,
        "orchestrator:\n  workflow_engine:\n    max_concurent_workflows: 3\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_qms-operator"))
        .args(["run", "--config"])
        .arg(&path)
        .env("KUBECONFIG", dir.path().join("none"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("max_concurent_workflows"), "{stderr}");
}

/// A `QualityBaseline` for creo/app@main as a merged pull request leaves it: `values` are
/// `(gate, value, sha, hours_old)`.
fn quality_baseline(values: &[(&str, f64, &str, i64)]) -> String {
    let mut out = format!(
        "apiVersion: qms.creo.dev/v1\nkind: QualityBaseline\nmetadata:\n  name: {}\nspec:\n  repository: creo/app\n  branch: main\n  values:\n",
        qms_api::baseline_name("creo/app", "main")
    );
    for (gate, value, sha, hours) in values {
        let at = (chrono::Utc::now() - chrono::Duration::hours(*hours))
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        out.push_str(&format!(
            "  - {{gate: {gate}, metric: coverage, value: {value}, unit: count, sha: \"{sha}\", at: \"{at}\"}}\n"
        ));
    }
    out
}

fn gate_of(wf: &qms_api::QmsWorkflow) -> qms_api::GateResult {
    wf.status.as_ref().unwrap().step("check").unwrap().gates[0].clone()
}

/// Baseline ratchet: a COMPLETED run alone never sets the baseline (only a merge does, through
/// the `QualityBaseline`); a baseline raises the bar and is named in the result; one older than
/// `baseline.maxAge` is not used, and the result says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ratchet_uses_only_the_quality_baseline_and_respects_max_age() {
    let env = Env::start().await;
    env.apply(&agent("cov", 5, &result("success", r#""coverage":80"#, 0)))
        .await;
    env.apply(&format!(
        "{}  baseline: {{enabled: true, tolerance: 1, maxAge: 24h}}\n",
        gate("ratchet", "coverage", "gte", 50.0, true)
    ))
    .await;
    env.apply(&template_one_step("t", "cov", &["ratchet"], ""))
        .await;
    let op = env.operator(env.settings()).await;
    env.apply(&workflow("first", "t", "1111111")).await;
    let wf = env.wait_state("first", WorkflowState::Completed).await;
    assert!(
        gate_of(&wf).message.contains("no baseline recorded"),
        "{}",
        gate_of(&wf).message
    );
    let baselines: kube::Api<qms_api::QualityBaseline> =
        kube::Api::namespaced(env.client.clone(), "default");
    let name = qms_api::baseline_name("creo/app", "main");
    assert!(
        baselines.get_opt(&name).await.unwrap().is_none(),
        "a completed (unmerged) run set the baseline"
    );

    env.apply(&quality_baseline(&[("ratchet", 85.0, "abcdef0123", 1)]))
        .await;
    env.apply(&workflow("second", "t", "2222222")).await;
    let wf = env.wait_state("second", WorkflowState::DorFailed).await;
    let g = gate_of(&wf);
    assert_eq!(
        (g.verdict, g.value, g.threshold),
        (GateVerdict::Failed, Some(80.0), Some(84.0)),
        "{}",
        g.message
    );
    assert!(
        g.message.contains("baseline abcdef0 = 85, tolerance 1"),
        "{}",
        g.message
    );

    env.apply(&quality_baseline(&[("ratchet", 85.0, "abcdef0123", 48)]))
        .await;
    env.apply(&workflow("third", "t", "3333333")).await;
    let wf = env.wait_state("third", WorkflowState::Completed).await;
    let g = gate_of(&wf);
    assert_eq!(
        (g.verdict, g.threshold),
        (GateVerdict::Passed, Some(50.0)),
        "{}",
        g.message
    );
    assert!(
        g.message.contains("older than maxAge 24h: not used"),
        "{}",
        g.message
    );
    assert!(!g.baseline.unwrap().used);
    op.stop().await;
}

/// A missing metric under each `onMissing` policy: `fail` fails closed, `neutral` is an advisory
/// `Warning` (never `Passed`), `carryForward` uses a young base-branch value named as carried and
/// fails closed when the value is older than its maximum age.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_metrics_follow_the_gate_policy_and_never_silently_pass() {
    let env = Env::start().await;
    env.apply(&agent("silent", 5, &result("success", r#""other":1"#, 0)))
        .await;
    let base = gate("PLACEHOLDER", "coverage", "gte", 50.0, true);
    let with = |name: &str, extra: &str| format!("{}{extra}", base.replace("PLACEHOLDER", name));
    env.apply(&with("must", "")).await;
    env.apply(&with("advisory", "  onMissing: neutral\n")).await;
    env.apply(&with(
        "carried",
        "  onMissing: carryForward\n  carryForward: {maxAge: 24h}\n",
    ))
    .await;
    env.apply(&with(
        "stale",
        "  onMissing: carryForward\n  carryForward: {maxAge: 24h}\n",
    ))
    .await;
    env.apply(&quality_baseline(&[
        ("carried", 90.0, "cafe0123", 2),
        ("stale", 90.0, "cafe0123", 30),
    ]))
    .await;
    for g in ["must", "advisory", "carried", "stale"] {
        env.apply(&template_one_step(&format!("t-{g}"), "silent", &[g], ""))
            .await;
    }
    let op = env.operator(env.settings()).await;
    for (i, g) in ["must", "advisory", "carried", "stale"].iter().enumerate() {
        env.apply(&workflow(
            &format!("wf-{g}"),
            &format!("t-{g}"),
            &format!("{i}aaaaaa"),
        ))
        .await;
    }
    let wf = env.wait_state("wf-must", WorkflowState::DorFailed).await;
    let g = gate_of(&wf);
    assert_eq!(g.verdict, GateVerdict::Error, "{}", g.message);
    assert!(g.message.contains("onMissing: fail"), "{}", g.message);

    let wf = env
        .wait_state("wf-advisory", WorkflowState::Completed)
        .await;
    let g = gate_of(&wf);
    assert_eq!(
        (g.verdict, g.value),
        (GateVerdict::Warning, None),
        "{}",
        g.message
    );
    assert!(g.message.contains("onMissing: neutral"), "{}", g.message);

    let wf = env.wait_state("wf-carried", WorkflowState::Completed).await;
    let g = gate_of(&wf);
    assert_eq!(
        (g.verdict, g.value, g.carried),
        (GateVerdict::Passed, Some(90.0), true),
        "{}",
        g.message
    );
    assert!(
        g.message
            .contains("carried forward from the base branch (cafe012"),
        "{}",
        g.message
    );

    let wf = env.wait_state("wf-stale", WorkflowState::DorFailed).await;
    let g = gate_of(&wf);
    assert_eq!(
        (g.verdict, g.carried),
        (GateVerdict::Error, false),
        "{}",
        g.message
    );
    assert!(g.message.contains("older than maxAge 24h"), "{}", g.message);
    op.stop().await;
}

/// The QualityGate CRD (API server validation, no client-side typing) refuses bad
/// missing-metric and baseline combinations, naming the field.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_baseline_and_on_missing_combinations_are_refused() {
    use kube::api::{ApiResource, DynamicObject, PostParams};
    let env = Env::start().await;
    let ar = ApiResource::erase::<qms_api::QualityGate>(&());
    let api: kube::Api<DynamicObject> =
        kube::Api::namespaced_with(env.client.clone(), "default", &ar);
    let create = |yaml: String| {
        let api = api.clone();
        async move {
            let obj: DynamicObject = serde_saphyr::from_str(&yaml).expect("yaml");
            api.create(&PostParams::default(), &obj).await
        }
    };
    let base = gate("bad", "coverage", "gte", 50.0, true);
    let eq = gate("bad", "coverage", "eq", 0.0, true);
    for (yaml, field) in [
        (
            format!("{base}  onMissing: carryForward\n"),
            "carryForward.maxAge",
        ),
        (
            format!("{base}  carryForward: {{maxAge: 1h}}\n"),
            "onMissing: carryForward",
        ),
        (format!("{base}  onMissing: sometimes\n"), "onMissing"),
        (
            format!("{base}  baseline: {{maxAge: 1h}}\n"),
            "baseline.maxAge",
        ),
        (
            format!("{eq}  baseline: {{enabled: true}}\n"),
            "baseline.enabled",
        ),
    ] {
        let err = create(yaml.clone()).await.expect_err(&yaml);
        assert!(err.to_string().contains(field), "{yaml}: {err}");
    }
    // The good combinations are accepted.
    create(format!("{base}  onMissing: carryForward\n  carryForward: {{maxAge: 1h}}\n  baseline: {{enabled: true, maxAge: 2h}}\n"))
        .await
        .expect("valid gate");
}

/// `--namespace` limits the operator to those namespaces (one cache set per namespace).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_given_namespaces_are_reconciled() {
    use k8s_openapi::api::core::v1::Namespace;
    let env = Env::start().await;
    let namespaces: kube::Api<Namespace> = kube::Api::all(env.client.clone());
    for ns in ["team-a", "team-b"] {
        let obj: Namespace =
            serde_json::from_value(serde_json::json!({"metadata": {"name": ns}})).unwrap();
        namespaces.create(&Default::default(), &obj).await.unwrap();
    }
    for ns in ["team-a", "team-b", "default"] {
        for yaml in [
            agent("ok", 5, &result("success", "", 0)),
            template_one_step("t", "ok", &[], ""),
            workflow("wf", "t", "5555555"),
        ] {
            qms_operator::dev::apply_yaml(&env.client, ns, &yaml)
                .await
                .unwrap();
        }
    }
    let settings = qms_operator::Settings {
        namespaces: vec!["team-a".into(), "team-b".into()],
        max_concurrent_workflows: 1,
        ..env.settings()
    };
    let op = env.operator(settings).await;
    let mut env = env;
    for ns in ["team-a", "team-b"] {
        env.ns = ns.into();
        env.wait_state("wf", WorkflowState::Completed).await;
    }
    // `default` was never touched
    env.ns = "default".into();
    let untouched = env.get("wf").await;
    assert!(untouched.status.is_none(), "{:?}", untouched.status);
    assert!(untouched.finalizers().is_empty());
    op.stop().await;
}

/// An explicit retry (`spec.retry`) re-runs a failed workflow once per retry id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explicit_retry_runs_the_failed_step_again() {
    scenarios::explicit_retry_runs_the_failed_step_again(&Env::start().await).await;
}

/// Deleting a workflow deletes its Jobs (finalizer `qms.creo.dev/cleanup`), then the workflow goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_workflow_cleans_up_its_jobs() {
    scenarios::deleting_a_workflow_cleans_up_its_jobs(&Env::start().await).await;
}

/// Slots are for automated work: with 2 slots, 6 pull requests whose last step is manual all get
/// their agents run and reach the approval wait while nobody approves (a workflow waiting for a
/// person holds no slot), and never more than 2 hold a slot at once. A new head SHA on one of them
/// needs agents again: with both slots taken it queues in INITIALIZED with its place shown, and
/// runs when a slot frees.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workflows_waiting_for_approval_free_their_slots() {
    use futures::StreamExt;
    use kube::runtime::{WatchStreamExt, watcher};
    let env = Env::start().await;
    // Run 1: a short review. Later runs: held until the test opens `release` (so the new-SHA runs
    // are known to hold their slots while the test looks at the queue).
    let release = std::env::temp_dir().join(format!("qms-slots-release-{}", std::process::id()));
    let _ = std::fs::remove_file(&release);
    let script = format!(
        "if [ \"$QMS_RUN\" = \"1\" ]; then sleep 1; else while [ ! -e {} ]; do sleep 0.1; done; fi; {}",
        release.display(),
        result("success", "", 0)
    );
    env.apply(&agent("ok", 10, &script)).await;
    env.apply(&template_with_manual("t", "ok")).await;

    // The most workflows holding a slot at the same time, from a watch (revision order).
    let max_holding = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let ever_queued = std::sync::Arc::new(std::sync::Mutex::new(BTreeMap::<String, String>::new()));
    let tracker = {
        let api = env.workflows();
        let (max_holding, ever_queued) = (max_holding.clone(), ever_queued.clone());
        tokio::spawn(async move {
            let mut holding = std::collections::BTreeSet::new();
            let stream = watcher(api, watcher::Config::default())
                .default_backoff()
                .applied_objects();
            let mut stream = std::pin::pin!(stream);
            while let Some(Ok(wf)) = stream.next().await {
                let status = wf.status.clone().unwrap_or_default();
                if qms_engine::slots::holds_slot(&status) {
                    holding.insert(wf.name_any());
                } else {
                    holding.remove(&wf.name_any());
                }
                if let Some(c) = qms_api::Condition::find(&status.conditions, "Queued")
                    && c.status == ConditionStatus::True
                {
                    ever_queued
                        .lock()
                        .unwrap()
                        .insert(wf.name_any(), c.message.clone());
                }
                max_holding.fetch_max(holding.len(), std::sync::atomic::Ordering::SeqCst);
            }
        })
    };

    let settings = qms_operator::Settings {
        max_concurrent_workflows: 2,
        ..env.settings()
    };
    let op = env.operator(settings).await;
    let names: Vec<String> = (1..=6).map(|i| format!("slot-{i}")).collect();
    for name in &names {
        env.apply(&workflow(name, "t", "aaaaaaa")).await;
    }
    for name in &names {
        let wf = env
            .wait_for(name, "waiting for approval", |wf| {
                needs_approval(wf).as_deref() == Some("final-review")
            })
            .await;
        assert_eq!(state_of(&wf), WorkflowState::FinalPending);
        let s = wf.status.unwrap();
        let check = s.step("check").unwrap();
        assert_eq!(check.phase, StepPhase::Succeeded, "{name}: its agents ran");
        assert_eq!(
            s.step("final-review").unwrap().phase,
            StepPhase::WaitingForApproval
        );
    }
    {
        let queued = ever_queued.lock().unwrap();
        assert!(
            !queued.is_empty(),
            "6 workflows, 2 slots: some must have waited"
        );
        assert!(
            queued.values().all(|m| m.starts_with("position ")),
            "{queued:?}"
        );
    }
    ever_queued.lock().unwrap().clear();

    // Two new-SHA runs take both slots (their agents wait for `release`)...
    for name in ["slot-1", "slot-2"] {
        env.set_head_sha(name, "bbbbbbb").await;
    }
    for name in ["slot-1", "slot-2"] {
        env.wait_for(name, "run 2 running its agents", |wf| {
            wf.status.as_ref().is_some_and(|s| {
                s.run == 2
                    && s.step("check")
                        .is_some_and(|c| c.phase == StepPhase::Running)
            })
        })
        .await;
    }
    // ...so a third queues for a slot again, first in line, while the others wait for a person.
    env.set_head_sha("slot-3", "bbbbbbb").await;
    let wf = env
        .wait_for("slot-3", "queued for a slot", |wf| {
            wf.status
                .as_ref()
                .is_some_and(|s| s.run == 2 && s.state == WorkflowState::Initialized)
        })
        .await;
    let queued = qms_api::Condition::find(&wf.status.as_ref().unwrap().conditions, "Queued")
        .cloned()
        .unwrap();
    assert_eq!(queued.status, ConditionStatus::True);
    assert_eq!(queued.reason, "WaitingForSlot");
    assert!(
        queued
            .message
            .starts_with("position 1 of 1 waiting for one of the 2 workflow slots"),
        "{}",
        queued.message
    );
    for name in ["slot-4", "slot-5", "slot-6"] {
        assert!(needs_approval(&env.get(name).await).is_some(), "{name}");
    }

    std::fs::write(&release, b"").unwrap();
    for name in ["slot-1", "slot-2", "slot-3"] {
        let wf = env
            .wait_for(name, "run 2 waiting for approval", |wf| {
                wf.status.as_ref().is_some_and(|s| s.run == 2)
                    && needs_approval(wf).as_deref() == Some("final-review")
            })
            .await;
        let history = wf.status.unwrap().history;
        if name == "slot-3" {
            let reasons: Vec<(WorkflowState, &str)> =
                history.iter().map(|t| (t.to, t.reason.as_str())).collect();
            let queued_at = reasons
                .iter()
                .position(|r| *r == (WorkflowState::Initialized, "NewHeadSha"))
                .expect("queued on the new SHA");
            assert_eq!(
                reasons.get(queued_at + 1),
                Some(&(WorkflowState::DorPending, "SlotTaken")),
                "{reasons:?}"
            );
        }
    }
    tracker.abort();
    let _ = std::fs::remove_file(&release);
    assert_eq!(
        max_holding.load(std::sync::atomic::Ordering::SeqCst),
        2,
        "maxConcurrentWorkflows 2 was exceeded (or never reached)"
    );
    // Approving completes a workflow without any slot.
    env.decide("slot-6", "final-review", "aaaaaaa", "approve")
        .await;
    env.wait_state("slot-6", WorkflowState::Completed).await;
    op.stop().await;
}
