//! The task result endpoint on kube-sim (Jobs run as local `sh` processes): every bad request
//! gets its 4xx and changes nothing, a result is stored once, a result of several hundred
//! findings (the example agent of `examples/bulk-findings`) ends in a check run with capped
//! annotations on the fake GitHub, and a result cut at the termination message limit says to use
//! the endpoint. Every wait polls with a hang-protection deadline; nothing asserts on timing.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use crate::common::*;
use crate::fake_github::FakeGithub;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::{Api, ResourceExt};
use qms_api::{QmsWorkflow, TaskPhase, WorkflowState};
use qms_operator::results::{ResultKey, ResultsSettings, token};
use qms_operator::{Http, Settings};
use serde_json::{Value, json};

const KEY: &str = "results-endpoint-test-key-0123456789";

fn settings(env: &Env, max_body_bytes: usize) -> Settings {
    Settings {
        http_addr: "127.0.0.1:0".parse().unwrap(),
        results: ResultsSettings {
            key: ResultKey::new(KEY),
            max_body_bytes,
            url: None,
        },
        ..env.settings()
    }
}

/// One raw HTTP/1.1 request; returns status and JSON body.
async fn post(
    addr: SocketAddr,
    path: &str,
    auth: Option<&str>,
    extra: &str,
    body: &[u8],
) -> (u16, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let auth = auth
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    let length = if extra.contains("Content-Length") || extra.contains("Transfer-Encoding") {
        String::new()
    } else {
        format!("Content-Length: {}\r\n", body.len())
    };
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: qms\r\nConnection: close\r\nContent-Type: application/json\r\n{auth}{length}{extra}\r\n"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    // The server may answer (413) before reading everything: ignore a reset while writing.
    let _ = s.write_all(body).await;
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf).await;
    let buf = String::from_utf8_lossy(&buf);
    let code = buf
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = buf.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    (code, serde_json::from_str(body).unwrap_or(Value::Null))
}

fn findings(n: usize, status: &str) -> Vec<u8> {
    let anns: Vec<Value> = (0..n)
        .map(|i| {
            json!({"path": format!("src/f{}.rs", i % 7), "start_line": i + 1, "end_line": i + 1,
            "annotation_level": if i % 5 == 0 { "failure" } else { "warning" },
            "message": format!("finding {i}")})
        })
        .collect();
    serde_json::to_vec(
        &json!({"status": status, "summary": format!("{n} findings"),
        "metrics": {"findings": n}, "annotations": anns}),
    )
    .unwrap()
}

async fn wait_file(path: &Path) -> String {
    tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            if let Ok(t) = std::fs::read_to_string(path)
                && !t.trim().is_empty()
            {
                return t.trim().to_owned();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{} not written", path.display()))
}

fn task<'a>(wf: &'a QmsWorkflow, agent: &str) -> &'a qms_api::TaskStatus {
    wf.status.as_ref().unwrap().steps[0]
        .tasks
        .iter()
        .find(|t| t.agent == agent)
        .unwrap()
}

/// Every bad request of the contract, a stored result, a repeated one, and a submission after
/// the task ended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_refused_and_a_result_is_stored_once() {
    let env = Env::start().await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    // Each agent publishes what its Job got, then waits for the test.
    let script = format!(
        "echo \"$QMS_RESULT_TOKEN\" > {d}/$QMS_AGENT.token\necho \"$QMS_RESULT_URL\" > {d}/$QMS_AGENT.url\n\
         while [ ! -f {d}/$QMS_AGENT.go ]; do sleep 0.1; done\nexit 0"
    );
    env.apply(&agent("rev-a", 5, &script)).await;
    env.apply(&agent("rev-b", 5, &script)).await;
    env.apply(
        r#"apiVersion: qms.creo.dev/v1
kind: WorkflowTemplate
metadata:
  name: t-results
spec:
  steps:
    - name: review
      type: parallel
      agents: [{name: rev-a}, {name: rev-b}]
      timeout: 60s
      states: {pending: PROGRESS_PENDING, failed: PROGRESS_BLOCKED}
"#,
    )
    .await;
    let op = qms_operator::start(
        env.client.clone(),
        settings(&env, 4 * 1024 * 1024),
        Http::On { extra: None },
    )
    .await
    .expect("operator starts");
    let addr = op.http_addr.unwrap();
    op.wait_ready().await;
    env.apply(&workflow("wf-results", "t-results", "aaaaaaa"))
        .await;

    let token_a = wait_file(&dir.path().join("rev-a.token")).await;
    let token_b = wait_file(&dir.path().join("rev-b.token")).await;
    let url_a = wait_file(&dir.path().join("rev-a.url")).await;
    let wf = env.get("wf-results").await;
    let (job_a, job_b) = (
        task(&wf, "rev-a").job_name.clone(),
        task(&wf, "rev-b").job_name.clone(),
    );
    let path_a = format!("/v1/tasks/{job_a}/result");
    assert_eq!(url_a, format!("http://{addr}{path_a}"));
    // The token is not in the Job spec: it comes from the per-task Secret.
    let job = env.jobs().get(&job_a).await.unwrap();
    assert!(!serde_json::to_string(&job).unwrap().contains(&token_a));
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), &env.ns);
    let secret_name = format!("qms-result-token-{job_a}");
    assert!(secrets.get_opt(&secret_name).await.unwrap().is_some());

    let good = findings(300, "success");
    let bearer = |t: &str| format!("Bearer {t}");
    let cms: Api<ConfigMap> = Api::namespaced(env.client.clone(), &env.ns);
    let stored_name = format!("qms-result-{job_a}");
    let before = env.get("wf-results").await.status;

    // No credential, a malformed one, a forged one.
    let (code, body) = post(addr, &path_a, None, "", &good).await;
    assert_eq!(code, 401, "{body}");
    let (code, _) = post(addr, &path_a, Some("Bearer not-a-token"), "", &good).await;
    assert_eq!(code, 401);
    let forged = token::issue(
        b"another-operator-key-000000",
        &env.ns,
        "wf-results",
        &wf.uid().unwrap(),
        &job_a,
    );
    let (code, body) = post(addr, &path_a, Some(&bearer(&forged)), "", &good).await;
    assert_eq!(code, 403, "{body}");
    // The credential of another task; one of an earlier workflow of the same name (expired).
    let (code, body) = post(addr, &path_a, Some(&bearer(&token_b)), "", &good).await;
    assert_eq!(code, 403, "{body}");
    let expired = token::issue(
        KEY.as_bytes(),
        &env.ns,
        "wf-results",
        "uid-of-an-earlier-workflow",
        &job_a,
    );
    let (code, _) = post(addr, &path_a, Some(&bearer(&expired)), "", &good).await;
    assert_eq!(code, 403);
    // A valid credential of a task that does not exist; a workflow that does not exist.
    let unknown = token::issue(
        KEY.as_bytes(),
        &env.ns,
        "wf-results",
        &wf.uid().unwrap(),
        "no-such-task",
    );
    let (code, body) = post(
        addr,
        "/v1/tasks/no-such-task/result",
        Some(&bearer(&unknown)),
        "",
        &good,
    )
    .await;
    assert_eq!(code, 404, "{body}");
    let gone = token::issue(KEY.as_bytes(), &env.ns, "wf-gone", "u", &job_a);
    let (code, _) = post(addr, &path_a, Some(&bearer(&gone)), "", &good).await;
    assert_eq!(code, 404);
    // Over the limit: by Content-Length (before the body is read), and by what is read.
    let (code, body) = post(
        addr,
        &path_a,
        Some(&bearer(&token_a)),
        "Content-Length: 8388608\r\n",
        b"{}",
    )
    .await;
    assert_eq!(code, 413, "{body}");
    let huge = vec![b' '; 4 * 1024 * 1024 + 10];
    let (code, _) = post(addr, &path_a, Some(&bearer(&token_a)), "", &huge).await;
    assert_eq!(code, 413);
    // Without a length (chunked): refused once the read passes the limit.
    let mut chunked = format!("{:x}\r\n", huge.len()).into_bytes();
    chunked.extend_from_slice(&huge);
    chunked.extend_from_slice(b"\r\n0\r\n\r\n");
    let (code, body) = post(
        addr,
        &path_a,
        Some(&bearer(&token_a)),
        "Transfer-Encoding: chunked\r\n",
        &chunked,
    )
    .await;
    assert_eq!(code, 413, "{body}");
    // Under the limit but compressing to more than an object holds.
    let noise: String = {
        use rand::RngCore;
        let mut raw = vec![0u8; 1200 * 1024];
        rand::rng().fill_bytes(&mut raw);
        raw.iter().map(|b| format!("{b:02x}")).collect()
    };
    let incompressible =
        serde_json::to_vec(&json!({"status": "success", "summary": noise})).unwrap();
    let (code, body) = post(addr, &path_a, Some(&bearer(&token_a)), "", &incompressible).await;
    assert_eq!(code, 413, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("compresses"),
        "{body}"
    );
    // Malformed JSON; JSON that is not a valid result (the field is named).
    let (code, body) = post(
        addr,
        &path_a,
        Some(&bearer(&token_a)),
        "",
        br#"{"status":"succ"#,
    )
    .await;
    assert_eq!(code, 400, "{body}");
    let (code, body) = post(
        addr,
        &path_a,
        Some(&bearer(&token_a)),
        "",
        br#"{"status":"success","metrics":{"x":"abc"}}"#,
    )
    .await;
    assert_eq!(code, 422, "{body}");
    assert!(
        body["error"].as_str().unwrap().starts_with("metrics.x"),
        "{body}"
    );
    // None of these stored anything or changed the workflow.
    assert!(cms.get_opt(&stored_name).await.unwrap().is_none());
    assert_eq!(env.get("wf-results").await.status, before);

    // The result is stored once; the same again is accepted and changes nothing; another is refused.
    let (code, body) = post(addr, &path_a, Some(&bearer(&token_a)), "", &good).await;
    assert_eq!(code, 201, "{body}");
    assert_eq!(body["annotations"], 300);
    let cm = cms.get(&stored_name).await.unwrap();
    assert!(
        cm.owner_references()
            .iter()
            .any(|o| Some(&o.uid) == wf.uid().as_ref())
    );
    let (code, body) = post(addr, &path_a, Some(&bearer(&token_a)), "", &good).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        cms.get(&stored_name).await.unwrap().resource_version(),
        cm.resource_version()
    );
    let (code, _) = post(
        addr,
        &path_a,
        Some(&bearer(&token_a)),
        "",
        &findings(3, "success"),
    )
    .await;
    assert_eq!(code, 409);

    // Both agents exit: a's task succeeds from the stored result, b's (nothing submitted, no
    // termination message) fails closed.
    std::fs::write(dir.path().join("rev-a.go"), "").unwrap();
    std::fs::write(dir.path().join("rev-b.go"), "").unwrap();
    let wf = env
        .wait_for("wf-results", "both tasks ended", |wf| {
            wf.status.as_ref().is_some_and(|s| {
                s.steps.first().is_some_and(|st| {
                    st.tasks
                        .iter()
                        .all(|t| !matches!(t.phase, TaskPhase::Pending | TaskPhase::Running))
                })
            })
        })
        .await;
    let a = task(&wf, "rev-a");
    assert_eq!(a.phase, TaskPhase::Succeeded, "{}", a.message);
    let r = a.result.as_ref().unwrap();
    assert_eq!((r.annotations, r.metrics["findings"]), (300, 300.0));
    assert_eq!(r.result_config_map.as_deref(), Some(stored_name.as_str()));
    assert_eq!(task(&wf, "rev-b").phase, TaskPhase::Failed);
    // The ended task's token Secret is gone; its credential now gets 409.
    tokio::time::timeout(Duration::from_secs(30), async {
        while secrets.get_opt(&secret_name).await.unwrap().is_some() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("token Secret deleted");
    let path_b = format!("/v1/tasks/{job_b}/result");
    let (code, body) = post(addr, &path_b, Some(&bearer(&token_b)), "", &good).await;
    assert_eq!(code, 409, "{body}");
    // a's same result again: still accepted once, nothing changes.
    let (code, _) = post(addr, &path_a, Some(&bearer(&token_a)), "", &good).await;
    assert_eq!(code, 200);
    assert_eq!(
        state_of(&env.get("wf-results").await),
        WorkflowState::ProgressBlocked
    );
    op.stop().await;
}

/// A result cut at the termination message's 4096 bytes tells the agent author what to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_cut_at_the_termination_message_limit_says_use_the_endpoint() {
    let env = Env::start().await;
    let big = String::from_utf8(findings(80, "success")).unwrap();
    assert!(big.len() > 4096);
    env.apply(&agent(
        "big",
        5,
        &format!("printf '%s' '{big}' > /dev/termination-log"),
    ))
    .await;
    env.apply(
        r#"apiVersion: qms.creo.dev/v1
kind: WorkflowTemplate
metadata:
  name: t-big
spec:
  steps:
    - name: review
      type: parallel
      agents: [{name: big}]
      timeout: 30s
      states: {pending: PROGRESS_PENDING, failed: PROGRESS_BLOCKED}
"#,
    )
    .await;
    let op = env.operator(env.settings()).await;
    op.wait_ready().await;
    env.apply(&workflow("wf-big", "t-big", "bbbbbbb")).await;
    let wf = env
        .wait_state("wf-big", WorkflowState::ProgressBlocked)
        .await;
    let t = task(&wf, "big");
    assert_eq!(t.phase, TaskPhase::Failed);
    assert!(
        t.message
            .starts_with(qms_engine::result::TOO_LARGE_FOR_TERMINATION_MESSAGE),
        "{}",
        t.message
    );
    op.stop().await;
}

/// The example agent reports 300 findings through the endpoint; the check run of its step gets
/// the capped number of annotations (failures first) and a line saying how many more and where.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_hundred_findings_end_in_a_check_run_with_capped_annotations() {
    let env = Env::start().await;
    env.apply(include_str!(
        "../../../../examples/bulk-findings/bulk-findings.yaml"
    ))
    .await;
    let gh = FakeGithub::start().await;
    let github = qms_github::GithubConfig {
        api_base_url: gh.uri(),
        webhook_secrets: vec![qms_github::Secret::new("whsec-results")],
        credentials: qms_github::Credentials::Token(qms_github::Secret::new(
            "ghp_results0123456789",
        )),
        namespace: env.ns.clone(),
        writes_per_minute: 6000,
        max_annotations_per_check_run: 120,
        ..qms_github::GithubConfig::default()
    };
    let op = qms_operator::start(
        env.client.clone(),
        Settings {
            github: Some(github),
            ..settings(&env, 10 * 1024 * 1024)
        },
        Http::On { extra: None },
    )
    .await
    .expect("operator starts");
    op.wait_ready().await;
    env.apply(include_str!(
        "../../../../examples/bulk-findings/qmsworkflow-pr-777.yaml"
    ))
    .await;
    let wf = env
        .wait_state("creo-roo-commander-pr-777", WorkflowState::Completed)
        .await;
    let t = task(&wf, "qms-bulk-reviewer");
    assert_eq!(t.phase, TaskPhase::Succeeded, "{}", t.message);
    assert_eq!(t.result.as_ref().unwrap().annotations, 300);
    let sha = wf.spec.head_sha.clone();
    let check = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            if let Some(c) = gh.check("QMS / static-analysis", &sha)
                && c.status == "completed"
                && c.annotations >= 120
            {
                return c;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await
    .expect("check run with annotations");
    assert_eq!(check.annotations, 120, "the cap");
    assert!(
        check.summary.contains("**180 more annotations**"),
        "{}",
        check.summary
    );
    assert!(
        check.summary.contains("kubectl describe qmsworkflow"),
        "{}",
        check.summary
    );
    assert!(check.summary.contains("qms-result-"), "{}", check.summary);
    gh.assert_no_violations();
    op.stop().await;
}
