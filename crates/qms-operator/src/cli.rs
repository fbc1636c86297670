//! Command line: `crds`, `run`. (The local playground on kube-sim is the separate `qms-dev`
//! binary, so this one links no simulator.)

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use crate::config::{Settings, SettingsArgs};

#[derive(Parser)]
#[command(name = "qms-operator", version, about)]
pub struct Cli {
    /// Log format.
    #[arg(long, global = true, env = "QMS_LOG_FORMAT", default_value = "text")]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
pub enum Command {
    /// Print the CustomResourceDefinitions as a YAML stream, or write one file per kind.
    Crds {
        /// Write `<plural>.yaml` files into this directory instead of printing.
        #[arg(long)]
        out_dir: Option<PathBuf>,
    },
    /// Run the controllers against the cluster of the current kubeconfig (or in-cluster config).
    #[command(after_long_help = GITHUB_HELP)]
    Run {
        #[command(flatten)]
        settings: Box<SettingsArgs>,
    },
}

/// `run --help`: how the GitHub integration is configured.
pub const GITHUB_HELP: &str = "\
GitHub integration (off unless --github or QMS_GITHUB_ENABLED=true):
  Webhooks are served on POST /webhooks/github of the HTTP server (--http-addr); every workflow is
  mirrored to Check Runs. Start-up stops with the variable named when something is missing or
  invalid; secret values are never printed.

  QMS_GITHUB_SECRET_DIR          mounted Secret directory with files `webhook-secret` (one secret
                                 per line, for rotation) and `token`, or `app-id` + `private-key`
  QMS_GITHUB_WEBHOOK_SECRET      webhook secret(s) (instead of the file)
  QMS_GITHUB_TOKEN               token (instead of the file)
  QMS_GITHUB_APP_ID, QMS_GITHUB_PRIVATE_KEY[_FILE]
                                 GitHub App (wins over a token)
  QMS_GITHUB_API_URL             REST base (default https://api.github.com)
  QMS_GITHUB_NAMESPACE           namespace of the reviews created from webhooks (default
                                 `default`; must be one of --namespace when those are given)
  QMS_GITHUB_RUN_DRAFTS          review draft pull requests at once (default false)
  QMS_GITHUB_TRUSTED_PERMISSION  permission needed for /qms commands (default write)
  QMS_GITHUB_TRUSTED_LOGINS, QMS_GITHUB_TRUSTED_TEAMS (org/team)
                                 trusted regardless of permission
  QMS_GITHUB_DETAILS_URL         check run link; {namespace} {name} {run} {step} {repository}
                                 {pr} {sha} are replaced
  QMS_GITHUB_WRITES_PER_MINUTE   pacing of GitHub writes (default 80)
  QMS_GITHUB_MAX_BODY_BYTES      largest webhook body (default 25 MB)
  QMS_GITHUB_PERMISSION_CACHE_TTL, QMS_GITHUB_PERMISSION_CACHE_SIZE
                                 trust verdicts reused per (login, repository) for this many
                                 seconds (default 30; 0 = off), at most this many (default 4096)

Leader election (on unless --leader-elect=false / QMS_LEADER_ELECT=false):
  Replicas compete for a coordination.k8s.io/v1 Lease; only its holder runs the controllers and
  the GitHub check-run sync. Standbys serve /healthz, /readyz (200 \"standby\"), /metrics
  (qms_leader 0) and webhooks, and take over when the leader stops renewing. A leader that cannot
  renew within the renew deadline exits; SIGTERM releases the Lease. The identity is $POD_NAME
  (else the hostname) plus a random suffix; the namespace defaults to $POD_NAMESPACE.

Live configuration: the --config file is checked every --config-reload-interval (default 5s); a
  changed valid file is applied without a restart, an invalid one is refused (the last good
  configuration stays in force). Events on the Pod $POD_NAMESPACE/$POD_NAME, metrics
  qms_config_reloads_total{result}, qms_config_hash.

Tracing: OTEL_EXPORTER_OTLP_ENDPOINT (--otlp-endpoint) = http:// base URL of an OTLP/HTTP
  collector; spans go to <url>/v1/traces as protobuf. Off when unset.";

/// The variables that configure GitHub: set while GitHub is off, they are most likely a
/// forgotten `--github` (the chart sets QMS_GITHUB_ENABLED).
const GITHUB_HINT_VARS: [&str; 3] = [
    "QMS_GITHUB_SECRET_DIR",
    "QMS_GITHUB_WEBHOOK_SECRET",
    "QMS_GITHUB_TOKEN",
];

/// Log filter of `run`: the operator's own decisions at info, libraries only when they warn.
const RUN_LOG_FILTER: &str = "info,kube=warn,kube_runtime=warn";

/// Installs the log subscriber (also `qms-dev`'s) and, with `otlp` (a traces URL), the OTLP trace exporter (which
/// needs to be called inside the Tokio runtime that will carry its requests).
pub fn init_tracing(
    format: LogFormat,
    default_filter: &str,
    otlp: Option<&str>,
) -> Result<Option<crate::telemetry::Tracing>, crate::telemetry::TelemetryError> {
    use tracing_subscriber::prelude::*;
    use tracing_subscriber::{EnvFilter, Layer};
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    // The log filter applies to the log lines only; the exporter has its own (see `telemetry`).
    let fmt = match format {
        LogFormat::Json => fmt.json().with_filter(filter).boxed(),
        LogFormat::Text => fmt.with_filter(filter).boxed(),
    };
    let registry = tracing_subscriber::registry().with(fmt);
    match otlp {
        None => {
            let _ = registry.try_init();
            Ok(None)
        }
        Some(url) => {
            let (layer, tracing) = crate::telemetry::otlp_layer(url)?;
            let _ = registry.with(layer).try_init();
            tracing::info!(endpoint = url, "exporting traces over OTLP/HTTP");
            Ok(Some(tracing))
        }
    }
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Crds { out_dir } => match print_or_write_crds(out_dir.as_deref()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("qms-operator: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Run { settings } => {
            let settings = match Settings::load(&settings) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("qms-operator: configuration error: {e}");
                    return ExitCode::from(2);
                }
            };
            let rt = runtime();
            let exporter = {
                let _runtime = rt.enter();
                match init_tracing(
                    cli.log_format,
                    RUN_LOG_FILTER,
                    settings.otlp_endpoint.as_deref(),
                ) {
                    Ok(t) => t,
                    Err(e) => {
                        eprintln!("qms-operator: configuration error: {e}");
                        return ExitCode::from(2);
                    }
                }
            };
            if settings.github.is_none()
                && let Some(var) = GITHUB_HINT_VARS
                    .iter()
                    .find(|v| std::env::var_os(v).is_some_and(|x| !x.is_empty()))
            {
                tracing::warn!(
                    variable = var,
                    "GitHub is configured but not enabled: pass --github or set QMS_GITHUB_ENABLED=true"
                );
            }
            rt.block_on(async move {
                let code = run(settings).await;
                if let Some(exporter) = exporter {
                    // The spans of the last moments (the shutdown itself) are exported too.
                    let _ = tokio::task::spawn_blocking(move || exporter.shutdown()).await;
                }
                code
            })
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("qms-operator: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    }
}

/// The usual kubeconfig / in-cluster client, announcing itself as [`crate::USER_AGENT`] (API
/// server audit logs and per-client rate limits see who asks).
async fn client() -> Result<kube::Client, Box<dyn std::error::Error>> {
    let mut config = kube::Config::infer().await?;
    config.headers.push((
        ::http::header::USER_AGENT,
        ::http::HeaderValue::from_static(crate::USER_AGENT),
    ));
    Ok(kube::Client::try_from(config)?)
}

async fn run(settings: Settings) -> ExitCode {
    let client = match client().await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("qms-operator: no usable kubeconfig or in-cluster config: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut handle = match crate::start(client, settings, crate::Http::On { extra: None }).await {
        Ok(h) => h,
        Err(e) => {
            eprintln!("qms-operator: {e}");
            return ExitCode::FAILURE;
        }
    };
    tokio::select! {
        signal = termination() => {
            tracing::info!(signal, "stopping: releasing the leader lease if held");
            handle.shutdown().await;
            ExitCode::SUCCESS
        }
        exit = handle.wait() => match exit {
            crate::Exit::LostLeadership(reason) => {
                // Exiting is the safe way to stop acting everywhere at once; Kubernetes restarts
                // the container, which then campaigns as a standby.
                tracing::error!(%reason, "lost the leader lease: exiting so that the container restarts as a standby candidate");
                eprintln!("qms-operator: lost the leader lease ({reason}); exiting");
                ExitCode::FAILURE
            }
            crate::Exit::TaskEnded => {
                eprintln!("qms-operator: a controller task stopped unexpectedly");
                ExitCode::FAILURE
            }
        }
    }
}

/// Resolves on SIGTERM (what Kubernetes sends) or SIGINT, with the signal's name.
async fn termination() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = tokio::signal::ctrl_c() => "SIGINT",
            },
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                let _ = tokio::signal::ctrl_c().await;
                "SIGINT"
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        "SIGINT"
    }
}

fn print_or_write_crds(out_dir: Option<&std::path::Path>) -> Result<(), String> {
    let Some(dir) = out_dir else {
        let yaml = qms_api::crds::all_yaml().map_err(|e| format!("cannot render the CRDs: {e}"))?;
        print!("{yaml}");
        return Ok(());
    };
    for (file, crd) in qms_api::crds::all() {
        let yaml =
            qms_api::crds::to_yaml(&crd).map_err(|e| format!("cannot render {file}: {e}"))?;
        let path = dir.join(file);
        std::fs::write(&path, yaml).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(())
}
