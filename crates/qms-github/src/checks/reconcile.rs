//! The entry point the operator calls from its QmsWorkflow reconcile: render, sync with GitHub,
//! store what was synced, release the finalizer when a deleted workflow's checks are closed.

use std::sync::Arc;
use std::time::Duration;

use qms_api::QmsWorkflow;

use crate::checks::render::{RenderConfig, StepAnnotations};
use crate::checks::sync::{SyncInput, SyncReport, sync};
use crate::client::{GithubClient, GithubError};
use crate::config::GithubConfig;
use crate::naming;
use crate::store::{StoreError, WorkflowStore};

/// After an error GitHub cannot fix by waiting (e.g. 422), try again this much later.
pub const RETRY_AFTER_ERROR: Duration = Duration::from_secs(300);

pub struct CheckSyncer {
    github: Arc<GithubClient>,
    kube: kube::Client,
    render: RenderConfig,
    /// Templates of one namespace from a watch (the webhook's), instead of a read per sync.
    templates: Option<Arc<crate::cache::TemplateCache>>,
}

#[derive(Debug)]
pub struct SyncOutcome {
    /// Call `reconcile` again after this long (GitHub rate-limited, down or refusing); `None` =
    /// converged, nothing to do until the workflow changes.
    pub requeue_after: Option<Duration>,
    pub report: SyncReport,
}

impl CheckSyncer {
    pub fn new(cfg: &GithubConfig, github: Arc<GithubClient>, kube: kube::Client) -> Self {
        Self {
            github,
            kube,
            render: RenderConfig {
                details_url_template: cfg.details_url_template.clone(),
                max_annotations_per_check_run: cfg.max_annotations_per_check_run,
            },
            templates: None,
        }
    }

    /// Reads the templates of `cache`'s namespace from it (other namespaces are still read from
    /// the API server).
    pub fn with_templates(mut self, cache: Arc<crate::cache::TemplateCache>) -> Self {
        self.templates = Some(cache);
        self
    }

    /// Converges the check runs of `wf` (call on every change of the workflow, deleted ones
    /// included while qms-github's finalizer holds them). `annotations`: the agents' annotations
    /// per step, if the caller has them.
    pub async fn reconcile(
        &self,
        wf: &QmsWorkflow,
        annotations: &StepAnnotations,
    ) -> Result<SyncOutcome, StoreError> {
        let namespace = wf.metadata.namespace.as_deref().unwrap_or("default");
        let store = WorkflowStore::new(self.kube.clone(), namespace);
        let name = &wf.spec.template_ref.name;
        let template = match &self.templates {
            Some(cache) if cache.namespace() == namespace => {
                cache.get(name).await?.map(|t| (*t).clone())
            }
            _ => store.template(name).await?,
        };
        // Before the check runs: once a push's checks show it completed, its baseline is there.
        if store.record_push_baseline(wf).await? {
            tracing::debug!(workflow = ?wf.metadata.name, "push review completed: baseline recorded");
        }
        let report = sync(
            &self.github,
            &self.render,
            SyncInput {
                workflow: wf,
                template: template.as_ref().map(|t| &t.spec),
                annotations,
            },
        )
        .await;
        if report.changed {
            store
                .store_check_runs(wf, &report.check_runs, &report.dispatches)
                .await?;
        }
        let deleting = wf.metadata.deletion_timestamp.is_some();
        let holds = wf
            .metadata
            .finalizers
            .as_ref()
            .is_some_and(|f| f.iter().any(|x| x == naming::FINALIZER));
        // A deleted workflow is released once its check runs are closed — or when GitHub refuses
        // for good (404/422: nothing left to close): the finalizer must never pin it forever.
        let give_up = matches!(
            report.error,
            Some(GithubError::Api { .. }) | Some(GithubError::Auth(_))
        );
        if deleting && holds && (report.converged || give_up) {
            if give_up {
                tracing::warn!(workflow = ?wf.metadata.name, error = ?report.error, "releasing a deleted workflow whose check runs could not be closed");
            }
            store.remove_finalizer(wf).await?;
        }
        let now = self.github.now();
        let requeue_after = if report.converged {
            None
        } else if let Some(at) = report.retry_at {
            Some(
                (at - now)
                    .to_std()
                    .unwrap_or(Duration::from_secs(1))
                    .max(Duration::from_secs(1)),
            )
        } else {
            Some(RETRY_AFTER_ERROR)
        };
        if let Some(e) = &report.error {
            tracing::info!(workflow = ?wf.metadata.name, error = %e, ?requeue_after, "check runs not fully synced");
        }
        Ok(SyncOutcome {
            requeue_after,
            report,
        })
    }
}
