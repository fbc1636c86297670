//! Leader-election scenarios shared by `leader.rs` (kube-sim) and `leader_real.rs` (the real
//! control plane). Short durations (lease 3 s, renew every 0.5 s); every wait polls a condition
//! with a hang-protection deadline.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::{Api, ResourceExt};
use qms_api::WorkflowState;
use qms_operator::leader::{Attempt, Elector, LeaderElectionConfig};
use qms_operator::{Http, OperatorHandle, Settings};

use super::*;

pub const LEASE: &str = "qms-operator";

pub fn election(env: &Env, identity: &str) -> LeaderElectionConfig {
    let cfg = LeaderElectionConfig {
        namespace: env.ns.clone(),
        lease_name: LEASE.to_owned(),
        identity: identity.to_owned(),
        lease_duration: Duration::from_secs(3),
        renew_deadline: Duration::from_secs(2),
        renew_interval: Duration::from_millis(500),
        retry_period: Duration::from_millis(200),
    };
    cfg.validate().expect("valid test config");
    cfg
}

pub fn settings(env: &Env, identity: &str) -> Settings {
    Settings {
        leader_election: Some(election(env, identity)),
        http_addr: "127.0.0.1:0".parse().unwrap(),
        ..env.settings()
    }
}

pub async fn replica(env: &Env, identity: &str) -> OperatorHandle {
    qms_operator::start(
        env.client.clone(),
        settings(env, identity),
        Http::On { extra: None },
    )
    .await
    .expect("operator starts")
}

pub async fn lease(env: &Env) -> Option<Lease> {
    let api: Api<Lease> = Api::namespaced(env.client.clone(), &env.ns);
    api.get_opt(LEASE).await.expect("read the lease")
}

pub async fn holder(env: &Env) -> Option<String> {
    lease(env)
        .await
        .and_then(|l| l.spec)
        .and_then(|s| s.holder_identity)
}

/// `GET path` on the replica's HTTP server: (status code, body).
pub async fn get(op: &OperatorHandle, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = op.http_addr.expect("HTTP on");
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).await.expect("read");
    let code = out
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
    (code, body)
}

pub async fn catalog(env: &Env) {
    env.apply(&agent("checker", 5, &result("success", r#""issues":0"#, 0)))
        .await;
    env.apply(&gate("no-issues", "issues", "eq", 0.0, true))
        .await;
    env.apply(
        r#"apiVersion: qms.creo.dev/v1
kind: WorkflowTemplate
metadata:
  name: t
spec:
  steps:
    - name: check
      type: parallel
      agents: [{name: checker}]
      qualityGates: [no-issues]
      timeout: 20s
      states: {pending: DOR_PENDING, failed: DOR_FAILED}
"#,
    )
    .await;
}

/// Every Job of the operator is unique per (workflow, run, step, attempt, agent).
pub async fn assert_no_duplicate_jobs(env: &Env) -> usize {
    let jobs = env.list_jobs().await;
    let mut per_key: BTreeMap<[String; 5], Vec<String>> = BTreeMap::new();
    for job in &jobs {
        let key = [
            "qms.creo.dev/workflow",
            "qms.creo.dev/run",
            "qms.creo.dev/step",
            "qms.creo.dev/attempt",
            "qms.creo.dev/agent",
        ]
        .map(|k| label(job, k).to_owned());
        per_key.entry(key).or_default().push(job.name_any());
    }
    for (key, names) in &per_key {
        assert_eq!(names.len(), 1, "duplicate Jobs for {key:?}: {names:?}");
    }
    jobs.len()
}

pub fn leader_gauge(op: &OperatorHandle) -> String {
    let text = qms_operator::http::render_metrics(&op.shared);
    text.lines()
        .find(|l| l.starts_with("qms_leader "))
        .unwrap_or_else(|| panic!("no qms_leader in {text}"))
        .to_owned()
}

/// Two replicas: one leads (the Lease names it), the other waits as a Ready standby; a workflow
/// completes with one Job per task; the leader shuts down gracefully (releasing the Lease) and
/// the standby takes over and completes a second workflow.
pub async fn one_of_two_replicas_leads_and_the_standby_takes_over(env: &Env) {
    catalog(env).await;
    let (a, b) = tokio::join!(replica(env, "replica-a_1"), replica(env, "replica-b_1"));
    // Watches, for the whole test, that the two never lead at the same moment.
    let both_led = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let monitor = {
        let (sa, sb, flag) = (a.shared.clone(), b.shared.clone(), both_led.clone());
        tokio::spawn(async move {
            loop {
                if sa.is_leader() && sb.is_leader() {
                    flag.store(true, std::sync::atomic::Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    until("a leader", || async { a.is_leader() || b.is_leader() }).await;
    assert!(!(a.is_leader() && b.is_leader()), "both replicas lead");
    let (leader, standby) = if a.is_leader() { (a, b) } else { (b, a) };
    let leader_id = leader
        .shared
        .settings
        .leader_election
        .as_ref()
        .unwrap()
        .identity
        .clone();
    let standby_id = standby
        .shared
        .settings
        .leader_election
        .as_ref()
        .unwrap()
        .identity
        .clone();
    assert_eq!(holder(env).await.as_deref(), Some(leader_id.as_str()));
    assert_eq!(leader_gauge(&leader), "qms_leader 1");
    assert_eq!(leader_gauge(&standby), "qms_leader 0");
    // The standby serves probes and metrics, and is Ready (see http.rs for why).
    assert_eq!(get(&standby, "/healthz").await.0, 200);
    assert_eq!(get(&standby, "/readyz").await, (200, "standby".to_owned()));
    assert!(get(&standby, "/metrics").await.1.contains("qms_leader 0"));
    leader.wait_ready().await;
    assert_eq!(get(&leader, "/readyz").await, (200, "ready".to_owned()));

    env.apply(&workflow("pr-1", "t", "aaaaaaa")).await;
    env.wait_state("pr-1", WorkflowState::Completed).await;
    assert!(!standby.is_leader(), "the standby took over while renewed");
    assert_eq!(holder(env).await.as_deref(), Some(leader_id.as_str()));
    assert_eq!(assert_no_duplicate_jobs(env).await, 1);
    // The standby never started its watches: nothing is cached there.
    assert!(standby.shared.all_workflows().is_empty());

    // Graceful stop: the Lease is released, the standby acquires it without waiting for expiry.
    leader.shutdown().await;
    let released_or_taken = holder(env).await;
    assert_ne!(released_or_taken.as_deref(), Some(leader_id.as_str()));
    until("the standby to lead", || async { standby.is_leader() }).await;
    assert_eq!(holder(env).await.as_deref(), Some(standby_id.as_str()));
    let transitions = lease(env)
        .await
        .and_then(|l| l.spec)
        .and_then(|s| s.lease_transitions);
    assert_eq!(transitions, Some(1));
    assert_eq!(leader_gauge(&standby), "qms_leader 1");

    env.apply(&workflow("pr-2", "t", "bbbbbbb")).await;
    env.wait_state("pr-2", WorkflowState::Completed).await;
    assert_eq!(assert_no_duplicate_jobs(env).await, 2);
    monitor.abort();
    assert!(
        !both_led.load(std::sync::atomic::Ordering::SeqCst),
        "both replicas led at the same time"
    );
    standby.shutdown().await;
    assert_eq!(holder(env).await, None, "released on shutdown");
}

/// Optimistic concurrency: of several candidates racing for a missing, then a free Lease,
/// exactly one wins each time.
pub async fn racing_candidates_cannot_both_win(env: &Env) {
    for round in 0..2 {
        let mut electors: Vec<Elector> = (0..5)
            .map(|i| Elector::new(env.client.clone(), election(env, &format!("c{round}-{i}"))))
            .collect();
        let results =
            futures::future::join_all(electors.iter_mut().map(|e| e.try_acquire_or_renew())).await;
        let winners: Vec<usize> = results
            .iter()
            .enumerate()
            .filter(|(_, r)| matches!(r, Ok(Attempt::Leading)))
            .map(|(i, _)| i)
            .collect();
        assert_eq!(winners.len(), 1, "round {round}: {results:?}");
        let winner = format!("c{round}-{}", winners[0]);
        assert_eq!(holder(env).await.as_deref(), Some(winner.as_str()));
        // A held, unexpired Lease is not taken by anyone else.
        for (i, e) in electors.iter_mut().enumerate() {
            if i != winners[0] {
                assert!(
                    matches!(e.try_acquire_or_renew().await, Ok(Attempt::Standby { .. })),
                    "round {round}: c{round}-{i} took a held lease"
                );
            }
        }
        // Released: free for the next round.
        assert!(electors[winners[0]].release().await.expect("release"));
        assert_eq!(holder(env).await, None);
    }
}
