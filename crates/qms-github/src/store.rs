//! The Kubernetes side: read workflows and templates, write the change a delivery asks for
//! together with its delivery key, and store the synced check runs in status.
//!
//! Every spec change is one JSON patch that starts with a `test` of the resourceVersion it was
//! decided on: a concurrent change (another delivery, kubectl, the operator's finalizer) makes it
//! fail with a conflict instead of overwriting, and the server decides again on the new object.

use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use qms_api::{CheckRunRef, QmsWorkflow, QualityBaseline, QualityBaselineSpec, WorkflowTemplate};
use serde_json::{Value, json};

use crate::intent::{BaselineUpdate, Change};
use crate::naming::{self, DeliveryKey};

/// Field manager of everything qms-github writes (the operator writes status as `qms-operator`).
pub const FIELD_MANAGER: &str = "qms-github";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The object changed (or appeared/disappeared) since it was read: decide again.
    #[error("the workflow changed concurrently")]
    Conflict,
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("cannot build the patch: {0}")]
    Patch(String),
}

fn is_status(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == code)
}

#[derive(Clone)]
pub struct WorkflowStore {
    workflows: Api<QmsWorkflow>,
    templates: Api<WorkflowTemplate>,
    baselines: Api<QualityBaseline>,
}

impl WorkflowStore {
    pub fn new(client: kube::Client, namespace: &str) -> Self {
        Self {
            workflows: Api::namespaced(client.clone(), namespace),
            templates: Api::namespaced(client.clone(), namespace),
            baselines: Api::namespaced(client, namespace),
        }
    }

    pub async fn get(&self, name: &str) -> Result<Option<QmsWorkflow>, StoreError> {
        Ok(self.workflows.get_opt(name).await?)
    }

    /// The workflow of `repository` reviewing `sha` (check suites of fork PRs name no PR number).
    pub async fn find_by_head(
        &self,
        repository: &str,
        sha: &str,
    ) -> Result<Option<QmsWorkflow>, StoreError> {
        let selector = format!(
            "{}={}",
            naming::LABEL_REPOSITORY,
            naming::repository_hash(repository)
        );
        let list = self
            .workflows
            .list(&ListParams::default().labels(&selector))
            .await?;
        Ok(list.items.into_iter().find(|w| w.spec.head_sha == sha))
    }

    pub async fn templates(&self) -> Result<Vec<WorkflowTemplate>, StoreError> {
        Ok(self.templates.list(&ListParams::default()).await?.items)
    }

    pub async fn template(&self, name: &str) -> Result<Option<WorkflowTemplate>, StoreError> {
        Ok(self.templates.get_opt(name).await?)
    }

    /// Stores `change` decided on `current`, recording `key` in the same write.
    pub async fn apply(
        &self,
        current: Option<&QmsWorkflow>,
        change: &Change,
        key: &DeliveryKey,
    ) -> Result<(), StoreError> {
        match change {
            Change::Create(wf) => match self
                .workflows
                .create(&PostParams::default(), &with_traceparent(wf))
                .await
            {
                Ok(_) => {
                    if wf.spec.push.is_some() {
                        self.prune_finished_pushes(wf).await;
                    }
                    Ok(())
                }
                // Someone created it since we looked: decide again on what is there.
                Err(e) if is_status(&e, 409) => Err(StoreError::Conflict),
                Err(e) => Err(e.into()),
            },
            Change::UpdateSpec(spec) => {
                let Some(cur) = current else {
                    return Err(StoreError::Conflict);
                };
                let mut ops = spec_patch(cur, spec, key)?;
                if let (Some(tp), Value::Array(ops)) = (crate::trace_context::current(), &mut ops) {
                    // After `spec_patch`'s ops, which create the annotations map when missing.
                    ops.push(json!({ "op": "add", "path": annotation_path(crate::trace_context::ANNOTATION_TRACEPARENT), "value": tp }));
                }
                let patch: json_patch::Patch =
                    serde_json::from_value(ops).map_err(|e| StoreError::Patch(e.to_string()))?;
                let name = cur.metadata.name.as_deref().unwrap_or_default();
                let params = PatchParams {
                    field_manager: Some(FIELD_MANAGER.to_owned()),
                    ..PatchParams::default()
                };
                match self
                    .workflows
                    .patch(name, &params, &Patch::Json::<()>(patch))
                    .await
                {
                    Ok(_) => Ok(()),
                    // A failed `test` (resourceVersion moved) is 422 on a real API server; 409
                    // covers servers that report it as a conflict; 404 = deleted meanwhile.
                    Err(e) if is_status(&e, 409) || is_status(&e, 422) || is_status(&e, 404) => {
                        Err(StoreError::Conflict)
                    }
                    Err(e) => Err(e.into()),
                }
            }
            Change::Merged(update) => {
                self.record_baseline(update).await?;
                self.delete(current).await
            }
            Change::Delete => self.delete(current).await,
        }
    }

    /// Merges `update` into the `QualityBaseline` of its repository and branch (created when
    /// missing). Read-modify-write guarded by the resourceVersion; nothing is written when the
    /// values are already there, so a redelivery changes nothing.
    pub async fn record_baseline(&self, update: &BaselineUpdate) -> Result<(), StoreError> {
        let name = qms_api::baseline_name(&update.repository, &update.branch);
        match self.baselines.get_opt(&name).await? {
            None => {
                let mut spec = QualityBaselineSpec {
                    repository: update.repository.clone(),
                    branch: update.branch.clone(),
                    ..Default::default()
                };
                spec.merge(&update.values, &update.sha, update.pull_request, &update.at);
                let mut obj = QualityBaseline::new(&name, spec);
                obj.metadata.labels = Some(
                    [(
                        naming::LABEL_REPOSITORY.to_owned(),
                        naming::repository_hash(&update.repository),
                    )]
                    .into(),
                );
                match self.baselines.create(&PostParams::default(), &obj).await {
                    Ok(_) => Ok(()),
                    Err(e) if is_status(&e, 409) => Err(StoreError::Conflict),
                    Err(e) => Err(e.into()),
                }
            }
            Some(mut obj) => {
                if !obj.spec.repository.eq_ignore_ascii_case(&update.repository)
                    || obj.spec.branch != update.branch
                {
                    return Err(StoreError::Patch(format!(
                        "QualityBaseline {name} belongs to {}@{}, not {}@{}",
                        obj.spec.repository, obj.spec.branch, update.repository, update.branch
                    )));
                }
                if !obj
                    .spec
                    .merge(&update.values, &update.sha, update.pull_request, &update.at)
                {
                    return Ok(());
                }
                match self
                    .baselines
                    .replace(&name, &PostParams::default(), &obj)
                    .await
                {
                    Ok(_) => Ok(()),
                    Err(e) if is_status(&e, 409) || is_status(&e, 404) => Err(StoreError::Conflict),
                    Err(e) => Err(e.into()),
                }
            }
        }
    }

    /// A push review that reached COMPLETED for its commit: its gate values become the baseline
    /// of its branch at the push's time (idempotent: nothing is written once they are there, and
    /// an older push never replaces a newer one's values). Not a push, or not completed: nothing.
    pub async fn record_push_baseline(&self, wf: &QmsWorkflow) -> Result<bool, StoreError> {
        let Some(push) = &wf.spec.push else {
            return Ok(false);
        };
        let Ok(values) = qms_api::baseline::values_from_push(wf) else {
            return Ok(false);
        };
        if values.is_empty() {
            return Ok(false);
        }
        self.record_baseline(&BaselineUpdate {
            repository: wf.spec.repository.clone(),
            branch: wf.spec.base_ref.clone(),
            sha: wf.spec.head_sha.clone(),
            pull_request: None,
            at: push.pushed_at.clone(),
            values,
        })
        .await?;
        Ok(true)
    }

    /// After a new push review: delete the finished (terminal) push reviews of the same branch,
    /// so one review per push does not accumulate without bound. Running ones finish first; a
    /// deleted COMPLETED one still records its baseline before qms-github's finalizer lets it go.
    /// Best effort: a failure is logged, the next push prunes again.
    async fn prune_finished_pushes(&self, new: &QmsWorkflow) {
        let selector = format!(
            "{}={},{}=true",
            naming::LABEL_REPOSITORY,
            naming::repository_hash(&new.spec.repository),
            naming::LABEL_PUSH
        );
        let list = match self
            .workflows
            .list(&ListParams::default().labels(&selector))
            .await
        {
            Ok(l) => l,
            Err(e) => {
                tracing::info!(error = %e, "could not list finished push reviews to prune");
                return;
            }
        };
        for old in list.items.iter().filter(|w| {
            w.metadata.name != new.metadata.name
                && w.metadata.deletion_timestamp.is_none()
                && w.spec.push.is_some()
                && w.spec.base_ref == new.spec.base_ref
                && w.status.as_ref().is_some_and(|s| s.state.is_terminal())
        }) {
            if let Err(e) = self.delete(Some(old)).await {
                tracing::info!(workflow = ?old.metadata.name, error = %e, "could not prune a finished push review");
            }
        }
    }

    async fn delete(&self, current: Option<&QmsWorkflow>) -> Result<(), StoreError> {
        let Some(cur) = current else { return Ok(()) };
        let name = cur.metadata.name.as_deref().unwrap_or_default();
        match self
            .workflows
            .delete(name, &DeleteParams::background())
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_status(&e, 404) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Writes `status.checkRuns` and `status.dispatches` with server-side apply as field manager
    /// `qms-github`, so the operator's own status apply (manager `qms-operator`) never fights it.
    pub async fn store_check_runs(
        &self,
        wf: &QmsWorkflow,
        check_runs: &[CheckRunRef],
        dispatches: &[String],
    ) -> Result<(), StoreError> {
        let name = wf.metadata.name.as_deref().unwrap_or_default();
        let body = json!({
            "apiVersion": "qms.creo.dev/v1",
            "kind": "QmsWorkflow",
            "metadata": { "name": name },
            "status": { "checkRuns": check_runs, "dispatches": dispatches },
        });
        let params = PatchParams::apply(FIELD_MANAGER).force();
        self.workflows
            .patch_status(name, &params, &Patch::Apply(&body))
            .await?;
        Ok(())
    }

    /// Removes qms-github's finalizer (guarded by resourceVersion; a conflict is retried by the
    /// next reconcile).
    pub async fn remove_finalizer(&self, wf: &QmsWorkflow) -> Result<(), StoreError> {
        let finalizers = wf.metadata.finalizers.clone().unwrap_or_default();
        let Some(i) = finalizers.iter().position(|f| f == naming::FINALIZER) else {
            return Ok(());
        };
        let ops = json!([
            { "op": "test", "path": format!("/metadata/finalizers/{i}"), "value": naming::FINALIZER },
            { "op": "remove", "path": format!("/metadata/finalizers/{i}") },
        ]);
        let patch: json_patch::Patch =
            serde_json::from_value(ops).map_err(|e| StoreError::Patch(e.to_string()))?;
        let name = wf.metadata.name.as_deref().unwrap_or_default();
        match self
            .workflows
            .patch(name, &PatchParams::default(), &Patch::Json::<()>(patch))
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_status(&e, 404) => Ok(()),
            Err(e) if is_status(&e, 409) || is_status(&e, 422) => Err(StoreError::Conflict),
            Err(e) => Err(e.into()),
        }
    }
}

/// `wf` with the current span's `traceparent` annotation (when traces are exported), so that the
/// operator's reconciles of it continue the delivery's trace.
fn with_traceparent(wf: &QmsWorkflow) -> std::borrow::Cow<'_, QmsWorkflow> {
    match crate::trace_context::current() {
        Some(tp) => {
            let mut wf = wf.clone();
            wf.metadata
                .annotations
                .get_or_insert_with(Default::default)
                .insert(crate::trace_context::ANNOTATION_TRACEPARENT.to_owned(), tp);
            std::borrow::Cow::Owned(wf)
        }
        None => std::borrow::Cow::Borrowed(wf),
    }
}

/// The JSON pointer of annotation `name` (`/` and `~` escaped).
fn annotation_path(name: &str) -> String {
    format!(
        "/metadata/annotations/{}",
        name.replace('~', "~0").replace('/', "~1")
    )
}

/// JSON patch: test resourceVersion, set each spec field that differs, record the delivery.
pub fn spec_patch(
    cur: &QmsWorkflow,
    spec: &qms_api::QmsWorkflowSpec,
    key: &DeliveryKey,
) -> Result<Value, StoreError> {
    let rv = cur
        .metadata
        .resource_version
        .clone()
        .ok_or_else(|| StoreError::Patch("the workflow has no resourceVersion".into()))?;
    let old = serde_json::to_value(&cur.spec).map_err(|e| StoreError::Patch(e.to_string()))?;
    let new = serde_json::to_value(spec).map_err(|e| StoreError::Patch(e.to_string()))?;
    let mut ops = vec![json!({ "op": "test", "path": "/metadata/resourceVersion", "value": rv })];
    if let (Some(old), Some(new)) = (old.as_object(), new.as_object()) {
        for (field, value) in new {
            if old.get(field) != Some(value) {
                ops.push(json!({ "op": "add", "path": format!("/spec/{field}"), "value": value }));
            }
        }
        for field in old.keys().filter(|f| !new.contains_key(*f)) {
            ops.push(json!({ "op": "remove", "path": format!("/spec/{field}") }));
        }
    }
    let ring = naming::push_delivery(
        naming::recorded_deliveries(cur.metadata.annotations.as_ref()),
        key,
    );
    if cur.metadata.annotations.is_some() {
        ops.push(json!({
            "op": "add",
            "path": format!("/metadata/annotations/{}", naming::ANNOTATION_DELIVERIES.replace('~', "~0").replace('/', "~1")),
            "value": ring,
        }));
    } else {
        ops.push(json!({
            "op": "add",
            "path": "/metadata/annotations",
            "value": { naming::ANNOTATION_DELIVERIES: ring },
        }));
    }
    Ok(Value::Array(ops))
}
