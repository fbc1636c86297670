//! Leader election: several operator instances against one kube-sim. Short durations (lease 3 s,
//! renew every 0.5 s) keep the tests fast; every wait polls a condition with a hang-protection
//! deadline, nothing asserts on timing.

use crate::common::leader_scenarios::{self, *};
use crate::common::*;
use kube::ResourceExt;
use qms_api::WorkflowState;
use qms_operator::Exit;

/// Two replicas: one leads (the Lease names it), the other waits as a Ready standby; a workflow
/// completes with one Job per task; the leader shuts down gracefully (releasing the Lease) and
/// the standby takes over and completes a second workflow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_of_two_replicas_leads_and_the_standby_takes_over() {
    leader_scenarios::one_of_two_replicas_leads_and_the_standby_takes_over(&Env::start().await)
        .await;
}

/// A leader that cannot renew (the API server answers 500 for leases) stops acting once the
/// renew deadline passed; a new candidate takes the Lease over once it expired (it was not
/// released) and completes the next workflow, which the old leader never even saw.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_that_cannot_renew_stops_acting() {
    let env = Env::start().await;
    catalog(&env).await;
    let mut old = replica(&env, "old_1").await;
    old.wait_leader().await;
    old.wait_ready().await;
    env.apply(&workflow("pr-1", "t", "aaaaaaa")).await;
    env.wait_state("pr-1", WorkflowState::Completed).await;

    env.sim
        .faults()
        .add(kube_sim::FaultRule::error(500).resource("leases"));
    let exit = tokio::time::timeout(DEADLINE, old.wait())
        .await
        .expect("the leader gives up before the deadline");
    assert!(
        matches!(&exit, Exit::LostLeadership(reason) if reason.contains("renew deadline")),
        "{exit:?}"
    );
    assert!(!old.is_leader());
    assert_eq!(leader_gauge(&old), "qms_leader 0");
    env.sim.faults().clear();
    // Not released: the Lease still names the old leader until someone takes it over.
    assert_eq!(holder(&env).await.as_deref(), Some("old_1"));

    let new = replica(&env, "new_1").await;
    until("the new replica to lead", || async { new.is_leader() }).await;
    assert_eq!(holder(&env).await.as_deref(), Some("new_1"));
    env.apply(&workflow("pr-2", "t", "bbbbbbb")).await;
    env.wait_state("pr-2", WorkflowState::Completed).await;
    assert_eq!(assert_no_duplicate_jobs(&env).await, 2);
    // The old leader's watches and controllers were stopped: it never saw pr-2.
    let seen: Vec<String> = old
        .shared
        .all_workflows()
        .iter()
        .map(|w| w.name_any())
        .collect();
    assert!(!seen.contains(&"pr-2".to_owned()), "{seen:?}");
    assert!(!old.is_leader());
    old.stop().await;
    new.shutdown().await;
}

/// Optimistic concurrency: of several candidates racing for a missing, then a free Lease,
/// exactly one wins each time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_candidates_cannot_both_win() {
    leader_scenarios::racing_candidates_cannot_both_win(&Env::start().await).await;
}
