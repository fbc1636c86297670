//! Leader election on a real Kubernetes 1.20.2 control plane (kube-real): the real
//! coordination.k8s.io/v1 Lease semantics, the scenarios of `leader.rs`
//! (`common/leader_scenarios.rs`). Needs `scripts/install-kube.sh`.

use crate::common::{Env, leader_scenarios};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_of_two_replicas_leads_and_the_standby_takes_over() {
    leader_scenarios::one_of_two_replicas_leads_and_the_standby_takes_over(
        &Env::start_real().await,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_candidates_cannot_both_win() {
    leader_scenarios::racing_candidates_cannot_both_win(&Env::start_real().await).await;
}
