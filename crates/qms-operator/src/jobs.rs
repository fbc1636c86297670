//! TaskSpec → Job: the Job an agent task runs as. Pure; no client.
//!
//! The name is the engine's deterministic name, so creating it twice is harmless (AlreadyExists =
//! already done, Tekton #4741), and every Job carries the labels the operator looks Jobs up by
//! (Tekton #3708: only labels the operator owns).

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{Container, EnvVar, PodSpec, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::{Resource, ResourceExt};
use qms_api::{AgentSpec, QmsWorkflow};
use qms_engine::TaskSpec;

/// Label naming the workflow a Job belongs to (also on its Pod).
pub const WORKFLOW_LABEL: &str = "qms.creo.dev/workflow";
/// Label naming the Agent a Job runs (live load is counted from it).
pub const AGENT_LABEL: &str = "qms.creo.dev/agent";
/// Label naming the step of a Job.
pub const STEP_LABEL: &str = "qms.creo.dev/step";
/// Label with the run number of a Job.
pub const RUN_LABEL: &str = "qms.creo.dev/run";
/// Label with the attempt of a Job.
pub const ATTEMPT_LABEL: &str = "qms.creo.dev/attempt";
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY: &str = "qms-operator";
/// The label the Job controller puts on the Pods of a Job.
pub const JOB_NAME_LABEL: &str = "batch.kubernetes.io/job-name";
/// Older spelling of [`JOB_NAME_LABEL`], still set by Kubernetes.
pub const LEGACY_JOB_NAME_LABEL: &str = "job-name";
/// Name of the agent container.
pub const CONTAINER_NAME: &str = "agent";
pub const TERMINATION_MESSAGE_PATH: &str = "/dev/termination-log";

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum BuildError {
    #[error("workflow has no {0}")]
    MissingMetadata(&'static str),
    #[error("task payload cannot be serialized: {0}")]
    Payload(String),
}

/// The labels of the Job (and its Pods) of `task`: the engine's, then the operator's own.
pub fn job_labels(task: &TaskSpec, workflow_name: &str) -> BTreeMap<String, String> {
    let mut labels: BTreeMap<String, String> = task.labels.clone();
    // The engine's label values win (it shortens names longer than a label value may be).
    labels
        .entry(WORKFLOW_LABEL.to_owned())
        .or_insert_with(|| workflow_name.to_owned());
    labels
        .entry(AGENT_LABEL.to_owned())
        .or_insert_with(|| task.agent.clone());
    labels
        .entry(STEP_LABEL.to_owned())
        .or_insert_with(|| task.step.clone());
    labels
        .entry(RUN_LABEL.to_owned())
        .or_insert_with(|| task.run.to_string());
    labels
        .entry(ATTEMPT_LABEL.to_owned())
        .or_insert_with(|| task.attempt.to_string());
    labels.insert(MANAGED_BY_LABEL.to_owned(), MANAGED_BY.to_owned());
    labels
}

/// Builds the Job of `task` for `workflow`, running `agent`'s container.
pub fn build_job(
    task: &TaskSpec,
    workflow: &QmsWorkflow,
    agent: &AgentSpec,
    payload_env: &str,
) -> Result<Job, BuildError> {
    let wf_name = workflow
        .metadata
        .name
        .clone()
        .ok_or(BuildError::MissingMetadata("name"))?;
    let namespace = workflow
        .metadata
        .namespace
        .clone()
        .ok_or(BuildError::MissingMetadata("namespace"))?;
    let uid = workflow
        .metadata
        .uid
        .clone()
        .ok_or(BuildError::MissingMetadata("uid"))?;

    let labels = job_labels(task, &wf_name);

    let env = task_env(task, workflow, agent, payload_env)?;

    // activeDeadlineSeconds must be ≥ 1; round up so a 1.5 s timeout is not cut to 1 s.
    let deadline = (task.timeout.as_millis().div_ceil(1000)).clamp(1, i64::MAX as u128) as i64;

    let owner = OwnerReference {
        api_version: QmsWorkflow::api_version(&()).into_owned(),
        kind: QmsWorkflow::kind(&()).into_owned(),
        name: wf_name,
        uid,
        controller: Some(true),
        block_owner_deletion: Some(true),
    };

    Ok(Job {
        metadata: ObjectMeta {
            name: Some(task.job_name.clone()),
            namespace: Some(namespace),
            labels: Some(labels.clone()),
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        spec: Some(JobSpec {
            backoff_limit: Some(0),
            active_deadline_seconds: Some(deadline),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    restart_policy: Some("Never".to_owned()),
                    service_account_name: agent.job.service_account_name.clone(),
                    containers: vec![Container {
                        name: CONTAINER_NAME.to_owned(),
                        image: Some(agent.job.image.clone()),
                        command: non_empty(&agent.job.command),
                        args: non_empty(&agent.job.args),
                        env: Some(env),
                        resources: agent.job.resources.clone(),
                        termination_message_path: Some(TERMINATION_MESSAGE_PATH.to_owned()),
                        termination_message_policy: Some("FallbackToLogsOnError".to_owned()),
                        ..Container::default()
                    }],
                    ..PodSpec::default()
                }),
            },
            ..JobSpec::default()
        }),
        status: None,
    })
}

/// The container's environment: the agent's own env first, the task's after (payload, workflow,
/// step, run, pull request).
fn task_env(
    task: &TaskSpec,
    workflow: &QmsWorkflow,
    agent: &AgentSpec,
    payload_env: &str,
) -> Result<Vec<EnvVar>, BuildError> {
    let payload =
        serde_json::to_string(&task.payload).map_err(|e| BuildError::Payload(e.to_string()))?;

    let spec = &workflow.spec;
    // The agent's own env first, ours after: for duplicate names the later entry wins, so an agent
    // cannot shadow the task payload by accident.
    let mut env: Vec<EnvVar> = agent.job.env.clone();
    let mut push = |name: &str, value: String| {
        env.retain(|e| e.name != name);
        env.push(EnvVar {
            name: name.to_owned(),
            value: Some(value),
            value_from: None,
        });
    };
    push(payload_env, payload);
    push("QMS_WORKFLOW", workflow.name_any());
    push("QMS_NAMESPACE", workflow.namespace().unwrap_or_default());
    push("QMS_STEP", task.step.clone());
    push("QMS_AGENT", task.agent.clone());
    push("QMS_RUN", task.run.to_string());
    push("QMS_ATTEMPT", task.attempt.to_string());
    push("QMS_REPOSITORY", spec.repository.clone());
    push("QMS_PULL_REQUEST", spec.pull_request.to_string());
    push("QMS_HEAD_SHA", head_sha_of(task, workflow));
    push("QMS_BASE_REF", spec.base_ref.clone());
    push("QMS_HEAD_REF", spec.head_ref.clone());
    Ok(env)
}

/// The head SHA a task reviews: the engine's label if it set one, else the workflow's spec.
fn head_sha_of(task: &TaskSpec, workflow: &QmsWorkflow) -> String {
    task.labels
        .iter()
        .find(|(k, _)| k.ends_with("/sha") || k.ends_with("/head-sha"))
        .map(|(_, v)| v.clone())
        .or_else(|| {
            task.payload
                .get("head_sha")
                .or_else(|| task.payload.pointer("/payload/head_sha"))
                .and_then(|v| v.as_str())
                .map(str::to_owned)
        })
        .unwrap_or_else(|| workflow.spec.head_sha.clone())
}

fn non_empty(v: &[String]) -> Option<Vec<String>> {
    (!v.is_empty()).then(|| v.to_vec())
}

/// Is `job` controlled by the workflow with `uid`? (A workflow deleted and created again with the
/// same name must not adopt the old one's Jobs.)
pub fn owned_by(job: &Job, uid: &str) -> bool {
    job.owner_references()
        .iter()
        .any(|o| o.controller == Some(true) && o.uid == uid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use qms_api::{AgentJob, QmsWorkflowSpec, TemplateRef};
    use std::time::Duration;

    fn workflow() -> QmsWorkflow {
        let mut wf = QmsWorkflow::new(
            "pr-1",
            QmsWorkflowSpec {
                repository: "creo/app".into(),
                pull_request: 1,
                head_sha: "abcdef1".into(),
                base_ref: "main".into(),
                head_ref: "feature".into(),
                template_ref: TemplateRef {
                    name: "standard".into(),
                },
                approvals: vec![],
                overrides: vec![],
                retry: None,
                merge_group: None,
                push: None,
            },
        );
        wf.metadata.namespace = Some("team".into());
        wf.metadata.uid = Some("uid-1".into());
        wf
    }

    fn agent() -> AgentSpec {
        serde_json::from_value(serde_json::json!({
            "capabilities": ["dor-validation"],
            "job": {
                "image": "busybox:1.37",
                "command": ["sh", "-c"],
                "args": ["echo hi"],
                "env": [{"name": "LEVEL", "value": "strict"}, {"name": "QMS_TASK", "value": "spoofed"}],
                "serviceAccountName": "reviewer",
                "resources": {"limits": {"cpu": "500m"}}
            }
        }))
        .unwrap()
    }

    fn task() -> TaskSpec {
        TaskSpec {
            job_name: "pr-1-r1-dor-a1-validator".into(),
            agent: "validator".into(),
            step: "dor-validation".into(),
            run: 1,
            attempt: 2,
            payload: serde_json::json!({"task_id": "t", "payload": {"pr_number": 1}}),
            timeout: Duration::from_millis(1500),
            labels: BTreeMap::from([("qms.creo.dev/run".to_owned(), "1".to_owned())]),
        }
    }

    fn env_of(job: &Job) -> BTreeMap<String, String> {
        let c = &job
            .spec
            .as_ref()
            .unwrap()
            .template
            .spec
            .as_ref()
            .unwrap()
            .containers[0];
        c.env
            .as_ref()
            .unwrap()
            .iter()
            .map(|e| (e.name.clone(), e.value.clone().unwrap_or_default()))
            .collect()
    }

    #[test]
    fn job_runs_the_agent_container_with_the_payload() {
        let job = build_job(&task(), &workflow(), &agent(), "QMS_TASK").unwrap();
        assert_eq!(
            job.metadata.name.as_deref(),
            Some("pr-1-r1-dor-a1-validator")
        );
        assert_eq!(job.metadata.namespace.as_deref(), Some("team"));
        let spec = job.spec.as_ref().unwrap();
        assert_eq!(spec.backoff_limit, Some(0));
        assert_eq!(spec.active_deadline_seconds, Some(2), "1.5 s rounds up");
        let pod = spec.template.spec.as_ref().unwrap();
        assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
        assert_eq!(pod.service_account_name.as_deref(), Some("reviewer"));
        let c = &pod.containers[0];
        assert_eq!(c.image.as_deref(), Some("busybox:1.37"));
        assert_eq!(
            c.command.as_deref(),
            Some(&["sh".to_owned(), "-c".to_owned()][..])
        );
        assert_eq!(
            c.termination_message_path.as_deref(),
            Some("/dev/termination-log")
        );
        assert_eq!(
            c.termination_message_policy.as_deref(),
            Some("FallbackToLogsOnError")
        );
        assert!(c.resources.is_some());
        let env = env_of(&job);
        let payload: serde_json::Value = serde_json::from_str(&env["QMS_TASK"]).unwrap();
        assert_eq!(
            payload,
            task().payload,
            "the agent cannot shadow the payload"
        );
        assert_eq!(env["LEVEL"], "strict");
        assert_eq!(env["QMS_ATTEMPT"], "2");
        assert_eq!(env["QMS_STEP"], "dor-validation");
        assert_eq!(env["QMS_HEAD_SHA"], "abcdef1");
        assert_eq!(env["QMS_WORKFLOW"], "pr-1");
    }

    #[test]
    fn job_is_owned_by_and_labelled_for_the_workflow() {
        let job = build_job(&task(), &workflow(), &agent(), "QMS_TASK").unwrap();
        let owner = &job.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(owner.kind, "QmsWorkflow");
        assert_eq!(owner.api_version, "qms.creo.dev/v1");
        assert_eq!(owner.uid, "uid-1");
        assert_eq!(owner.controller, Some(true));
        assert_eq!(owner.block_owner_deletion, Some(true));
        assert!(owned_by(&job, "uid-1") && !owned_by(&job, "uid-2"));
        let labels = job.metadata.labels.as_ref().unwrap();
        assert_eq!(labels[WORKFLOW_LABEL], "pr-1");
        assert_eq!(labels[AGENT_LABEL], "validator");
        assert_eq!(labels[ATTEMPT_LABEL], "2");
        assert_eq!(labels[MANAGED_BY_LABEL], "qms-operator");
        let pod_labels = job
            .spec
            .as_ref()
            .unwrap()
            .template
            .metadata
            .as_ref()
            .unwrap()
            .labels
            .as_ref();
        assert_eq!(pod_labels, Some(labels), "pods carry the same labels");
    }

    #[test]
    fn workflow_without_uid_is_refused() {
        let mut wf = workflow();
        wf.metadata.uid = None;
        assert_eq!(
            build_job(&task(), &wf, &agent(), "QMS_TASK").unwrap_err(),
            BuildError::MissingMetadata("uid")
        );
    }

    #[test]
    fn agent_without_command_keeps_args_only() {
        let mut a = agent();
        a.job = AgentJob {
            image: "x".into(),
            command: vec![],
            args: vec!["run".into()],
            env: vec![],
            resources: None,
            service_account_name: None,
        };
        let job = build_job(&task(), &workflow(), &a, "QMS_TASK").unwrap();
        let c = &job.spec.unwrap().template.spec.unwrap().containers[0];
        assert!(c.command.is_none());
        assert_eq!(c.args.as_deref(), Some(&["run".to_owned()][..]));
    }
}
