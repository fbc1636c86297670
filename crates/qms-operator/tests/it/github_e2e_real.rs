//! The GitHub flow against the fake GitHub on a real Kubernetes 1.20.2 control plane (kube-real):
//! the scenarios of `github_e2e.rs` (`common/github_scenarios.rs`) with the real apiserver's
//! server-side apply and finalizers, the real Job controller and garbage collector, the
//! kube-sim-kubelet node. Needs `scripts/install-kube.sh` (fails naming it when absent).

use crate::common::{Env, github_scenarios};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_request_review_is_mirrored_to_check_runs_and_approved_by_comment() {
    github_scenarios::pull_request_review_is_mirrored_to_check_runs_and_approved_by_comment(
        &Env::start_real().await,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_mid_run_cancels_the_old_checks_and_reviews_the_new_sha() {
    github_scenarios::push_mid_run_cancels_the_old_checks_and_reviews_the_new_sha(
        &Env::start_real().await,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_outage_does_not_stop_the_review_and_checks_converge_after() {
    github_scenarios::github_outage_does_not_stop_the_review_and_checks_converge_after(
        &Env::start_real().await,
    )
    .await;
}
