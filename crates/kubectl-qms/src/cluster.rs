//! The API side of `kubectl qms`: the client from the kubeconfig (as kubectl would pick it), reads
//! of workflows, templates, gates and pod logs, and the guarded spec patches.

use std::path::PathBuf;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{ApiResource, DynamicObject, ListParams, LogParams, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};
use qms_api::{QmsWorkflow, QualityGate, WorkflowTemplate};
use serde_json::Value;

use crate::error::Error;

/// Field manager of every write (shown in managedFields).
pub const FIELD_MANAGER: &str = "kubectl-qms";
/// Attempts of a guarded append when another writer changed the list in between.
const APPEND_ATTEMPTS: usize = 5;

fn params() -> PatchParams {
    PatchParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..PatchParams::default()
    }
}

pub struct Cluster {
    pub client: Client,
    pub namespace: String,
    /// The kubeconfig context's user, recorded as `by` unless `--as` names someone.
    pub user: Option<String>,
}

/// Where the connection comes from: `--kubeconfig` (else `$KUBECONFIG`, else ~/.kube/config),
/// `--context`, `-n`.
pub struct Connect {
    pub kubeconfig: Option<PathBuf>,
    pub context: Option<String>,
    pub namespace: Option<String>,
}

impl Cluster {
    pub async fn connect(c: &Connect) -> Result<Self, Error> {
        let kc = match &c.kubeconfig {
            Some(p) => Kubeconfig::read_from(p),
            None => Kubeconfig::read(),
        }
        .map_err(|e| Error::Kubeconfig(e.to_string()))?;
        let context_name = c.context.clone().or_else(|| kc.current_context.clone());
        let context = kc
            .contexts
            .iter()
            .find(|n| Some(&n.name) == context_name.as_ref())
            .and_then(|n| n.context.clone());
        let user = context.as_ref().and_then(|ctx| ctx.user.clone());
        let options = KubeConfigOptions {
            context: c.context.clone(),
            ..KubeConfigOptions::default()
        };
        let config = Config::from_custom_kubeconfig(kc, &options)
            .await
            .map_err(|e| Error::Kubeconfig(e.to_string()))?;
        let namespace = c
            .namespace
            .clone()
            .unwrap_or_else(|| config.default_namespace.clone());
        let client = Client::try_from(config)?;
        Ok(Self {
            client,
            namespace,
            user,
        })
    }

    fn workflows(&self) -> Api<QmsWorkflow> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    fn raw_workflows(&self) -> Api<DynamicObject> {
        Api::namespaced_with(
            self.client.clone(),
            &self.namespace,
            &ApiResource::erase::<QmsWorkflow>(&()),
        )
    }

    pub async fn list_workflows(&self) -> Result<Vec<QmsWorkflow>, Error> {
        let mut items = self.workflows().list(&ListParams::default()).await?.items;
        items.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        Ok(items)
    }

    /// A workflow by name, or by pull request number (all digits), as stored (typed) and raw
    /// (to see which lists the stored object has at all).
    pub async fn workflow(
        &self,
        target: &str,
        repo: Option<&str>,
    ) -> Result<(QmsWorkflow, Value), Error> {
        let name = if !target.is_empty() && target.bytes().all(|b| b.is_ascii_digit()) {
            let pr: u64 = target.parse().map_err(|_| Error::NoReviewForPr {
                pr: 0,
                namespace: self.namespace.clone(),
            })?;
            let matching: Vec<String> = self
                .list_workflows()
                .await?
                .into_iter()
                .filter(|w| w.spec.pull_request == pr)
                .filter(|w| repo.is_none_or(|r| w.spec.repository == r))
                .filter_map(|w| w.metadata.name)
                .collect();
            match matching.as_slice() {
                [one] => one.clone(),
                [] => {
                    return Err(Error::NoReviewForPr {
                        pr,
                        namespace: self.namespace.clone(),
                    });
                }
                many => {
                    return Err(Error::AmbiguousPr {
                        pr,
                        namespace: self.namespace.clone(),
                        names: many.join(", "),
                    });
                }
            }
        } else {
            target.to_owned()
        };
        self.workflow_by_name(&name).await
    }

    async fn workflow_by_name(&self, name: &str) -> Result<(QmsWorkflow, Value), Error> {
        let raw = self
            .raw_workflows()
            .get_opt(name)
            .await?
            .ok_or_else(|| Error::NotFound {
                kind: "QmsWorkflow",
                name: name.to_owned(),
                namespace: self.namespace.clone(),
                hint: " (kubectl qms status lists the reviews)",
            })?;
        let raw = serde_json::to_value(raw)?;
        let typed: QmsWorkflow = serde_json::from_value(raw.clone())?;
        Ok((typed, raw))
    }

    pub async fn template(&self, name: &str) -> Result<Option<WorkflowTemplate>, Error> {
        Ok(
            Api::<WorkflowTemplate>::namespaced(self.client.clone(), &self.namespace)
                .get_opt(name)
                .await?,
        )
    }

    pub async fn gate(&self, name: &str) -> Result<Option<QualityGate>, Error> {
        Ok(
            Api::<QualityGate>::namespaced(self.client.clone(), &self.namespace)
                .get_opt(name)
                .await?,
        )
    }

    /// Appends `entry` to the spec list `field` (`approvals`, `overrides`) while the head SHA is
    /// still `head`; re-reads and tries again when another writer changed the list in between.
    /// Returns the workflow as stored afterwards.
    pub async fn append_guarded(
        &self,
        name: &str,
        field: &str,
        head: &str,
        entry: Value,
    ) -> Result<QmsWorkflow, Error> {
        for _ in 0..APPEND_ATTEMPTS {
            let (wf, raw) = self.workflow_by_name(name).await?;
            if wf.spec.head_sha != head {
                return Err(Error::HeadMoved {
                    workflow: name.to_owned(),
                    from: head.to_owned(),
                    to: wf.spec.head_sha,
                });
            }
            let present = raw["spec"][field].is_array();
            let patch = crate::decide::append_patch(
                &format!("/spec/{field}"),
                present,
                head,
                entry.clone(),
            );
            let patch: json_patch::Patch = serde_json::from_value(patch)?;
            match self
                .workflows()
                .patch(name, &params(), &Patch::<()>::Json(patch))
                .await
            {
                Ok(wf) => return Ok(wf),
                // A failed `test` op: the head or the list changed under us. Read again.
                Err(kube::Error::Api(s)) if s.code == 422 || s.code == 409 => {}
                Err(e) => return Err(e.into()),
            }
        }
        Err(Error::Contended {
            workflow: name.to_owned(),
        })
    }

    pub async fn merge_spec(&self, name: &str, patch: &Value) -> Result<QmsWorkflow, Error> {
        Ok(self
            .workflows()
            .patch(name, &params(), &Patch::Merge(patch))
            .await?)
    }

    /// The pods of a Job (the Job controller's label), oldest first.
    pub async fn job_pods(&self, job: &str) -> Result<Vec<Pod>, Error> {
        let lp = ListParams::default().labels(&format!("batch.kubernetes.io/job-name={job}"));
        let mut pods = Api::<Pod>::namespaced(self.client.clone(), &self.namespace)
            .list(&lp)
            .await?
            .items;
        pods.sort_by(|a, b| {
            a.metadata
                .creation_timestamp
                .cmp(&b.metadata.creation_timestamp)
        });
        Ok(pods)
    }

    pub async fn pod_logs(&self, pod: &str) -> Result<String, Error> {
        Ok(Api::<Pod>::namespaced(self.client.clone(), &self.namespace)
            .logs(pod, &LogParams::default())
            .await?)
    }
}
