//! The GitHub integration as the operator runs it (crate `qms-github` does the GitHub work):
//!
//! - webhooks: `qms_github::router` is merged into the operator's HTTP server, its counters are
//!   exported on `/metrics` ([`WebhookCollector`]);
//! - check runs: a controller of its own (`controller::github`) calls
//!   `qms_github::CheckSyncer::reconcile` for every change of a workflow (deleted ones included),
//!   separate from the engine's controller so that a slow or failing GitHub never delays a
//!   decision or a Job: a sync error only requeues the sync.
//!
//! This module holds what that controller needs besides the syncer: which workflow changes are
//! worth a sync ([`sync_fingerprint`]), the agents' annotations per step ([`step_annotations`]),
//! and the check runs last stored per workflow ([`Github::overlay`]).

use std::collections::{BTreeMap, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use kube::ResourceExt;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use qms_api::{CheckRunRef, QmsWorkflow};
use qms_engine::JobObservation;
use qms_github::checks::{CheckAnnotation, StepAnnotations};
use qms_github::{CheckSyncer, GithubClient, GithubConfig, SystemClock, WebhookState};

use crate::locks::lock;

/// What qms-github last stored in a workflow's status (`checkRuns`, `dispatches`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Synced {
    pub check_runs: Vec<CheckRunRef>,
    pub dispatches: Vec<String>,
}

pub struct Github {
    pub config: GithubConfig,
    pub client: Arc<GithubClient>,
    pub webhooks: WebhookState,
    pub syncer: CheckSyncer,
    /// Workflow uid → what the last sync stored. See [`Github::overlay`].
    synced: Mutex<HashMap<String, Synced>>,
}

#[derive(Debug, thiserror::Error)]
#[error("GitHub integration: {0}")]
pub struct GithubStartError(String);

impl Github {
    /// Builds the client (system clock), the webhook state and the check-run syncer.
    pub fn new(config: GithubConfig, kube: kube::Client) -> Result<Self, GithubStartError> {
        // GithubError's messages carry no secret (the key and token are `Secret`s).
        let client = Arc::new(
            GithubClient::new(&config, Arc::new(SystemClock))
                .map_err(|e| GithubStartError(e.to_string()))?,
        );
        let webhooks = WebhookState::new(config.clone(), client.clone(), kube.clone());
        // One watch of the webhook namespace's templates serves deliveries and check-run syncs.
        let templates = webhooks.template_cache();
        templates.start();
        let syncer = CheckSyncer::new(&config, client.clone(), kube).with_templates(templates);
        Ok(Self {
            config,
            client,
            webhooks,
            syncer,
            synced: Mutex::new(HashMap::new()),
        })
    }

    /// The workflow as the sync must see it: with the `checkRuns`/`dispatches` our last sync
    /// stored, even when the cache does not show that write yet.
    ///
    /// Why: the cache may deliver another change (an operator status write made before our
    /// write) while our write is still on its way; syncing on the older `checkRuns` would treat
    /// check runs we just created as missing. qms-github is the only writer of these two fields
    /// and runs in this process only, so what it stored last is never older than the cache.
    pub fn overlay(&self, wf: &QmsWorkflow) -> QmsWorkflow {
        let mut wf = wf.clone();
        let uid = wf.uid().unwrap_or_default();
        if let (Some(synced), Some(status)) = (lock(&self.synced).get(&uid), wf.status.as_mut()) {
            status.check_runs = synced.check_runs.clone();
            status.dispatches = synced.dispatches.clone();
        }
        wf
    }

    /// Remembers what a sync stored for `uid`.
    pub fn stored(&self, uid: &str, synced: Synced) {
        lock(&self.synced).insert(uid.to_owned(), synced);
    }

    /// The workflow is gone: drop what was remembered for it.
    pub fn forget(&self, uid: &str) {
        lock(&self.synced).remove(uid);
    }

    /// Number of workflows with a remembered sync (for tests of the bookkeeping).
    pub fn remembered(&self) -> usize {
        lock(&self.synced).len()
    }
}

/// A hash of everything the check runs of `wf` are rendered from: spec, status without the
/// fields qms-github writes itself, deletion, finalizers (qms-github's finalizer is released by
/// the sync) and the installation annotation.
pub fn sync_fingerprint(wf: &QmsWorkflow) -> u64 {
    let mut h = DefaultHasher::new();
    let mut status = wf.status.clone().unwrap_or_default();
    status.check_runs.clear();
    status.dispatches.clear();
    // serde_json cannot fail on these types (string keys only); an empty string would only make
    // a change look unchanged, never panic.
    serde_json::to_string(&(&wf.spec, &status))
        .unwrap_or_default()
        .hash(&mut h);
    wf.metadata.deletion_timestamp.is_some().hash(&mut h);
    wf.finalizers().hash(&mut h);
    wf.annotations()
        .get(qms_github::naming::ANNOTATION_INSTALLATION)
        .hash(&mut h);
    h.finish()
}

/// The agents' annotations per step of the current run, read from their results (the Pods'
/// termination messages, parsed like the engine parses them: status keeps only their count).
/// Results that do not parse carry no annotations (the engine failed those tasks already).
pub fn step_annotations(
    wf: &QmsWorkflow,
    jobs: &BTreeMap<String, JobObservation>,
    max_result_bytes: usize,
) -> StepAnnotations {
    let mut out = StepAnnotations::new();
    let Some(status) = &wf.status else {
        return out;
    };
    for step in &status.steps {
        let mut anns = Vec::new();
        for task in &step.tasks {
            let Some(message) = jobs
                .get(&task.job_name)
                .and_then(|j| j.termination_message.as_deref())
            else {
                continue;
            };
            let Ok(result) = qms_engine::result::parse(message, max_result_bytes) else {
                continue;
            };
            anns.extend(result.annotations.into_iter().map(|a| CheckAnnotation {
                path: a.path,
                start_line: a.start_line,
                end_line: a.end_line,
                annotation_level: a.level,
                message: a.message,
                title: a.title,
            }));
        }
        if !anns.is_empty() {
            out.insert(step.name.clone(), anns);
        }
    }
    out
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

/// Exports qms-github's webhook counters (atomics it keeps itself) at scrape time. Labels come
/// from a fixed list, never from a payload.
pub struct WebhookCollector(pub WebhookState);

impl std::fmt::Debug for WebhookCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookCollector")
    }
}

impl Collector for WebhookCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let m = self.0.metrics();
        let get = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
        let received = ConstCounter::new(get(&m.received));
        received.encode(encoder.encode_descriptor(
            "qms_github_webhook_deliveries",
            "Webhook deliveries received on POST /webhooks/github",
            None,
            received.metric_type(),
        )?)?;
        let checks = ConstCounter::new(get(&m.signature_checks));
        checks.encode(encoder.encode_descriptor(
            "qms_github_webhook_signature_checks",
            "HMAC signature verifications made (oversized bodies are refused before)",
            None,
            checks.metric_type(),
        )?)?;
        let outcomes = [
            ("too_large", get(&m.too_large)),
            ("bad_signature", get(&m.bad_signature)),
            ("duplicate", get(&m.duplicates)),
            ("applied", get(&m.applied)),
            ("ignored", get(&m.ignored)),
            ("failed", get(&m.failed)),
        ];
        let mut family = encoder.encode_descriptor(
            "qms_github_webhook_outcomes",
            "Webhook deliveries by outcome",
            None,
            prometheus_client::metrics::MetricType::Counter,
        )?;
        for (outcome, value) in outcomes {
            let labels = OutcomeLabel { outcome };
            ConstCounter::new(value).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use qms_api::{QmsWorkflowSpec, QmsWorkflowStatus, StepStatus, TaskStatus, TemplateRef};
    use qms_engine::JobPhase;

    fn task(job: &str) -> TaskStatus {
        TaskStatus {
            job_name: job.into(),
            agent: "a".into(),
            selector: "a".into(),
            attempt: 1,
            phase: qms_api::TaskPhase::Succeeded,
            started_at: None,
            finished_at: None,
            result: None,
            message: String::new(),
        }
    }

    fn wf() -> QmsWorkflow {
        let mut wf = QmsWorkflow::new(
            "wf",
            QmsWorkflowSpec {
                repository: "creo/app".into(),
                pull_request: 1,
                head_sha: "abcdef1".into(),
                base_ref: "main".into(),
                head_ref: String::new(),
                template_ref: TemplateRef { name: "t".into() },
                approvals: vec![],
                overrides: vec![],
                retry: None,
                merge_group: None,
                push: None,
            },
        );
        wf.metadata.uid = Some("uid-1".into());
        wf.status = Some(QmsWorkflowStatus {
            run: 1,
            steps: vec![StepStatus {
                name: "review".into(),
                tasks: vec![task("j1"), task("j2"), task("j3")],
                ..StepStatus::default()
            }],
            ..QmsWorkflowStatus::default()
        });
        wf
    }

    fn obs(name: &str, message: Option<&str>) -> (String, JobObservation) {
        (
            name.to_owned(),
            JobObservation {
                name: name.to_owned(),
                phase: JobPhase::Succeeded,
                labels: BTreeMap::new(),
                created_at: None,
                finished_at: None,
                termination_message: message.map(str::to_owned),
                exit_code: Some(0),
                reason: None,
                deleting: false,
                stored_result: None,
            },
        )
    }

    fn check_run(name: &str) -> CheckRunRef {
        CheckRunRef {
            name: name.into(),
            run: 1,
            head_sha: "abcdef1".into(),
            id: 7,
            status: "in_progress".into(),
            ..CheckRunRef::default()
        }
    }

    #[test]
    fn annotations_come_from_parsable_results_per_step() {
        let jobs = BTreeMap::from([
            obs(
                "j1",
                Some(
                    r#"{"status":"success","annotations":[{"path":"a.rs","start_line":3,"end_line":4,"annotation_level":"warning","message":"m","title":"t"}]}"#,
                ),
            ),
            // not JSON (a crash's log tail): no annotations, no panic
            obs("j2", Some("Segmentation fault")),
            obs("j3", None),
        ]);
        let anns = step_annotations(&wf(), &jobs, 64 * 1024);
        assert_eq!(
            anns["review"],
            vec![CheckAnnotation {
                path: "a.rs".into(),
                start_line: 3,
                end_line: 4,
                annotation_level: "warning".into(),
                message: "m".into(),
                title: Some("t".into()),
            }]
        );
        assert_eq!(anns.len(), 1);
        // a result over the size limit is not read
        assert!(step_annotations(&wf(), &jobs, 10).is_empty());
    }

    #[test]
    fn fingerprint_ignores_what_the_sync_writes_itself() {
        let a = wf();
        let mut b = a.clone();
        let st = b.status.as_mut().unwrap();
        st.check_runs = vec![check_run("QMS")];
        st.dispatches = vec!["1/step_completed/review".into()];
        assert_eq!(sync_fingerprint(&a), sync_fingerprint(&b));
        let mut c = a.clone();
        c.status.as_mut().unwrap().run = 2;
        assert_ne!(sync_fingerprint(&a), sync_fingerprint(&c));
        let mut d = a.clone();
        d.metadata.finalizers = Some(vec!["qms.creo.dev/github-checks".into()]);
        assert_ne!(sync_fingerprint(&a), sync_fingerprint(&d));
        let mut e = a.clone();
        e.spec.head_sha = "1234567".into();
        assert_ne!(sync_fingerprint(&a), sync_fingerprint(&e));
    }

    #[tokio::test]
    async fn overlay_shows_the_last_stored_check_runs_until_forgotten() {
        let sim = kube_sim::KubeSim::builder().start().await.unwrap();
        let cfg = GithubConfig {
            api_base_url: "http://127.0.0.1:9".into(),
            ..GithubConfig::default()
        };
        let gh = Github::new(cfg, sim.client()).unwrap();
        let cached = wf();
        assert_eq!(
            gh.overlay(&cached).status,
            cached.status,
            "nothing stored yet"
        );
        let stored = Synced {
            check_runs: vec![check_run("QMS")],
            dispatches: vec![],
        };
        gh.stored("uid-1", stored.clone());
        let seen = gh.overlay(&cached);
        assert_eq!(seen.status.as_ref().unwrap().check_runs, stored.check_runs);
        assert_eq!(seen.spec, cached.spec);
        gh.forget("uid-1");
        assert_eq!(gh.remembered(), 0);
        assert_eq!(gh.overlay(&cached).status, cached.status);
        sim.stop().await;
    }
}
