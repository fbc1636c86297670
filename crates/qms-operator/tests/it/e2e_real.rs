//! The end-to-end scenarios of `e2e.rs` on a real Kubernetes 1.20.2 control plane (kube-real):
//! the real apiserver's validation, the real Job controller and garbage collector, the
//! kube-sim-kubelet node. Same scenario code (`common/scenarios.rs`), other server. Needs
//! `scripts/install-kube.sh` (fails naming it when the binaries are absent).

use crate::common::{Env, scenarios};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standard_review_completes_after_approval() {
    scenarios::standard_review_completes_after_approval(&Env::start_real().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_gate_then_new_head_sha_passes() {
    scenarios::dor_failure_then_fix_pushed_passes(&Env::start_real().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explicit_retry_runs_the_failed_step_again() {
    scenarios::explicit_retry_runs_the_failed_step_again(&Env::start_real().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_in_every_state_creates_no_duplicates() {
    scenarios::restart_in_every_state_creates_no_duplicates(&Env::start_real().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_workflow_cleans_up_its_jobs() {
    scenarios::deleting_a_workflow_cleans_up_its_jobs(&Env::start_real().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_get_shows_state_columns() {
    scenarios::kubectl_get_shows_state_columns(&Env::start_real().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_wait_and_describe_follow_a_review() {
    scenarios::kubectl_wait_and_describe_follow_a_review(&Env::start_real().await).await;
}
