//! Reconcile throughput: N workflows (default 100, `QMS_BENCH_WORKFLOWS`) through the standard
//! template of examples/ on kube-sim, with a container runner that completes every task at once
//! (the agents' example results), so what is measured is the operator and the API round trips.
//! Prints numbers; asserts nothing but completion.
//!
//! `cargo bench -p qms-operator --bench throughput` (or `cargo test -p qms-operator --bench
//! throughput --profile dev` for a quick unoptimized run).

use std::time::{Duration, Instant};

use kube::api::ListParams;
use kube::{Api, ResourceExt};
use kube_sim_kubelet::{ContainerOutcome, ContainerSpec, closure_runner};
use qms_api::{QmsWorkflow, WorkflowState};

fn result_for(agent: &str) -> &'static str {
    match agent {
        "qms-dor-validator" => {
            r#"{"status":"success","metrics":{"basic_checks_failed":0,"security_critical_findings":0}}"#
        }
        "qms-code-reviewer" => {
            r#"{"status":"success","metrics":{"p95_latency_ms":{"value":120,"unit":"milliseconds"}}}"#
        }
        "qms-testing-specialist" => {
            r#"{"status":"success","metrics":{"test_coverage":{"value":85.2,"unit":"percentage"}}}"#
        }
        "qms-dod-validator" => {
            r#"{"status":"success","metrics":{"dod_checklist_completion":100,"compliance_violations":0}}"#
        }
        _ => r#"{"status":"success"}"#,
    }
}

fn main() {
    let n: usize = std::env::var("QMS_BENCH_WORKFLOWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run(n));
}

async fn run(n: usize) {
    let runner = closure_runner(|spec: ContainerSpec| async move {
        let agent = spec
            .env
            .iter()
            .find(|(k, _)| k == "QMS_AGENT")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        ContainerOutcome::exited(0).with_message(result_for(&agent))
    });
    let sim = kube_sim::KubeSim::builder()
        .runner(runner)
        .start()
        .await
        .expect("kube-sim");
    let client = sim.client();
    qms_operator::dev::install_crds(&client)
        .await
        .expect("crds");
    for (name, text) in qms_operator::dev::EXAMPLES {
        if !name.starts_with("qmsworkflow") {
            qms_operator::dev::apply_yaml(&client, "default", text)
                .await
                .expect("examples");
        }
    }
    let settings = qms_operator::Settings {
        max_concurrent_workflows: n.max(1) as u32,
        ..qms_operator::Settings::default()
    };
    let op = qms_operator::start(client.clone(), settings, qms_operator::Http::Off)
        .await
        .expect("operator");
    op.wait_ready().await;
    let reconciles_before = op
        .metrics()
        .count(qms_operator::metrics::ControllerKind::qmsworkflow);
    sim.counters().reset();

    let started = Instant::now();
    for i in 0..n {
        let yaml = format!(
            "apiVersion: qms.creo.dev/v1\nkind: QmsWorkflow\nmetadata:\n  name: bench-{i}\nspec:\n  repository: creo/app\n  pullRequest: {}\n  headSha: \"{:07x}\"\n  baseRef: main\n  templateRef:\n    name: standard-qms-review\n",
            i + 1,
            0xabc0000 + i
        );
        qms_operator::dev::apply_yaml(&client, "default", &yaml)
            .await
            .expect("workflow");
    }
    let api: Api<QmsWorkflow> = Api::namespaced(client.clone(), "default");
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let list = api.list(&ListParams::default()).await.expect("list");
        let mut completed = 0;
        for wf in &list.items {
            if let Some(step) = qms_operator::dev::waiting_step(wf) {
                let sha = wf.spec.head_sha.clone();
                if !wf.spec.approvals.iter().any(|a| a.sha == sha) {
                    let _ = qms_operator::dev::approve(
                        &client,
                        "default",
                        &wf.name_any(),
                        &step,
                        &sha,
                        "bench",
                        "approve",
                    )
                    .await;
                }
            }
            if wf.status.as_ref().map(|s| s.state) == Some(WorkflowState::Completed) {
                completed += 1;
            }
        }
        if completed == n {
            break;
        }
        assert!(Instant::now() < deadline, "only {completed}/{n} completed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let elapsed = started.elapsed();
    let reconciles = op
        .metrics()
        .count(qms_operator::metrics::ControllerKind::qmsworkflow)
        - reconciles_before;
    let counters = sim.counters().snapshot();
    let total: u64 = counters.values().sum();
    let mut by_resource: std::collections::BTreeMap<String, u64> = Default::default();
    for ((verb, resource), count) in &counters {
        *by_resource.entry(format!("{verb} {resource}")).or_default() += count;
    }
    println!("workflows:                 {n}");
    println!("wall time:                 {:.2} s", elapsed.as_secs_f64());
    println!(
        "workflows/s:               {:.2}",
        n as f64 / elapsed.as_secs_f64()
    );
    println!(
        "workflow reconciles/wf:    {:.1}",
        reconciles as f64 / n as f64
    );
    println!(
        "API requests/wf (all):     {:.1} (includes the bench's own polling, the Job controller and kubelet)",
        total as f64 / n as f64
    );
    for (k, v) in by_resource.iter().filter(|(k, _)| {
        k.contains("qmsworkflows") || k.starts_with("create jobs") || k.contains("events")
    }) {
        println!("  {k:<32} {:.2}/wf", *v as f64 / n as f64);
    }
    // Reads the operator made because a watch lagged (near zero on a healthy server).
    let metrics = qms_operator::http::render_metrics(&op.shared);
    let gap_reads: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("qms_cache_gap_reads_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    println!("cache-gap reads/wf:        {:.2}", gap_reads / n as f64);
    op.stop().await;
    sim.stop().await;
}
