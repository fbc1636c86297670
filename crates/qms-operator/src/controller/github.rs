//! The GitHub check-run controller: for every change of a QmsWorkflow (routed by `informers`,
//! deleted workflows included), converge its check runs with `qms_github::CheckSyncer`.
//!
//! It is a controller of its own, beside the workflow controller, so GitHub never blocks the
//! engine: a slow, rate-limiting or failing GitHub delays only this sync, which requeues itself
//! (`SyncOutcome::requeue_after`), while decisions and Jobs go on. The sync is level-triggered
//! (desired check runs from status vs. `status.checkRuns`), so whatever it missed while GitHub
//! was down is caught up by the next call.
//!
//! Deleting a workflow: the workflow controller removes `qms.creo.dev/cleanup` after deleting
//! the Jobs; this one completes the open check runs as `cancelled`, and qms-github then removes
//! its own `qms.creo.dev/github-checks`. Each removes only its own finalizer.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::channel::mpsc::UnboundedReceiver;
use kube::ResourceExt;
use kube::runtime::controller::{Action, Config, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use qms_api::QmsWorkflow;
use qms_github::client::GithubError;

use crate::context::{Scope, Shared, lock};
use crate::error::Error;
use crate::github::{Github, Synced, step_annotations};
use crate::metrics::{ControllerKind, GithubSyncOutcome};
use crate::observe;

/// Syncs running at once. GitHub writes are paced by one token bucket in the client anyway; this
/// only bounds how many workflows wait on a slow GitHub at the same time.
pub const CONCURRENCY: u16 = 4;

/// A sync taking longer than this is abandoned (the GitHub client sets no request timeout) and
/// retried after [`RETRY_AFTER_TIMEOUT`]. Abandoning is safe: a check run created by the
/// abandoned call is adopted by its `external_id` on the next call, never duplicated.
pub const SYNC_TIMEOUT: Duration = Duration::from_secs(60);
pub const RETRY_AFTER_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Ctx {
    pub shared: Arc<Shared>,
    pub scope: Arc<Scope>,
    pub github: Arc<Github>,
}

/// Runs the check-run controller of one scope until the task is aborted.
pub async fn run(
    shared: Arc<Shared>,
    scope: Arc<Scope>,
    github: Arc<Github>,
    triggers: UnboundedReceiver<ObjectRef<QmsWorkflow>>,
) {
    let reader = scope.stores.workflows.clone();
    let ctx = Arc::new(Ctx {
        shared,
        scope,
        github,
    });
    Controller::for_stream(
        futures::stream::pending::<Result<QmsWorkflow, watcher::Error>>(),
        reader,
    )
    .reconcile_on(triggers)
    .with_config(Config::default().concurrency(CONCURRENCY))
    .run(reconcile, error_policy, ctx)
    .for_each(|res| async move {
        if let Err(e) = res {
            tracing::debug!(error = %e, "check-run sync did not run");
        }
    })
    .await;
}

fn key(wf: &QmsWorkflow) -> String {
    super::failure_key(
        super::GITHUB_FAILURES,
        &wf.namespace().unwrap_or_default(),
        &wf.name_any(),
    )
}

fn outcome_of(error: Option<&GithubError>) -> GithubSyncOutcome {
    match error {
        None => GithubSyncOutcome::converged,
        Some(GithubError::RateLimited { .. }) => GithubSyncOutcome::rate_limited,
        Some(GithubError::Unavailable { .. }) => GithubSyncOutcome::unavailable,
        Some(GithubError::Api { .. }) => GithubSyncOutcome::refused,
        Some(GithubError::Auth(_)) => GithubSyncOutcome::auth,
        Some(GithubError::Request(_)) => GithubSyncOutcome::request,
    }
}

pub async fn reconcile(wf: Arc<QmsWorkflow>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    // The annotations come from the Pod cache; before it is listed they would look missing.
    ctx.shared.wait_ready().await;
    let started = Instant::now();
    let shared = &ctx.shared;
    let uid = wf.uid().unwrap_or_default();
    let wf = ctx.github.overlay(&wf);
    let stores = &ctx.scope.stores;
    let (jobs, _) = observe::workflow_jobs(
        &wf,
        &stores.jobs.state(),
        &stores.pods.state(),
        chrono::Utc::now(),
    );
    let annotations = step_annotations(&wf, &jobs, shared.settings.engine.max_result_bytes);
    let annotations = crate::results::with_stored_annotations(shared, &wf, annotations).await;

    // A child of the delivery's trace (the workflow's traceparent annotation), spec §5.3.
    let sync = tracing::Instrument::instrument(
        ctx.github.syncer.reconcile(&wf, &annotations),
        crate::telemetry::check_sync_span(&wf),
    );
    let result = tokio::time::timeout(SYNC_TIMEOUT, sync).await;
    shared
        .metrics
        .reconciled(ControllerKind::github_checks, started.elapsed());
    let out = match result {
        Err(_) => {
            shared.metrics.github_sync(GithubSyncOutcome::timeout, 0);
            tracing::warn!(workflow = %key(&wf), retry_in = ?RETRY_AFTER_TIMEOUT, "check-run sync timed out");
            return Ok(Action::requeue(RETRY_AFTER_TIMEOUT));
        }
        Ok(Err(e)) => {
            shared
                .metrics
                .github_sync(GithubSyncOutcome::store_error, 0);
            return Err(Error::GithubStore(e));
        }
        Ok(Ok(out)) => out,
    };
    let report = &out.report;
    shared
        .metrics
        .github_sync(outcome_of(report.error.as_ref()), report.writes);
    if report.changed {
        // `reconcile` returned Ok, so what changed is stored in status now.
        ctx.github.stored(
            &uid,
            Synced {
                check_runs: report.check_runs.clone(),
                dispatches: report.dispatches.clone(),
            },
        );
    }
    lock(&shared.failures).remove(&key(&wf));
    Ok(match out.requeue_after {
        Some(d) => Action::requeue(d),
        None => Action::await_change(),
    })
}

/// Kubernetes errors of the sync (reading the template, storing `checkRuns`, removing the
/// finalizer) back off per object like the workflow controller's; GitHub errors never get here.
pub fn error_policy(wf: Arc<QmsWorkflow>, err: &Error, ctx: Arc<Ctx>) -> Action {
    let category = err.category();
    ctx.shared
        .metrics
        .error(ControllerKind::github_checks, category);
    let delay = super::backoff_delay(&ctx.shared, &key(&wf), category);
    tracing::warn!(workflow = %key(&wf), category = category.as_str(), error = %err, retry_in = ?delay, "check-run sync failed");
    Action::requeue(delay)
}
