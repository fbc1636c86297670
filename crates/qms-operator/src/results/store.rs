//! The full result of a task, stored outside the workflow's status: one ConfigMap per task,
//! named [`qms_engine::result::result_config_map_name`] (deterministic, so a repeated store after
//! a crash finds its own earlier write), owned by the QmsWorkflow (garbage collected with it),
//! holding the body as received, gzip-compressed (`binaryData.result.json.gz`), what the status
//! keeps of it (`data.summary.json`) and the body's SHA-256 (annotation), by which a repeated
//! submission is recognised. Pure: builds and reads objects, no client.

use std::collections::BTreeMap;
use std::io::{Read, Write};

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::{Resource, ResourceExt};
use qms_api::{QmsWorkflow, TaskResultSummary};
use sha2::{Digest, Sha256};

use crate::jobs::{MANAGED_BY, MANAGED_BY_LABEL, WORKFLOW_LABEL};

/// Label naming the task (Job) a stored result belongs to.
pub const TASK_LABEL: &str = "qms.creo.dev/task";
/// Annotation with the hex SHA-256 of the submitted body.
pub const DIGEST_ANNOTATION: &str = "qms.creo.dev/result-sha256";
pub const RESULT_KEY: &str = "result.json.gz";
pub const SUMMARY_KEY: &str = "summary.json";
/// An object (ConfigMap data and binaryData together) holds at most 1 MiB; keep room for the
/// summary and the metadata.
pub const MAX_STORED_BYTES: usize = 1024 * 1024 - 64 * 1024;

/// Why a result cannot be stored.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum StoreError {
    #[error(
        "the result compresses to {compressed} bytes, more than the {MAX_STORED_BYTES} bytes a \
         stored result may take: report fewer or shorter findings"
    )]
    TooLarge { compressed: usize },
    #[error("the workflow has no {0}")]
    MissingMetadata(&'static str),
    #[error("compressing the result: {0}")]
    Compress(String),
}

pub fn digest(body: &[u8]) -> String {
    Sha256::digest(body)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub fn gzip(body: &[u8]) -> Result<Vec<u8>, String> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(body).map_err(|e| e.to_string())?;
    enc.finish().map_err(|e| e.to_string())
}

/// Decompresses at most `limit` bytes (a stored result is never larger than the body limit).
pub fn gunzip(data: &[u8], limit: usize) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(data)
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| e.to_string())?;
    if out.len() > limit {
        return Err(format!("stored result is larger than {limit} bytes"));
    }
    Ok(out)
}

/// The ConfigMap holding `body` (the validated result of task `task_id`) and `summary` (what
/// the status keeps, with `resultConfigMap` naming this ConfigMap).
pub fn build(
    workflow: &QmsWorkflow,
    task_id: &str,
    body: &[u8],
    summary: &TaskResultSummary,
) -> Result<ConfigMap, StoreError> {
    let name = qms_engine::result::result_config_map_name(task_id);
    let compressed = gzip(body).map_err(StoreError::Compress)?;
    let mut summary = summary.clone();
    summary.result_config_map = Some(name.clone());
    let summary = serde_json::to_string(&summary).unwrap_or_default();
    if compressed.len() + summary.len() > MAX_STORED_BYTES {
        return Err(StoreError::TooLarge {
            compressed: compressed.len(),
        });
    }
    let wf_name = workflow
        .metadata
        .name
        .clone()
        .ok_or(StoreError::MissingMetadata("name"))?;
    let uid = workflow
        .metadata
        .uid
        .clone()
        .ok_or(StoreError::MissingMetadata("uid"))?;
    let mut labels = BTreeMap::from([
        (MANAGED_BY_LABEL.to_owned(), MANAGED_BY.to_owned()),
        (TASK_LABEL.to_owned(), label_value(task_id)),
    ]);
    labels.insert(WORKFLOW_LABEL.to_owned(), label_value(&wf_name));
    Ok(ConfigMap {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: workflow.namespace(),
            labels: Some(labels),
            annotations: Some(BTreeMap::from([(
                DIGEST_ANNOTATION.to_owned(),
                digest(body),
            )])),
            owner_references: Some(vec![OwnerReference {
                api_version: QmsWorkflow::api_version(&()).into_owned(),
                kind: QmsWorkflow::kind(&()).into_owned(),
                name: wf_name,
                uid,
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([(SUMMARY_KEY.to_owned(), summary)])),
        binary_data: Some(BTreeMap::from([(
            RESULT_KEY.to_owned(),
            ByteString(compressed),
        )])),
        ..ConfigMap::default()
    })
}

/// A label value is at most 63 characters.
fn label_value(s: &str) -> String {
    s.chars().take(63).collect()
}

/// Is `cm` a stored result of the workflow with uid `uid` (not of an older workflow of the same
/// name)?
pub fn owned_by(cm: &ConfigMap, uid: &str) -> bool {
    cm.owner_references().iter().any(|o| o.uid == uid)
}

/// The digest a stored result was recorded with.
pub fn stored_digest(cm: &ConfigMap) -> Option<&str> {
    cm.annotations().get(DIGEST_ANNOTATION).map(String::as_str)
}

/// What the status keeps of the stored result.
pub fn summary(cm: &ConfigMap) -> Option<TaskResultSummary> {
    let text = cm.data.as_ref()?.get(SUMMARY_KEY)?;
    serde_json::from_str(text).ok()
}

/// The full stored result, parsed (it was validated when it was stored).
pub fn full_result(
    cm: &ConfigMap,
    limit: usize,
) -> Result<qms_engine::result::AgentResult, String> {
    let data = cm
        .binary_data
        .as_ref()
        .and_then(|b| b.get(RESULT_KEY))
        .ok_or_else(|| format!("no {RESULT_KEY}"))?;
    let body = gunzip(&data.0, limit)?;
    let text = String::from_utf8(body).map_err(|e| e.to_string())?;
    qms_engine::result::parse(&text, limit)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wf() -> QmsWorkflow {
        let mut wf: QmsWorkflow = serde_json::from_value(serde_json::json!({
            "apiVersion": "qms.creo.dev/v1", "kind": "QmsWorkflow",
            "metadata": {"name": "wf", "namespace": "ns", "uid": "uid-1"},
            "spec": {"repository": "o/r", "pullRequest": 1, "headSha": "abc",
                     "baseRef": "main", "templateRef": {"name": "t"}}
        }))
        .unwrap();
        wf.metadata.uid = Some("uid-1".into());
        wf
    }

    fn body(findings: usize) -> Vec<u8> {
        let anns: Vec<_> = (0..findings)
            .map(|i| serde_json::json!({"path": format!("src/f{i}.rs"), "start_line": i + 1,
                "end_line": i + 1, "annotation_level": "warning", "message": format!("finding {i}")}))
            .collect();
        serde_json::to_vec(&serde_json::json!({"status": "success", "summary": "s",
            "metrics": {"findings": findings}, "annotations": anns}))
        .unwrap()
    }

    #[test]
    fn a_stored_result_round_trips_with_its_summary_and_digest() {
        let b = body(500);
        let r = qms_engine::result::parse(std::str::from_utf8(&b).unwrap(), 1 << 24).unwrap();
        let cm = build(&wf(), "task-a", &b, &r.summary()).unwrap();
        assert_eq!(cm.metadata.name.as_deref(), Some("qms-result-task-a"));
        assert!(owned_by(&cm, "uid-1") && !owned_by(&cm, "uid-2"));
        assert_eq!(stored_digest(&cm), Some(digest(&b).as_str()));
        let s = summary(&cm).unwrap();
        assert_eq!(s.annotations, 500);
        assert_eq!(s.result_config_map.as_deref(), Some("qms-result-task-a"));
        let full = full_result(&cm, 1 << 24).unwrap();
        assert_eq!(full.annotations.len(), 500);
        assert_eq!(full.annotations[499].message, "finding 499");
        assert!(cm.binary_data.as_ref().unwrap()[RESULT_KEY].0.len() < b.len() / 4);
    }

    #[test]
    fn a_result_that_does_not_fit_an_object_is_refused() {
        // Random hex does not compress below half its size.
        use rand::RngCore;
        let mut raw = vec![0u8; 2 * 1024 * 1024];
        rand::rng().fill_bytes(&mut raw);
        let summary: String = raw.iter().map(|b| format!("{b:02x}")).collect();
        let b = serde_json::to_vec(&serde_json::json!({"status": "success", "summary": summary}))
            .unwrap();
        let e = build(&wf(), "t", &b, &TaskResultSummary::default()).unwrap_err();
        assert!(matches!(e, StoreError::TooLarge { compressed } if compressed > MAX_STORED_BYTES));
        assert!(
            gunzip(&gzip(&b).unwrap(), 1000).is_err(),
            "decompression is bounded"
        );
    }
}
