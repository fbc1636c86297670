//! Prometheus metrics (spec §12.1). Every label has a bounded set of values: template, gate and
//! agent names are operator-configured objects, states and error categories are fixed enums. No
//! label is derived from a workflow or pull request.

use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::error::ErrorCategory;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WorkflowLabels {
    pub workflow_type: String,
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GateLabels {
    pub gate_name: String,
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AgentLabels {
    pub agent: String,
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum ControllerKind {
    qmsworkflow,
    workflowtemplate,
    qualitygate,
    agent,
    /// The GitHub check-run sync of QmsWorkflows.
    github_checks,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabels {
    pub controller: ControllerKind,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub controller: ControllerKind,
    pub category: ErrorCategory,
}

/// What a reconcile read from the API server because a watch cache lagged.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum CacheGapKind {
    /// A running task's Job.
    job,
    /// The Pods of a finished Job (its result).
    pods,
    /// A Job the cache shows running, read before a timeout deletes it.
    job_before_timeout,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CacheGapLabels {
    pub kind: CacheGapKind,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ActionLabels {
    pub action: ActionKind,
    pub outcome: ActionOutcome,
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum ActionKind {
    create_job,
    delete_job,
    emit_event,
    write_status,
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum ActionOutcome {
    /// Done by this call.
    done,
    /// Already done before (AlreadyExists / NotFound / status unchanged).
    already_done,
    failed,
}

/// How one check-run sync ended (GitHub's error classes, plus our own).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum GithubSyncOutcome {
    /// Everything desired is on GitHub.
    converged,
    /// GitHub's rate limit (or our write pacing): retried when it allows.
    rate_limited,
    /// 5xx or connection failure: retried with backoff.
    unavailable,
    /// GitHub refused a request (4xx).
    refused,
    /// App JWT / installation token problems.
    auth,
    /// A request we could not build.
    request,
    /// Reading the template or storing `checkRuns` in the cluster failed.
    store_error,
    /// Abandoned after `controller::github::SYNC_TIMEOUT`.
    timeout,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GithubSyncLabels {
    pub outcome: GithubSyncOutcome,
}

/// How a changed config file was handled.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum ConfigReloadResult {
    /// Valid: its live settings are in force.
    applied,
    /// Invalid or unreadable: the last good configuration stays in force.
    rejected,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConfigReloadLabels {
    pub result: ConfigReloadResult,
}

pub struct Metrics {
    registry: Mutex<Registry>,
    pub workflow_duration: Family<WorkflowLabels, Histogram>,
    pub gate_results: Family<GateLabels, Counter>,
    pub workflows: Family<StateLabels, Gauge>,
    pub agent_running: Family<AgentLabels, Gauge>,
    pub agent_capacity: Family<AgentLabels, Gauge>,
    /// 1 while an agent takes new tasks, 0 while its recent failures reach its health policy's
    /// `failureThreshold` (the `Healthy` condition; computed at scrape time).
    pub agent_healthy: Family<AgentLabels, Gauge>,
    /// Time to answer one `POST /webhooks/github` delivery.
    pub webhook_duration: Histogram,
    pub reconciles: Family<ControllerLabels, Counter>,
    pub reconcile_duration: Family<ControllerLabels, Histogram>,
    pub reconcile_errors: Family<ErrorLabels, Counter>,
    pub actions: Family<ActionLabels, Counter>,
    pub cache_gap_reads: Family<CacheGapLabels, Counter>,
    pub github_syncs: Family<GithubSyncLabels, Counter>,
    pub github_writes: Counter,
    /// 1 while this process runs the controllers (holds the Lease, or no leader election).
    pub leader: Gauge,
    /// Config file reloads by result (`qms_config_reloads_total`).
    pub config_reloads: Family<ConfigReloadLabels, Counter>,
    /// Unix time of the last successful load of the config (start-up or reload).
    pub config_last_success: Gauge<f64, std::sync::atomic::AtomicU64>,
    /// `config::config_hash` of the config file in force (0: no file).
    pub config_hash: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let m = Self::unregistered();
        let mut registry = Registry::default();
        m.register_workflow_metrics(&mut registry);
        m.register_agent_metrics(&mut registry);
        m.register_controller_metrics(&mut registry);
        m.register_github_metrics(&mut registry);
        m.register_config_metrics(&mut registry);
        *m.registry.lock().unwrap_or_else(|e| e.into_inner()) = registry;
        m
    }

    /// Every metric at its zero value, none registered yet.
    fn unregistered() -> Self {
        // Reviews take seconds to hours: 1 s … ~9 h.
        let workflow_duration = Family::<WorkflowLabels, Histogram>::new_with_constructor(
            (|| Histogram::new(exponential_buckets(1.0, 2.0, 16))) as fn() -> Histogram,
        );
        let reconcile_duration = Family::<ControllerLabels, Histogram>::new_with_constructor(
            (|| Histogram::new(exponential_buckets(0.001, 2.0, 14))) as fn() -> Histogram,
        );
        let m = Self {
            registry: Mutex::new(Registry::default()),
            workflow_duration,
            gate_results: Family::default(),
            workflows: Family::default(),
            agent_running: Family::default(),
            agent_capacity: Family::default(),
            agent_healthy: Family::default(),
            // 5 ms … ~10 s (GitHub gives up after 10 s).
            webhook_duration: Histogram::new(exponential_buckets(0.005, 2.0, 12)),
            reconciles: Family::default(),
            reconcile_duration,
            reconcile_errors: Family::default(),
            actions: Family::default(),
            cache_gap_reads: Family::default(),
            github_syncs: Family::default(),
            github_writes: Counter::default(),
            leader: Gauge::default(),
            config_reloads: Family::default(),
            config_last_success: Gauge::default(),
            config_hash: Gauge::default(),
        };
        // Both series exist from the start, so an alert on `rejected` increasing sees the first one.
        for result in [ConfigReloadResult::applied, ConfigReloadResult::rejected] {
            let _ = m
                .config_reloads
                .get_or_create(&ConfigReloadLabels { result });
        }
        m
    }

    /// Workflow runs and their gates (`qms_workflow*`, `qms_quality_gate_results`).
    fn register_workflow_metrics(&self, registry: &mut Registry) {
        registry.register(
            "qms_workflow_duration_seconds",
            "Duration of QMS workflow execution (start of the run to its final state)",
            self.workflow_duration.clone(),
        );
        registry.register(
            "qms_quality_gate_results",
            "Total quality gate results",
            self.gate_results.clone(),
        );
        registry.register(
            "qms_workflows",
            "Workflows by state",
            self.workflows.clone(),
        );
    }

    /// Agent load and health (`qms_agent_*`), as the scheduler sees them.
    fn register_agent_metrics(&self, registry: &mut Registry) {
        registry.register(
            "qms_agent_running_tasks",
            "Unfinished Jobs per agent (live load)",
            self.agent_running.clone(),
        );
        registry.register(
            "qms_agent_capacity",
            "loadCapacity per agent (utilization = running_tasks / capacity)",
            self.agent_capacity.clone(),
        );
        registry.register(
            "qms_agent_healthy",
            "1 while the agent takes new tasks, 0 while its failed or timed-out tasks within its health window reach failureThreshold",
            self.agent_healthy.clone(),
        );
    }

    /// The controllers at work: reconciles, their actions on the API server, leadership.
    fn register_controller_metrics(&self, registry: &mut Registry) {
        registry.register(
            "qms_reconciles",
            "Reconciles per controller",
            self.reconciles.clone(),
        );
        registry.register(
            "qms_reconcile_duration_seconds",
            "Duration of one reconcile",
            self.reconcile_duration.clone(),
        );
        registry.register(
            "qms_reconcile_errors",
            "Failed reconciles by error category",
            self.reconcile_errors.clone(),
        );
        registry.register(
            "qms_actions",
            "Actions performed on the API server by outcome",
            self.actions.clone(),
        );
        registry.register(
            "qms_cache_gap_reads",
            "Reads from the API server of what a lagging watch had not delivered yet (a running task's Job, a finished Job's Pods)",
            self.cache_gap_reads.clone(),
        );
        registry.register(
            "qms_leader",
            "1 while this replica runs the controllers (holds the leader-election Lease, or runs without leader election), 0 on a standby",
            self.leader.clone(),
        );
    }

    /// The GitHub side: webhook deliveries in, check-run syncs out.
    fn register_github_metrics(&self, registry: &mut Registry) {
        registry.register(
            "qms_github_webhook_duration_seconds",
            "Time to answer one GitHub webhook delivery (POST /webhooks/github)",
            self.webhook_duration.clone(),
        );
        registry.register(
            "qms_github_check_syncs",
            "GitHub check-run syncs by outcome",
            self.github_syncs.clone(),
        );
        registry.register(
            "qms_github_check_writes",
            "Write requests made to GitHub by the check-run sync",
            self.github_writes.clone(),
        );
    }

    /// The `--config` file in force and its reloads.
    fn register_config_metrics(&self, registry: &mut Registry) {
        registry.register(
            "qms_config_reloads",
            "Changes of the --config file handled without a restart, by result (applied, or rejected: the last good configuration stays in force)",
            self.config_reloads.clone(),
        );
        registry.register(
            "qms_config_last_reload_success_timestamp_seconds",
            "Unix time the configuration in force was loaded (start-up or the last applied reload)",
            self.config_last_success.clone(),
        );
        registry.register(
            "qms_config_hash",
            "48-bit hash of the --config file text in force (0 without a file); differs between replicas while a change is rolling out",
            self.config_hash.clone(),
        );
    }

    /// Adds metrics computed at scrape time (the GitHub webhook counters).
    pub fn register_collector(&self, collector: Box<dyn prometheus_client::collector::Collector>) {
        self.registry
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .register_collector(collector);
    }

    pub fn github_sync(&self, outcome: GithubSyncOutcome, writes: u32) {
        self.github_syncs
            .get_or_create(&GithubSyncLabels { outcome })
            .inc();
        self.github_writes.inc_by(u64::from(writes));
    }

    /// Counts a config reload; an applied one also sets the success time and the hash.
    pub fn config_reload(&self, result: ConfigReloadResult, hash: u64) {
        self.config_reloads
            .get_or_create(&ConfigReloadLabels { result })
            .inc();
        if result == ConfigReloadResult::applied {
            self.config_loaded(hash);
        }
    }

    /// The configuration with `hash` is in force from now.
    pub fn config_loaded(&self, hash: u64) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        self.config_last_success.set(now);
        // 48 bits: always fits an i64.
        self.config_hash.set(i64::try_from(hash).unwrap_or(0));
    }

    pub fn reconciled(&self, controller: ControllerKind, took: Duration) {
        let l = ControllerLabels { controller };
        self.reconciles.get_or_create(&l).inc();
        self.reconcile_duration
            .get_or_create(&l)
            .observe(took.as_secs_f64());
    }

    pub fn error(&self, controller: ControllerKind, category: ErrorCategory) {
        self.reconcile_errors
            .get_or_create(&ErrorLabels {
                controller,
                category,
            })
            .inc();
    }

    pub fn cache_gap_read(&self, kind: CacheGapKind) {
        self.cache_gap_reads
            .get_or_create(&CacheGapLabels { kind })
            .inc();
    }

    pub fn action(&self, action: ActionKind, outcome: ActionOutcome) {
        self.actions
            .get_or_create(&ActionLabels { action, outcome })
            .inc();
    }

    pub fn count(&self, controller: ControllerKind) -> u64 {
        self.reconciles
            .get_or_create(&ControllerLabels { controller })
            .get()
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let registry = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        if prometheus_client::encoding::text::encode(&mut out, &registry).is_err() {
            out.clear();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `increase()` cannot see the first increment of a series created by it: the reload series
    /// exist with 0 from the start, so an alert on `rejected` sees the very first one.
    #[test]
    fn config_reload_series_exist_with_zero_from_the_start() {
        let m = Metrics::new();
        let text = m.render();
        for result in ["applied", "rejected"] {
            assert!(
                text.contains(&format!(
                    "qms_config_reloads_total{{result=\"{result}\"}} 0\n"
                )),
                "{text}"
            );
        }
        m.config_reload(ConfigReloadResult::rejected, 7);
        let text = m.render();
        assert!(
            text.contains("qms_config_reloads_total{result=\"rejected\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("qms_config_reloads_total{result=\"applied\"} 0\n"),
            "{text}"
        );
    }

    #[test]
    fn renders_spec_metric_names() {
        let m = Metrics::new();
        m.workflow_duration
            .get_or_create(&WorkflowLabels {
                workflow_type: "standard-qms-review".into(),
                status: "COMPLETED".into(),
            })
            .observe(42.0);
        m.gate_results
            .get_or_create(&GateLabels {
                gate_name: "code-coverage".into(),
                result: "passed".into(),
            })
            .inc();
        m.error(ControllerKind::qmsworkflow, ErrorCategory::conflict);
        let text = m.render();
        assert!(
            text.contains("qms_workflow_duration_seconds_bucket{"),
            "{text}"
        );
        assert!(
            text.contains(
                r#"qms_quality_gate_results_total{gate_name="code-coverage",result="passed"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"qms_reconcile_errors_total{controller="qmsworkflow",category="conflict"} 1"#
            ),
            "{text}"
        );
    }
}
