//! Scale benchmark (issue 11): prints numbers, asserts nothing. `QMS_BENCH_WORKFLOWS` (default
//! 1000) workflows at once, the operator as its own process (`qms-operator run`, the binary of
//! this package) against kube-sim in this process, whose kubelet completes every agent task at
//! once with the example agents' results. Agents never queue (loadCapacity 1000).
//!
//! `cargo bench -p qms-operator --bench scale` (`QMS_BENCH_WORKFLOWS=100` for a quick run).
//!
//! 1. Throughput: N QmsWorkflows created directly, time until all are FINAL_PENDING; operator
//!    RSS (`/proc/<pid>/status`: VmRSS idle, VmHWM peak); the operator's API requests by verb
//!    and resource (kube-sim counts per User-Agent) against the minimal count (Jobs + one status
//!    write per state transition); reconciles per workflow (the operator's /metrics).
//! 2. Webhooks: a second operator process with GitHub on (a fake GitHub REST API in this
//!    process). N signed `pull_request opened` deliveries (8 clients) against N direct
//!    QmsWorkflow creates on the same kube-sim (8 clients), and the raw verify-and-parse rate of
//!    the same payload here; p50/p99 of a delivery; then GitHub writes per check run once those
//!    reviews reached FINAL_PENDING.

#[path = "../../qms-github/tests/it/common/github.rs"]
mod fake_github;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use kube_sim_kubelet::{ContainerOutcome, ContainerSpec, closure_runner};
use qms_api::{Agent, QmsWorkflow, WorkflowState};
use qms_github::Secret;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SECRET: &str = "whsec-bench-0b5e";
const CLIENTS: usize = 8;
const PAYLOAD: &str = include_str!("../../qms-github/tests/fixtures/pull_request.opened.json");

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
        .unwrap_or(1000)
        .max(1);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run(n));
}

/// `VmRSS` and `VmHWM` of `pid`, in MiB.
fn memory(pid: u32) -> (f64, f64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib = |key: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    (kib("VmRSS:") / 1024.0, kib("VmHWM:") / 1024.0)
}

/// User + system CPU seconds of `pid` (`"self"` for this process), from `/proc/<pid>/stat`.
fn cpu_seconds(pid: &str) -> f64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which is in parentheses and may contain spaces).
    let rest = text.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        f.get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name; 100 ticks/s.
    (ticks(11) + ticks(12)) / 100.0
}

fn free_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr")
}

/// One HTTP/1.1 request on a fresh connection; status and body.
async fn http(addr: SocketAddr, head: &str, body: &[u8]) -> (u16, String) {
    let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else {
        return (0, String::new());
    };
    let _ = s.write_all(head.as_bytes()).await;
    let _ = s.write_all(body).await;
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf).await;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (code, body)
}

async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let head = format!("GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n");
    http(addr, &head, b"").await
}

/// The sum of a counter's samples whose line starts with `prefix` on /metrics.
async fn metric(addr: SocketAddr, prefix: &str) -> f64 {
    let (_, text) = get(addr, "/metrics").await;
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

struct Operator {
    child: Child,
    addr: SocketAddr,
}

impl Operator {
    /// `qms-operator run` against the kubeconfig, with `env`; waits until /readyz answers 200.
    async fn start(kubeconfig: &Path, log: &Path, env: &[(&str, String)]) -> Operator {
        let addr = free_addr();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_qms-operator"));
        cmd.arg("run")
            .env("KUBECONFIG", kubeconfig)
            .env("QMS_HTTP_ADDR", addr.to_string())
            .env("QMS_LEADER_ELECT", "false")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(log).expect("operator log file"),
            ));
        // Passed through, e.g. QMS_WORKFLOW_CONCURRENCY to see what the reconcile concurrency does.
        if let Ok(c) = std::env::var("QMS_BENCH_WORKFLOW_CONCURRENCY") {
            cmd.env("QMS_WORKFLOW_CONCURRENCY", c);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("qms-operator starts");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if get(addr, "/readyz").await.0 == 200 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "operator not ready; see {}",
                log.display()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Operator { child, addr }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn seed(client: &Client, ns: &str) {
    for (name, text) in qms_operator::dev::EXAMPLES {
        if !name.starts_with("qmsworkflow") {
            qms_operator::dev::apply_yaml(client, ns, text)
                .await
                .expect("examples");
        }
    }
    // Agents that never queue.
    let agents: Api<Agent> = Api::namespaced(client.clone(), ns);
    for a in agents.list(&ListParams::default()).await.expect("agents") {
        agents
            .patch(
                &a.name_any(),
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"loadCapacity": 1000}})),
            )
            .await
            .expect("loadCapacity");
    }
}

async fn ensure_namespace(client: &Client, ns: &str) {
    let api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    let mut n = k8s_openapi::api::core::v1::Namespace::default();
    n.metadata.name = Some(ns.into());
    let _ = api.create(&PostParams::default(), &n).await;
}

fn workflow(ns: &str, name: &str, i: usize) -> QmsWorkflow {
    let mut wf: QmsWorkflow = serde_json::from_value(json!({
        "apiVersion": "qms.creo.dev/v1", "kind": "QmsWorkflow",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"repository": "creo/app", "pullRequest": i + 1,
                 "headSha": format!("{:07x}", 0xabc0000 + i), "baseRef": "main",
                 "templateRef": {"name": "standard-qms-review"}},
    }))
    .expect("workflow");
    wf.metadata.namespace = Some(ns.into());
    wf
}

/// States of the workflows of `ns`: (FINAL_PENDING or later, total, transitions in history).
async fn progress(api: &Api<QmsWorkflow>) -> (usize, usize, usize) {
    let Ok(list) = api.list(&ListParams::default()).await else {
        return (0, 0, 0);
    };
    let mut done = 0;
    let mut transitions = 0;
    for wf in &list.items {
        let st = wf.status.as_ref();
        if st.is_some_and(|s| {
            matches!(
                s.state,
                WorkflowState::FinalPending | WorkflowState::Completed
            )
        }) {
            done += 1;
        }
        transitions += st.map_or(0, |s| s.history.len());
    }
    (done, list.items.len(), transitions)
}

/// Per workflow: seconds from creation to each transition (the history's times, 1 s resolution).
async fn timelines(api: &Api<QmsWorkflow>) -> Vec<Vec<(String, f64)>> {
    let Ok(list) = api.list(&ListParams::default()).await else {
        return Vec::new();
    };
    let secs = |t: &str| {
        chrono::DateTime::parse_from_rfc3339(t)
            .map(|d| d.timestamp_millis() as f64 / 1000.0)
            .unwrap_or(f64::NAN)
    };
    list.items
        .iter()
        .map(|wf| {
            let created = wf
                .metadata
                .creation_timestamp
                .as_ref()
                .map_or(f64::NAN, |t| t.0.as_millisecond() as f64 / 1000.0);
            wf.status
                .as_ref()
                .map(|s| {
                    s.history
                        .iter()
                        .map(|h| (h.to.to_string(), secs(&h.at) - created))
                        .collect()
                })
                .unwrap_or_default()
        })
        .collect()
}

/// Seconds from the first workflow's creation to the last transition to FINAL_PENDING.
async fn first_to_last(api: &Api<QmsWorkflow>) -> Option<f64> {
    let list = api.list(&ListParams::default()).await.ok()?;
    let mut first = f64::INFINITY;
    let mut last = f64::NEG_INFINITY;
    for wf in &list.items {
        if let Some(t) = &wf.metadata.creation_timestamp {
            first = first.min(t.0.as_millisecond() as f64 / 1000.0);
        }
        for h in wf.status.iter().flat_map(|s| &s.history) {
            if h.to == WorkflowState::FinalPending
                && let Ok(at) = chrono::DateTime::parse_from_rfc3339(&h.at)
            {
                last = last.max(at.timestamp_millis() as f64 / 1000.0);
            }
        }
    }
    (first.is_finite() && last.is_finite()).then_some(last - first)
}

/// Waits until every workflow of `api` is FINAL_PENDING (at most `limit`); the elapsed time.
async fn until_final(api: &Api<QmsWorkflow>, n: usize, since: Instant, limit: Duration) -> f64 {
    loop {
        let (done, _, _) = progress(api).await;
        if done >= n {
            return since.elapsed().as_secs_f64();
        }
        if since.elapsed() > limit {
            println!("  (gave up: {done}/{n} reached FINAL_PENDING in {limit:?})");
            return since.elapsed().as_secs_f64();
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Requests of the operator (User-Agent `qms-operator`) per (verb, resource).
fn operator_requests(sim: &kube_sim::KubeSim) -> BTreeMap<(String, String), u64> {
    sim.counters()
        .snapshot_by_client()
        .into_iter()
        .filter(|((ua, _, _), _)| ua == "qms-operator")
        .map(|((_, verb, res), n)| ((verb, res), n))
        .collect()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
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
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("kubeconfig");
    let sim = kube_sim::KubeSim::builder()
        .runner(runner)
        .kubeconfig_path(&kubeconfig)
        .watch_history(20 * n + 1000)
        .start()
        .await
        .expect("kube-sim");
    let client = sim.client();
    qms_operator::dev::install_crds(&client)
        .await
        .expect("crds");
    seed(&client, "default").await;
    println!(
        "scale bench: QMS_BENCH_WORKFLOWS={n}, {} CPUs, QMS_WORKFLOW_CONCURRENCY={}; operator = separate process, kube-sim + kubelet + load in this one",
        std::thread::available_parallelism().map_or(0, |p| p.get()),
        std::env::var("QMS_BENCH_WORKFLOW_CONCURRENCY").unwrap_or_else(|_| "default".into())
    );

    // ---- 1. throughput, memory, writes, reconciles ----
    let log1 = dir.path().join("operator-1.log");
    let op = Operator::start(
        &kubeconfig,
        &log1,
        &[
            ("QMS_MAX_CONCURRENT_WORKFLOWS", n.to_string()),
            ("QMS_NAMESPACES", "default".into()),
        ],
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (idle_rss, _) = memory(op.pid());
    let reconciles_before =
        metric(op.addr, "qms_reconciles_total{controller=\"qmsworkflow\"").await;
    let op_pid = op.pid().to_string();
    let (op_cpu0, self_cpu0) = (cpu_seconds(&op_pid), cpu_seconds("self"));
    sim.counters().reset();
    let api: Api<QmsWorkflow> = Api::namespaced(client.clone(), "default");
    let started = Instant::now();
    create_all(&api, "default", "bench", n).await;
    let created_in = started.elapsed().as_secs_f64();
    let elapsed = until_final(&api, n, started, Duration::from_secs(900)).await;
    let (rss_after, hwm) = memory(op.pid());
    let (op_cpu, self_cpu) = (
        cpu_seconds(&op_pid) - op_cpu0,
        cpu_seconds("self") - self_cpu0,
    );
    let rec_sum = metric(
        op.addr,
        "qms_reconcile_duration_seconds_sum{controller=\"qmsworkflow\"",
    )
    .await;
    let rec_count = metric(
        op.addr,
        "qms_reconcile_duration_seconds_count{controller=\"qmsworkflow\"",
    )
    .await;
    let reconciles = metric(op.addr, "qms_reconciles_total{controller=\"qmsworkflow\"").await
        - reconciles_before;
    let requests = operator_requests(&sim);
    let (_, _, transitions) = progress(&api).await;
    let count = |verb: &str, res: &str| -> u64 {
        requests
            .get(&(verb.to_owned(), res.to_owned()))
            .copied()
            .unwrap_or(0)
    };
    let jobs = count("create", "jobs");
    let writes: u64 = requests
        .iter()
        .filter(|((v, _), _)| !matches!(v.as_str(), "get" | "list" | "watch"))
        .map(|(_, c)| c)
        .sum();
    let minimal = jobs + transitions as u64;
    let per = |x: f64| x / n as f64;
    let lines = timelines(&api).await;
    println!("\n1. {n} workflows at once to FINAL_PENDING (agents never queue)");
    println!("  created in                {created_in:.2} s");
    // From the workflows' own history (the bench polls once a second).
    let span = first_to_last(&api).await.unwrap_or(elapsed);
    println!("  wall time                 {span:.2} s (first creation to last FINAL_PENDING)");
    println!("  workflows/s               {:.2}", n as f64 / span);
    println!(
        "  operator RSS              idle {idle_rss:.1} MiB, peak (VmHWM) {hwm:.1} MiB, after {rss_after:.1} MiB"
    );
    println!(
        "  RSS per 1,000 workflows   {:.1} MiB above idle (peak)",
        (hwm - idle_rss) * 1000.0 / n as f64
    );
    println!("  reconciles/workflow       {:.1}", per(reconciles));
    println!(
        "  mean reconcile            {:.2} ms ({rec_count:.0} reconciles, since start)",
        rec_sum / rec_count.max(1.0) * 1e3
    );
    println!(
        "  CPU                       operator {op_cpu:.1} s ({:.1} ms/workflow), kube-sim + kubelet + bench {self_cpu:.1} s, over {elapsed:.1} s wall",
        op_cpu / n as f64 * 1e3
    );
    let mut by_state: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for line in &lines {
        for (state, t) in line {
            by_state.entry(state.clone()).or_default().push(*t);
        }
    }
    for (state, mut ts) in by_state {
        ts.sort_by(f64::total_cmp);
        println!(
            "  reached {state:<18} after creation: p50 {:.1} s, max {:.1} s",
            percentile(&ts, 0.5),
            percentile(&ts, 1.0)
        );
    }
    println!(
        "  operator writes/workflow  {:.2} vs minimal {:.2} (Jobs {:.2} + transitions {:.2}): {:.2}x",
        per(writes as f64),
        per(minimal as f64),
        per(jobs as f64),
        per(transitions as f64),
        writes as f64 / minimal.max(1) as f64
    );
    let events = count("create", "events") + count("patch", "events");
    println!(
        "  without Events            {:.2}/workflow: {:.2}x the minimal count",
        per((writes - events) as f64),
        (writes - events) as f64 / minimal.max(1) as f64
    );
    println!("  operator requests/workflow by verb and resource:");
    for ((verb, res), c) in &requests {
        println!(
            "    {:<40} {:>8.2}",
            format!("{verb} {res}"),
            per(*c as f64)
        );
    }
    op.stop();

    // ---- 2. webhooks and GitHub ----
    webhooks(n, &sim, &client, &kubeconfig, dir.path()).await;
    sim.stop().await;
}

/// Creates `n` workflows `<prefix>-<i>` with CLIENTS concurrent clients; per-create latencies (s).
async fn create_all(api: &Api<QmsWorkflow>, ns: &str, prefix: &str, n: usize) -> Vec<f64> {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let api = api.clone();
        let next = next.clone();
        let ns = ns.to_owned();
        let prefix = prefix.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= n {
                    return lat;
                }
                let wf = workflow(&ns, &format!("{prefix}-{i}"), i);
                let t = Instant::now();
                api.create(&PostParams::default(), &wf)
                    .await
                    .expect("create workflow");
                lat.push(t.elapsed().as_secs_f64());
            }
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("client task"));
    }
    all
}

/// A `pull_request opened` body for PR `pr`, padded to about 25 KB like a real one.
fn opened_body(pr: u64) -> Vec<u8> {
    let mut v: Value = serde_json::from_str(PAYLOAD).expect("fixture");
    v["number"] = pr.into();
    v["pull_request"]["number"] = pr.into();
    v["pull_request"]["head"]["sha"] = format!("{:040x}", 0xfeed_0000_u64 + pr).into();
    let pad = 25_000usize.saturating_sub(PAYLOAD.len());
    v["pull_request"]["body"] = "lorem ipsum ".repeat(pad / 12).into();
    serde_json::to_vec(&v).expect("json")
}

fn delivery_head(addr: SocketAddr, id: &str, sig: &str, len: usize) -> String {
    format!(
        "POST /webhooks/github HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {len}\r\nUser-Agent: GitHub-Hookshot/bench\r\n\
         X-GitHub-Event: pull_request\r\nX-GitHub-Delivery: {id}\r\nX-GitHub-Hook-ID: 77\r\n\
         X-GitHub-Hook-Installation-Target-ID: 1001\r\nX-Hub-Signature-256: {sig}\r\n\r\n"
    )
}

async fn webhooks(
    n: usize,
    sim: &kube_sim::KubeSim,
    client: &Client,
    kubeconfig: &Path,
    dir: &Path,
) {
    ensure_namespace(client, "gh").await;
    ensure_namespace(client, "direct").await;
    seed(client, "gh").await;
    let gh = fake_github::FakeGithub::start().await;
    let log2 = dir.join("operator-2.log");
    let op = Operator::start(
        kubeconfig,
        &log2,
        &[
            ("QMS_MAX_CONCURRENT_WORKFLOWS", n.to_string()),
            ("QMS_NAMESPACES", "gh".into()),
            ("QMS_GITHUB_ENABLED", "true".into()),
            ("QMS_GITHUB_NAMESPACE", "gh".into()),
            ("QMS_GITHUB_API_URL", gh.uri()),
            ("QMS_GITHUB_TOKEN", "ghp_bench".into()),
            ("QMS_GITHUB_WEBHOOK_SECRET", SECRET.into()),
            // The fake GitHub has no secondary limits; pacing would only measure the bucket.
            ("QMS_GITHUB_WRITES_PER_MINUTE", "10000000".into()),
            ("QMS_GITHUB_WRITES_PER_HOUR", "100000000".into()),
        ],
    )
    .await;
    let secret = Secret::new(SECRET);
    let bodies: Vec<(Vec<u8>, String)> = (0..n as u64)
        .map(|i| {
            let b = opened_body(100_000 + i);
            let sig = qms_github::signature::sign(&secret, &b);
            (b, sig)
        })
        .collect();

    // Raw verify-and-parse of the same payload, one thread of this process.
    let secrets = vec![secret.clone()];
    let (body0, sig0) = &bodies[0];
    let t = Instant::now();
    let mut raw = 0u64;
    while t.elapsed() < Duration::from_secs(1) {
        qms_github::signature::verify(&secrets, Some(sig0), body0).expect("signature");
        let _ = qms_github::events::parse("pull_request", body0).expect("parse");
        raw += 1;
    }
    let raw_rate = raw as f64 / t.elapsed().as_secs_f64();

    // Direct creates on the same server (a namespace no operator watches).
    let direct: Api<QmsWorkflow> = Api::namespaced(client.clone(), "direct");
    let t = Instant::now();
    let mut direct_lat = create_all(&direct, "direct", "direct", n).await;
    let direct_rate = n as f64 / t.elapsed().as_secs_f64();
    direct_lat.sort_by(f64::total_cmp);

    // The same number of signed deliveries, CLIENTS at a time.
    sim.counters().reset();
    let bodies = Arc::new(bodies);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let addr = op.addr;
    let t = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let bodies = bodies.clone();
        let next = next.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut failed = 0;
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some((body, sig)) = bodies.get(i) else {
                    return (lat, failed);
                };
                let head = delivery_head(addr, &format!("bench-{i}"), sig, body.len());
                let s = Instant::now();
                let (code, _) = http(addr, &head, body).await;
                lat.push(s.elapsed().as_secs_f64());
                if code != 200 {
                    failed += 1;
                }
            }
        }));
    }
    let mut lat = Vec::new();
    let mut failed = 0;
    for task in tasks {
        let (l, f) = task.await.expect("client");
        lat.extend(l);
        failed += f;
    }
    let hook_rate = n as f64 / t.elapsed().as_secs_f64();
    lat.sort_by(f64::total_cmp);
    let webhook_requests = operator_requests(sim);

    println!(
        "\n2. webhooks: {n} signed pull_request opened deliveries (~25 KB), {CLIENTS} clients"
    );
    println!("  raw verify+parse          {raw_rate:.0}/s (one thread of the bench process)");
    println!(
        "  direct QmsWorkflow create {direct_rate:.0}/s (p50 {:.1} ms, p99 {:.1} ms)",
        percentile(&direct_lat, 0.5) * 1e3,
        percentile(&direct_lat, 0.99) * 1e3
    );
    println!(
        "  webhook deliveries        {hook_rate:.0}/s (p50 {:.1} ms, p99 {:.1} ms, {failed} not 200)",
        percentile(&lat, 0.5) * 1e3,
        percentile(&lat, 0.99) * 1e3
    );
    println!(
        "  webhook / direct create   {:.2}x; webhook / raw verify+parse {:.3}x",
        hook_rate / direct_rate,
        hook_rate / raw_rate
    );
    println!(
        "  operator requests/delivery during the burst (webhook + the reconciles it started):"
    );
    for ((verb, res), c) in webhook_requests
        .iter()
        .filter(|((_, r), _)| r.starts_with("qmsworkflows") || r == "workflowtemplates")
    {
        println!(
            "    {:<40} {:>8.2}",
            format!("{verb} {res}"),
            *c as f64 / n as f64
        );
    }

    // GitHub writes per check run once the reviews are FINAL_PENDING and the sync is quiet.
    let gh_api: Api<QmsWorkflow> = Api::namespaced(client.clone(), "gh");
    let t = Instant::now();
    let took = until_final(&gh_api, n, t, Duration::from_secs(900)).await;
    let mut last = usize::MAX;
    let quiet_deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let calls = gh.lock().calls.len();
        if calls == last || Instant::now() > quiet_deadline {
            break;
        }
        last = calls;
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let (_, hwm) = memory(op.pid());
    let st = gh.lock();
    let creates = st
        .calls
        .iter()
        .filter(|c| c.method == "POST" && c.path.ends_with("/check-runs"))
        .count();
    let updates = st
        .calls
        .iter()
        .filter(|c| c.method == "PATCH" && c.path.contains("/check-runs/"))
        .count();
    let writes = st.calls.iter().filter(|c| c.method != "GET").count();
    let reads = st.calls.len() - writes;
    let checks = st.checks.len();
    println!(
        "  reviews from webhooks to FINAL_PENDING: {took:.1} s; operator (GitHub on) peak RSS {hwm:.1} MiB"
    );
    println!(
        "  GitHub: {checks} check runs, {creates} creates + {updates} updates, {writes} writes, {reads} reads: {:.2} writes per check run",
        writes as f64 / checks.max(1) as f64
    );
    drop(st);
    op.stop();
}
