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

/// One server-side apply of `status` on the status subresource of `obj`: field manager
/// `qms-operator`, forced, with `obj`'s resourceVersion as precondition (409 on a concurrent
/// change; the caller decides again). Counted in `qms_actions_total{action="write_status"}`.
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

/// The workflow's status: one apply of the whole status (but what qms-github owns, see
/// [`operator_owned`]) with [`write_status`]; a concurrent change answers 409 and we decide again
/// instead of overwriting newer facts. Remembers the resourceVersion decided on, so a reconcile
/// that sees it again in the cache knows the cache lacks this write.
pub async fn write_workflow_status(
    shared: &Shared,
    wf: &QmsWorkflow,
    status: &QmsWorkflowStatus,
) -> Result<(), Error> {
    write_status(shared, wf, status).await?;
    if let Some(rv) = wf.resource_version() {
        lock(&shared.stale_versions).insert(wf.uid().unwrap_or_default(), rv);
    }
    Ok(())
}

/// What the status stage did: the operator-owned status before and after, when it wrote.
pub struct Written {
    pub before: QmsWorkflowStatus,
    pub after: QmsWorkflowStatus,
}

/// Writes the decided status of `wf` when it differs (in what the operator owns) from the cached
/// one. A failed write forgets the slot admission made for it (`admitted`), so no slot is held
/// by a decision that was never recorded.
pub async fn apply_workflow(
    shared: &Shared,
    wf: &QmsWorkflow,
    decided: &QmsWorkflowStatus,
    admitted: bool,
) -> Result<Option<Written>, Error> {
    let before = operator_owned(wf.status.clone().unwrap_or_default());
    let after = operator_owned(decided.clone());
    if after == before {
        shared
            .metrics
            .action(ActionKind::write_status, ActionOutcome::already_done);
        return Ok(None);
    }
    if let Err(e) = write_workflow_status(shared, wf, &after).await {
        if admitted {
            lock(&shared.admitted).remove(&wf.uid().unwrap_or_default());
        }
        return Err(e);
    }
    Ok(Some(Written { before, after }))
}
