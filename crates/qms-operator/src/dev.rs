//! Helpers shared by the `qms-dev` playground, the tests and the benchmarks: install the CRDs, apply
//! the examples (or any qms YAML), approve a manual step. They only talk to a Kubernetes API through
//! a [`Client`]; the simulator itself (kube-sim) lives in `qms-dev` and the dev-dependencies, never
//! in this crate's build.

use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use qms_api::{Agent, QmsWorkflow, QualityGate, WorkflowTemplate};
use serde_json::Value;

/// The examples shipped with the repository, embedded so `qms-dev` works from any directory.
pub const EXAMPLES: [(&str, &str); 4] = [
    ("agents.yaml", include_str!("../../../examples/agents.yaml")),
    (
        "quality-gates.yaml",
        include_str!("../../../examples/quality-gates.yaml"),
    ),
    (
        "standard-qms-review.yaml",
        include_str!("../../../examples/standard-qms-review.yaml"),
    ),
    (
        "qmsworkflow-pr-12345.yaml",
        include_str!("../../../examples/qmsworkflow-pr-12345.yaml"),
    ),
];

/// Installs the four CRDs (create or update) and waits until they are served.
pub async fn install_crds(client: &Client) -> anyhow::Result<()> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for (_, crd) in qms_api::crds::all() {
        let name = crd.name_any();
        api.patch(
            &name,
            &PatchParams::apply("qms-dev").force(),
            &Patch::Apply(&crd),
        )
        .await
        .map_err(|e| anyhow::anyhow!("installing CRD {name}: {e}"))?;
    }
    for (_, crd) in qms_api::crds::all() {
        let name = crd.name_any();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let c = api.get(&name).await?;
            let established = c
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| {
                    cs.iter()
                        .any(|c| c.type_ == "Established" && c.status == "True")
                });
            if established {
                break;
            }
            if tokio::time::Instant::now() > deadline {
                anyhow::bail!("CRD {name} did not become Established");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}

/// Creates (or replaces the spec of) every qms object in a multi-document YAML text.
pub async fn apply_yaml(
    client: &Client,
    namespace: &str,
    text: &str,
) -> anyhow::Result<Vec<(String, String)>> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(text)?;
    tracing::debug!(docs = docs.len(), "parsed");
    let mut applied = Vec::new();
    for doc in docs.into_iter().filter(|d| !d.is_null()) {
        let kind = doc
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let name = doc
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        match kind.as_str() {
            "Agent" => apply_one::<Agent>(client, namespace, doc).await?,
            "QualityGate" => apply_one::<QualityGate>(client, namespace, doc).await?,
            "WorkflowTemplate" => apply_one::<WorkflowTemplate>(client, namespace, doc).await?,
            "QmsWorkflow" => apply_one::<QmsWorkflow>(client, namespace, doc).await?,
            "QualityBaseline" => {
                apply_one::<qms_api::QualityBaseline>(client, namespace, doc).await?
            }
            other => anyhow::bail!("{name}: unsupported kind {other:?}"),
        }
        applied.push((kind, name));
    }
    Ok(applied)
}

async fn apply_one<K>(client: &Client, namespace: &str, doc: Value) -> anyhow::Result<()>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
{
    let obj: K = serde_json::from_value(doc)?;
    let name = obj.name_any();
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    match api.create(&PostParams::default(), &obj).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => {
            api.patch(
                &name,
                &PatchParams::apply("qms-dev").force(),
                &Patch::Apply(&obj),
            )
            .await?;
            Ok(())
        }
        Err(e) => Err(anyhow::anyhow!("creating {} {name}: {e}", K::kind(&()))),
    }
}

/// Appends an approval through the API (the same JSON patch the printed command sends).
pub async fn approve(
    client: &Client,
    namespace: &str,
    workflow: &str,
    step: &str,
    sha: &str,
    by: &str,
    decision: &str,
) -> anyhow::Result<()> {
    let api: Api<QmsWorkflow> = Api::namespaced(client.clone(), namespace);
    let patch: json_patch_value::Patch = serde_json::from_value(serde_json::json!([
        {"op": "add", "path": "/spec/approvals/-", "value": {
            "step": step, "decision": decision, "by": by, "reason": "reviewed", "sha": sha
        }}
    ]))?;
    api.patch(workflow, &PatchParams::default(), &Patch::<()>::Json(patch))
        .await?;
    Ok(())
}

/// kube's JSON patch type.
mod json_patch_value {
    pub use json_patch::Patch;
}

/// The manual step currently waiting for a decision, if any.
pub fn waiting_step(wf: &QmsWorkflow) -> Option<String> {
    let status = wf.status.as_ref()?;
    status
        .steps
        .iter()
        .find(|s| s.phase == qms_api::StepPhase::WaitingForApproval)
        .map(|s| s.name.clone())
}
