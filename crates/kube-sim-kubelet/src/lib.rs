//! kube-sim's stand-in for kube-controller-manager's Job controller and for the kubelet.
//!
//! It talks to the API server only through a `kube::Client`, exactly like the real components do,
//! so everything it does is visible to watchers (the operator, kubectl) as ordinary API writes.
//!
//! # INTERFACE CONTRACT with crate `kube-sim`
//!
//! ```text
//! // in KubeSim::start(), after the HTTP server listens and `client` points at it:
//! let logs = kube_sim_kubelet::PodLogs::default();          // share it with the log endpoint
//! let handle: tokio::task::JoinHandle<()> = kube_sim_kubelet::spawn(
//!     client.clone(),
//!     logs.clone(),
//!     std::sync::Arc::new(kube_sim_kubelet::LocalProcessRunner),   // or a test's closure_runner(..)
//! );
//! // keep `handle`; call `handle.abort()` when the KubeSim is dropped/stopped: that stops the Job
//! // controller and the kubelet and kills every container process they started.
//! ```
//!
//! * `spawn(client, logs, runner) -> JoinHandle<()>` runs both the Job controller and the kubelet
//!   (must be called inside a tokio runtime). `spawn_job_controller(client)` and
//!   `spawn_kubelet(client, logs, runner)` run one of them alone.
//! * `PodLogs::get(namespace, pod) -> Option<Vec<u8>>` is what `GET .../pods/{name}/log` serves
//!   (`Some(empty)` once the container started; `None` for a pod that never ran).
//! * Server features it relies on: list/watch of Pods and Jobs across namespaces (`Api::all`),
//!   `labelSelector` on pod lists (it also filters by ownerReference itself), pod `generateName`,
//!   `PUT .../status` on pods and jobs with resourceVersion conflicts (409), pod DELETE with
//!   `gracePeriodSeconds=0` and a uid precondition, Job DELETE with
//!   `propagationPolicy=Background` (ttlSecondsAfterFinished), and garbage collection of pods owned
//!   by a deleted Job (ownerReferences; the Job controller does not delete them itself).
//!
//! See the crate README for the simulated semantics and their limits.
#![forbid(unsafe_code)]

mod env;
pub mod job_controller;
mod kubelet;
mod logs;
mod pod_status;
mod runner;

use std::sync::Arc;

pub use kubelet::TERMINATION_MESSAGE_PATH_ENV;
pub use logs::{LogSink, PodLogs, log_tail};
pub use runner::{
    ContainerOutcome, ContainerRunner, ContainerSpec, FnRunner, LocalProcessRunner, RunFuture,
    closure_runner,
};

/// Runs the Job controller and the kubelet until the returned handle is aborted.
pub fn spawn(
    client: kube::Client,
    logs: PodLogs,
    runner: Arc<dyn ContainerRunner>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        futures::join!(
            job_controller::run(client.clone()),
            kubelet::run(client, logs, runner)
        );
    })
}

/// Runs only the Job controller.
pub fn spawn_job_controller(client: kube::Client) -> tokio::task::JoinHandle<()> {
    tokio::spawn(job_controller::run(client))
}

/// Runs only the kubelet.
pub fn spawn_kubelet(
    client: kube::Client,
    logs: PodLogs,
    runner: Arc<dyn ContainerRunner>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(kubelet::run(client, logs, runner))
}
