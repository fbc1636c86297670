//! Status stage: the one server-side-apply status writer of every controller (field manager
//! `qms-operator`, forced, on the status subresource, with the resourceVersion decided on as
//! precondition).

use kube::api::{Patch, PatchParams};
use kube::{Api, Resource, ResourceExt};
use qms_api::{QmsWorkflow, QmsWorkflowStatus};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::act::FIELD_MANAGER;
use crate::context::{Shared, lock};
use crate::error::Error;
use crate::metrics::{ActionKind, ActionOutcome};

/// Conditions compare equal when only their transition time differs from a fresh computation
/// (upsert keeps the old time when the status did not change).
pub async fn write_status<K, S>(shared: &Shared, obj: &K, status: &S) -> Result<(), Error>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Serialize
        + std::fmt::Debug,
    S: Serialize,
{
    let ns = obj.namespace().unwrap_or_default();
    let api: Api<K> = Api::namespaced(shared.client.clone(), &ns);
    let mut metadata = serde_json::json!({ "name": obj.name_any() });
    if let Some(rv) = obj.resource_version() {
        metadata["resourceVersion"] = rv.into();
    }
    let body = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "metadata": metadata,
        "status": status,
    });
    let res = api
        .patch_status(
            &obj.name_any(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&body),
        )
        .await;
    match res {
        Ok(_) => {
            shared
                .metrics
                .action(ActionKind::write_status, ActionOutcome::done);
            Ok(())
        }
        Err(e) => {
            shared
                .metrics
                .action(ActionKind::write_status, ActionOutcome::failed);
            Err(e.into())
        }
    }
}

/// The status without the fields qms-github owns (`checkRuns`, `dispatches`, field manager
/// `qms-github`). The engine starts from the cached status, so its decision carries them; applying
/// them as `qms-operator` would make us a co-owner that writes back stale check run ids and keeps
/// entries qms-github drops. Both are skipped when empty, so the apply leaves them alone.
pub fn operator_owned(mut status: QmsWorkflowStatus) -> QmsWorkflowStatus {
    status.check_runs.clear();
    status.dispatches.clear();
    status
}

/// One server-side apply of the whole status (but what qms-github owns, see [`operator_owned`]) on
/// the status subresource, field manager `qms-operator`, forced, with the resourceVersion we
/// decided on as precondition (a concurrent change answers 409 and we decide again instead of
/// overwriting newer facts).
pub async fn write_workflow_status(
    shared: &Shared,
    wf: &QmsWorkflow,
    status: &QmsWorkflowStatus,
) -> Result<(), Error> {
    let ns = wf.namespace().unwrap_or_default();
    let api: Api<QmsWorkflow> = Api::namespaced(shared.client.clone(), &ns);
    let mut metadata = serde_json::json!({ "name": wf.name_any() });
    if let Some(rv) = wf.resource_version() {
        metadata["resourceVersion"] = rv.into();
    }
    let body = serde_json::json!({
        "apiVersion": QmsWorkflow::api_version(&()),
        "kind": QmsWorkflow::kind(&()),
        "metadata": metadata,
        "status": status,
    });
    let pp = PatchParams::apply(FIELD_MANAGER).force();
    match api
        .patch_status(&wf.name_any(), &pp, &Patch::Apply(&body))
        .await
    {
        Ok(_) => {
            shared
                .metrics
                .action(ActionKind::write_status, ActionOutcome::done);
            if let Some(rv) = wf.resource_version() {
                lock(&shared.stale_versions).insert(wf.uid().unwrap_or_default(), rv);
            }
            Ok(())
        }
        Err(e) => {
            shared
                .metrics
                .action(ActionKind::write_status, ActionOutcome::failed);
            Err(e.into())
        }
    }
}
