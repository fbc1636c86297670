//! The task result endpoint (spec §3.2's `callback_url`): agents whose results do not fit the
//! termination message (4096 bytes) submit them over HTTP.
//!
//! - `token`: the per-task credential (HMAC of the operator key, the task and the workflow uid).
//! - `store`: the full result in a gzip-compressed ConfigMap per task, owned by the workflow.
//! - `endpoint`: `POST /v1/tasks/{task_id}/result`, served by every replica.
//!
//! The hooks the rest of the operator calls: [`prepare_job`] (the Job gets the URL, and the token
//! through a per-task Secret), [`stored_results`] (the reconcile takes a finished task's result
//! from its ConfigMap when there is one) and [`with_stored_annotations`] (check runs show the
//! stored findings). The endpoint only stores; the task ends when its Job ends, decided by the
//! engine from what was stored — so a crash between storing and the status write repeats safely:
//! the next reconcile reads the same ConfigMap, and a repeated submission finds it.

pub mod endpoint;
pub mod store;
pub mod token;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock};

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, EnvVar, EnvVarSource, Secret, SecretKeySelector};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{DeleteParams, PostParams};
use kube::{Api, Resource, ResourceExt};
use qms_api::{QmsWorkflow, TaskPhase, TaskResultSummary};
use qms_github::checks::{CheckAnnotation, StepAnnotations};

use crate::context::{Shared, lock};
use crate::error::{Error, api_code};
use crate::jobs::{MANAGED_BY, MANAGED_BY_LABEL, WORKFLOW_LABEL};

/// Environment variable with the task's result URL.
pub const URL_ENV: &str = "QMS_RESULT_URL";
/// Environment variable with the task's credential (from the per-task Secret).
pub const TOKEN_ENV: &str = "QMS_RESULT_TOKEN";
/// Key of the token in the per-task Secret.
pub const TOKEN_KEY: &str = "token";
/// Default body limit: 10 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 10 * 1024 * 1024;
/// The key `qms-dev` uses (a fixed, public development key: never use it in a cluster).
pub const DEV_KEY: &str = "qms-dev-result-key";

/// The operator key tokens are derived from. Its `Debug` prints no secret.
#[derive(Clone)]
pub struct ResultKey(Arc<Vec<u8>>);

impl ResultKey {
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Self(Arc::new(bytes.into()))
    }

    /// A random key (tokens then do not survive a restart: configure one in a cluster).
    pub fn random() -> Self {
        use rand::RngCore;
        let mut k = vec![0u8; 32];
        rand::rng().fill_bytes(&mut k);
        Self::new(k)
    }

    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for ResultKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ResultKey(<redacted>)")
    }
}

/// Settings of the result endpoint.
#[derive(Clone, Debug)]
pub struct ResultsSettings {
    pub key: ResultKey,
    /// Largest body accepted (413 above).
    pub max_body_bytes: usize,
    /// Base URL agents reach the operator's HTTP port at (e.g.
    /// `http://qms-operator.qms-system.svc:8080`). `None`: the address the server is bound to
    /// (fit for `qms-dev`, where agents are local processes); without the HTTP server, Jobs get
    /// no result URL and report through the termination message only.
    pub url: Option<String>,
}

impl Default for ResultsSettings {
    fn default() -> Self {
        Self {
            key: ResultKey::random(),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            url: None,
        }
    }
}

/// What the running operator keeps for the results: the base URL in force, and the stored
/// findings last read (the ConfigMaps never change once written).
#[derive(Default)]
pub struct ResultsState {
    url: OnceLock<String>,
    annotations: Mutex<HashMap<StoredKey, Arc<Vec<CheckAnnotation>>>>,
}

/// (namespace, ConfigMap name, workflow uid) of a stored result.
type StoredKey = (String, String, String);

/// Stored findings kept in memory at most (each is one task's result).
const ANNOTATION_CACHE: usize = 64;

impl ResultsState {
    /// Sets the base URL (once; at start-up).
    pub fn set_url(&self, url: String) {
        let _ = self.url.set(url.trim_end_matches('/').to_owned());
    }

    pub fn url(&self) -> Option<&str> {
        self.url.get().map(String::as_str)
    }
}

/// The base URL for a server bound to `addr`: loopback when bound to every address.
pub fn local_url(addr: std::net::SocketAddr) -> String {
    let ip = if addr.ip().is_unspecified() {
        std::net::IpAddr::from([127, 0, 0, 1])
    } else {
        addr.ip()
    };
    format!("http://{}", std::net::SocketAddr::new(ip, addr.port()))
}

/// Name of the per-task Secret holding the token.
pub fn token_secret_name(task_id: &str) -> String {
    format!("qms-result-token-{task_id}")
}

/// The path of task `task_id`'s result endpoint.
pub fn result_path(task_id: &str) -> String {
    format!("/v1/tasks/{task_id}/result")
}

/// Hook of `create_job`: when the result endpoint is reachable, creates the task's token Secret
/// (owned by the workflow; AlreadyExists = already done: the token is deterministic) and gives
/// the Job `QMS_RESULT_URL` and `QMS_RESULT_TOKEN` (by `secretKeyRef`).
pub async fn prepare_job(
    shared: &Shared,
    workflow: &QmsWorkflow,
    job: &mut Job,
) -> Result<(), Error> {
    let Some(base) = shared.results.url() else {
        return Ok(());
    };
    let (Some(ns), Some(wf_name), Some(uid)) = (
        workflow.namespace(),
        workflow.metadata.name.clone(),
        workflow.uid(),
    ) else {
        return Ok(());
    };
    let task_id = job.name_any();
    let secret_name = token_secret_name(&task_id);
    let token = token::issue(
        shared.settings.results.key.bytes(),
        &ns,
        &wf_name,
        &uid,
        &task_id,
    );
    let secret = token_secret(&ns, wf_name, uid, secret_name.clone(), token);
    let api: Api<Secret> = Api::namespaced(shared.client.clone(), &ns);
    match api.create(&PostParams::default(), &secret).await {
        Ok(_) => {}
        Err(e) if api_code(&e) == Some(409) => {}
        Err(e) => return Err(Error::Kube(e)),
    }
    let url = format!("{base}{}", result_path(&task_id));
    give_result_env(job, url, secret_name);
    Ok(())
}

/// The task's token Secret, owned by its workflow (deleted with it).
fn token_secret(
    ns: &str,
    wf_name: String,
    uid: String,
    secret_name: String,
    token: String,
) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(secret_name),
            namespace: Some(ns.to_owned()),
            labels: Some(BTreeMap::from([
                (MANAGED_BY_LABEL.to_owned(), MANAGED_BY.to_owned()),
                (
                    WORKFLOW_LABEL.to_owned(),
                    wf_name.chars().take(63).collect(),
                ),
            ])),
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
        string_data: Some(BTreeMap::from([(TOKEN_KEY.to_owned(), token)])),
        type_: Some("Opaque".to_owned()),
        ..Secret::default()
    }
}

/// `QMS_RESULT_URL` and `QMS_RESULT_TOKEN` (by `secretKeyRef`) in the Job's first container,
/// replacing any the template set.
fn give_result_env(job: &mut Job, url: String, secret_name: String) {
    let container = job
        .spec
        .as_mut()
        .and_then(|s| s.template.spec.as_mut())
        .and_then(|p| p.containers.first_mut());
    if let Some(c) = container {
        let env = c.env.get_or_insert_with(Vec::new);
        env.retain(|e| e.name != URL_ENV && e.name != TOKEN_ENV);
        env.push(EnvVar {
            name: URL_ENV.to_owned(),
            value: Some(url),
            value_from: None,
        });
        env.push(EnvVar {
            name: TOKEN_ENV.to_owned(),
            value: None,
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: secret_name,
                    key: TOKEN_KEY.to_owned(),
                    optional: Some(false),
                }),
                ..EnvVarSource::default()
            }),
        });
    }
}

/// Hook of the workflow reconcile (before deciding, outside the decide lock): for every running
/// task whose Job has finished, the stored result if the agent submitted one (by Job name), read
/// from the API server (the endpoint stored it before the agent exited). The finished task's
/// token Secret is deleted (its Job runs no more Pods). A read error fails the reconcile (it is
/// retried): a result that exists is never taken for a missing one.
pub async fn stored_results(
    shared: &Shared,
    workflow: &QmsWorkflow,
    jobs: &[Arc<Job>],
) -> Result<BTreeMap<String, TaskResultSummary>, Error> {
    let mut out = BTreeMap::new();
    let (Some(status), Some(ns), Some(uid)) =
        (&workflow.status, workflow.namespace(), workflow.uid())
    else {
        return Ok(out);
    };
    let finished: Vec<&str> = status
        .steps
        .iter()
        .flat_map(|s| &s.tasks)
        .filter(|t| t.phase == TaskPhase::Running)
        .map(|t| t.job_name.as_str())
        .filter(|name| {
            jobs.iter().any(|j| {
                j.metadata.name.as_deref() == Some(*name)
                    && j.namespace().as_deref() == Some(ns.as_str())
                    && crate::jobs::owned_by(j, &uid)
                    && crate::observe::job_phase(j) != qms_engine::JobPhase::Active
            })
        })
        .collect();
    if finished.is_empty() {
        return Ok(out);
    }
    let cms: Api<ConfigMap> = Api::namespaced(shared.client.clone(), &ns);
    let secrets: Api<Secret> = Api::namespaced(shared.client.clone(), &ns);
    for task in finished {
        let name = qms_engine::result::result_config_map_name(task);
        if let Some(cm) = cms.get_opt(&name).await?
            && store::owned_by(&cm, &uid)
        {
            match store::summary(&cm) {
                Some(s) => {
                    out.insert(task.to_owned(), s);
                }
                None => tracing::warn!(config_map = %name, "stored result has no readable summary"),
            }
        }
        match secrets
            .delete(&token_secret_name(task), &DeleteParams::default())
            .await
        {
            Ok(_) => {}
            Err(e) if api_code(&e) == Some(404) => {}
            Err(e) => {
                tracing::debug!(error = %e, task, "token Secret not deleted (the workflow's deletion collects it)")
            }
        }
    }
    Ok(out)
}

/// Puts `stored` on the observations of their Jobs.
pub fn attach(
    jobs: &mut BTreeMap<String, qms_engine::JobObservation>,
    stored: BTreeMap<String, TaskResultSummary>,
) {
    for (name, summary) in stored {
        if let Some(j) = jobs.get_mut(&name) {
            j.stored_result = Some(summary);
        }
    }
}

/// Hook of the check-run sync: `annotations` plus the findings of every task of the current
/// status whose result is stored in a ConfigMap. A stored result that cannot be read is left out
/// (logged); the task's outcome was decided from its summary already.
pub async fn with_stored_annotations(
    shared: &Shared,
    workflow: &QmsWorkflow,
    mut annotations: StepAnnotations,
) -> StepAnnotations {
    let (Some(status), Some(ns), Some(uid)) =
        (&workflow.status, workflow.namespace(), workflow.uid())
    else {
        return annotations;
    };
    let cms: Api<ConfigMap> = Api::namespaced(shared.client.clone(), &ns);
    for step in &status.steps {
        for task in &step.tasks {
            let Some(name) = task
                .result
                .as_ref()
                .and_then(|r| r.result_config_map.clone())
            else {
                continue;
            };
            let key = (ns.clone(), name.clone(), uid.clone());
            let cached = lock(&shared.results.annotations).get(&key).cloned();
            let found = match cached {
                Some(a) => a,
                None => match cms.get_opt(&name).await {
                    Ok(Some(cm)) if store::owned_by(&cm, &uid) => {
                        match store::full_result(&cm, shared.settings.results.max_body_bytes) {
                            Ok(r) => {
                                let anns = Arc::new(
                                    r.annotations
                                        .into_iter()
                                        .map(|a| CheckAnnotation {
                                            path: a.path,
                                            start_line: a.start_line,
                                            end_line: a.end_line,
                                            annotation_level: a.level,
                                            message: a.message,
                                            title: a.title,
                                        })
                                        .collect(),
                                );
                                let mut cache = lock(&shared.results.annotations);
                                if cache.len() >= ANNOTATION_CACHE {
                                    cache.clear();
                                }
                                cache.insert(key, Arc::clone(&anns));
                                anns
                            }
                            Err(e) => {
                                tracing::warn!(config_map = %name, error = %e, "stored result unreadable");
                                continue;
                            }
                        }
                    }
                    Ok(_) => continue,
                    Err(e) => {
                        tracing::warn!(config_map = %name, error = %e, "stored result not read");
                        continue;
                    }
                },
            };
            annotations
                .entry(step.name.clone())
                .or_default()
                .extend(found.iter().cloned());
        }
    }
    annotations
}
