//! Operator settings: defaults < `--config FILE` (the orchestrator file of spec §7.1) < environment
//! variables and flags.
//!
//! Only the §7.1 settings that still mean something on Kubernetes are accepted; the rest of that
//! file (`event_bus`, `state_manager`, ...) has no counterpart here — state lives in `.status` and
//! events are watches — so such a key stops start-up with a message naming it, like any unknown key
//! or bad value.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use qms_api::KubeDuration;
use qms_engine::EngineConfig;
use serde::Deserialize;

/// The config file: `orchestrator:` with the sections of spec §7.1 that apply on Kubernetes.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default)]
    pub orchestrator: OrchestratorFile,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrchestratorFile {
    /// Informational (shown in logs).
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub environment: Option<String>,
    #[serde(default)]
    pub agent_registry: AgentRegistryFile,
    #[serde(default)]
    pub workflow_engine: WorkflowEngineFile,
    #[serde(default)]
    pub quality_gates: QualityGatesFile,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentRegistryFile {
    /// How often agent status (running tasks, recent failures, Healthy) is recomputed even when no
    /// Job changed (failures age out of the health window).
    #[serde(default)]
    pub health_check_interval: Option<KubeDuration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkflowEngineFile {
    #[serde(default)]
    pub max_concurrent_workflows: Option<u32>,
    #[serde(default)]
    pub default_timeout: Option<KubeDuration>,
    #[serde(default)]
    pub retry_exponential_base: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QualityGatesFile {
    /// Gates are always evaluated together once a step's agents finished; accepted for
    /// compatibility with the §7.1 file, `false` is refused.
    #[serde(default)]
    pub parallel_execution: Option<bool>,
    #[serde(default)]
    pub timeout_buffer: Option<KubeDuration>,
    #[serde(default)]
    pub escalation_threshold: Option<KubeDuration>,
}

/// Overrides from flags / environment (clap `env`); `None` = not given.
#[derive(Debug, Default, Clone, clap::Args)]
pub struct SettingsArgs {
    /// Orchestrator settings file (YAML, spec §7.1 `orchestrator:` section).
    #[arg(long, env = "QMS_CONFIG")]
    pub config: Option<PathBuf>,
    /// Namespace to reconcile in (repeatable); all namespaces when none is given.
    #[arg(
        long = "namespace",
        short = 'n',
        env = "QMS_NAMESPACES",
        value_delimiter = ','
    )]
    pub namespaces: Vec<String>,
    /// Address of the HTTP server (/metrics, /healthz, /readyz).
    #[arg(long, env = "QMS_HTTP_ADDR")]
    pub http_addr: Option<SocketAddr>,
    /// At most this many workflows run at once; the rest wait in INITIALIZED (Queued).
    #[arg(long, env = "QMS_MAX_CONCURRENT_WORKFLOWS")]
    pub max_concurrent_workflows: Option<u32>,
    /// Step timeout when neither the step nor the agent sets one (e.g. 1800s).
    #[arg(long, env = "QMS_DEFAULT_TIMEOUT")]
    pub default_timeout: Option<String>,
    /// Growth factor of retry backoff for steps without a retry policy.
    #[arg(long, env = "QMS_RETRY_EXPONENTIAL_BASE")]
    pub retry_exponential_base: Option<f64>,
    /// Extra time gates get after a step's timeout (e.g. 30s).
    #[arg(long, env = "QMS_GATE_TIMEOUT_BUFFER")]
    pub gate_timeout_buffer: Option<String>,
    /// Escalate a gate that is still undecided after this long when the gate sets no threshold.
    #[arg(long, env = "QMS_ESCALATION_THRESHOLD")]
    pub escalation_threshold: Option<String>,
    /// How often agent status is recomputed without a Job change (e.g. 10s).
    #[arg(long, env = "QMS_HEALTH_CHECK_INTERVAL")]
    pub health_check_interval: Option<String>,
    /// Workflows reconciled at the same time (kube-rs has no client rate limiter: this bounds the
    /// API request rate of the operator).
    #[arg(long, env = "QMS_WORKFLOW_CONCURRENCY")]
    pub workflow_concurrency: Option<u16>,
    /// Templates/gates/agents reconciled at the same time.
    #[arg(long, env = "QMS_CATALOG_CONCURRENCY")]
    pub catalog_concurrency: Option<u16>,
    /// Largest agent result accepted, in bytes.
    #[arg(long, env = "QMS_MAX_RESULT_BYTES")]
    pub max_result_bytes: Option<usize>,
    /// Enable the GitHub integration: serve signed webhooks on POST /webhooks/github (same HTTP
    /// server as /metrics) and mirror every workflow to Check Runs. Configured by the
    /// QMS_GITHUB_* variables and the Secret directory $QMS_GITHUB_SECRET_DIR (files
    /// `webhook-secret`, and `token` or `app-id` + `private-key`), listed at the end of `run --help`. A missing
    /// webhook secret or credentials, or any invalid QMS_GITHUB_* value, stops start-up.
    #[arg(long, env = "QMS_GITHUB_ENABLED", value_parser = clap::builder::BoolishValueParser::new())]
    pub github: bool,
    /// Leader election: only the replica holding the Lease runs the controllers (and the GitHub
    /// check-run sync); the others are standbys that take over when it stops renewing. On by
    /// default for `run`; `--leader-elect=false` for a single replica without a Lease.
    #[arg(
        long,
        env = "QMS_LEADER_ELECT",
        default_value = "true",
        num_args = 0..=1,
        default_missing_value = "true",
        action = clap::ArgAction::Set,
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub leader_elect: bool,
    /// Namespace of the Lease (default: $POD_NAMESPACE, else the service account's namespace,
    /// else `default`).
    #[arg(long, env = "QMS_LEADER_ELECTION_NAMESPACE")]
    pub leader_election_namespace: Option<String>,
    /// Name of the Lease (default `qms-operator`; replicas sharing it elect one leader).
    #[arg(long, env = "QMS_LEADER_ELECTION_LEASE_NAME")]
    pub leader_election_lease_name: Option<String>,
    /// How long standbys wait after the leader's last renew before taking over (whole seconds;
    /// default 15s).
    #[arg(long, env = "QMS_LEADER_ELECTION_LEASE_DURATION")]
    pub leader_election_lease_duration: Option<String>,
    /// The leader stops acting when no renew succeeded for this long; must be less than the
    /// lease duration (default ⅔ of it: 10s).
    #[arg(long, env = "QMS_LEADER_ELECTION_RENEW_DEADLINE")]
    pub leader_election_renew_deadline: Option<String>,
    /// How often the leader renews the Lease (default ⅓ of the lease duration: 5s).
    #[arg(long, env = "QMS_LEADER_ELECTION_RENEW_INTERVAL")]
    pub leader_election_renew_interval: Option<String>,
    /// How often a standby tries to acquire the Lease and a failed renew is retried (default 2s).
    #[arg(long, env = "QMS_LEADER_ELECTION_RETRY_PERIOD")]
    pub leader_election_retry_period: Option<String>,
    /// How often the `--config` file is checked for changes, which are applied without a restart
    /// (default 5s; see README "Operating it").
    #[arg(long, env = "QMS_CONFIG_RELOAD_INTERVAL")]
    pub config_reload_interval: Option<String>,
    /// OTLP/HTTP (protobuf) collector base URL for traces, e.g. http://otel-collector:4318 (spans
    /// go to <url>/v1/traces); no traces are exported without it.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
    /// Key the task result endpoint's per-task tokens are derived from (HMAC-SHA256). Prefer
    /// --results-key-file; without either a random key is used (tokens of running tasks then do
    /// not survive a restart, and replicas do not share it).
    #[arg(long, env = "QMS_RESULTS_KEY", hide_env_values = true)]
    pub results_key: Option<String>,
    /// File holding that key (the chart mounts it from a Secret).
    #[arg(long, env = "QMS_RESULTS_KEY_FILE")]
    pub results_key_file: Option<PathBuf>,
    /// Largest result accepted by POST /v1/tasks/{task_id}/result, in bytes (default 10 MiB).
    #[arg(long, env = "QMS_RESULTS_MAX_BODY_BYTES")]
    pub results_max_body_bytes: Option<usize>,
    /// Base URL agents reach this operator's HTTP port at, e.g.
    /// http://qms-operator.qms-system.svc:8080 (default: the bound address).
    #[arg(long, env = "QMS_RESULTS_URL")]
    pub results_url: Option<String>,
}

/// Where the settings came from, to read the `--config` file again when it changes.
#[derive(Clone, Debug)]
pub struct ConfigSource {
    pub path: PathBuf,
    /// The flags and environment, applied over every new version of the file as at start-up.
    pub args: SettingsArgs,
    /// [`config_hash`] of the file text the settings were built from.
    pub hash: u64,
}

/// The settings a changed `--config` file applies without a restart (spec §7.2). Read them
/// through `Shared::live`, never from the start-up `Settings`.
#[derive(Clone, Debug)]
pub struct LiveSettings {
    pub max_concurrent_workflows: u32,
    pub engine: EngineConfig,
    pub health_check_interval: Duration,
}

impl LiveSettings {
    /// The config-file keys whose value differs between `self` and `new`.
    pub fn changed_keys(&self, new: &LiveSettings) -> Vec<&'static str> {
        let (a, b) = (&self.engine, &new.engine);
        [
            (
                "orchestrator.workflow_engine.max_concurrent_workflows",
                self.max_concurrent_workflows != new.max_concurrent_workflows,
            ),
            (
                "orchestrator.workflow_engine.default_timeout",
                a.default_timeout != b.default_timeout,
            ),
            (
                "orchestrator.workflow_engine.retry_exponential_base",
                a.retry_base != b.retry_base,
            ),
            (
                "orchestrator.quality_gates.timeout_buffer",
                a.gate_timeout_buffer != b.gate_timeout_buffer,
            ),
            (
                "orchestrator.quality_gates.escalation_threshold",
                a.gate_escalation_threshold != b.gate_escalation_threshold,
            ),
            (
                "orchestrator.agent_registry.health_check_interval",
                self.health_check_interval != new.health_check_interval,
            ),
        ]
        .into_iter()
        .filter_map(|(key, changed)| changed.then_some(key))
        .collect()
    }
}

/// The config-file keys that only take effect after a restart and differ between the running
/// settings and `new` (a reloaded file). Everything else the file can set is live; the
/// restart-only settings proper (HTTP address, namespaces, leader election, GitHub) are flags and
/// environment variables, which a running process cannot see change.
pub fn restart_only_changes(running: &Settings, new: &Settings) -> Vec<&'static str> {
    let mut keys = Vec::new();
    // Shown in the start-up log line only.
    if running.name != new.name {
        keys.push("orchestrator.name");
    }
    keys
}

/// A stable 48-bit FNV-1a hash of the config text (exported as `qms_config_hash`: 48 bits stay
/// exact in Prometheus' float64 samples, so replicas can be compared).
pub fn config_hash(text: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h & 0xffff_ffff_ffff
}

/// The settings a new version `text` of the config file gives with the start-up flags and
/// environment of `source` (which still win over the file). Validation and error messages are
/// those of start-up.
pub fn reload(source: &ConfigSource, text: &str) -> Result<Settings, ConfigError> {
    let file = parse_file(&source.path.display().to_string(), text)?;
    Settings::from_parts(&file, &source.args)
}

/// The validated settings the operator runs with.
#[derive(Clone, Debug)]
pub struct Settings {
    pub namespaces: Vec<String>,
    pub http_addr: SocketAddr,
    pub max_concurrent_workflows: u32,
    pub engine: EngineConfig,
    pub health_check_interval: Duration,
    pub workflow_concurrency: u16,
    pub catalog_concurrency: u16,
    /// Name shown in logs (from the config file).
    pub name: String,
    /// The GitHub integration, when enabled (`--github`). Its `Debug` prints no secret.
    pub github: Option<qms_github::GithubConfig>,
    /// Leader election (`--leader-elect`, the default of `run`); `None`: this process always acts.
    pub leader_election: Option<crate::leader::LeaderElectionConfig>,
    /// The `--config` file, watched for changes (`None`: no file, nothing to reload).
    pub config_source: Option<ConfigSource>,
    /// How often the config file is checked for changes.
    pub config_reload_interval: Duration,
    /// The object configuration-reload Events are about: this operator's Pod
    /// ($POD_NAMESPACE/$POD_NAME); `None` outside a Pod (the reload is logged and counted only).
    pub event_target: Option<k8s_openapi::api::core::v1::ObjectReference>,
    /// OTLP/HTTP traces endpoint (`<base>/v1/traces`); `None`: tracing export off.
    pub otlp_endpoint: Option<String>,
    /// The task result endpoint (key, body limit, URL given to Jobs).
    pub results: crate::results::ResultsSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            namespaces: Vec::new(),
            http_addr: SocketAddr::from(([0, 0, 0, 0], 8080)),
            max_concurrent_workflows: 50,
            engine: EngineConfig::default(),
            health_check_interval: Duration::from_secs(10),
            // 8 concurrent reconciles × a handful of requests each stays far below what an API
            // server serves, and bounds the burst a full re-list causes after a restart.
            workflow_concurrency: 8,
            catalog_concurrency: 2,
            name: "qms-operator".to_owned(),
            github: None,
            leader_election: None,
            config_source: None,
            config_reload_interval: Duration::from_secs(5),
            event_target: None,
            otlp_endpoint: None,
            results: Default::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: String, message: String },
    #[error("{key}: {message}")]
    Invalid { key: String, message: String },
}

fn invalid(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_owned(),
        message: message.into(),
    }
}

/// Parses the config file text (YAML). Unknown keys are refused with their name.
pub fn parse_file(path: &str, text: &str) -> Result<FileConfig, ConfigError> {
    serde_saphyr::from_str::<FileConfig>(text).map_err(|e| ConfigError::Parse {
        path: path.to_owned(),
        message: e.to_string(),
    })
}

fn duration(key: &str, value: &str) -> Result<Duration, ConfigError> {
    let d = KubeDuration::parse(value)
        .and_then(|d| d.to_std())
        .map_err(|e| invalid(key, e.to_string()))?;
    if d.is_zero() {
        return Err(invalid(key, "must be greater than 0"));
    }
    Ok(d)
}

impl Settings {
    /// Reads `--config` (if any), applies the flag/env overrides and, with `--github`, reads the
    /// GitHub configuration from the environment.
    pub fn load(args: &SettingsArgs) -> Result<Self, ConfigError> {
        let mut source = None;
        let file = match &args.config {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.display().to_string(),
                    source,
                })?;
                source = Some(ConfigSource {
                    path: path.clone(),
                    args: args.clone(),
                    hash: config_hash(&text),
                });
                parse_file(&path.display().to_string(), &text)?
            }
            None => FileConfig::default(),
        };
        let mut settings = Self::from_parts(&file, args)?;
        settings.config_source = source;
        settings.event_target = pod_reference(
            std::env::var("POD_NAMESPACE").ok(),
            std::env::var("POD_NAME").ok(),
        );
        settings.leader_election = leader_election_config(
            args,
            std::env::var("POD_NAMESPACE").ok(),
            std::env::var("POD_NAME").ok(),
        )?;
        if args.github {
            settings.github = Some(github_config(
                |k| std::env::var(k).ok(),
                &settings.namespaces,
            )?);
        }
        Ok(settings)
    }

    pub fn from_parts(file: &FileConfig, args: &SettingsArgs) -> Result<Self, ConfigError> {
        let mut s = Settings::default();
        // File values first (key names as in the file), then flags/env (key names as flags).
        s.apply_file(file)?;
        s.apply_scope_args(args)?;
        s.apply_engine_args(args)?;
        s.apply_runtime_args(args)?;
        s.results = results_settings(args)?;
        Ok(s)
    }

    /// The `orchestrator` section of the config file.
    fn apply_file(&mut self, file: &FileConfig) -> Result<(), ConfigError> {
        let s = self;
        let o = &file.orchestrator;
        if let Some(name) = &o.name {
            s.name = name.clone();
        }
        let we = &o.workflow_engine;
        if let Some(n) = we.max_concurrent_workflows {
            s.max_concurrent_workflows = n;
            check_max_concurrent("orchestrator.workflow_engine.max_concurrent_workflows", n)?;
        }
        if let Some(d) = &we.default_timeout {
            s.engine.default_timeout =
                duration("orchestrator.workflow_engine.default_timeout", d.as_str())?;
        }
        if let Some(b) = we.retry_exponential_base {
            check_base("orchestrator.workflow_engine.retry_exponential_base", b)?;
            s.engine.retry_base = b;
        }
        let qg = &o.quality_gates;
        if qg.parallel_execution == Some(false) {
            return Err(invalid(
                "orchestrator.quality_gates.parallel_execution",
                "only `true` is supported: a step's gates are evaluated together",
            ));
        }
        if let Some(d) = &qg.timeout_buffer {
            s.engine.gate_timeout_buffer =
                duration("orchestrator.quality_gates.timeout_buffer", d.as_str())?;
        }
        if let Some(d) = &qg.escalation_threshold {
            s.engine.gate_escalation_threshold = duration(
                "orchestrator.quality_gates.escalation_threshold",
                d.as_str(),
            )?;
        }
        if let Some(d) = &o.agent_registry.health_check_interval {
            s.health_check_interval = duration(
                "orchestrator.agent_registry.health_check_interval",
                d.as_str(),
            )?;
        }
        Ok(())
    }

    /// Flags and environment: namespaces, HTTP address, workflow slots.
    fn apply_scope_args(&mut self, args: &SettingsArgs) -> Result<(), ConfigError> {
        let s = self;
        if !args.namespaces.is_empty() {
            let mut ns: Vec<String> = args
                .namespaces
                .iter()
                .map(|n| n.trim().to_owned())
                .filter(|n| !n.is_empty())
                .collect();
            ns.sort();
            ns.dedup();
            s.namespaces = ns;
        }
        if let Some(a) = args.http_addr {
            s.http_addr = a;
        }
        if let Some(n) = args.max_concurrent_workflows {
            check_max_concurrent("--max-concurrent-workflows", n)?;
            s.max_concurrent_workflows = n;
        }
        Ok(())
    }

    /// Flags and environment: controller concurrency, reload, tracing, result size.
    fn apply_runtime_args(&mut self, args: &SettingsArgs) -> Result<(), ConfigError> {
        let s = self;
        if let Some(c) = args.workflow_concurrency {
            if c == 0 {
                return Err(invalid("--workflow-concurrency", "must be at least 1"));
            }
            s.workflow_concurrency = c;
        }
        if let Some(c) = args.catalog_concurrency {
            if c == 0 {
                return Err(invalid("--catalog-concurrency", "must be at least 1"));
            }
            s.catalog_concurrency = c;
        }
        if let Some(d) = &args.config_reload_interval {
            s.config_reload_interval = duration("--config-reload-interval", d)?;
        }
        if let Some(url) = args.otlp_endpoint.as_deref().map(str::trim)
            && !url.is_empty()
        {
            s.otlp_endpoint = Some(otlp_traces_url(url)?);
        }
        if let Some(b) = args.max_result_bytes {
            if !(1024..=1024 * 1024).contains(&b) {
                return Err(invalid(
                    "--max-result-bytes",
                    "must be between 1024 and 1048576",
                ));
            }
            s.engine.max_result_bytes = b;
        }
        Ok(())
    }

    /// Flags and environment of the engine: timeouts, retries, gates, health checks.
    fn apply_engine_args(&mut self, args: &SettingsArgs) -> Result<(), ConfigError> {
        let s = self;
        if let Some(d) = &args.default_timeout {
            s.engine.default_timeout = duration("--default-timeout", d)?;
        }
        if let Some(b) = args.retry_exponential_base {
            check_base("--retry-exponential-base", b)?;
            s.engine.retry_base = b;
        }
        if let Some(d) = &args.gate_timeout_buffer {
            s.engine.gate_timeout_buffer = duration("--gate-timeout-buffer", d)?;
        }
        if let Some(d) = &args.escalation_threshold {
            s.engine.gate_escalation_threshold = duration("--escalation-threshold", d)?;
        }
        if let Some(d) = &args.health_check_interval {
            s.health_check_interval = duration("--health-check-interval", d)?;
        }
        Ok(())
    }
}

/// The result endpoint's settings from flags / environment.
fn results_settings(args: &SettingsArgs) -> Result<crate::results::ResultsSettings, ConfigError> {
    let mut r = crate::results::ResultsSettings::default();
    let key = match (&args.results_key, &args.results_key_file) {
        (Some(k), _) if !k.trim().is_empty() => Some(k.trim().as_bytes().to_vec()),
        (_, Some(path)) => Some(
            std::fs::read(path)
                .map_err(|e| {
                    invalid(
                        "--results-key-file",
                        format!("cannot read {}: {e}", path.display()),
                    )
                })?
                .trim_ascii()
                .to_vec(),
        ),
        _ => None,
    };
    match key {
        Some(k) if k.len() < 16 => {
            return Err(invalid("--results-key", "must be at least 16 bytes"));
        }
        Some(k) => r.key = crate::results::ResultKey::new(k),
        None => tracing::warn!(
            "no --results-key-file: the task result tokens use a random key (they do not survive a restart)"
        ),
    }
    if let Some(b) = args.results_max_body_bytes {
        if !(1024..=256 * 1024 * 1024).contains(&b) {
            return Err(invalid(
                "--results-max-body-bytes",
                "must be between 1024 and 268435456",
            ));
        }
        r.max_body_bytes = b;
    }
    if let Some(url) = args.results_url.as_deref().map(str::trim)
        && !url.is_empty()
    {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(invalid(
                "--results-url",
                "must start with http:// or https://",
            ));
        }
        r.url = Some(url.to_owned());
    }
    Ok(r)
}

impl Settings {
    /// The live part of these settings (see [`LiveSettings`]).
    pub fn live(&self) -> LiveSettings {
        LiveSettings {
            max_concurrent_workflows: self.max_concurrent_workflows,
            engine: self.engine.clone(),
            health_check_interval: self.health_check_interval,
        }
    }
}

/// The operator's own Pod, from the downward-API variables the chart sets.
fn pod_reference(
    namespace: Option<String>,
    name: Option<String>,
) -> Option<k8s_openapi::api::core::v1::ObjectReference> {
    let (namespace, name) = (namespace?, name?);
    if namespace.trim().is_empty() || name.trim().is_empty() {
        return None;
    }
    Some(k8s_openapi::api::core::v1::ObjectReference {
        api_version: Some("v1".to_owned()),
        kind: Some("Pod".to_owned()),
        namespace: Some(namespace),
        name: Some(name),
        ..Default::default()
    })
}

/// The traces URL of an OTLP/HTTP base URL, as the OpenTelemetry SDKs derive it from
/// `OTEL_EXPORTER_OTLP_ENDPOINT`: `<base>/v1/traces`. Only `http://` (an in-cluster collector):
/// the exporter's client speaks no TLS. The value is not echoed (it may carry credentials).
fn otlp_traces_url(base: &str) -> Result<String, ConfigError> {
    const KEY: &str = "OTEL_EXPORTER_OTLP_ENDPOINT (--otlp-endpoint)";
    if base.starts_with("https://") {
        return Err(invalid(
            KEY,
            "https:// is not supported: point it at an OTLP/HTTP collector over http:// (e.g. an in-cluster OpenTelemetry Collector on port 4318)",
        ));
    }
    let uri = base
        .parse::<axum::http::Uri>()
        .ok()
        .filter(|u| u.scheme_str() == Some("http") && u.host().is_some());
    if uri.is_none() {
        return Err(invalid(KEY, "is not an http:// URL"));
    }
    let base = base.trim_end_matches('/');
    Ok(if base.ends_with("/v1/traces") {
        base.to_owned()
    } else {
        format!("{base}/v1/traces")
    })
}

/// The leader-election settings of `args` (`None` with `--leader-elect=false`). The namespace
/// defaults to `pod_namespace` (downward API), else the service account's namespace; the identity
/// is `pod_name` (else the hostname) plus a random suffix.
pub fn leader_election_config(
    args: &SettingsArgs,
    pod_namespace: Option<String>,
    pod_name: Option<String>,
) -> Result<Option<crate::leader::LeaderElectionConfig>, ConfigError> {
    use crate::leader::{LeaderElectionConfig, default_identity, default_namespace};
    if !args.leader_elect {
        return Ok(None);
    }
    let namespace = match &args.leader_election_namespace {
        Some(n) if !n.trim().is_empty() => n.trim().to_owned(),
        _ => default_namespace(pod_namespace),
    };
    let lease_duration = match &args.leader_election_lease_duration {
        Some(d) => duration("--leader-election-lease-duration", d)?,
        None => Duration::from_secs(15),
    };
    let mut cfg = LeaderElectionConfig::with_lease_duration(
        namespace,
        default_identity(pod_name),
        lease_duration,
    );
    if let Some(name) = &args.leader_election_lease_name {
        cfg.lease_name = name.trim().to_owned();
    }
    if let Some(d) = &args.leader_election_renew_deadline {
        cfg.renew_deadline = duration("--leader-election-renew-deadline", d)?;
    }
    if let Some(d) = &args.leader_election_renew_interval {
        cfg.renew_interval = duration("--leader-election-renew-interval", d)?;
    }
    if let Some(d) = &args.leader_election_retry_period {
        cfg.retry_period = duration("--leader-election-retry-period", d)?;
    }
    cfg.validate()
        .map_err(|(key, message)| invalid(key, message))?;
    Ok(Some(cfg))
}

/// The GitHub configuration from `QMS_GITHUB_*` (through `lookup`) and `$QMS_GITHUB_SECRET_DIR`,
/// checked for what would otherwise only show up later as refused deliveries or check runs that
/// never appear. Errors name the variable (or file) and never contain a secret value.
pub fn github_config(
    lookup: impl Fn(&str) -> Option<String>,
    namespaces: &[String],
) -> Result<qms_github::GithubConfig, ConfigError> {
    use qms_github::Credentials;
    let lookup = |k: &str| lookup(k).filter(|v| !v.trim().is_empty());
    // qms-github treats a missing file in the directory as "not configured"; a directory that is
    // not there at all is a mounting mistake worth naming as such.
    if let Some(dir) = lookup("QMS_GITHUB_SECRET_DIR")
        && !Path::new(dir.trim()).is_dir()
    {
        return Err(invalid(
            "QMS_GITHUB_SECRET_DIR",
            format!(
                "{} is not a directory (mount the GitHub Secret there)",
                dir.trim()
            ),
        ));
    }
    let cfg = qms_github::GithubConfig::from_lookup(lookup).map_err(|e| match e {
        qms_github::config::ConfigError::Invalid { var, reason } => invalid(var, reason),
        qms_github::config::ConfigError::Read { path, source } => ConfigError::Read {
            path: path.display().to_string(),
            source,
        },
    })?;
    let url = cfg.api_base_url.as_str();
    // The value is not echoed: a URL may carry credentials (`https://user:pass@host`).
    if !(url.starts_with("https://") || url.starts_with("http://"))
        || url.parse::<axum::http::Uri>().is_err()
    {
        return Err(invalid(
            "QMS_GITHUB_API_URL",
            "is not an http:// or https:// URL",
        ));
    }
    if cfg.webhook_secrets.is_empty() {
        return Err(invalid(
            "QMS_GITHUB_WEBHOOK_SECRET",
            "no webhook secret: set QMS_GITHUB_WEBHOOK_SECRET or put a `webhook-secret` file into \
             $QMS_GITHUB_SECRET_DIR (without one every delivery would be refused with 401)",
        ));
    }
    match &cfg.credentials {
        Credentials::None => {
            return Err(invalid(
                "QMS_GITHUB_TOKEN",
                "no GitHub credentials: set QMS_GITHUB_TOKEN (or a `token` file in \
                 $QMS_GITHUB_SECRET_DIR), or QMS_GITHUB_APP_ID and QMS_GITHUB_PRIVATE_KEY (or \
                 `app-id` and `private-key` files)",
            ));
        }
        Credentials::App { .. } => {
            // Parsing the key now turns a bad key into a start-up error instead of every check
            // run failing later. AuthError's message never contains the key.
            qms_github::auth::Auth::from_credentials(&cfg.credentials)
                .map_err(|e| invalid("QMS_GITHUB_PRIVATE_KEY", e.to_string()))?;
        }
        Credentials::Token(_) => {}
    }
    let ns = cfg.namespace.as_str();
    if !qms_api::names::is_dns_label(ns) {
        return Err(invalid(
            "QMS_GITHUB_NAMESPACE",
            format!("{ns:?} is not a valid namespace name"),
        ));
    }
    if !namespaces.is_empty() && !namespaces.iter().any(|n| n == ns) {
        return Err(invalid(
            "QMS_GITHUB_NAMESPACE",
            format!(
                "{ns:?} is not among the namespaces the operator reconciles ({}): reviews \
                 created from webhooks would never run",
                namespaces.join(", ")
            ),
        ));
    }
    Ok(cfg)
}

fn check_max_concurrent(key: &str, n: u32) -> Result<(), ConfigError> {
    if n == 0 || n > 100_000 {
        return Err(invalid(
            key,
            format!("must be between 1 and 100000, got {n}"),
        ));
    }
    Ok(())
}

fn check_base(key: &str, b: f64) -> Result<(), ConfigError> {
    if !b.is_finite() || !(1.0..=10.0).contains(&b) {
        return Err(invalid(key, format!("must be between 1 and 10, got {b}")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Settings, ConfigError> {
        let file = parse_file("test.yaml", text)?;
        Settings::from_parts(&file, &SettingsArgs::default())
    }

    #[test]
    fn spec_section_7_1_settings_are_read() {
        let s = load(
            r#"
orchestrator:
  name: "QMS Process Orchestrator"
  version: "2.3.0"
  environment: "production"
  agent_registry:
    health_check_interval: 10s
  workflow_engine:
    max_concurrent_workflows: 50
    default_timeout: 1800s
    retry_exponential_base: 2
  quality_gates:
    parallel_execution: true
    timeout_buffer: 30s
    escalation_threshold: 600s
"#,
        )
        .unwrap();
        assert_eq!(s.max_concurrent_workflows, 50);
        assert_eq!(s.engine.default_timeout, Duration::from_secs(1800));
        assert_eq!(s.engine.retry_base, 2.0);
        assert_eq!(s.engine.gate_timeout_buffer, Duration::from_secs(30));
        assert_eq!(s.engine.gate_escalation_threshold, Duration::from_secs(600));
        assert_eq!(s.health_check_interval, Duration::from_secs(10));
        assert_eq!(s.name, "QMS Process Orchestrator");
    }

    #[test]
    fn unknown_keys_are_refused_with_their_name() {
        let e = load("orchestrator:\n  workflow_engine:\n    max_concurent_workflows: 5\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("max_concurent_workflows"), "{e}");
        let e = load("orchestrator:\n  event_bus:\n    type: redis\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("event_bus"), "{e}");
        let e = load("workflow_engine: {}\n").unwrap_err().to_string();
        assert!(e.contains("workflow_engine"), "{e}");
    }

    #[test]
    fn bad_values_are_refused_with_the_key() {
        let e = load("orchestrator:\n  workflow_engine:\n    default_timeout: 30 minutes\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("orchestrator.workflow_engine.default_timeout:"),
            "{e}"
        );
        let e = load("orchestrator:\n  workflow_engine:\n    max_concurrent_workflows: 0\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("orchestrator.workflow_engine.max_concurrent_workflows:"),
            "{e}"
        );
        let e = load("orchestrator:\n  workflow_engine:\n    retry_exponential_base: 50\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("retry_exponential_base"), "{e}");
        let e = load("orchestrator:\n  quality_gates:\n    timeout_buffer: 0s\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("timeout_buffer"), "{e}");
        // a wrong type is a parse error that names the key
        let e = load("orchestrator:\n  workflow_engine:\n    max_concurrent_workflows: many\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("max_concurrent_workflows") || e.contains("many"),
            "{e}"
        );
    }

    #[test]
    fn flags_override_the_file() {
        let file = parse_file(
            "f",
            "orchestrator:\n  workflow_engine:\n    max_concurrent_workflows: 5\n",
        )
        .unwrap();
        let args = SettingsArgs {
            max_concurrent_workflows: Some(7),
            namespaces: vec!["b".into(), "a".into(), "b".into()],
            default_timeout: Some("90s".into()),
            ..SettingsArgs::default()
        };
        let s = Settings::from_parts(&file, &args).unwrap();
        assert_eq!(s.max_concurrent_workflows, 7);
        assert_eq!(s.namespaces, ["a", "b"]);
        assert_eq!(s.engine.default_timeout, Duration::from_secs(90));
        let bad = SettingsArgs {
            default_timeout: Some("soon".into()),
            ..SettingsArgs::default()
        };
        let e = Settings::from_parts(&file, &bad).unwrap_err().to_string();
        assert!(e.starts_with("--default-timeout:"), "{e}");
    }

    fn github(
        vars: &[(&str, &str)],
        namespaces: &[&str],
    ) -> Result<qms_github::GithubConfig, ConfigError> {
        let map: std::collections::HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let ns: Vec<String> = namespaces.iter().map(|n| (*n).to_owned()).collect();
        github_config(|k| map.get(k).cloned(), &ns)
    }

    #[test]
    fn github_config_from_the_secret_dir_and_env() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("webhook-secret"), "old\nnew\n").unwrap();
        std::fs::write(dir.path().join("token"), "ghp_x\n").unwrap();
        let d = dir.path().to_str().unwrap();
        let cfg = github(
            &[
                ("QMS_GITHUB_SECRET_DIR", d),
                ("QMS_GITHUB_NAMESPACE", "qms"),
                ("QMS_GITHUB_API_URL", "https://ghe.example.com/api/v3"),
            ],
            &["qms", "other"],
        )
        .unwrap();
        assert_eq!(cfg.webhook_secrets.len(), 2);
        assert!(matches!(cfg.credentials, qms_github::Credentials::Token(_)));
        assert_eq!(cfg.namespace, "qms");
        assert_eq!(cfg.api_base_url, "https://ghe.example.com/api/v3");
        // Debug of the settings (and so of any log of them) shows no secret.
        let settings = Settings {
            github: Some(cfg),
            ..Settings::default()
        };
        let dbg = format!("{settings:?}");
        assert!(!dbg.contains("ghp_x") && !dbg.contains("new"), "{dbg}");
        // All namespaces watched: any GitHub namespace is reconciled.
        assert!(github(&[("QMS_GITHUB_SECRET_DIR", d)], &[]).is_ok());
    }

    #[test]
    fn github_config_errors_name_the_variable_and_no_secret() {
        let key = |r: Result<qms_github::GithubConfig, ConfigError>| match r {
            Err(ConfigError::Invalid { key, message }) => {
                assert!(
                    !message.contains("s3cr3t") && !message.contains("ghp_s3"),
                    "{message}"
                );
                key
            }
            other => panic!("expected an invalid key, got {other:?}"),
        };
        let ok = [
            ("QMS_GITHUB_WEBHOOK_SECRET", "s3cr3t"),
            ("QMS_GITHUB_TOKEN", "ghp_s3"),
        ];
        let with = |extra: (&'static str, &'static str)| {
            let mut v = ok.to_vec();
            v.push(extra);
            v
        };
        assert_eq!(key(github(&ok[..1], &[])), "QMS_GITHUB_TOKEN");
        assert_eq!(key(github(&ok[1..], &[])), "QMS_GITHUB_WEBHOOK_SECRET");
        assert_eq!(
            key(github(
                &with(("QMS_GITHUB_SECRET_DIR", "/nonexistent/x")),
                &[]
            )),
            "QMS_GITHUB_SECRET_DIR"
        );
        assert_eq!(
            key(github(&with(("QMS_GITHUB_API_URL", "github.com")), &[])),
            "QMS_GITHUB_API_URL"
        );
        assert_eq!(
            key(github(
                &with(("QMS_GITHUB_NAMESPACE", "Not_A_Namespace")),
                &[]
            )),
            "QMS_GITHUB_NAMESPACE"
        );
        assert_eq!(
            key(github(&with(("QMS_GITHUB_NAMESPACE", "qms")), &["a", "b"])),
            "QMS_GITHUB_NAMESPACE"
        );
        assert_eq!(
            key(github(&with(("QMS_GITHUB_WRITES_PER_MINUTE", "0")), &[])),
            "QMS_GITHUB_WRITES_PER_MINUTE"
        );
        let mut app = with(("QMS_GITHUB_APP_ID", "7"));
        app.push(("QMS_GITHUB_PRIVATE_KEY", "s3cr3t-not-a-pem"));
        assert_eq!(key(github(&app, &[])), "QMS_GITHUB_PRIVATE_KEY");
        // The default namespace, all namespaces watched: fine.
        assert_eq!(github(&ok, &[]).unwrap().namespace, "default");
    }

    #[test]
    fn leader_election_settings() {
        let off = SettingsArgs::default();
        assert_eq!(leader_election_config(&off, None, None).unwrap(), None);
        let on = SettingsArgs {
            leader_elect: true,
            ..SettingsArgs::default()
        };
        let c = leader_election_config(&on, Some("qms-system".into()), Some("qms-0".into()))
            .unwrap()
            .unwrap();
        assert_eq!(c.namespace, "qms-system");
        assert_eq!(c.lease_name, "qms-operator");
        assert!(c.identity.starts_with("qms-0_"), "{}", c.identity);
        assert_eq!(
            (
                c.lease_duration,
                c.renew_deadline,
                c.renew_interval,
                c.retry_period
            ),
            (
                Duration::from_secs(15),
                Duration::from_secs(10),
                Duration::from_secs(5),
                Duration::from_secs(2)
            )
        );
        let custom = SettingsArgs {
            leader_election_namespace: Some("ops".into()),
            leader_election_lease_name: Some("qms-a".into()),
            leader_election_lease_duration: Some("2s".into()),
            leader_election_renew_interval: Some("500ms".into()),
            leader_election_retry_period: Some("200ms".into()),
            ..on.clone()
        };
        let c = leader_election_config(&custom, Some("ignored".into()), None)
            .unwrap()
            .unwrap();
        assert_eq!(
            (c.namespace.as_str(), c.lease_name.as_str()),
            ("ops", "qms-a")
        );
        assert_eq!(c.renew_interval, Duration::from_millis(500));
        let err = |args: SettingsArgs| {
            leader_election_config(&args, None, None)
                .unwrap_err()
                .to_string()
        };
        let e = err(SettingsArgs {
            leader_election_renew_deadline: Some("20s".into()),
            ..on.clone()
        });
        assert!(e.starts_with("--leader-election-renew-deadline:"), "{e}");
        let e = err(SettingsArgs {
            leader_election_lease_duration: Some("soon".into()),
            ..on.clone()
        });
        assert!(e.starts_with("--leader-election-lease-duration:"), "{e}");
        let e = err(SettingsArgs {
            leader_election_retry_period: Some("0s".into()),
            ..on
        });
        assert!(e.starts_with("--leader-election-retry-period:"), "{e}");
    }

    #[test]
    fn leader_elect_flag_defaults_to_true_and_accepts_false() {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct T {
            #[command(flatten)]
            s: SettingsArgs,
        }
        assert!(T::try_parse_from(["t"]).unwrap().s.leader_elect);
        assert!(
            T::try_parse_from(["t", "--leader-elect"])
                .unwrap()
                .s
                .leader_elect
        );
        assert!(
            !T::try_parse_from(["t", "--leader-elect=false"])
                .unwrap()
                .s
                .leader_elect
        );
    }

    #[test]
    fn otlp_endpoint_and_reload_interval() {
        let with = |endpoint: &str| {
            Settings::from_parts(
                &FileConfig::default(),
                &SettingsArgs {
                    otlp_endpoint: Some(endpoint.into()),
                    ..SettingsArgs::default()
                },
            )
        };
        assert_eq!(Settings::default().otlp_endpoint, None);
        assert_eq!(with("").unwrap().otlp_endpoint, None);
        assert_eq!(
            with("http://collector:4318")
                .unwrap()
                .otlp_endpoint
                .as_deref(),
            Some("http://collector:4318/v1/traces")
        );
        assert_eq!(
            with("http://collector:4318/v1/traces/")
                .unwrap()
                .otlp_endpoint
                .as_deref(),
            Some("http://collector:4318/v1/traces")
        );
        for bad in ["https://collector:4318", "collector:4318", "http://"] {
            let e = with(bad).unwrap_err().to_string();
            assert!(e.starts_with("OTEL_EXPORTER_OTLP_ENDPOINT"), "{bad}: {e}");
        }
        let e = Settings::from_parts(
            &FileConfig::default(),
            &SettingsArgs {
                config_reload_interval: Some("0s".into()),
                ..SettingsArgs::default()
            },
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("--config-reload-interval:"), "{e}");
    }

    #[test]
    fn load_remembers_the_file_for_reloads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.yaml");
        let text = "orchestrator:\n  workflow_engine:\n    max_concurrent_workflows: 4\n";
        std::fs::write(&path, text).unwrap();
        let args = SettingsArgs {
            config: Some(path.clone()),
            ..SettingsArgs::default()
        };
        let s = Settings::load(&args).unwrap();
        let source = s.config_source.as_ref().unwrap();
        assert_eq!(source.path, path);
        assert_eq!(source.hash, config_hash(text));
        assert_ne!(config_hash(text), config_hash("orchestrator: {}\n"));
        assert!(config_hash(text) < 1 << 48);
        assert_eq!(s.live().max_concurrent_workflows, 4);
        assert!(
            Settings::load(&SettingsArgs::default())
                .unwrap()
                .config_source
                .is_none()
        );
    }

    #[test]
    fn empty_file_gives_defaults() {
        let s = load("").unwrap();
        assert_eq!(s.max_concurrent_workflows, 50);
        let s = load("orchestrator: {}\n").unwrap();
        assert_eq!(s.workflow_concurrency, 8);
    }
}
