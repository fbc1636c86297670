//! The task result endpoint: time to accept a 5 MB result (a real agent's several thousand
//! findings) through `POST /v1/tasks/{task_id}/result`, and the annotations the check-run sync
//! sends per second under GitHub's write pacing (80 writes/min, 50 annotations per request) to
//! the fake GitHub of qms-github's tests. Prints numbers; asserts nothing but completion.
//!
//! `cargo bench -p qms-operator --bench results` (or `cargo test -p qms-operator --bench results
//! --profile dev` for an unoptimized run). `QMS_BENCH_RESULTS` (default 5) workflows.

#[path = "../../qms-github/tests/it/common/github.rs"]
mod fake_github;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kube::Api;
use kube_sim_kubelet::{ContainerOutcome, ContainerSpec, closure_runner};
use qms_api::{QmsWorkflow, WorkflowState};

const FINDINGS: usize = 20_000;
const LEVELS: [&str; 3] = ["failure", "warning", "notice"];

fn body() -> Vec<u8> {
    let anns: Vec<serde_json::Value> = (0..FINDINGS)
        .map(|i| {
            serde_json::json!({"path": format!("src/module_{}/file_{}.rs", i % 37, i % 101),
            "start_line": i + 1, "end_line": i + 3,
            "annotation_level": LEVELS[i % 3],
            "title": format!("finding {i}"),
            "message": format!("Possible issue {i}: {}", "lorem ipsum dolor sit amet ".repeat(5))})
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({"status": "success", "summary": "bench",
        "metrics": {"findings": FINDINGS}, "annotations": anns}))
    .unwrap()
}

async fn post(url: &str, token: &str, body: &[u8]) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://").unwrap_or(url);
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let mut s = tokio::net::TcpStream::connect(host).await.expect("connect");
    let head = format!(
        "POST /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(body).await.unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf).await;
    String::from_utf8_lossy(&buf)
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

fn main() {
    let n: usize = std::env::var("QMS_BENCH_RESULTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(run(n));
}

async fn run(n: usize) {
    let body = Arc::new(body());
    let times: Arc<Mutex<Vec<(u16, Duration)>>> = Arc::default();
    let (b, t) = (body.clone(), times.clone());
    let runner = closure_runner(move |spec: ContainerSpec| {
        let (body, times) = (b.clone(), t.clone());
        async move {
            let get = |k: &str| {
                spec.env
                    .iter()
                    .find(|(n, _)| n == k)
                    .map(|(_, v)| v.clone())
            };
            let (Some(url), Some(token)) = (get("QMS_RESULT_URL"), get("QMS_RESULT_TOKEN")) else {
                return ContainerOutcome::exited(1).with_message("no result endpoint");
            };
            let started = Instant::now();
            let code = post(&url, &token, &body).await;
            times.lock().unwrap().push((code, started.elapsed()));
            ContainerOutcome::exited(0)
        }
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
    let gh = fake_github::FakeGithub::start().await;
    let github = qms_github::GithubConfig {
        api_base_url: gh.uri(),
        webhook_secrets: vec![qms_github::Secret::new("whsec-bench")],
        credentials: qms_github::Credentials::Token(qms_github::Secret::new("ghp_bench0123456789")),
        namespace: "default".into(),
        ..qms_github::GithubConfig::default()
    };
    let cap = github.max_annotations_per_check_run;
    let settings = qms_operator::Settings {
        http_addr: "127.0.0.1:0".parse().unwrap(),
        github: Some(github),
        ..qms_operator::Settings::default()
    };
    let op = qms_operator::start(
        client.clone(),
        settings,
        qms_operator::Http::On { extra: None },
    )
    .await
    .expect("operator");
    op.wait_ready().await;
    let catalog = r#"apiVersion: qms.creo.dev/v1
kind: Agent
metadata:
  name: bench-agent
spec:
  capabilities: [bench]
  loadCapacity: 100
  job: {image: busybox:1.37, command: ["true"]}
---
apiVersion: qms.creo.dev/v1
kind: WorkflowTemplate
metadata:
  name: bench-results
spec:
  steps:
    - name: analysis
      type: parallel
      agents: [{name: bench-agent}]
      timeout: 300s
      states: {pending: PROGRESS_PENDING, failed: PROGRESS_BLOCKED}
"#;
    qms_operator::dev::apply_yaml(&client, "default", catalog)
        .await
        .expect("catalog");
    let started = Instant::now();
    for i in 0..n {
        let wf = format!(
            "apiVersion: qms.creo.dev/v1\nkind: QmsWorkflow\nmetadata: {{name: bench-{i}}}\nspec:\n  repository: creo/bench\n  pullRequest: {}\n  headSha: \"{:040x}\"\n  baseRef: main\n  templateRef: {{name: bench-results}}\n",
            i + 1,
            i + 1
        );
        qms_operator::dev::apply_yaml(&client, "default", &wf)
            .await
            .expect("workflow");
    }
    let api: Api<QmsWorkflow> = Api::namespaced(client.clone(), "default");
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let done = api
            .list(&Default::default())
            .await
            .expect("list")
            .items
            .iter()
            .filter(|w| {
                w.status
                    .as_ref()
                    .is_some_and(|s| s.state == WorkflowState::Completed)
            })
            .count();
        if done == n || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let completed_at = started.elapsed();
    let mut t = times.lock().unwrap().clone();
    t.sort_by_key(|(_, d)| *d);
    let mb = body.len() as f64 / 1e6;
    println!("result endpoint: {n} results of {mb:.2} MB ({FINDINGS} findings each)");
    for (code, d) in &t {
        println!(
            "  HTTP {code} in {:.1} ms ({:.1} MB/s)",
            d.as_secs_f64() * 1e3,
            mb / d.as_secs_f64()
        );
    }
    if let (Some(min), Some(max)) = (t.first(), t.last()) {
        println!(
            "  accept time: min {:.1} ms, median {:.1} ms, max {:.1} ms",
            min.1.as_secs_f64() * 1e3,
            t[t.len() / 2].1.as_secs_f64() * 1e3,
            max.1.as_secs_f64() * 1e3
        );
    }
    println!(
        "  all {n} workflows COMPLETED after {:.2} s",
        completed_at.as_secs_f64()
    );
    // Check-run annotations under the default pacing (80 writes/min, 500/h).
    let want = n * cap.min(FINDINGS);
    let sync_started = Instant::now();
    let mut sent = 0;
    while Instant::now() < deadline {
        sent = (0..n)
            .filter_map(|i| gh.check("QMS / analysis", &format!("{:040x}", i + 1)))
            .map(|c| c.annotations)
            .sum::<usize>();
        if sent >= want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let secs = sync_started.elapsed().as_secs_f64() + completed_at.as_secs_f64();
    println!(
        "check runs: {sent} of {want} annotations sent ({cap} per check run, 50 per request) in {secs:.1} s \
         from the first submission: {:.1} annotations/s under 80 writes/min",
        sent as f64 / secs
    );
    op.stop().await;
    sim.stop().await;
}
